"""The triage file: people's decisions about findings (status, owner, ticket, review-by), kept beside the system.

``modelward.triage.yaml`` maps finding ids (``THREAT@element`` or ``THREAT@element@flow``), or
``*`` patterns over them, to entries. Matching a run's findings against it yields each finding's
effective status (expired reviews re-open) and the orphan keys that no longer match anything.
Keys that start with ``*`` must be quoted in YAML (``"*@legacy-api":``), or YAML reads them as aliases.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from modelward.core.errors import InputError
from modelward.core.yamlio import LoadedDocument, Loc, load_yaml, parse_yaml
from modelward.threats.risk import RiskFactors, parse_vector

__all__ = [
    "FORMAT_VERSION",
    "TRIAGE_FILE",
    "Triage",
    "TriageDecision",
    "TriageEntry",
    "TriageFile",
    "TriageResult",
    "TriageStatus",
    "dump_triage",
    "load_triage",
    "parse_triage",
    "triage_from_document",
    "triage_path_for",
]

TRIAGE_FILE = "modelward.triage.yaml"
FORMAT_VERSION: Literal[1] = 1
_HEADER = "modelward-triage"

_ID_PART = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"
_PATTERN_PART = r"[A-Za-z0-9*][A-Za-z0-9_.:*-]*"
_FINDING_ID = re.compile(rf"{_ID_PART}(?:@{_ID_PART}){{1,2}}")
_FINDING_PATTERN = re.compile(rf"{_PATTERN_PART}(?:@{_PATTERN_PART}){{0,2}}")
_MAX_KEY = 400


class TriageStatus(StrEnum):
    """Where a person says a finding stands."""

    OPEN = "open"
    NEEDS_INVESTIGATION = "needs-investigation"
    IN_PROGRESS = "in-progress"
    MITIGATED = "mitigated"
    ACCEPTED = "accepted"
    TRANSFERRED = "transferred"
    AVOIDED = "avoided"
    FALSE_POSITIVE = "false-positive"
    NOT_APPLICABLE = "not-applicable"

    @property
    def resolved(self) -> bool:
        """True when a decision was taken (the finding no longer needs work), so a justification is owed."""
        return self not in _UNRESOLVED

    @property
    def is_open(self) -> bool:
        """Still needs work (open, needs-investigation, in-progress)."""
        return self in _UNRESOLVED

    @property
    def requires_justification(self) -> bool:
        """Every status except open, needs-investigation and in-progress must say why."""
        return self.resolved


_UNRESOLVED = frozenset({TriageStatus.OPEN, TriageStatus.NEEDS_INVESTIGATION, TriageStatus.IN_PROGRESS})


def _check_key(key: str) -> str:
    """A triage key is a finding id, or a pattern over finding ids with ``*`` wildcards."""
    if len(key) > _MAX_KEY:
        raise ValueError(f"finding id is longer than {_MAX_KEY} characters")
    pattern = "*" in key
    if not (pattern and _FINDING_PATTERN.fullmatch(key)) and not _FINDING_ID.fullmatch(key):
        raise ValueError(
            f"invalid finding id {key!r} (expected THREAT@element or THREAT@element@flow; '*' wildcards allowed)"
        )
    return key


FindingKey = Annotated[str, AfterValidator(_check_key)]


class TriageEntry(BaseModel):
    """A person's decision about one finding (or every finding a pattern matches)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    status: TriageStatus = TriageStatus.OPEN
    justification: str | None = Field(default=None, validate_default=True)
    owner: str | None = None
    ticket: str | None = None
    review_by: date | None = Field(default=None, description="once this date has passed the finding re-opens")
    rating: str | None = Field(default=None, description="OWASP vector override, e.g. 'SL:5/M:9' (partial allowed)")

    @field_validator("justification")
    @classmethod
    def _justified(cls, value: str | None, info: ValidationInfo) -> str | None:
        status = info.data.get("status")
        if isinstance(status, TriageStatus) and status.requires_justification and not (value and value.strip()):
            raise ValueError(f"a justification is required when status is '{status.value}'")
        return value

    @field_validator("review_by", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        """Only real dates (YAML ``2027-01-31`` or the same text quoted); never numbers or date-times."""
        if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}")

    @field_validator("rating")
    @classmethod
    def _vector(cls, value: str | None) -> str | None:
        if value is not None:
            parse_vector(value)
        return value

    def rating_factors(self) -> RiskFactors | None:
        """The risk-factor override of this entry, or None."""
        return None if self.rating is None else parse_vector(self.rating)


class TriageFile(BaseModel):
    """The whole triage file: a format version and entries keyed by finding id or pattern, in file order."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = Field(default=FORMAT_VERSION, validation_alias=_HEADER, serialization_alias=_HEADER)
    findings: dict[FindingKey, TriageEntry] = Field(default_factory=dict)

    @field_validator("findings", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        """``findings:`` with nothing under it is an empty mapping, not an error."""
        return {} if value is None else value


@dataclass(frozen=True)
class TriageDecision:
    """What the triage file says about one finding, after precedence and expiry."""

    finding_id: str
    status: TriageStatus
    key: str | None = None
    entry: TriageEntry | None = None
    expired: bool = False
    reason: str | None = None

    @property
    def triaged(self) -> bool:
        """True when some entry applies (even an expired one)."""
        return self.entry is not None

    @property
    def resolved(self) -> bool:
        """True when the effective status no longer needs work."""
        return self.status.resolved

    def rating_factors(self) -> RiskFactors | None:
        """The entry's risk-factor override, if any."""
        return None if self.entry is None else self.entry.rating_factors()


@dataclass
class TriageResult:
    """Per-finding decisions (in input order) and the keys that matched no finding."""

    decisions: dict[str, TriageDecision] = field(default_factory=dict)
    orphans: list[str] = field(default_factory=list)

    def __getitem__(self, finding_id: str) -> TriageDecision:
        return self.decisions[finding_id]

    def __iter__(self) -> Iterator[TriageDecision]:
        return iter(self.decisions.values())

    def __len__(self) -> int:
        return len(self.decisions)

    @property
    def expired(self) -> list[TriageDecision]:
        """Decisions whose review-by date has passed."""
        return [d for d in self.decisions.values() if d.expired]


class Triage:
    """A triage file ready for matching: exact keys in a dict, patterns ordered by precedence."""

    def __init__(self, triage_file: TriageFile | None = None) -> None:
        self.file = triage_file if triage_file is not None else TriageFile()
        entries = self.file.findings
        self._exact = {key: entry for key, entry in entries.items() if "*" not in key}
        patterns = [(key, index) for index, key in enumerate(entries) if "*" in key]
        # Most specific first (most literal characters), then earlier in the file.
        patterns.sort(key=lambda item: (-len(item[0].replace("*", "")), item[1]))
        self._patterns = [key for key, _ in patterns]

    @classmethod
    def load(cls, path: Path | str) -> Triage:
        """Load and validate a triage file; see :func:`load_triage`."""
        return cls(load_triage(path))

    def lookup(self, finding_id: str) -> str | None:
        """The key that applies to a finding id: an exact key, else the most specific matching pattern."""
        if finding_id in self._exact:
            return finding_id
        return next((key for key in self._patterns if fnmatchcase(finding_id, key)), None)

    def match(self, finding_ids: Iterable[str], today: date) -> TriageResult:
        """Decide every finding's effective status as of ``today`` and list the orphan keys."""
        result = TriageResult()
        matched: set[str] = set()
        for finding_id in finding_ids:
            if finding_id in result.decisions:
                continue
            matched.update(key for key in self._patterns if fnmatchcase(finding_id, key))
            key = self.lookup(finding_id)
            if key is None:
                result.decisions[finding_id] = TriageDecision(finding_id, TriageStatus.OPEN)
                continue
            matched.add(key)
            entry = self.file.findings[key]
            expired = entry.review_by is not None and entry.review_by < today
            result.decisions[finding_id] = TriageDecision(
                finding_id,
                TriageStatus.OPEN if expired else entry.status,
                key=key,
                entry=entry,
                expired=expired,
                reason=f"review-by {entry.review_by} passed" if expired else None,
            )
        result.orphans = [key for key in self.file.findings if key not in matched]
        return result


def triage_path_for(system_path: Path | str) -> Path:
    """Where the triage file of a system file (or of a folder holding one) lives."""
    path = Path(system_path)
    return (path if path.is_dir() else path.parent) / TRIAGE_FILE


def load_triage(path: Path | str) -> TriageFile:
    """Read and validate a triage file; every problem is an InputError naming file, line and field."""
    return triage_from_document(load_yaml(Path(path)))


def parse_triage(text: str, file: str = "<string>") -> TriageFile:
    """Validate a triage file given as YAML text."""
    return triage_from_document(parse_yaml(text, file))


def triage_from_document(document: LoadedDocument) -> TriageFile:
    """Validate parsed YAML as a triage file, mapping the first error to its line."""
    data = document.data
    if not isinstance(data, dict) or _HEADER not in data:
        raise InputError(
            f"not a triage file: expected a mapping starting with '{_HEADER}: {FORMAT_VERSION}'",
            file=document.file,
            line=1,
        )
    try:
        return TriageFile.model_validate(data)
    except ValidationError as exc:
        raise _located(exc, document) from None


def _located(exc: ValidationError, document: LoadedDocument) -> InputError:
    """The first pydantic error (in document order) as a one-line InputError."""
    problems: list[InputError] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(part for part in error["loc"] if part != "[key]")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}" + _suggestion(loc)
        elif error["type"] == "missing":
            message = "required field is missing"
        elif loc == (_HEADER,):
            message = f"unsupported triage format version {error['input']!r} (expected {FORMAT_VERSION})"
        problems.append(InputError(message, file=document.file, line=document.line(loc), field=_format(loc)))
    problems.sort(key=lambda p: p.line or 0)
    first, more = problems[0], len(problems) - 1
    if more:
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})"
        return InputError(first.message + suffix, file=first.file, line=first.line, field=first.field)
    return first


def _suggestion(loc: Loc) -> str:
    name = loc[-1]
    if not isinstance(name, str):
        return ""
    fields = list(TriageEntry.model_fields) if len(loc) == 3 else [_HEADER, "findings"]
    close = difflib.get_close_matches(name, fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


_PLAIN_PART = re.compile(r"[A-Za-z0-9_.@:*-]+")


def _format(loc: Loc) -> str:
    """``('findings', 'T@e', 'status')`` -> ``findings.T@e.status``; odd keys are quoted, so it stays one line."""
    text = ""
    for part in loc:
        if isinstance(part, str) and _PLAIN_PART.fullmatch(part):
            text += ("." if text else "") + part
        else:
            text += f"[{part!r}]"
    return text or "(document)"


def dump_triage(triage_file: TriageFile) -> str:
    """The triage file as YAML text (safe dumper) that loads back to an equal TriageFile."""
    findings: dict[str, dict[str, Any]] = {}
    for key, entry in triage_file.findings.items():
        data: dict[str, Any] = {"status": entry.status.value}
        for name in ("justification", "owner", "ticket", "review_by", "rating"):
            value = getattr(entry, name)
            if value is not None:
                data[name] = value
        findings[key] = data
    document = {_HEADER: triage_file.version, "findings": findings}
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    if _reads_back(text, triage_file):
        return text
    # PyYAML writes some characters (NEL, LS, PS) raw with allow_unicode, and they read back as line
    # breaks; escaped ASCII output never loses data.
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=False, width=100)


def _reads_back(text: str, triage_file: TriageFile) -> bool:
    """Whether dumped text loads back to the same triage file."""
    try:
        return parse_triage(text) == triage_file
    except InputError:
        return False
