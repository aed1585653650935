"""Parsing catalog conditions into nodes, with every problem located by file, line and field.

A catalog condition (``applies_when`` / ``mitigated_when``) is a mapping with exactly one key. It is
parsed once, when the catalog loads; an unknown key, a bad operator, an attribute path that no model
has, an unknown control or type is a ``CatalogError`` naming the file, line and field.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any

from pydantic import BaseModel

from modelward.core.errors import CatalogError
from modelward.core.yamlio import LoadedDocument, Loc
from modelward.system.model import Element, Flow
from modelward.system.references import format_path
from modelward.system.vocabulary import (
    Classification,
    Control,
    DfdKind,
    ElementType,
    Origin,
    TrustLevel,
)
from modelward.threats.conditions.nodes import (
    ATTR_OPS,
    AllOf,
    Along,
    AnyOf,
    Attr,
    AttrOp,
    Authenticated,
    Condition,
    ControlsAny,
    CrossesBoundary,
    DataMatch,
    DataSpec,
    Encrypted,
    ExposedToUntrusted,
    FlowEnd,
    FlowsOf,
    HasControl,
    InBoundary,
    KindIn,
    Neighbour,
    Not,
    ReachableFromUntrusted,
    SubjectKind,
    TrainingSource,
    Trust,
    TypeIn,
    _show,
)

__all__ = ["CONDITION_KEYS", "DATA_FIELDS", "parse_condition"]


class _ParseError(Exception):
    """A problem in a condition, located by its path below the condition's root."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc


_ParseFn = Callable[[Any, SubjectKind, Loc], Condition]

DATA_FIELDS: tuple[str, ...] = tuple(DataSpec.__dataclass_fields__)


def parse_condition(
    raw: Any,
    subject: SubjectKind = "any",
    *,
    document: LoadedDocument | None = None,
    loc: Loc = (),
) -> Condition:
    """Parse one catalog condition into its AST.

    ``subject`` says what it will be evaluated on (from the threat's targets); ``document`` and
    ``loc`` locate errors: each becomes a ``CatalogError`` with the file, line and field.
    """
    try:
        return _parse(raw, subject, loc)
    except _ParseError as exc:
        file = document.file if document is not None else None
        line = document.line(exc.loc) if document is not None else None
        raise CatalogError(exc.message, file=file, line=line, field=format_path(exc.loc)) from None


def _parse(raw: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parse one condition mapping, dispatching on its single key."""
    if not isinstance(raw, Mapping):
        raise _ParseError(f"a condition must be a mapping with one key, got {_type_name(raw)}", loc)
    if len(raw) != 1:
        keys = ", ".join(str(k) for k in raw) or "none"
        raise _ParseError(f"a condition must have exactly one key, got {len(raw)} ({keys})", loc)
    key, value = next(iter(raw.items()))
    parser = _PARSERS.get(key) if isinstance(key, str) else None
    here = (*loc, str(key))
    if parser is None:
        close = difflib.get_close_matches(str(key), CONDITION_KEYS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _ParseError(f"unknown condition {key!r}{hint}", here)
    need = _SUBJECT_NEEDS.get(key)
    if need is not None and subject != "any" and subject != need:
        raise _ParseError(f"{key!r} applies only to {'data flows' if need == 'flow' else 'elements'}", here)
    return parser(value, subject, here)


def _type_name(value: Any) -> str:
    """How an unexpected YAML value is named in errors."""
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number"}.get(
        type(value), type(value).__name__
    )


def _list(value: Any, loc: Loc, *, allow_scalar: bool = False) -> list[Any]:
    """A non-empty list (or, when allowed, one scalar as a list)."""
    if allow_scalar and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not value:
        raise _ParseError(
            f"expected a non-empty list, got {_type_name(value) if value != [] else 'an empty list'}", loc
        )
    return value


def _bool(value: Any, loc: Loc) -> bool:
    """A YAML boolean, refusing anything else."""
    if not isinstance(value, bool):
        raise _ParseError(f"expected true or false, got {_show(value)}", loc)
    return value


_E = typing.TypeVar("_E", bound=Enum)


def _enum(enum: type[_E], value: Any, loc: Loc, what: str) -> _E:
    """A vocabulary member by value, with a suggestion when misspelt."""
    try:
        return enum(value)
    except ValueError:
        names = [str(m.value) for m in enum]
        close = difflib.get_close_matches(str(value), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(names)})"
        raise _ParseError(f"unknown {what} {value!r}{hint}", loc) from None


def _combinator(kind: str) -> _ParseFn:
    """Parser for ``all`` or ``any``."""

    def parse(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
        items = tuple(_parse(item, subject, (*loc, i)) for i, item in enumerate(_list(value, loc)))
        return AllOf(items) if kind == "all" else AnyOf(items)

    return parse


def _parse_not(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``not``."""
    return Not(_parse(value, subject, loc))


def _parse_type(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``type``."""
    items = _list(value, loc, allow_scalar=True)
    return TypeIn(tuple(_enum(ElementType, v, (*loc, i), "element type") for i, v in enumerate(items)))


def _parse_kind(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``kind``."""
    items = _list(value, loc, allow_scalar=True)
    return KindIn(tuple(_enum(DfdKind, v, (*loc, i), "DFD kind") for i, v in enumerate(items)))


def _parse_control(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``control``."""
    return HasControl(_enum(Control, value, loc, "control"))


def _parse_controls_any(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``controls_any``."""
    items = _list(value, loc)
    return ControlsAny(tuple(_enum(Control, v, (*loc, i), "control") for i, v in enumerate(items)))


def _flag(node: Callable[[bool], Condition]) -> _ParseFn:
    """Parser for a key that takes true or false."""

    def parse(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
        return node(_bool(value, loc))

    return parse


def _mapping(value: Any, loc: Loc, allowed: Sequence[str], what: str) -> Mapping[str, Any]:
    """A mapping whose keys are all among ``allowed``."""
    if not isinstance(value, Mapping):
        raise _ParseError(f"{what} expects a mapping, got {_type_name(value)}", loc)
    for key in value:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (expected: {', '.join(allowed)})"
            raise _ParseError(f"unknown {what} field {key!r}{hint}", (*loc, str(key)))
    return value


def _parse_trust(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``trust``."""
    spec = _mapping(value, loc, ("at_most", "at_least"), "trust")
    if not spec:
        raise _ParseError("trust needs at_most and/or at_least", loc)
    at_most = _enum(TrustLevel, spec["at_most"], (*loc, "at_most"), "trust level") if "at_most" in spec else None
    at_least = _enum(TrustLevel, spec["at_least"], (*loc, "at_least"), "trust level") if "at_least" in spec else None
    return Trust(at_most, at_least)


def _parse_data_spec(value: Any, loc: Loc) -> DataSpec:
    """A data spec (the value of ``data`` and ``training_data``)."""
    spec = _mapping(value, loc, DATA_FIELDS, "data")
    fields: dict[str, Any] = {}
    for key, raw in spec.items():
        here = (*loc, key)
        if key in ("personal", "special_category", "credentials", "purpose_declared", "retention_declared"):
            fields[key] = _bool(raw, here)
        elif key.startswith("classification_"):
            fields[key] = _enum(Classification, raw, here, "classification")
        elif key.startswith("trust_"):
            fields[key] = _enum(TrustLevel, raw, here, "trust level")
        elif key == "origin_in":
            fields[key] = tuple(_enum(Origin, v, (*here, i), "origin") for i, v in enumerate(_list(raw, here)))
        elif key == "format":
            items = _list(raw, here, allow_scalar=True)
            for i, item in enumerate(items):
                if not isinstance(item, str):
                    raise _ParseError(f"a data format is a name, got {_show(item)}", (*here, i))
            fields[key] = tuple(items)
        else:  # data_subjects_at_least
            if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
                raise _ParseError(f"expected a whole number of people, got {_show(raw)}", here)
            fields[key] = raw
    return DataSpec(**fields)


def _parse_data(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``data``."""
    return DataMatch(_parse_data_spec(value, loc))


def _parse_training_data(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``training_data``."""
    return DataMatch(_parse_data_spec(value, loc), training=True)


def _nested(node: Callable[[Condition], Condition], inner: SubjectKind) -> _ParseFn:
    """Parser for a key whose value is a condition on another subject kind."""

    def parse(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
        return node(_parse(value, inner, loc))

    return parse


def _parse_reachable(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``reachable_from_untrusted`` (boolean or guarded form)."""
    if isinstance(value, bool):
        return ReachableFromUntrusted(value)
    spec = _mapping(value, loc, ("avoiding",), "reachable_from_untrusted")
    if "avoiding" not in spec:
        raise _ParseError("reachable_from_untrusted takes true, false or {avoiding: <condition>}", loc)
    return ReachableFromUntrusted(True, _parse(spec["avoiding"], "element", (*loc, "avoiding")))


def _parse_in_boundary(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``in_boundary``."""
    if isinstance(value, str):
        if not value:
            raise _ParseError("in_boundary needs a boundary id", loc)
        return InBoundary(value)
    spec = _mapping(value, loc, ("trust_at_most", "trust_at_least"), "in_boundary")
    if not spec:
        raise _ParseError("in_boundary needs a boundary id or trust_at_most / trust_at_least", loc)
    at_most = spec.get("trust_at_most")
    at_least = spec.get("trust_at_least")
    return InBoundary(
        None,
        _enum(TrustLevel, at_most, (*loc, "trust_at_most"), "trust level") if at_most is not None else None,
        _enum(TrustLevel, at_least, (*loc, "trust_at_least"), "trust level") if at_least is not None else None,
    )


# --- attr: paths checked against the pydantic models ------------------------


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The base type of a field annotation (Optional and Annotated removed) and whether it is a list."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation, is_list
            annotation = args[0]
        elif origin is list:
            is_list = True
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, is_list


def _resolve(model: type[BaseModel], parts: Sequence[str]) -> tuple[tuple[str, ...], Any, bool] | str:
    """Python attribute names and leaf type of a dotted path, or a message saying what is wrong."""
    attrs: list[str] = []
    current: Any = model
    is_list = False
    for depth, part in enumerate(parts):
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or is_list:
            where = ".".join(parts[:depth])
            return f"{where!r} has no fields"
        fields = current.model_fields
        name = part if part in fields else next((n for n, f in fields.items() if f.alias == part), None)
        if name is None:
            names = sorted(f.alias or n for n, f in fields.items())
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"unknown field {part!r} in {'.'.join(parts[: depth + 1])!r}{hint}"
        attrs.append(name)
        current, is_list = _unwrap(fields[name].annotation)
    return tuple(attrs), current, is_list


def _convert(leaf: Any, value: Any, loc: Loc, path: str) -> Any:
    """Check and convert one expected value against a field's base type."""
    if isinstance(leaf, type) and issubclass(leaf, Enum):
        return _enum(leaf, value, loc, f"value for {path}")
    if leaf is bool:
        return _bool(value, loc)
    if leaf in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _ParseError(f"{path} is a number, got {_show(value)}", loc)
        return value
    if leaf is str:
        if not isinstance(value, str):
            raise _ParseError(f"{path} is text, got {_show(value)}", loc)
        return value
    raise _ParseError(f"{path} cannot be compared with a value (it is a group of fields)", loc)


def _parse_attr(value: Any, subject: SubjectKind, loc: Loc) -> Condition:
    """Parser for ``attr``: path checked against the models, one operator, typed operand."""
    spec = _mapping(value, loc, ("path", *ATTR_OPS), "attr")
    path = spec.get("path")
    if not isinstance(path, str) or not path.strip():
        raise _ParseError("attr needs a 'path' (a dotted field path such as model.outputs)", loc)
    ops = [key for key in spec if key != "path"]
    if len(ops) != 1:
        raise _ParseError(f"attr needs exactly one operator of: {', '.join(ATTR_OPS)} (got {len(ops)})", loc)
    op = typing.cast(AttrOp, ops[0])
    raw = spec[op]
    parts = path.strip().split(".")
    candidates: list[tuple[str, type[BaseModel]]] = []
    if subject in ("element", "any"):
        candidates.append(("element", Element))
    if subject in ("flow", "any"):
        candidates.append(("flow", Flow))
    resolved: dict[str, tuple[tuple[str, ...], Any, bool]] = {}
    problems: list[str] = []
    for name, model in candidates:
        found = _resolve(model, parts)
        if isinstance(found, str):
            problems.append(found)
        else:
            resolved[name] = found
    if not resolved:
        raise _ParseError(f"bad attribute path {path!r}: {problems[0]}", (*loc, "path"))
    # Check the operator and value against the first resolved leaf (element first), then the other.
    expected: Any = None
    for _attrs, leaf, is_list in resolved.values():
        expected = _attr_value(op, raw, leaf, is_list, (*loc, op), path)
    return Attr(
        path=path.strip(),
        element_attrs=resolved["element"][0] if "element" in resolved else None,
        flow_attrs=resolved["flow"][0] if "flow" in resolved else None,
        op=op,
        expected=expected,
    )


def _attr_value(op: AttrOp, raw: Any, leaf: Any, is_list: bool, loc: Loc, path: str) -> Any:
    """Validate an operator's operand for a field and convert it (enum values to enum members)."""
    if op in ("is_set", "truthy"):
        return _bool(raw, loc)
    is_model = isinstance(leaf, type) and issubclass(leaf, BaseModel)
    if is_model:
        raise _ParseError(f"{path} is a group of fields: use is_set or truthy", loc)
    if op == "contains":
        if not is_list and leaf is not str:
            raise _ParseError(f"'contains' needs a list or text field, {path} is neither", loc)
        return _convert(leaf, raw, loc, path)
    if is_list:
        if op != "equals":
            raise _ParseError(f"{path} is a list: use contains, truthy or is_set", loc)
        items = raw if isinstance(raw, list) else None
        if items is None:
            raise _ParseError(f"{path} is a list: 'equals' needs a list", loc)
        return [_convert(leaf, item, (*loc, i), path) for i, item in enumerate(items)]
    if op == "equals":
        return _convert(leaf, raw, loc, path)
    if op == "in":
        return frozenset(_convert(leaf, item, (*loc, i), path) for i, item in enumerate(_list(raw, loc)))
    # gte / lte
    ranked = isinstance(leaf, type) and issubclass(leaf, Enum) and hasattr(leaf, "rank")
    if not ranked and leaf not in (int, float):
        raise _ParseError(f"'{op}' needs a number or an ordered value, {path} is neither", loc)
    return _convert(leaf, raw, loc, path)


_PARSERS: dict[str, _ParseFn] = {
    "all": _combinator("all"),
    "any": _combinator("any"),
    "not": _parse_not,
    "type": _parse_type,
    "kind": _parse_kind,
    "attr": _parse_attr,
    "control": _parse_control,
    "controls_any": _parse_controls_any,
    "authenticated": _flag(Authenticated),
    "encrypted": _flag(Encrypted),
    "trust": _parse_trust,
    "data": _parse_data,
    "training_data": _parse_training_data,
    "training_source": _nested(TrainingSource, "element"),
    "exposed_to_untrusted": _flag(ExposedToUntrusted),
    "reachable_from_untrusted": _parse_reachable,
    "crosses_boundary": _flag(CrossesBoundary),
    "source": _nested(lambda c: FlowEnd("source", c), "element"),
    "target": _nested(lambda c: FlowEnd("target", c), "element"),
    "receives_from": _nested(lambda c: Neighbour("in", c), "element"),
    "sends_to": _nested(lambda c: Neighbour("out", c), "element"),
    "upstream": _nested(lambda c: Along("up", c), "element"),
    "downstream": _nested(lambda c: Along("down", c), "element"),
    "incoming": _nested(lambda c: FlowsOf("in", c), "flow"),
    "outgoing": _nested(lambda c: FlowsOf("out", c), "flow"),
    "in_boundary": _parse_in_boundary,
}

#: Every condition key the language knows, in documentation order.
CONDITION_KEYS: tuple[str, ...] = tuple(_PARSERS)

#: Keys that only make sense on one kind of subject.
_SUBJECT_NEEDS: dict[str, SubjectKind] = {
    "training_data": "element",
    "training_source": "element",
    "source": "flow",
    "target": "flow",
    "receives_from": "element",
    "sends_to": "element",
    "incoming": "element",
    "outgoing": "element",
}
