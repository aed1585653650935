"""One result shape for everything that reports a problem; SARIF and JSON come from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelward.core.severity import Severity


@dataclass(frozen=True)
class Location:
    """Where a result points: a file and line, and/or a system element or flow."""

    file: str | None = None
    line: int | None = None
    element: str | None = None
    flow: str | None = None


@dataclass
class Result:
    """A problem found by any part of modelward (threat, PII hit, unsafe file, failed check)."""

    id: str
    rule: str
    title: str
    severity: Severity
    message: str
    location: Location = field(default_factory=Location)
    status: str = "open"
    tags: tuple[str, ...] = ()
    help_uri: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
