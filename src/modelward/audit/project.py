"""Everything one run reads: the system file, its triage file, and the threat catalog."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelward.system.loader import element_lines, load_system_document, resolve_system_path
from modelward.system.model import System
from modelward.threats.catalog import Catalog, load_catalog
from modelward.threats.triage import TRIAGE_FILE, TriageFile, load_triage


@dataclass
class Project:
    """A loaded system with the files around it."""

    system: System
    system_file: Path
    lines: dict[str, int]
    catalog: Catalog
    triage: TriageFile | None
    triage_file: Path | None


def load_project(
    path: Path, *, triage_file: Path | None = None, extra_catalogs: tuple[Path, ...] = (), use_triage: bool = True
) -> Project:
    """Load a system (file or folder), the triage file beside it unless told otherwise, and the catalog."""
    system_file = resolve_system_path(path)
    system, document = load_system_document(system_file)
    triage = None
    if use_triage:
        if triage_file is None:
            candidate = system_file.parent / TRIAGE_FILE
            triage_file = candidate if candidate.exists() else None
        if triage_file is not None:
            triage = load_triage(triage_file)
    catalog = load_catalog(list(extra_catalogs))
    return Project(
        system=system,
        system_file=system_file,
        lines=element_lines(system, document),
        catalog=catalog,
        triage=triage,
        triage_file=triage_file if use_triage else None,
    )
