"""Cross-reference rules of a system: unique ids, no dangling references, no boundary cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelward.system.model import System

Path = tuple[str | int, ...]

#: Deepest nesting of trust boundaries accepted; real systems stay in single digits, and diagrams recurse.
MAX_BOUNDARY_DEPTH = 32


@dataclass(frozen=True)
class Problem:
    """One inconsistency, located by its path inside the system document."""

    path: Path
    message: str

    @property
    def path_text(self) -> str:
        return format_path(self.path)


def format_path(path: Iterable[str | int]) -> str:
    """``('elements', 3, 'boundary')`` -> ``elements[3].boundary``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text or "(document)"


def reference_problems(system: System) -> list[Problem]:
    """Every broken reference, duplicate id or boundary cycle, in document order."""
    problems: list[Problem] = []
    problems += _duplicates("boundaries", [b.id for b in system.boundaries])
    problems += _duplicates("data", [d.id for d in system.data])
    problems += _duplicates("requirements", [r.id for r in system.requirements])
    problems += _node_duplicates(system)

    boundary_ids = {b.id for b in system.boundaries}
    data_ids = {d.id for d in system.data}
    element_ids = {e.id for e in system.elements}
    flow_ids = {f.fid for f in system.flows}

    for i, boundary in enumerate(system.boundaries):
        if boundary.parent is not None and boundary.parent not in boundary_ids:
            problems.append(Problem(("boundaries", i, "parent"), f"unknown boundary {boundary.parent!r}"))
    problems += _boundary_cycles(system)
    problems += _boundary_depth(system)

    for i, element in enumerate(system.elements):
        if element.boundary is not None and element.boundary not in boundary_ids:
            problems.append(Problem(("elements", i, "boundary"), f"unknown boundary {element.boundary!r}"))
        problems += _unknown(("elements", i, "data"), element.data, data_ids, "data asset")
        if element.model is not None:
            problems += _unknown(
                ("elements", i, "model", "trained_on"), element.model.trained_on, data_ids, "data asset"
            )

    for i, flow in enumerate(system.flows):
        for end, ref in (("from", flow.source), ("to", flow.target)):
            if ref not in element_ids:
                problems.append(Problem(("flows", i, end), f"unknown element {ref!r}"))
        if flow.source == flow.target:
            problems.append(Problem(("flows", i, "to"), f"flow goes from {flow.source!r} to itself"))
        problems += _unknown(("flows", i, "data"), flow.data, data_ids, "data asset")

    for i, requirement in enumerate(system.requirements):
        problems += _unknown(
            ("requirements", i, "targets"), requirement.targets, element_ids | flow_ids, "element or flow"
        )
    return problems


def _duplicates(section: str, ids: list[str]) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for i, ident in enumerate(ids):
        if ident in seen:
            problems.append(Problem((section, i, "id"), f"duplicate id {ident!r}"))
        seen.add(ident)
    return problems


def _node_duplicates(system: System) -> list[Problem]:
    """Elements and flows share one namespace: requirements and finding ids name either."""
    seen: set[str] = set()
    problems = []
    for section, ids in (("elements", [e.id for e in system.elements]), ("flows", [f.fid for f in system.flows])):
        for i, ident in enumerate(ids):
            if ident in seen:
                hint = " (give the flow an explicit id)" if section == "flows" else ""
                problems.append(Problem((section, i, "id"), f"duplicate id {ident!r}{hint}"))
            seen.add(ident)
    return problems


def _unknown(path: Path, refs: list[str], known: set[str], what: str) -> list[Problem]:
    return [Problem((*path, j), f"unknown {what} {ref!r}") for j, ref in enumerate(refs) if ref not in known]


def nested_in_itself(boundary_id: str, parents: Mapping[str, str | None]) -> bool:
    """Whether following ``parent`` links from a boundary leads back to a boundary already seen."""
    seen = {boundary_id}
    current = parents.get(boundary_id)
    while current is not None and current in parents:
        if current in seen:
            return True
        seen.add(current)
        current = parents[current]
    return False


def _boundary_cycles(system: System) -> list[Problem]:
    parents = {b.id: b.parent for b in system.boundaries}
    return [
        Problem(("boundaries", i, "parent"), f"boundary {boundary.id!r} is nested in itself (cycle)")
        for i, boundary in enumerate(system.boundaries)
        if nested_in_itself(boundary.id, parents)
    ]


def _boundary_depth(system: System) -> list[Problem]:
    parents = {b.id: b.parent for b in system.boundaries}
    problems = []
    for i, boundary in enumerate(system.boundaries):
        depth, current, seen = 1, boundary.parent, {boundary.id}
        while current is not None and current in parents and current not in seen:
            seen.add(current)
            depth += 1
            current = parents[current]
        if depth > MAX_BOUNDARY_DEPTH:
            message = f"boundary {boundary.id!r} is nested {depth} deep (at most {MAX_BOUNDARY_DEPTH})"
            problems.append(Problem(("boundaries", i, "parent"), message))
    return problems
