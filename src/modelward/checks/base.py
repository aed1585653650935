"""What a check is and what it produces: a registered, parameterised verification and its evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from modelward.system.model import System


@dataclass
class EvidenceTable:
    """A small table of results a check wants shown as such (e.g. privacy against utility per defense)."""

    title: str
    columns: list[str]
    rows: list[list[str]]


@dataclass
class Evidence:
    """The outcome of one check run: metrics, pass/fail against its threshold, and artifacts."""

    check: str
    passed: bool
    message: str
    requirement: str | None = None
    targets: list[str] = field(default_factory=list)
    failed_targets: list[str] = field(default_factory=list)
    verifies: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    details: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    error: str | None = None
    tables: list[EvidenceTable] = field(default_factory=list)


@dataclass
class CheckContext:
    """What a check may use: the system, the folder it came from, and where to write artifacts."""

    system: System
    base_dir: str
    artifacts_dir: str
    params: dict[str, Any] = field(default_factory=dict)
    requirement: str = "check"  # the requirement's id: names the check's artifact folder


class Check:
    """Base of every registered check; subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    title: ClassVar[str]
    verifies: ClassVar[tuple[str, ...]] = ()
    default_threshold: ClassVar[float | None] = None

    def __init__(self, params: dict[str, Any] | None = None, threshold: float | None = None) -> None:
        self.params = dict(params or {})
        self.threshold = self.default_threshold if threshold is None else threshold

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        raise NotImplementedError
