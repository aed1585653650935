"""Compare two threat registers by finding id: what is new, what is gone, what changed.

Either side may be a :class:`~modelward.threats.model.Register` or its JSON output loaded as plain
data (a mapping with a ``findings`` list, or such a mapping under ``register``, or the list itself);
each finding needs an ``id`` and may give ``severity``, ``status``, ``title`` and ``threat``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelward.core.errors import InputError
from modelward.core.severity import Severity
from modelward.threats.model import Finding, Register

__all__ = ["Change", "FindingState", "RegisterDiff", "diff_registers", "finding_states"]

RegisterLike = Register | Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True)
class FindingState:
    """What a diff compares about one finding."""

    id: str
    severity: str | None
    status: str | None
    title: str | None = None

    @property
    def severity_rank(self) -> int:
        """Rank of the severity (-1 when unknown), for sorting."""
        try:
            return Severity(self.severity).rank if self.severity else -1
        except ValueError:
            return -1


@dataclass(frozen=True)
class Change:
    """A finding present on both sides whose severity or status differs."""

    before: FindingState
    after: FindingState

    @property
    def id(self) -> str:
        """The finding id."""
        return self.after.id

    @property
    def severity_changed(self) -> bool:
        """Whether the severity differs."""
        return self.before.severity != self.after.severity

    @property
    def status_changed(self) -> bool:
        """Whether the status differs."""
        return self.before.status != self.after.status

    def describe(self) -> str:
        """``severity high → critical; status open → mitigated``."""
        parts = []
        if self.severity_changed:
            parts.append(f"severity {self.before.severity} → {self.after.severity}")
        if self.status_changed:
            parts.append(f"status {self.before.status} → {self.after.status}")
        return "; ".join(parts)


@dataclass
class RegisterDiff:
    """New, fixed (gone), changed and unchanged findings, each sorted by severity then id."""

    new: list[FindingState] = field(default_factory=list)
    fixed: list[FindingState] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: list[FindingState] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        """True when anything was added, removed or changed."""
        return bool(self.new or self.fixed or self.changed)

    def counts(self) -> dict[str, int]:
        """How many findings fall in each group."""
        return {
            "new": len(self.new),
            "fixed": len(self.fixed),
            "changed": len(self.changed),
            "unchanged": len(self.unchanged),
        }

    def to_data(self) -> dict[str, Any]:
        """Plain data for JSON output."""

        def state(s: FindingState) -> dict[str, Any]:
            """One state as plain data."""
            return {"id": s.id, "severity": s.severity, "status": s.status, "title": s.title}

        return {
            "counts": self.counts(),
            "new": [state(s) for s in self.new],
            "fixed": [state(s) for s in self.fixed],
            "changed": [{"id": c.id, "before": state(c.before), "after": state(c.after)} for c in self.changed],
            "unchanged": [state(s) for s in self.unchanged],
        }


def _sort_key(state: FindingState) -> tuple[int, str]:
    """Severity (highest first), then id."""
    return (-state.severity_rank, state.id)


def _state_of_finding(finding: Finding) -> FindingState:
    """The comparable state of a Finding."""
    return FindingState(finding.id, finding.severity.value, finding.status.value, finding.threat.title)


def _text(value: Any) -> str | None:
    """An enum or value as text (None stays None)."""
    if value is None:
        return None
    inner = getattr(value, "value", value)
    return str(inner)


def _state_of_data(item: Any, index: int) -> FindingState:
    """The comparable state of one finding of a loaded JSON register."""
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        raise InputError(f"finding {index} has no 'id'", field=f"findings[{index}]")
    title = item.get("title")
    threat = item.get("threat")
    if title is None and isinstance(threat, Mapping):
        title = threat.get("title")
    return FindingState(item["id"], _text(item.get("severity")), _text(item.get("status")), _text(title))


def finding_states(register: RegisterLike) -> dict[str, FindingState]:
    """The comparable state of every finding of a register or of its loaded JSON, by id."""
    if isinstance(register, Register):
        return {f.id: _state_of_finding(f) for f in register.findings}
    items: Any = register
    if isinstance(register, Mapping):
        inner = register.get("register", register)
        items = inner.get("findings") if isinstance(inner, Mapping) else None
        if items is None:
            raise InputError("not a threat register: expected a 'findings' list")
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise InputError("not a threat register: 'findings' must be a list")
    states: dict[str, FindingState] = {}
    for index, item in enumerate(items):
        state = (
            item
            if isinstance(item, FindingState)
            else (_state_of_finding(item) if isinstance(item, Finding) else _state_of_data(item, index))
        )
        states[state.id] = state
    return states


def diff_registers(old: RegisterLike, new: RegisterLike) -> RegisterDiff:
    """Compare two registers finding by finding (by id)."""
    before = finding_states(old)
    after = finding_states(new)
    result = RegisterDiff()
    for fid, state in after.items():
        previous = before.get(fid)
        if previous is None:
            result.new.append(state)
        elif previous.severity != state.severity or previous.status != state.status:
            result.changed.append(Change(previous, state))
        else:
            result.unchanged.append(state)
    result.fixed = [state for fid, state in before.items() if fid not in after]
    result.new.sort(key=_sort_key)
    result.fixed.sort(key=_sort_key)
    result.unchanged.sort(key=_sort_key)
    result.changed.sort(key=lambda c: _sort_key(c.after))
    return result
