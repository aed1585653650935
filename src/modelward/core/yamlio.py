"""Safe, line-aware YAML reading: every value keeps the line it came from, for one-line errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from modelward.core.errors import InputError

#: Larger system files are refused: a real system description is far below this.
MAX_BYTES = 16 * 1024 * 1024
#: Bound on nodes visited, so aliases cannot expand into an exponential document ("billion laughs").
MAX_NODES = 2_000_000
#: Bound on nesting: no system file needs more, and the YAML composer recurses once per level.
MAX_DEPTH = 100

Loc = tuple[str | int, ...]
#: libyaml's safe parser when PyYAML was built with it (ten times faster), else the pure-Python one.
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class LoadedDocument:
    """A parsed YAML document and the line (1-based) of every mapping key and list item."""

    data: Any
    file: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        return line_of(self.lines, loc)


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of its nearest ancestor when ``loc`` itself is absent."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def read_text(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """Read a UTF-8 text file with a size limit, as one-line errors instead of tracebacks."""
    name = str(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError("file not found", file=name) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=name) from None
    if path.is_dir():
        raise InputError("is a directory, expected a file", file=name)
    if size > max_bytes:
        raise InputError(f"file is {size:,} bytes, over the {max_bytes:,}-byte limit", file=name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=name) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", file=name) from None


def load_yaml(path: Path, *, max_bytes: int = MAX_BYTES) -> LoadedDocument:
    """Read and parse one YAML file safely."""
    return parse_yaml(read_text(path, max_bytes=max_bytes), str(path))


def parse_yaml(text: str, file: str = "<string>") -> LoadedDocument:
    """Parse one YAML document with the safe loader, recording lines and refusing duplicates."""
    document = LoadedDocument(data=None, file=file)
    try:
        document.data = _EventBuilder(file, document.lines).run(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputError(f"YAML syntax error: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML error: {exc}", file=file) from None
    return document


_NO_KEY = object()


@dataclass
class _Frame:
    """An open mapping or sequence while the event stream is read."""

    value: dict[Any, Any] | list[Any]
    loc: Loc
    anchor: str | None
    visited_at_start: int
    key: Any = _NO_KEY


class _EventBuilder:
    """Builds Python values from the parser's event stream in one iterative pass.

    No recursion (so no nesting can crash it), one line per key and item, and the safe
    constructor for every scalar, so no Python object can ever be built from the document.
    """

    def __init__(self, file: str, lines: dict[Loc, int]) -> None:
        self.file = file
        self.lines = lines
        self.visited = 0
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.loader = yaml.SafeLoader("")
        self.result: Any = None
        self.documents = 0

    def run(self, text: str) -> Any:
        for event in yaml.parse(text, Loader=_SAFE_LOADER):
            if isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    raise InputError("expected one YAML document, found several", file=self.file, line=_line(event))
            elif isinstance(event, yaml.AliasEvent):
                self._alias(event)
            elif isinstance(event, yaml.ScalarEvent):
                self._scalar(event)
            elif isinstance(event, yaml.CollectionStartEvent):
                self._start(event)
            elif isinstance(event, yaml.CollectionEndEvent):
                frame = self.stack.pop()
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (frame.value, self.visited - frame.visited_at_start)
                self._attach(frame.value, event)
        return self.result

    def _count(self, n: int, event: yaml.Event) -> None:
        self.visited += n
        if self.visited > MAX_NODES:
            raise InputError(
                f"document expands to more than {MAX_NODES:,} values (aliases?)", file=self.file, line=_line(event)
            )

    def _child_loc(self, event: yaml.Event) -> Loc:
        """Where a value that starts now will live; a collection used as a key is refused."""
        if not self.stack:
            return ()
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            return (*parent.loc, len(parent.value))
        if parent.key is _NO_KEY:
            raise InputError("mapping keys must be plain values", file=self.file, line=_line(event))
        key = parent.key
        return (*parent.loc, key if isinstance(key, (str, int)) else str(key))

    def _start(self, event: yaml.CollectionStartEvent) -> None:
        self._count(1, event)
        if len(self.stack) >= MAX_DEPTH:
            raise InputError(f"YAML is nested too deeply (over {MAX_DEPTH} levels)", file=self.file, line=_line(event))
        is_map = isinstance(event, yaml.MappingStartEvent)
        plain = "tag:yaml.org,2002:map" if is_map else "tag:yaml.org,2002:seq"
        if event.tag not in (None, "!", plain):
            raise InputError(f"unsupported YAML tag {event.tag!r}", file=self.file, line=_line(event))
        loc = self._child_loc(event)
        self.lines.setdefault(loc, _line(event))
        container: dict[Any, Any] | list[Any] = {} if is_map else []
        self.stack.append(_Frame(container, loc, event.anchor, self.visited))

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        self._count(1, event)
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        node = yaml.ScalarNode(tag, event.value, style=event.style)
        expecting_key = bool(self.stack) and isinstance(self.stack[-1].value, dict) and self.stack[-1].key is _NO_KEY
        if expecting_key and tag == "tag:yaml.org,2002:merge":
            raise InputError("YAML merge keys ('<<') are not supported", file=self.file, line=_line(event))
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise InputError(f"unsupported YAML value: {problem}", file=self.file, line=_line(event)) from None
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. 2020-02-30, !!int abc
            message = f"invalid {tag.rsplit(':', 1)[-1]} value {event.value!r}: {exc}"
            raise InputError(message, file=self.file, line=_line(event)) from None
        if event.anchor is not None:
            self.anchors[event.anchor] = (value, 1)
        if not self.stack or isinstance(self.stack[-1].value, list) or self.stack[-1].key is not _NO_KEY:
            self.lines.setdefault(self._child_loc(event), _line(event))
        self._attach(value, event)

    def _alias(self, event: yaml.AliasEvent) -> None:
        found = self.anchors.get(event.anchor or "")
        if found is None:
            raise InputError(f"unknown alias {event.anchor!r}", file=self.file, line=_line(event))
        value, size = found
        self._count(size, event)
        if isinstance(value, (dict, list)):
            self.lines.setdefault(self._child_loc(event), _line(event))
        self._attach(value, event)

    def _attach(self, value: Any, event: yaml.Event) -> None:
        if not self.stack:
            self.lines.setdefault((), _line(event))
            self.result = value
            return
        parent = self.stack[-1]
        if isinstance(parent.value, list):
            parent.value.append(value)
            return
        if parent.key is _NO_KEY:
            try:
                hash(value)
            except TypeError:
                raise InputError("mapping keys must be plain values", file=self.file, line=_line(event)) from None
            if value in parent.value:
                raise InputError(f"duplicate key {value!r}", file=self.file, line=_line(event))
            parent.key = value
            child = (*parent.loc, value if isinstance(value, (str, int)) else str(value))
            self.lines[child] = _line(event)
            return
        parent.value[parent.key] = value
        parent.key = _NO_KEY


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 1


def dump_yaml(data: Any) -> str:
    """YAML text (safe dumper, readable Unicode) that is guaranteed to load back to ``data``."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    if yaml.load(text, Loader=_SAFE_LOADER) == data:  # noqa: S506  # nosec B506
        return text
    # PyYAML writes NEL, LS and PS raw when allow_unicode is on, and they read back as line breaks.
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=False, width=100)
