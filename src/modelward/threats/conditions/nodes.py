"""Condition nodes and their evaluator: each node answers from the graph's indexes, with reasons.

Nodes are built by :mod:`modelward.threats.conditions.parse` when the catalog loads. Evaluation
never runs code from the catalog: each node answers from the precomputed indexes of
:class:`~modelward.system.graph.SystemGraph` and returns whether it holds together with short
human reasons, which findings keep as their explanation.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any, Literal, NamedTuple

from modelward.system.graph import Reach, SystemGraph
from modelward.system.model import DataAsset, Element, Flow
from modelward.system.vocabulary import (
    Authentication,
    Classification,
    Control,
    DfdKind,
    ElementType,
    Origin,
    TrustLevel,
)

__all__ = [
    "ATTR_OPS",
    "AttrOp",
    "Condition",
    "DataSpec",
    "Evaluator",
    "Outcome",
    "Subject",
    "SubjectKind",
]

Subject = Element | Flow
#: What a condition is evaluated on: elements, flows, or either (a threat targeting both).
SubjectKind = Literal["element", "flow", "any"]


class Outcome(NamedTuple):
    """Whether a condition holds for one subject, and the facts that decided it."""

    holds: bool
    reasons: list[str]


# ---------------------------------------------------------------------------
# helpers for reasons


def _show(value: Any) -> str:
    """A value as reasons print it: enums by value, booleans lower-case, lists comma-joined."""
    if isinstance(value, Enum):
        return f"'{value.value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ", ".join(_bare(v) for v in value) + "]"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)


def _bare(value: Any) -> str:
    """A value without quotes, for lists in reasons."""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _names(values: Sequence[Any]) -> str:
    """Values joined with commas."""
    return ", ".join(_bare(v) for v in values)


#: Ranks of the ordered vocabularies, looked up instead of recomputed (the enums' ``rank`` scans the members).
#: Kept apart: the members are strings, so ``TrustLevel.INTERNAL == Classification.INTERNAL``.
_TRUST_RANK: dict[TrustLevel, int] = {level: i for i, level in enumerate(TrustLevel)}
_CLASS_RANK: dict[Classification, int] = {level: i for i, level in enumerate(Classification)}


def _rank(value: Any) -> Any:
    """The rank of an ordered enum member; other values (numbers) unchanged."""
    if isinstance(value, TrustLevel):
        return _TRUST_RANK[value]
    if isinstance(value, Classification):
        return _CLASS_RANK[value]
    if isinstance(value, Enum):
        return getattr(value, "rank", value)
    return value


def _effective_classification(asset: DataAsset) -> Classification:
    """Unclassified data counts as internal: neither public nor confidential."""
    return asset.classification if asset.classification is not None else Classification.INTERNAL


# ---------------------------------------------------------------------------
# the AST


class Condition:
    """Base of every condition node: evaluate against a subject, describe in words."""

    __slots__ = ()

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        """Whether the condition holds for ``subject``, with reasons."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short text of what the condition asks, for reasons and the ``describe`` command."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class AllOf(Condition):
    """Holds when every item holds; reasons are all items' (or the failing items')."""

    items: tuple[Condition, ...]

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        held: list[str] = []
        failed: list[str] = []
        for item in self.items:
            outcome = item.evaluate(ev, subject)
            (held if outcome.holds else failed).extend(outcome.reasons)
        return Outcome(False, failed) if failed else Outcome(True, held)

    def describe(self) -> str:
        return " and ".join(_grouped(item) for item in self.items) or "always"


@dataclass(frozen=True, eq=False)
class AnyOf(Condition):
    """Holds when some item holds (the first one's reasons); else every item's reasons."""

    items: tuple[Condition, ...]

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        failed: list[str] = []
        for item in self.items:
            outcome = item.evaluate(ev, subject)
            if outcome.holds:
                return outcome
            failed.extend(outcome.reasons)
        return Outcome(False, failed)

    def describe(self) -> str:
        return " or ".join(_grouped(item) for item in self.items) or "never"


@dataclass(frozen=True, eq=False)
class Not(Condition):
    """Holds when its item does not; the item's reasons are facts either way, so they carry over."""

    item: Condition

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        outcome = self.item.evaluate(ev, subject)
        return Outcome(not outcome.holds, outcome.reasons)

    def describe(self) -> str:
        return f"not {_grouped(self.item)}"


def _grouped(item: Condition) -> str:
    """A condition's text, in parentheses when it combines several items."""
    text = item.describe()
    return f"({text})" if isinstance(item, (AllOf, AnyOf)) and len(item.items) > 1 else text


@dataclass(frozen=True, eq=False)
class TypeIn(Condition):
    """The subject's element type is one of ``types`` (a flow never matches)."""

    types: tuple[ElementType, ...]

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        if isinstance(subject, Flow):
            return Outcome(False, ["is a data flow, not an element"])
        if subject.type in self.types:
            return Outcome(True, [f"type is '{subject.type.value}'"])
        return Outcome(False, [f"type is '{subject.type.value}', not one of: {_names(self.types)}"])

    def describe(self) -> str:
        return f"type in [{_names(self.types)}]"


@dataclass(frozen=True, eq=False)
class KindIn(Condition):
    """The subject's DFD kind is one of ``kinds`` (flows are ``data-flow``)."""

    kinds: tuple[DfdKind, ...]

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        kind = DfdKind.DATA_FLOW if isinstance(subject, Flow) else subject.kind
        if kind in self.kinds:
            return Outcome(True, [f"is a {kind.value}"])
        return Outcome(False, [f"is a {kind.value}, not one of: {_names(self.kinds)}"])

    def describe(self) -> str:
        return f"kind in [{_names(self.kinds)}]"


AttrOp = Literal["equals", "in", "is_set", "truthy", "contains", "gte", "lte"]
ATTR_OPS: tuple[AttrOp, ...] = ("equals", "in", "is_set", "truthy", "contains", "gte", "lte")


@dataclass(frozen=True, eq=False)
class Attr(Condition):
    """A comparison on a dotted path into the subject's fields (checked against the models at load)."""

    path: str
    element_attrs: tuple[str, ...] | None
    flow_attrs: tuple[str, ...] | None
    op: AttrOp
    expected: Any

    def _value(self, subject: Subject) -> Any:
        """The field at the path, or None when any step is unset or absent."""
        attrs = self.flow_attrs if isinstance(subject, Flow) else self.element_attrs
        if attrs is None:
            return None
        value: Any = subject
        for name in attrs:
            value = getattr(value, name, None)
            if value is None:
                return None
        return value

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        value = self._value(subject)
        unset = value is None or (isinstance(value, list) and not value)
        shown = "is not set" if value is None else ("is empty" if unset else f"is {_show(value)}")
        op, expected = self.op, self.expected
        if op == "is_set":
            holds = not unset
            return Outcome(holds == expected, [f"{self.path} {shown}"])
        if op == "truthy":
            holds = bool(value)
            return Outcome(holds == expected, [f"{self.path} {shown}"])
        if op == "equals":
            holds = value == expected
            text = f"{self.path} {shown}" if holds or value is None else f"{self.path} {shown}, not {_show(expected)}"
            return Outcome(holds, [text])
        if op == "in":
            holds = value in expected
            if holds or value is None:
                return Outcome(holds, [f"{self.path} {shown}"])
            return Outcome(False, [f"{self.path} {shown}, not one of: {_names(sorted(expected, key=_bare))}"])
        if op == "contains":
            holds = value is not None and expected in value
            verb = "contains" if holds else "does not contain"
            return Outcome(holds, [f"{self.path} {verb} {_show(expected)}" + ("" if holds else f" ({shown})")])
        # gte / lte: numbers or ranked enums
        if value is None:
            return Outcome(False, [f"{self.path} is not set"])
        left = _rank(value)
        right = _rank(expected)
        holds = left >= right if op == "gte" else left <= right
        bound = "at least" if op == "gte" else "at most"
        return Outcome(holds, [f"{self.path} {shown}" + ("" if holds else f", not {bound} {_show(expected)}")])

    def describe(self) -> str:
        symbol = {"equals": "==", "in": "in", "contains": "contains", "gte": ">=", "lte": "<="}
        if self.op == "is_set":
            return f"{self.path} is {'set' if self.expected else 'not set'}"
        if self.op == "truthy":
            return f"{self.path} is {'true' if self.expected else 'false'}"
        expected = sorted(self.expected, key=_bare) if self.op == "in" else self.expected
        return f"{self.path} {symbol[self.op]} {_show(expected)}"


@dataclass(frozen=True, eq=False)
class HasControl(Condition):
    """The subject declares a control (a flow: the flow or its target element)."""

    control: Control

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        return ev.controls_outcome(subject, (self.control,), f"no control '{self.control.value}'")

    def describe(self) -> str:
        return f"control '{self.control.value}'"


@dataclass(frozen=True, eq=False)
class ControlsAny(Condition):
    """The subject declares at least one of the controls."""

    controls: tuple[Control, ...]
    missing: str = ""

    def __post_init__(self) -> None:
        """Precompute the reason given when none of the controls is declared."""
        if not self.missing:
            text = f"no control '{self.controls[0].value}'" if len(self.controls) == 1 else ""
            object.__setattr__(self, "missing", text or f"no control among: {_names(self.controls)}")

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        return ev.controls_outcome(subject, self.controls, self.missing)

    def describe(self) -> str:
        return f"any control of [{_names(self.controls)}]"


@dataclass(frozen=True, eq=False)
class Authenticated(Condition):
    """Element: authenticates callers; flow: authenticated itself or its target authenticates."""

    expected: bool

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        graph = ev.graph
        if isinstance(subject, Flow):
            if subject.authenticated is True:
                return Outcome(self.expected, ["flow is authenticated"])
            if graph.element_authenticated(subject.target):
                auth = graph.elements[subject.target].authentication
                method = auth.value if auth is not None else "?"
                return Outcome(self.expected, [f"target '{subject.target}' authenticates callers ({method})"])
            text = f"flow is not authenticated and target '{subject.target}' does not authenticate callers"
            return Outcome(not self.expected, [text])
        auth = subject.authentication
        if auth is not None and auth is not Authentication.NONE:
            return Outcome(self.expected, [f"authenticates callers ({auth.value})"])
        text = "authentication is 'none'" if subject.authentication is not None else "authentication is not declared"
        return Outcome(not self.expected, [text])

    def describe(self) -> str:
        return "authenticated" if self.expected else "not authenticated"


@dataclass(frozen=True, eq=False)
class Encrypted(Condition):
    """Flow: encrypted in transit (explicitly or by protocol); element: encrypts data at rest."""

    expected: bool

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        if isinstance(subject, Flow):
            if ev.graph.flow_encrypted(subject.fid):
                text = "flow is encrypted" if subject.encrypted else f"flow uses {subject.protocol}"
                return Outcome(self.expected, [text])
            if subject.encrypted is False:
                return Outcome(not self.expected, ["flow is declared unencrypted"])
            protocol = f" (protocol {subject.protocol})" if subject.protocol else ""
            return Outcome(not self.expected, [f"flow is not encrypted{protocol}"])
        if subject.encryption_at_rest or Control.ENCRYPTION_AT_REST in subject.controls:
            return Outcome(self.expected, ["encrypts data at rest"])
        return Outcome(not self.expected, ["does not declare encryption at rest"])

    def describe(self) -> str:
        return "encrypted" if self.expected else "not encrypted"


def _trust_text(at_most: TrustLevel | None, at_least: TrustLevel | None) -> str:
    """'at least X and at most Y' for trust bounds."""
    parts = []
    if at_least is not None:
        parts.append(f"at least {at_least.value}")
    if at_most is not None:
        parts.append(f"at most {at_most.value}")
    return " and ".join(parts)


def _trust_ok(level: TrustLevel, at_most: TrustLevel | None, at_least: TrustLevel | None) -> bool:
    """Whether a trust level lies within the bounds."""
    if at_most is not None and _TRUST_RANK[level] > _TRUST_RANK[at_most]:
        return False
    return not (at_least is not None and _TRUST_RANK[level] < _TRUST_RANK[at_least])


@dataclass(frozen=True, eq=False)
class Trust(Condition):
    """The subject's effective trust is within bounds (a flow: the lower of its two ends)."""

    at_most: TrustLevel | None
    at_least: TrustLevel | None

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        if isinstance(subject, Flow):
            level = ev.graph.flow_trust(subject.fid)
            label = "flow trust"
        else:
            level = ev.graph.effective_trust(subject.id)
            label = "trust"
        holds = _trust_ok(level, self.at_most, self.at_least)
        suffix = "" if holds else f", not {_trust_text(self.at_most, self.at_least)}"
        return Outcome(holds, [f"{label} is '{level.value}'{suffix}"])

    def describe(self) -> str:
        return f"trust {_trust_text(self.at_most, self.at_least)}"


@dataclass(frozen=True, eq=False)
class DataSpec:
    """The fields a data asset must match (every given field); ``None`` means not asked."""

    personal: bool | None = None
    special_category: bool | None = None
    credentials: bool | None = None
    classification_at_least: Classification | None = None
    classification_at_most: Classification | None = None
    origin_in: tuple[Origin, ...] | None = None
    trust_at_most: TrustLevel | None = None
    trust_at_least: TrustLevel | None = None
    format: tuple[str, ...] | None = None
    purpose_declared: bool | None = None
    retention_declared: bool | None = None
    data_subjects_at_least: int | None = None

    def facts(self, asset: DataAsset) -> list[str] | None:
        """The facts of ``asset`` that match every field, or None when some field does not."""
        facts: list[str] = []
        for flag, label in (
            (self.personal, "personal"),
            (self.special_category, "special category"),
            (self.credentials, "credentials"),
        ):
            if flag is not None:
                actual = bool(getattr(asset, label.replace(" ", "_")))
                if actual != flag:
                    return None
                facts.append(label if actual else f"not {label}")
        if self.classification_at_least is not None or self.classification_at_most is not None:
            level = _effective_classification(asset)
            if (
                self.classification_at_least is not None
                and _CLASS_RANK[level] < _CLASS_RANK[self.classification_at_least]
            ):
                return None
            if (
                self.classification_at_most is not None
                and _CLASS_RANK[level] > _CLASS_RANK[self.classification_at_most]
            ):
                return None
            unset = " (unclassified)" if asset.classification is None else ""
            facts.append(f"classification {level.value}{unset}")
        if self.origin_in is not None:
            origin = asset.origin
            if origin is None or origin not in self.origin_in:
                return None
            facts.append(f"origin {origin.value}")
        if self.trust_at_most is not None or self.trust_at_least is not None:
            trust = asset.effective_trust
            if not _trust_ok(trust, self.trust_at_most, self.trust_at_least):
                return None
            facts.append(f"trust {trust.value}")
        if self.format is not None:
            if asset.format not in self.format:
                return None
            facts.append(f"format {asset.format}")
        for flag, value, label in (
            (self.purpose_declared, asset.purpose, "purpose"),
            (self.retention_declared, asset.retention, "retention"),
        ):
            if flag is not None:
                declared = bool(value and value.strip())
                if declared != flag:
                    return None
                facts.append(f"{label} declared" if declared else f"no declared {label}")
        if self.data_subjects_at_least is not None:
            if asset.data_subjects is None or asset.data_subjects < self.data_subjects_at_least:
                return None
            facts.append(f"{asset.data_subjects:,} data subjects")
        return facts

    def describe(self) -> str:
        """What the spec asks, as a comma-separated list."""
        parts: list[str] = []
        for flag, label in (
            (self.personal, "personal"),
            (self.special_category, "special category"),
            (self.credentials, "credentials"),
        ):
            if flag is not None:
                parts.append(label if flag else f"not {label}")
        if self.classification_at_least is not None:
            parts.append(f"classification at least {self.classification_at_least.value}")
        if self.classification_at_most is not None:
            parts.append(f"classification at most {self.classification_at_most.value}")
        if self.origin_in is not None:
            parts.append(f"origin in [{_names(self.origin_in)}]")
        if self.trust_at_most is not None or self.trust_at_least is not None:
            parts.append(f"trust {_trust_text(self.trust_at_most, self.trust_at_least)}")
        if self.format is not None:
            parts.append(f"format in [{_names(self.format)}]")
        for flag, label in ((self.purpose_declared, "purpose"), (self.retention_declared, "retention")):
            if flag is not None:
                parts.append(f"{label} declared" if flag else f"no declared {label}")
        if self.data_subjects_at_least is not None:
            parts.append(f"at least {self.data_subjects_at_least:,} data subjects")
        return ", ".join(parts) or "any data"


@dataclass(frozen=True, eq=False)
class DataMatch(Condition):
    """Some asset the subject handles (or, with ``training``, its model was trained on) matches the spec."""

    spec: DataSpec
    training: bool = False

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        graph = ev.graph
        if self.training:
            if isinstance(subject, Flow):
                return Outcome(False, ["training_data does not apply to a data flow"])
            assets = graph.training_data(subject.id)
            verb = "trained on"
        elif isinstance(subject, Flow):
            assets = graph.flow_data(subject.fid)
            verb = "carries"
        else:
            assets = graph.data_of(subject.id)
            verb = "handles"
        for asset in assets:
            facts = self.spec.facts(asset)
            if facts is not None:
                detail = f" ({', '.join(facts)})" if facts else ""
                return Outcome(True, [f"{verb} '{asset.id}'{detail}"])
        if not assets:
            return Outcome(False, [f"{verb} no declared data"])
        return Outcome(False, [f"{verb} no data that is: {self.spec.describe()}"])

    def describe(self) -> str:
        return f"{'training data' if self.training else 'data'}: {self.spec.describe()}"


@dataclass(frozen=True, eq=False)
class ExposedToUntrusted(Condition):
    """A flow enters the subject straight from an untrusted element (a flow: its source is untrusted)."""

    expected: bool

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        graph = ev.graph
        if isinstance(subject, Flow):
            if graph.effective_trust(subject.source) is TrustLevel.UNTRUSTED:
                return Outcome(self.expected, [f"comes from untrusted '{subject.source}'"])
            level = graph.effective_trust(subject.source).value
            return Outcome(not self.expected, [f"source '{subject.source}' is {level}, not untrusted"])
        source = graph.exposed_to_untrusted(subject.id)
        if source is not None:
            return Outcome(self.expected, [f"receives directly from untrusted '{source}'"])
        return Outcome(not self.expected, ["receives nothing directly from an untrusted element"])

    def describe(self) -> str:
        return "exposed to untrusted" if self.expected else "not exposed to untrusted"


@dataclass(frozen=True, eq=False)
class ReachableFromUntrusted(Condition):
    """Some chain of flows leads from an untrusted element to the subject (a flow: to its source).

    With ``avoiding``, only chains on which no element after the untrusted start (the subject
    included) satisfies that condition count: ``not`` of it says every such chain is guarded.
    """

    expected: bool
    avoiding: Condition | None = None

    def _path(self, ev: Evaluator, element_id: str) -> tuple[str, ...] | None:
        """The unguarded (or, with ``avoiding``, guarded) chain to an element."""
        if self.avoiding is None:
            return ev.graph.untrusted_path(element_id)
        return ev.unguarded(self.avoiding).path(element_id)

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        graph = ev.graph
        guard = f", avoiding {_grouped(self.avoiding)}" if self.avoiding is not None else ""
        if isinstance(subject, Flow):
            if graph.effective_trust(subject.source) is TrustLevel.UNTRUSTED:
                return Outcome(self.expected, [f"comes from untrusted '{subject.source}'"])
            path = self._path(ev, subject.source)
            if path is not None:
                chain = " → ".join((*path, subject.target))
                return Outcome(self.expected, [f"reachable from untrusted '{path[0]}' via {chain}{guard}"])
            subject_id = subject.source
        else:
            path = self._path(ev, subject.id)
            if path is not None:
                return Outcome(self.expected, [f"reachable from untrusted '{path[0]}' via {' → '.join(path)}{guard}"])
            subject_id = subject.id
        if self.avoiding is not None and graph.reachable_from_untrusted(subject_id):
            text = f"every chain from an untrusted element passes an element where {_grouped(self.avoiding)}"
            return Outcome(not self.expected, [text])
        if isinstance(subject, Flow):
            return Outcome(not self.expected, [f"source '{subject.source}' is not reachable from an untrusted element"])
        return Outcome(not self.expected, ["not reachable from any untrusted element"])

    def describe(self) -> str:
        text = "reachable from untrusted" if self.expected else "not reachable from untrusted"
        return text + (f" avoiding {_grouped(self.avoiding)}" if self.avoiding is not None else "")


def _boundary_name(boundary: str | None) -> str:
    """A boundary id quoted, or 'no boundary'."""
    return f"'{boundary}'" if boundary is not None else "no boundary"


@dataclass(frozen=True, eq=False)
class CrossesBoundary(Condition):
    """Flow: its ends sit in different boundaries; element: some incoming flow crosses one."""

    expected: bool

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        graph = ev.graph
        flow = subject if isinstance(subject, Flow) else graph.crossing_into(subject.id)
        if flow is not None and graph.crosses_boundary(flow.fid):
            a = _boundary_name(graph.innermost_boundary(flow.source))
            b = _boundary_name(graph.innermost_boundary(flow.target))
            prefix = (
                "crosses a trust boundary"
                if isinstance(subject, Flow)
                else f"incoming flow '{flow.fid}' crosses a trust boundary"
            )
            return Outcome(self.expected, [f"{prefix} ({a} → {b})"])
        if isinstance(subject, Flow):
            where = _boundary_name(graph.innermost_boundary(subject.source))
            return Outcome(not self.expected, [f"flow stays within {where}"])
        return Outcome(not self.expected, ["no incoming flow crosses a trust boundary"])

    def describe(self) -> str:
        return "crosses a trust boundary" if self.expected else "crosses no trust boundary"


@dataclass(frozen=True, eq=False)
class InBoundary(Condition):
    """The subject sits in a boundary (by id, nesting included) or in one within trust bounds.

    A flow sits in a boundary when both its ends do.
    """

    boundary: str | None
    trust_at_most: TrustLevel | None = None
    trust_at_least: TrustLevel | None = None

    def _match(self, ev: Evaluator, element_id: str) -> str | None:
        """The boundary of an element's chain that matches, or None."""
        graph = ev.graph
        for bid in graph.boundary_chain(element_id):
            if self.boundary is not None:
                if bid == self.boundary:
                    return bid
            elif _trust_ok(graph.boundaries[bid].trust, self.trust_at_most, self.trust_at_least):
                return bid
        return None

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        ends = (subject.source, subject.target) if isinstance(subject, Flow) else (subject.id,)
        found = [self._match(ev, end) for end in ends]
        if all(b is not None for b in found):
            names = ", ".join(dict.fromkeys(f"'{b}'" for b in found))
            if self.boundary is None:
                trust = ", ".join(dict.fromkeys(ev.graph.boundaries[b].trust.value for b in found if b))
                return Outcome(True, [f"sits in boundary {names} (trust {trust})"])
            return Outcome(True, [f"sits in boundary {names}"])
        what = "both ends do not sit" if isinstance(subject, Flow) else "does not sit"
        return Outcome(False, [f"{what} in {self.describe().removeprefix('in ')}"])

    def describe(self) -> str:
        if self.boundary is not None:
            return f"in boundary '{self.boundary}'"
        return f"in a boundary with trust {_trust_text(self.trust_at_most, self.trust_at_least)}"


@dataclass(frozen=True, eq=False)
class FlowEnd(Condition):
    """Flow only: the condition holds for the flow's source or target element."""

    end: Literal["source", "target"]
    item: Condition

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        if not isinstance(subject, Flow):
            return Outcome(False, [f"{self.end} applies only to data flows"])
        element_id = subject.source if self.end == "source" else subject.target
        outcome = ev.on_element(self.item, element_id)
        return Outcome(outcome.holds, [f"{self.end} '{element_id}': {'; '.join(outcome.reasons)}"])

    def describe(self) -> str:
        return f"{self.end}: {_grouped(self.item)}"


_NEIGHBOUR_WORDS = {"in": ("receives from", "caller"), "out": ("sends to", "receiver")}


@dataclass(frozen=True, eq=False)
class Neighbour(Condition):
    """Element only: some direct neighbour (incoming: ``receives_from``, outgoing: ``sends_to``) satisfies the item."""

    direction: Literal["in", "out"]
    item: Condition

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        verb, noun = _NEIGHBOUR_WORDS[self.direction]
        if isinstance(subject, Flow):
            return Outcome(False, [f"{verb.replace(' ', '_')} does not apply to a data flow"])
        graph = ev.graph
        neighbours = graph.predecessors(subject.id) if self.direction == "in" else graph.successors(subject.id)
        for neighbour in neighbours:
            outcome = ev.on_element(self.item, neighbour)
            if outcome.holds:
                return Outcome(True, [f"{verb} '{neighbour}': {'; '.join(outcome.reasons)}"])
        if not neighbours:
            return Outcome(False, [f"has no direct {noun}s"])
        return Outcome(False, [f"no direct {noun} matches ({self.item.describe()})"])

    def describe(self) -> str:
        return f"{_NEIGHBOUR_WORDS[self.direction][0]}: {_grouped(self.item)}"


@dataclass(frozen=True, eq=False)
class Along(Condition):
    """Some element reachable backwards (``upstream``) or forwards (``downstream``) satisfies the item.

    For a flow, upstream starts at its source (the source itself counts) and downstream at its target.
    """

    direction: Literal["up", "down"]
    item: Condition

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        word = "upstream" if self.direction == "up" else "downstream"
        if isinstance(subject, Flow):
            start = subject.source if self.direction == "up" else subject.target
            own = ev.on_element(self.item, start)
            if own.holds:
                end = "source" if self.direction == "up" else "target"
                return Outcome(True, [f"{end} '{start}': {'; '.join(own.reasons)}"])
            element_id = start
        else:
            element_id = subject.id
        reach, witnesses = ev.along(self.item, self.direction)
        path = reach.path(element_id)
        if path is None:
            return Outcome(False, [f"nothing {word} matches ({self.item.describe()})"])
        witness = path[0]
        chain = path if self.direction == "up" else tuple(reversed(path))
        reasons = "; ".join(witnesses[witness].reasons)
        return Outcome(True, [f"{word} '{witness}' ({reasons}) via {' → '.join(chain)}"])

    def describe(self) -> str:
        return f"{'upstream' if self.direction == 'up' else 'downstream'}: {_grouped(self.item)}"


@dataclass(frozen=True, eq=False)
class TrainingSource(Condition):
    """Element only: some element supplying an asset of ``model.trained_on`` satisfies the item."""

    item: Condition

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        if isinstance(subject, Flow):
            return Outcome(False, ["training_source does not apply to a data flow"])
        sources = ev.graph.training_sources(subject.id)
        for source in sources:
            outcome = ev.on_element(self.item, source)
            if outcome.holds:
                return Outcome(True, [f"training data comes from '{source}': {'; '.join(outcome.reasons)}"])
        if not sources:
            return Outcome(False, ["no element supplies its training data"])
        return Outcome(False, [f"no training source matches ({self.item.describe()})"])

    def describe(self) -> str:
        return f"training source: {_grouped(self.item)}"


@dataclass(frozen=True, eq=False)
class FlowsOf(Condition):
    """Element only (extension): some incoming or outgoing flow satisfies the item (evaluated on the flow)."""

    direction: Literal["in", "out"]
    item: Condition

    def evaluate(self, ev: Evaluator, subject: Subject) -> Outcome:
        word = "incoming" if self.direction == "in" else "outgoing"
        if isinstance(subject, Flow):
            return Outcome(False, [f"{word} does not apply to a data flow"])
        flows = ev.graph.incoming(subject.id) if self.direction == "in" else ev.graph.outgoing(subject.id)
        for flow in flows:
            outcome = self.item.evaluate(ev, flow)
            if outcome.holds:
                return Outcome(True, [f"{word} flow '{flow.fid}': {'; '.join(outcome.reasons)}"])
        if not flows:
            return Outcome(False, [f"has no {word} flows"])
        return Outcome(False, [f"no {word} flow matches ({self.item.describe()})"])

    def describe(self) -> str:
        return f"{'incoming' if self.direction == 'in' else 'outgoing'}: {_grouped(self.item)}"


# ---------------------------------------------------------------------------
# evaluation


class Evaluator:
    """Evaluates parsed conditions over one system graph, memoising nested element results."""

    def __init__(self, graph: SystemGraph) -> None:
        self.graph = graph
        self._memo: dict[int, tuple[Condition, dict[str, Outcome]]] = {}
        self._along: dict[tuple[int, str], tuple[Condition, Reach, dict[str, Outcome]]] = {}
        self._unguarded: dict[int, tuple[Condition, Reach]] = {}
        self._canonical: dict[int, Condition] = {}
        self._by_structure: dict[Any, Condition] = {}
        self._keep: list[Condition] = []

    def evaluate(self, condition: Condition, subject: Subject) -> Outcome:
        """Evaluate a condition on an element or a flow."""
        return condition.evaluate(self, subject)

    def element(self, condition: Condition, element_id: str) -> Outcome:
        """Evaluate a condition on the element with this id."""
        return condition.evaluate(self, self.graph.elements[element_id])

    def flow(self, condition: Condition, flow_id: str) -> Outcome:
        """Evaluate a condition on the flow with this id."""
        return condition.evaluate(self, self.graph.flows[flow_id])

    def canonical(self, condition: Condition) -> Condition:
        """The first node seen with the same structure, so equal conditions in different threats share memos."""
        found = self._canonical.get(id(condition))
        if found is None:
            found = self._by_structure.setdefault(_structure(condition), condition)
            self._canonical[id(condition)] = found
            self._keep.append(condition)  # keeps ids stable while they are memo keys
        return found

    def on_element(self, condition: Condition, element_id: str) -> Outcome:
        """Memoised evaluation of a nested condition on a neighbouring element (it does not depend on the caller)."""
        entry = self._memo.get(id(condition))
        if entry is None:
            condition = self.canonical(condition)
            entry = self._memo.get(id(condition))
            if entry is None:
                entry = (condition, {})
                self._memo[id(condition)] = entry
        table = entry[1]
        outcome = table.get(element_id)
        if outcome is None:
            outcome = condition.evaluate(self, self.graph.elements[element_id])
            table[element_id] = outcome
        return outcome

    def along(self, condition: Condition, direction: str) -> tuple[Reach, dict[str, Outcome]]:
        """One search per condition: every element with a matching element up- or downstream of it."""
        condition = self.canonical(condition)
        key = (id(condition), direction)
        entry = self._along.get(key)
        if entry is None:
            witnesses: dict[str, Outcome] = {}
            for element_id in self.graph.elements:
                outcome = self.on_element(condition, element_id)
                if outcome.holds:
                    witnesses[element_id] = outcome
            reach = self.graph.reach(witnesses, forward=direction == "up")
            entry = (condition, reach, witnesses)
            self._along[key] = entry
        return entry[1], entry[2]

    def unguarded(self, guard: Condition) -> Reach:
        """One search per guard: chains from untrusted elements that enter no element satisfying ``guard``."""
        guard = self.canonical(guard)
        entry = self._unguarded.get(id(guard))
        if entry is None:
            reach = self.graph.reach(
                self.graph.untrusted, passable=lambda flow: not self.on_element(guard, flow.target).holds
            )
            entry = (guard, reach)
            self._unguarded[id(guard)] = entry
        return entry[1]

    def controls_outcome(self, subject: Subject, controls: tuple[Control, ...], missing: str) -> Outcome:
        """Which of ``controls`` the subject declares (a flow: itself, then its target); ``missing`` names them."""
        if isinstance(subject, Flow):
            for control in controls:
                if control in subject.controls:
                    return Outcome(True, [f"flow declares control '{control.value}'"])
            target = self.graph.elements[subject.target]
            for control in controls:
                if control in target.controls:
                    return Outcome(True, [f"target '{target.id}' declares control '{control.value}'"])
            return Outcome(False, [f"{missing} on the flow or its target '{target.id}'"])
        declared = subject.controls
        if declared:
            for control in controls:
                if control in declared:
                    return Outcome(True, [f"declares control '{control.value}'"])
        return Outcome(False, [missing])


def _structure(value: Any) -> Any:
    """A hashable value equal for structurally equal conditions (nodes compare by identity otherwise)."""
    if isinstance(value, (Condition, DataSpec)):
        return (type(value).__name__, *(_structure(getattr(value, f.name)) for f in fields(typing.cast(Any, value))))
    if isinstance(value, (list, tuple)):
        return tuple(_structure(item) for item in value)
    if isinstance(value, frozenset):
        return frozenset(_structure(item) for item in value)
    return value
