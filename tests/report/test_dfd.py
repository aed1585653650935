"""Mermaid and DOT diagrams: nesting, shapes, escaping, severity colours, and the optional SVG."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import EVIL, SYSTEM_DATA, make_register, make_system

from modelward.core.severity import Severity
from modelward.report import dfd
from modelward.report.common import SEVERITY_COLOURS
from modelward.report.dfd import (
    boundary_node_id,
    element_node_id,
    inline_svg,
    render_dot,
    render_mermaid,
    render_svg,
)
from modelward.threats.model import Status

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (make graphviz / apt-get install graphviz)"
)


def _indent_of(lines: list[str], needle: str) -> int:
    line = next(line for line in lines if needle in line)
    return len(line) - len(line.lstrip())


def test_mermaid_header_nested_subgraphs_and_shapes() -> None:
    text = render_mermaid(make_system(), make_register())
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    cloud, zone = boundary_node_id("cloud"), boundary_node_id("ml-zone")
    assert f'subgraph {cloud}["Cloud account (internal)"]' in text
    assert f'subgraph {zone}["ML zone (privileged)"]' in text
    # the ML zone opens inside the cloud subgraph and both close
    assert text.index(f"subgraph {cloud}") < text.index(f"subgraph {zone}")
    assert _indent_of(lines, f"subgraph {zone}") > _indent_of(lines, f"subgraph {cloud}")
    assert _indent_of(lines, element_node_id("moderation-model") + "(") > _indent_of(lines, f"subgraph {zone}")
    assert sum(1 for line in lines if line.strip() == "end") == 3
    assert f'{element_node_id("uploads-db")}[("Uploads bucket (object-store)")]' in text  # cylinder
    assert f'{element_node_id("moderation-model")}("Moderation model (model)")' in text  # rounded process
    assert f'{element_node_id("user")}["' in text  # rectangle entity


def test_mermaid_labels_are_escaped() -> None:
    text = render_mermaid(make_system(), make_register())
    assert "<script>" not in text and EVIL not in text
    assert "#lt;script#gt;alert(1)#lt;/script#gt;" in text
    assert "User #quot;quoted#quot; #35;1 #124; pipe" in text
    assert '-->|"upload #124; image [uploads]"|' in text
    # every quoted label contains no raw quote inside
    for label in re.findall(r'"([^"\n]*)"', text):
        assert "<" not in label and ">" not in label and "|" not in label


def test_mermaid_colours_nodes_by_highest_open_severity() -> None:
    text = render_mermaid(make_system(), make_register())
    model = element_node_id("moderation-model")
    assert f"class {model} sev_critical" in text  # critical open beats high open
    assert f"class {element_node_id('upload-api')} sev_medium" in text  # in-progress medium; low is false-positive
    assert f"class {element_node_id('uploads-db')} clean" in text  # accepted finding only
    assert f"class {element_node_id('legacy')} oos" in text
    fill = SEVERITY_COLOURS[Severity.CRITICAL][0]
    assert f"classDef sev_critical fill:{fill}" in text


def test_mermaid_colours_flows_with_open_findings() -> None:
    register = make_register()
    flow_finding = next(f for f in register.findings if f.flow)
    flow_finding.status = Status.OPEN
    text = render_mermaid(make_system(), register)
    assert f"linkStyle 0 stroke:{SEVERITY_COLOURS[Severity.MEDIUM][0]}" in text
    assert "linkStyle 1" not in text


def test_ids_are_sanitised_and_injective() -> None:
    ids = ["a-b", "a_b", "a.b", "a:b", "ab", "end", "a__b"]
    encoded = [element_node_id(i) for i in ids]
    assert len(set(encoded)) == len(ids)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", e) for e in encoded)
    assert element_node_id("end") != "end"


def test_dot_clusters_nest_and_labels_are_escaped() -> None:
    text = render_dot(make_system(), make_register())
    cloud = f'subgraph "cluster_{boundary_node_id("cloud")}"'
    zone = f'subgraph "cluster_{boundary_node_id("ml-zone")}"'
    assert text.index(cloud) < text.index(zone)
    lines = text.splitlines()
    assert _indent_of(lines, zone) > _indent_of(lines, cloud)
    assert 'label="User \\"quoted\\" #1 | pipe\\n«end-user»"' in text
    assert 'label="Demo <b>moderation</b> & \\"friends\\""' in text
    assert "shape=cylinder" in text
    model_line = next(line for line in lines if element_node_id("moderation-model") + '" [' in line)
    assert f'fillcolor="{SEVERITY_COLOURS[Severity.CRITICAL][0]}"' in model_line
    legacy_line = next(line for line in lines if element_node_id("legacy") + '" [' in line)
    assert "dashed" in legacy_line


def test_dot_escapes_backslashes_and_newlines() -> None:
    data = {**SYSTEM_DATA, "elements": [{"id": "x", "type": "service", "name": 'back\\slash "q"\nnext'}], "flows": []}
    data["boundaries"] = []
    text = render_dot(make_system(data))
    assert 'label="back\\\\slash \\"q\\"\\nnext\\n«service»"' in text


def test_empty_boundaries_are_left_out_and_cycles_do_not_hang() -> None:
    data = {
        **SYSTEM_DATA,
        "boundaries": [*SYSTEM_DATA["boundaries"], {"id": "empty", "trust": "partner"}],
    }
    system = make_system(data)
    assert boundary_node_id("empty") not in render_mermaid(system)
    assert boundary_node_id("empty") not in render_dot(system)


def test_render_svg_returns_none_without_graphviz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dfd.shutil, "which", lambda name: None)
    assert render_svg("digraph { a -> b }") is None


@needs_dot
def test_render_svg_with_graphviz_escapes_hostile_labels() -> None:
    svg = render_svg(render_dot(make_system(), make_register()))
    assert svg is not None and "<svg" in svg
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    inline = inline_svg(svg)
    assert inline is not None and inline.startswith("<svg") and "<?xml" not in inline and "<!--" not in inline


@needs_dot
def test_render_svg_returns_none_on_invalid_dot() -> None:
    assert render_svg("this is not dot {") is None


def test_inline_svg_refuses_active_content() -> None:
    assert inline_svg(None) is None
    assert inline_svg("<svg><script>alert(1)</script></svg>") is None
    assert inline_svg('<svg><g onload="x()"></g></svg>') is None
    assert inline_svg('<svg><a xlink:href="javascript:alert(1)"></a></svg>') is None
    assert inline_svg("<html></html>") is None
    assert inline_svg('<?xml version="1.0"?>\n<!-- c -->\n<svg><g/></svg>') == "<svg><g/></svg>"
