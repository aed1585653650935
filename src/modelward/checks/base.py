"""What a check is and what it produces: a registered, parameterised verification and its evidence."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from modelward.core.errors import InputError
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


# --- helpers shared by checks ------------------------------------------------------------------


def number_param(
    params: dict[str, Any], name: str, default: float, *, low: float = 0.0, high: float | None = None
) -> float:
    """``params[name]`` (or ``default``) as a float in ``[low, high]``; anything else is a located InputError."""
    value = params.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InputError(f"{name} must be a number {bound}, got {value!r}", field=f"params.{name}")
    return float(value)


def artifacts_folder(context: CheckContext) -> Path:
    """The requirement's own artifact folder (created)."""
    folder = Path(context.artifacts_dir) / context.requirement
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def artifact_refs(context: CheckContext, names: list[str]) -> list[str]:
    """Artifact paths as the report links them: relative to the report folder."""
    return [f"{Path(context.artifacts_dir).name}/{context.requirement}/{name}" for name in names]
