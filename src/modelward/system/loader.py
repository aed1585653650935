"""Load, validate and write system files; every problem becomes a one-line, located error."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from modelward.core.errors import InputError
from modelward.core.files import write_text_atomic
from modelward.core.yamlio import LoadedDocument, Loc, dump_yaml, load_yaml, parse_yaml
from modelward.system.model import System
from modelward.system.references import format_path, reference_problems

SYSTEM_FILE = "modelward.yaml"


class SystemValidationError(InputError):
    """A system file failed validation; ``problems`` holds every located problem, one per line."""

    def __init__(self, problems: list[InputError]) -> None:
        first = problems[0]
        super().__init__(first.message, file=first.file, line=first.line, field=first.field)
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(InputError.__str__(p) for p in self.problems)


def resolve_system_path(path: Path) -> Path:
    """Accept a system file or a folder that holds ``modelward.yaml``."""
    if path.is_dir():
        candidate = path / SYSTEM_FILE
        if not candidate.exists():
            raise InputError(f"no {SYSTEM_FILE} in this folder", file=str(path))
        return candidate
    return path


def load_system(path: Path | str) -> System:
    """Load and validate a system file (or a folder holding ``modelward.yaml``)."""
    return load_system_document(path)[0]


def load_system_document(path: Path | str) -> tuple[System, LoadedDocument]:
    """Like ``load_system``, also returning the parsed document (for line numbers in reports)."""
    document = load_yaml(resolve_system_path(Path(path)))
    return system_from_document(document), document


def element_lines(system: System, document: LoadedDocument) -> dict[str, int]:
    """The line where each element and flow is declared, by id."""
    lines: dict[str, int] = {}
    for section, ids in (("elements", [e.id for e in system.elements]), ("flows", [f.fid for f in system.flows])):
        for i, ident in enumerate(ids):
            line = document.line((section, i))
            if line is not None:
                lines[ident] = line
    return lines


def parse_system(text: str, file: str = "<string>") -> System:
    """Validate a system given as YAML text."""
    return system_from_document(parse_yaml(text, file))


def system_from_document(document: LoadedDocument) -> System:
    """Validate parsed YAML as a system, mapping every error to its file and line."""
    if not isinstance(document.data, dict):
        raise InputError("expected a mapping with at least 'name' and 'elements'", file=document.file, line=1)
    try:
        system = System.model_validate(document.data, context={"defer_references": True})
    except ValidationError as exc:
        raise SystemValidationError(validation_problems(exc, document, System)) from None
    problems = reference_problems(system)
    if problems:
        located = [
            InputError(p.message, file=document.file, line=document.line(p.path), field=p.path_text) for p in problems
        ]
        raise SystemValidationError(located)
    return system


def validation_problems(exc: ValidationError, document: LoadedDocument, model: type[BaseModel]) -> list[InputError]:
    """Pydantic errors as located one-line errors, with a suggestion for misspelt fields."""
    problems = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        message = str(error["msg"])
        if error["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}" + _suggest(loc, model)
        elif error["type"] == "missing":
            message = "required field is missing"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append(InputError(message, file=document.file, line=document.line(loc), field=format_path(loc)))
    return problems


def _suggest(loc: Loc, model: type[BaseModel]) -> str:
    """'did you mean ...' from the fields of the model at ``loc``'s parent."""
    fields = _fields_at(model, loc[:-1])
    if not fields or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            info = next((f for f in current.model_fields.values() if f.alias == part), None)
        if info is None:
            return []
        current = _model_in(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def dump_system(system: System) -> str:
    """The system as YAML text that loads back to an equal system."""
    return dump_yaml(system.to_data())


def save_system(system: System, path: Path | str) -> None:
    """Write a system file atomically (never leaves a half-written file behind)."""
    write_text_atomic(Path(path), dump_system(system))
