"""The threat catalog: shipped YAML packs (STRIDE, LINDDUN, ML, LLM) plus optional user packs.

Each pack is one YAML file (``catalog:`` name, ``version:``, ``threats:``) read with the safe,
line-aware reader. Every entry is validated by the :class:`~modelward.threats.model.Threat` model,
its conditions are parsed into their AST, and any problem becomes a one-line ``CatalogError`` naming
the file, line and field. Threat ids are unique across every loaded pack.
"""

from __future__ import annotations

import builtins
import difflib
import re
import textwrap
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelward.core.errors import CatalogError, InputError
from modelward.core.yamlio import LoadedDocument, Loc, parse_yaml, read_text
from modelward.system.references import format_path
from modelward.system.vocabulary import DFD_KIND, ElementType
from modelward.threats.model import LINDDUN_NAMES, STRIDE_NAMES, Threat

__all__ = [
    "BASELINE_PACKS",
    "Catalog",
    "Pack",
    "load_catalog",
    "load_pack_file",
    "parse_pack",
    "shipped_catalog",
    "shipped_pack_names",
]

#: Shipped packs come in this order (baselines first); any other shipped pack follows by name.
BASELINE_PACKS: tuple[str, ...] = ("stride", "linddun", "ml", "llm")
_PACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$")
_PACK_KEYS = ("catalog", "version", "description", "threats")
#: User catalog files larger than this are refused (the shipped ones are far smaller).
MAX_CATALOG_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Pack:
    """One catalog file: its name, version, where it came from and the ids it defines."""

    name: str
    version: str
    file: str
    threat_ids: tuple[str, ...]
    description: str | None = None
    shipped: bool = True


class Catalog:
    """Every loaded threat, with lookups by id, by target and by taxonomy."""

    def __init__(self, threats: Iterable[Threat], packs: Sequence[Pack] = ()) -> None:
        """Index threats by id and by target; a duplicate id is an error."""
        self.threats: tuple[Threat, ...] = tuple(threats)
        self.packs: tuple[Pack, ...] = tuple(packs)
        self._by_id: dict[str, Threat] = {}
        for threat in self.threats:
            if threat.id in self._by_id:
                raise CatalogError(f"duplicate threat id {threat.id!r}")
            self._by_id[threat.id] = threat
        self._by_type: dict[ElementType, tuple[Threat, ...]] = {
            t: tuple(th for th in self.threats if th.targets_element_type(t)) for t in ElementType
        }
        self.flow_threats: tuple[Threat, ...] = tuple(th for th in self.threats if th.targets_flows)

    @property
    def version(self) -> str:
        """The catalog version: the packs' common version, else each pack's ``name version``."""
        versions = dict.fromkeys(p.version for p in self.packs)
        if len(versions) == 1:
            return next(iter(versions))
        return ", ".join(f"{p.name} {p.version}" for p in self.packs) or "empty"

    def __len__(self) -> int:
        return len(self.threats)

    def __iter__(self) -> Iterator[Threat]:
        return iter(self.threats)

    def __contains__(self, threat_id: object) -> bool:
        return threat_id in self._by_id

    def ids(self) -> list[str]:
        """Every threat id, in catalog order."""
        return list(self._by_id)

    def get(self, threat_id: str) -> Threat:
        """The threat with this id; KeyError (with a suggestion) when there is none."""
        try:
            return self._by_id[threat_id]
        except KeyError:
            close = difflib.get_close_matches(threat_id, list(self._by_id), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise KeyError(f"no threat {threat_id!r} in the catalog{hint}") from None

    def for_element_type(self, element_type: ElementType) -> tuple[Threat, ...]:
        """Threats that target this element type, directly or through its DFD kind."""
        return self._by_type[element_type]

    def list(
        self,
        *,
        pack: str | None = None,
        stride: str | None = None,
        linddun: str | None = None,
        target: str | None = None,
    ) -> list[Threat]:
        """Threats filtered by pack, STRIDE or LINDDUN category, or target (type, kind or data-flow)."""
        found = []
        for threat in self.threats:
            if pack is not None and threat.pack != pack:
                continue
            if stride is not None and stride not in threat.stride:
                continue
            if linddun is not None and linddun not in threat.linddun:
                continue
            if target is not None and not _targets(threat, target):
                continue
            found.append(threat)
        return found

    def rows(self, **filters: str | None) -> builtins.list[dict[str, str]]:
        """:meth:`list` as table rows (id, pack, title, targets, categories) for a CLI listing."""
        return [
            {
                "id": t.id,
                "pack": t.pack,
                "title": t.title,
                "targets": ", ".join(t.targets),
                "categories": " ".join([*t.stride, *t.linddun]),
            }
            for t in self.list(**filters)
        ]

    def describe(self, threat_id: str) -> str:
        """A threat in full, as plain text: tags, default risk, conditions, mitigations, references."""
        threat = self.get(threat_id)
        pack = next((p for p in self.packs if p.name == threat.pack), None)
        lines = [f"{threat.id}: {threat.title}", f"  pack: {threat.pack}" + (f" {pack.version}" if pack else "")]
        lines.append(f"  targets: {', '.join(threat.targets)}")
        tags: list[tuple[str, list[str]]] = [
            ("STRIDE", [f"{c} ({STRIDE_NAMES[c]})" for c in threat.stride]),
            ("LINDDUN", [f"{c} ({LINDDUN_NAMES[c]})" for c in threat.linddun]),
            ("TRIM", list(threat.trim)),
            ("ATLAS", list(threat.atlas)),
            ("OWASP", list(threat.owasp)),
            ("CWE", list(threat.cwe)),
        ]
        lines += [f"  {name}: {', '.join(values)}" for name, values in tags if values]
        lines.append(f"  default risk: {threat.risk_factors.to_vector()}")
        applies = threat.applies_condition
        mitigated = threat.mitigated_condition
        lines.append(f"  applies when: {applies.describe() if applies else 'always (every target)'}")
        lines.append(f"  mitigated when: {mitigated.describe() if mitigated else 'never by declaration'}")
        if threat.mitigations:
            lines.append("  mitigations:")
            for m in threat.mitigations:
                extra = []
                if m.controls:
                    extra.append("controls: " + ", ".join(c.value for c in m.controls))
                if m.atlas:
                    extra.append("ATLAS: " + ", ".join(m.atlas))
                lines.append(f"    - {m.id}: {m.title}" + (f" [{'; '.join(extra)}]" if extra else ""))
        if threat.references:
            lines.append("  references:")
            lines += [f"    - {ref}" for ref in threat.references]
        lines.append("")
        lines += textwrap.wrap(
            " ".join(threat.description.split()), width=96, initial_indent="  ", subsequent_indent="  "
        )
        return "\n".join(lines)


def _targets(threat: Threat, target: str) -> bool:
    """Whether a threat targets a type, a DFD kind or data-flow (a type matches through its kind)."""
    if target in threat.targets:
        return True
    try:
        element_type = ElementType(target)
    except ValueError:
        return False
    return DFD_KIND[element_type].value in threat.targets


# ---------------------------------------------------------------------------
# loading


def shipped_pack_names() -> list[str]:
    """Names of the packs shipped in the package, in load order."""
    return [name for name, _text, _file in _shipped_sources()]


def _shipped_sources() -> list[tuple[str, str, str]]:
    """(pack file stem, text, display name) of every shipped ``catalog/*.yaml``, baselines first."""
    folder = resources.files("modelward.threats").joinpath("catalog")
    found = []
    for entry in folder.iterdir():
        if entry.is_file() and entry.name.endswith(".yaml"):
            stem = entry.name.removesuffix(".yaml")
            found.append((stem, entry.read_text(encoding="utf-8"), f"modelward/threats/catalog/{entry.name}"))
    order = {name: i for i, name in enumerate(BASELINE_PACKS)}
    found.sort(key=lambda item: (order.get(item[0], len(order)), item[0]))
    return found


@cache
def _shipped_parsed() -> tuple[tuple[Pack, tuple[Threat, ...]], ...]:
    """Every shipped pack parsed and validated, once per process."""
    return tuple(
        (pack, tuple(threats)) for pack, threats in (parse_pack(text, file) for _, text, file in _shipped_sources())
    )


def shipped_catalog() -> Catalog:
    """Every shipped pack (parsed once per process)."""
    return load_catalog()


def load_catalog(extra: Iterable[Path | str] = (), *, packs: Collection[str] | None = None) -> Catalog:
    """The shipped packs (all, or those named in ``packs``) plus user catalog files ``extra``.

    A threat id defined twice, in one pack or across packs, is a ``CatalogError``.
    """
    shipped = _shipped_parsed()
    if packs is not None:
        known = {pack.name for pack, _ in shipped}
        unknown = sorted(set(packs) - known)
        if unknown:
            raise CatalogError(f"unknown catalog pack {unknown[0]!r} (shipped: {', '.join(sorted(known))})")
    loaded: list[tuple[Pack, tuple[Threat, ...], LoadedDocument | None]] = [
        (pack, threats, None) for pack, threats in shipped if packs is None or pack.name in packs
    ]
    for path in extra:
        user_pack, user_threats, user_document = _load_pack(path)
        loaded.append((user_pack, tuple(user_threats), user_document))
    names: dict[str, Pack] = {}
    where: dict[str, Pack] = {}
    for pack, threats, document in loaded:
        if pack.name in names:
            raise CatalogError(
                f"pack {pack.name!r} is already loaded from {names[pack.name].file}",
                file=pack.file,
                line=1,
                field="catalog",
            )
        names[pack.name] = pack
        for index, threat in enumerate(threats):
            first = where.get(threat.id)
            if first is not None:
                line = document.line(("threats", index, "id")) if document is not None else None
                raise CatalogError(
                    f"duplicate threat id {threat.id!r} (already defined in pack {first.name!r}, {first.file})",
                    file=pack.file,
                    line=line,
                    field=f"threats[{index}].id",
                )
            where[threat.id] = pack
    return Catalog(
        (threat for _, threats, _ in loaded for threat in threats),
        [pack for pack, _, _ in loaded],
    )


def load_pack_file(path: Path | str) -> tuple[Pack, list[Threat]]:
    """Read and validate one user catalog file."""
    pack, threats, _document = _load_pack(path)
    return pack, threats


def _load_pack(path: Path | str) -> tuple[Pack, list[Threat], LoadedDocument]:
    """A user catalog file: its pack, threats and parsed document (for the lines of later errors)."""
    text = read_text(Path(path), max_bytes=MAX_CATALOG_BYTES)
    try:
        document = parse_yaml(text, str(path))
    except InputError as exc:
        raise CatalogError(exc.message, file=exc.file, line=exc.line, field=exc.field) from None
    pack, threats = pack_from_document(document, shipped=False)
    return pack, threats, document


def parse_pack(text: str, file: str = "<string>", *, shipped: bool = True) -> tuple[Pack, list[Threat]]:
    """Parse and validate one catalog file given as text."""
    try:
        document = parse_yaml(text, file)
    except InputError as exc:
        raise CatalogError(exc.message, file=exc.file, line=exc.line, field=exc.field) from None
    return pack_from_document(document, shipped=shipped)


def pack_from_document(document: LoadedDocument, *, shipped: bool = True) -> tuple[Pack, list[Threat]]:
    """Validate a parsed catalog file: its header, then every threat entry."""
    data = document.data
    file = document.file
    if not isinstance(data, dict):
        raise CatalogError("a catalog file is a mapping with 'catalog', 'version' and 'threats'", file=file, line=1)
    for key in data:
        if key not in _PACK_KEYS:
            close = difflib.get_close_matches(str(key), _PACK_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (expected: {', '.join(_PACK_KEYS)})"
            raise CatalogError(f"unknown field {key!r}{hint}", file=file, line=document.line((key,)), field=str(key))
    for key in ("catalog", "version", "threats"):
        if key not in data:
            raise CatalogError("required field is missing", file=file, line=1, field=key)
    name, version = data["catalog"], data["version"]
    if not isinstance(name, str) or not _PACK_NAME.match(name):
        raise CatalogError(
            f"pack name must be lower-case letters, digits and '-', got {name!r}",
            file=file,
            line=document.line(("catalog",)),
            field="catalog",
        )
    if not isinstance(version, str) or not version.strip():
        raise CatalogError(
            f'version must be text (quote it: "{version}")',
            file=file,
            line=document.line(("version",)),
            field="version",
        )
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise CatalogError(
            "description must be text", file=file, line=document.line(("description",)), field="description"
        )
    entries = data["threats"]
    if not isinstance(entries, list):
        raise CatalogError("threats must be a list", file=file, line=document.line(("threats",)), field="threats")
    threats: list[Threat] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(entries):
        threat = _threat(raw, index, name, document)
        if threat.id in seen:
            raise CatalogError(
                f"duplicate threat id {threat.id!r} (first at entry {seen[threat.id]})",
                file=file,
                line=document.line(("threats", index, "id")),
                field=f"threats[{index}].id",
            )
        seen[threat.id] = index
        threats.append(threat)
    pack = Pack(name, version.strip(), file, tuple(t.id for t in threats), description, shipped)
    return pack, threats


def _threat(raw: Any, index: int, pack: str, document: LoadedDocument) -> Threat:
    """Validate one entry; the pack name comes from the file."""
    loc: Loc = ("threats", index)
    if not isinstance(raw, dict):
        raise CatalogError(
            "a threat entry must be a mapping", file=document.file, line=document.line(loc), field=format_path(loc)
        )
    if "pack" in raw and raw["pack"] != pack:
        raise CatalogError(
            f"entry says pack {raw['pack']!r} but the file is pack {pack!r}",
            file=document.file,
            line=document.line((*loc, "pack")),
            field=format_path((*loc, "pack")),
        )
    try:
        return Threat.model_validate({**raw, "pack": pack}, context={"document": document, "loc": loc})
    except ValidationError as exc:
        raise _located(exc, document, loc, raw) from None


def _located(exc: ValidationError, document: LoadedDocument, base: Loc, raw: dict[str, Any]) -> CatalogError:
    """The first pydantic problem of an entry as a located one-line CatalogError."""
    errors = exc.errors(include_url=False)
    problems = []
    for error in errors:
        loc: Loc = (*base, *error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(error["loc"][-1]), list(Threat.model_fields), n=1)
            message = f"unknown field {error['loc'][-1]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif error["type"] == "missing":
            message = "required field is missing"
        elif error["type"] == "enum" and isinstance(error.get("input"), str):
            allowed = re.findall(r"'([^']*)'", str((error.get("ctx") or {}).get("expected", "")))
            close = difflib.get_close_matches(error["input"], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(allowed)})"
            message = f"unknown value {error['input']!r}{hint}"
        # A misspelt field also makes the real one "missing": report the misspelling first.
        problems.append((error["type"] != "extra_forbidden", document.line(loc) or 0, message, loc))
    problems.sort(key=lambda p: (p[0], p[1]))
    _, line, message, loc = problems[0]
    ident = raw.get("id")
    more = len(problems) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    prefix = f"threat {ident}: " if isinstance(ident, str) else ""
    return CatalogError(prefix + message + suffix, file=document.file, line=line or None, field=format_path(loc))
