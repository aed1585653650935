"""Coverage matrix: counts per element/flow and STRIDE/LINDDUN category, gaps, rendering."""

from __future__ import annotations

import re

from conftest import make_register, make_system

from modelward.report.coverage import COLUMNS, EXPECTED, CoverageMatrix, Row, coverage_matrix, render_markdown
from modelward.system.loader import parse_system
from modelward.system.vocabulary import DfdKind
from modelward.threats.catalog import load_catalog
from modelward.threats.register import build_register


def _rows() -> tuple[CoverageMatrix, dict[str, Row]]:
    matrix = coverage_matrix(make_system(), make_register())
    return matrix, {row.id: row for row in matrix.rows}


def test_columns_are_stride_then_linddun() -> None:
    assert [c.key for c in COLUMNS] == [
        "stride:S", "stride:T", "stride:R", "stride:I", "stride:D", "stride:E",
        "linddun:L", "linddun:I", "linddun:Nr", "linddun:D", "linddun:DD", "linddun:U", "linddun:Nc",
    ]  # fmt: skip


def test_rows_cover_elements_then_flows() -> None:
    matrix, rows = _rows()
    assert [r.id for r in matrix.rows][:5] == ["user", "upload-api", "moderation-model", "uploads-db", "legacy"]
    assert rows["user-to-upload-api"].kind is DfdKind.DATA_FLOW


def test_counts_open_mitigated_and_closed() -> None:
    _, rows = _rows()
    model = rows["moderation-model"]
    assert (model.cells["stride:T"].open, model.cells["stride:I"].open) == (1, 1)
    assert model.cells["linddun:I"].open == 1 and model.cells["linddun:DD"].open == 1
    flow = rows["user-to-upload-api"].cells["stride:I"]
    assert (flow.open, flow.mitigated) == (0, 1)  # flow findings land on the flow row, not the source element
    assert rows["user"].cells["stride:I"].total == 0
    store = rows["uploads-db"].cells["linddun:DD"]
    assert (store.open, store.mitigated, store.closed) == (0, 0, 1)
    assert store.text == "0/0+1"


def test_gaps_follow_the_per_element_tables() -> None:
    matrix, rows = _rows()
    assert EXPECTED[DfdKind.EXTERNAL_ENTITY] == {"stride:S", "stride:R", "linddun:L", "linddun:I", "linddun:U"}
    user = rows["user"]
    assert user.cells["stride:R"].gap and user.cells["stride:R"].text == "n/a"
    assert not user.cells["stride:T"].expected and user.cells["stride:T"].text == "·"
    assert not user.cells["stride:S"].gap  # a (closed) finding covers it
    assert not any(cell.expected for cell in rows["legacy"].cells.values())  # out of scope: no gaps
    assert ("upload-api", "stride:E") in matrix.gaps()
    assert all(row_id != "legacy" for row_id, _ in matrix.gaps())


def test_totals() -> None:
    matrix, _ = _rows()
    totals = matrix.totals()
    assert totals["stride:I"].open == 1 and totals["stride:I"].mitigated == 1
    assert totals["linddun:DD"].total == 2


def test_markdown_rendering_escapes_labels() -> None:
    matrix, _ = _rows()
    text = render_markdown(matrix)
    lines = text.strip().splitlines()
    assert lines[0].startswith("| Element / flow | S:S | S:T")
    assert len(lines) == 2 + len(matrix.rows)
    assert "\\<script\\>" in text and "<script>" not in text
    for line in lines:  # 1 label + 13 category cells, unescaped pipes only
        assert len(re.split(r"(?<!\\)\|", line)) == 16, line


def test_flow_scope_matches_the_engine() -> None:
    system = parse_system(
        """\
name: scope
data: [{id: d, personal: true, data_subjects: 10, classification: confidential}]
elements:
  - {id: old, type: service, in_scope: false}
  - {id: api, type: api}
  - {id: gone, type: database, in_scope: false}
flows:
  - {id: half, from: old, to: api, data: [d]}
  - {id: none, from: old, to: gone, data: [d]}
"""
    )
    matrix = coverage_matrix(system, build_register(system, load_catalog()))
    rows = {row.id: row for row in matrix.rows}
    assert rows["half"].in_scope  # one end in scope: analysed by the engine, so in scope here too
    assert not rows["none"].in_scope
