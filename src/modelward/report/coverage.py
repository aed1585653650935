"""Coverage matrix: DFD elements and flows against STRIDE and LINDDUN, with finding counts per cell.

Each cell counts the findings on that element (or flow) tagged with that category, split into
open, mitigated and otherwise closed (accepted, transferred, ...). Cells where the classic
per-element tables expect a category but the register holds no finding are shown as ``n/a``:
with the shipped catalog that means the category was evaluated and its conditions did not hold;
with a narrower catalog it can also mean nothing covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelward.report.common import LINDDUN_CODES, STRIDE_CODES, md_escape
from modelward.system.model import System
from modelward.system.vocabulary import DfdKind
from modelward.threats.model import Finding, Register, Status

__all__ = [
    "COLUMNS",
    "EXPECTED",
    "Cell",
    "Column",
    "CoverageMatrix",
    "Row",
    "coverage_matrix",
    "render_markdown",
]


@dataclass(frozen=True)
class Column:
    """One category column: its framework (stride or linddun) and code (S, T, ..., Nc)."""

    framework: str
    code: str

    @property
    def key(self) -> str:
        return f"{self.framework}:{self.code}"


COLUMNS: tuple[Column, ...] = tuple(Column("stride", c) for c in STRIDE_CODES) + tuple(
    Column("linddun", c) for c in LINDDUN_CODES
)

_STRIDE_BY_KIND: dict[DfdKind, str] = {
    DfdKind.EXTERNAL_ENTITY: "S R",
    DfdKind.PROCESS: "S T R I D E",
    DfdKind.DATA_STORE: "T R I D",
    DfdKind.DATA_FLOW: "T I D",
}
_LINDDUN_BY_KIND: dict[DfdKind, str] = {
    DfdKind.EXTERNAL_ENTITY: "L I U",
    DfdKind.PROCESS: "L I Nr D DD Nc",
    DfdKind.DATA_STORE: "L I Nr D DD Nc",
    DfdKind.DATA_FLOW: "L I Nr D DD Nc",
}
#: Which columns the classic STRIDE-per-element and LINDDUN tables expect for each DFD kind.
EXPECTED: dict[DfdKind, frozenset[str]] = {
    kind: frozenset(
        [f"stride:{c}" for c in _STRIDE_BY_KIND[kind].split()]
        + [f"linddun:{c}" for c in _LINDDUN_BY_KIND[kind].split()]
    )
    for kind in DfdKind
}


@dataclass
class Cell:
    """Finding counts in one cell, and whether the classic tables expect the category there."""

    open: int = 0
    mitigated: int = 0
    closed: int = 0
    expected: bool = False

    @property
    def total(self) -> int:
        return self.open + self.mitigated + self.closed

    @property
    def gap(self) -> bool:
        """Expected here, yet no finding of this category exists."""
        return self.expected and self.total == 0

    @property
    def text(self) -> str:
        """Compact display: ``open/mitigated`` (plus ``+closed``), ``·`` for empty, ``n/a`` for a gap."""
        if self.total == 0:
            return "n/a" if self.expected else "·"
        text = f"{self.open}/{self.mitigated}"
        return text + (f"+{self.closed}" if self.closed else "")


@dataclass
class Row:
    """One element or flow of the diagram with a cell per column."""

    id: str
    label: str
    kind: DfdKind
    in_scope: bool
    cells: dict[str, Cell] = field(default_factory=dict)

    def cell(self, column: Column) -> Cell:
        return self.cells[column.key]


@dataclass
class CoverageMatrix:
    """Rows (elements first, then flows) by STRIDE and LINDDUN columns."""

    columns: tuple[Column, ...]
    rows: list[Row]

    def totals(self) -> dict[str, Cell]:
        """Column sums over all rows (``expected`` is true when any row expects the column)."""
        sums = {column.key: Cell() for column in self.columns}
        for row in self.rows:
            for key, cell in row.cells.items():
                total = sums[key]
                total.open += cell.open
                total.mitigated += cell.mitigated
                total.closed += cell.closed
                total.expected = total.expected or cell.expected
        return sums

    def gaps(self) -> list[tuple[str, str]]:
        """(row id, column key) of every in-scope gap, in table order."""
        return [
            (row.id, column.key) for row in self.rows if row.in_scope for column in self.columns if row.cell(column).gap
        ]


def coverage_matrix(system: System, register: Register) -> CoverageMatrix:
    """Count the register's findings per element/flow and STRIDE/LINDDUN category."""
    rows: dict[tuple[str, str], Row] = {}
    for element in system.elements:
        rows[("element", element.id)] = _row(element.id, element.label, element.kind, element.in_scope)
    for flow in system.flows:
        # As in the engine: a flow is analysed when at least one of its ends is in scope.
        scope = any(e.in_scope for e in system.elements if e.id in (flow.source, flow.target))
        label = f"{flow.label} ({flow.source} → {flow.target})"
        rows[("flow", flow.fid)] = _row(flow.fid, label, DfdKind.DATA_FLOW, scope)
    for finding in register.findings:
        key = ("flow", finding.flow) if finding.flow else ("element", finding.element)
        row = rows.get(key)
        if row is None:
            continue
        for column_key in _columns_of(finding):
            _count(row.cells[column_key], finding)
    return CoverageMatrix(COLUMNS, list(rows.values()))


def _row(ident: str, label: str, kind: DfdKind, in_scope: bool) -> Row:
    expected = EXPECTED[kind]
    cells = {column.key: Cell(expected=in_scope and column.key in expected) for column in COLUMNS}
    return Row(ident, label, kind, in_scope, cells)


def _columns_of(finding: Finding) -> list[str]:
    threat = finding.threat
    return [f"stride:{c}" for c in threat.stride] + [f"linddun:{c}" for c in threat.linddun]


def _count(cell: Cell, finding: Finding) -> None:
    if finding.status.is_open:
        cell.open += 1
    elif finding.status is Status.MITIGATED:
        cell.mitigated += 1
    else:
        cell.closed += 1


def render_markdown(matrix: CoverageMatrix) -> str:
    """The matrix as a GitHub-flavoured Markdown table (cells: ``open/mitigated``, ``n/a``, ``·``)."""
    header = ["Element / flow", *(f"{c.framework[0].upper()}:{c.code}" for c in matrix.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in matrix.rows:
        name = md_escape(row.label) + ("" if row.in_scope else " *(out of scope)*")
        lines.append("| " + " | ".join([name, *(row.cell(c).text for c in matrix.columns)]) + " |")
    return "\n".join(lines) + "\n"
