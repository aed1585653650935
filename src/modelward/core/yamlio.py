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
_PLAIN_COLLECTIONS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


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
    try:
        _check_depth(text, file)
        node = yaml.compose(text, Loader=_SAFE_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputError(f"YAML syntax error: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML error: {exc}", file=file) from None
    except RecursionError:
        raise InputError("YAML is nested too deeply", file=file) from None
    document = LoadedDocument(data=None, file=file)
    if node is None:
        return document
    builder = _Builder(file, document.lines)
    try:
        document.data = builder.build(node, ())
    except RecursionError:
        raise InputError("YAML is nested too deeply", file=file) from None
    return document


def _check_depth(text: str, file: str) -> None:
    """Refuse documents nested deeper than MAX_DEPTH before composing them (the composer recurses)."""
    depth = 0
    for event in yaml.parse(text, Loader=_SAFE_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark is not None else None
                raise InputError(f"YAML is nested too deeply (over {MAX_DEPTH} levels)", file=file, line=line)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Builder:
    """Turns composed nodes into Python values with the safe constructor, noting each line."""

    def __init__(self, file: str, lines: dict[Loc, int]) -> None:
        self.file = file
        self.lines = lines
        self.visited = 0
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            raise InputError(
                f"document expands to more than {MAX_NODES:,} values (aliases?)",
                file=self.file,
                line=node.start_mark.line + 1,
            )
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTIONS:
            raise InputError(f"unsupported YAML tag {node.tag!r}", file=self.file, line=node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise InputError(
                f"unsupported YAML value: {problem}", file=self.file, line=node.start_mark.line + 1
            ) from None

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InputError("YAML merge keys ('<<') are not supported", file=self.file, line=line)
            if not isinstance(key_node, yaml.ScalarNode):
                raise InputError("mapping keys must be plain values", file=self.file, line=line)
            key = self.constructor.construct_object(key_node)
            try:
                hash(key)
            except TypeError:
                raise InputError("mapping keys must be plain values", file=self.file, line=line) from None
            if key in result:
                raise InputError(f"duplicate key {key!r}", file=self.file, line=line)
            child = (*loc, key if isinstance(key, (str, int)) else str(key))
            self.lines[child] = line
            result[key] = self.build(value_node, child)
        return result


def dump_yaml(data: Any) -> str:
    """YAML text (safe dumper, readable Unicode) that is guaranteed to load back to ``data``."""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    if yaml.load(text, Loader=_SAFE_LOADER) == data:  # noqa: S506  # nosec B506
        return text
    # PyYAML writes NEL, LS and PS raw when allow_unicode is on, and they read back as line breaks.
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=False, width=100)
