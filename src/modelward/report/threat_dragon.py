"""Export a system and its register to OWASP Threat Dragon v2 JSON, so the model opens in that tool.

One STRIDE diagram: actors, processes and stores as cells carrying their findings as Threat
Dragon threats, data flows as edges between those cells, trust boundaries as boxes laid out
around their members (nested boxes for nested boundaries). Cell and threat ids are UUIDv5
from element, flow and finding ids, so re-exporting the same model gives the same file.

Threat Dragon knows three threat statuses (Open, Mitigated, NotApplicable) and one category
per threat; accepted/transferred/avoided findings are exported as Mitigated with their real
status named in the text, and a threat with several categories takes its first one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from modelward.core.jsonio import dumps_pretty
from modelward.core.severity import Severity
from modelward.report.common import sorted_findings
from modelward.report.dfd import BOUNDARY_COLOURS
from modelward.system.graph import SystemGraph
from modelward.system.model import Boundary, Element, Flow, System
from modelward.system.references import nested_in_itself
from modelward.system.vocabulary import DfdKind, TrustLevel
from modelward.threats.model import STRIDE_NAMES, Finding, Register, Status

__all__ = ["THREAT_DRAGON_VERSION", "cell_id", "render_threat_dragon", "threat_dragon_model"]

#: The Threat Dragon release whose v2 file format we write.
THREAT_DRAGON_VERSION = "2.4.0"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/modelward/modelward#threat-dragon")

_STRIDE_TYPES = STRIDE_NAMES  # Threat Dragon uses the same category names
_LINDDUN_TYPES = {
    "L": "Linkability",
    "I": "Identifiability",
    "Nr": "Non-repudiation",
    "D": "Detectability",
    "DD": "Disclosure of information",
    "U": "Unawareness",
    "Nc": "Non-compliance",
}
_SEVERITY = {
    Severity.CRITICAL: "High",
    Severity.HIGH: "High",
    Severity.MEDIUM: "Medium",
    Severity.LOW: "Low",
    Severity.NOTE: "Low",
}
_STATUS = {
    Status.OPEN: "Open",
    Status.NEEDS_INVESTIGATION: "Open",
    Status.IN_PROGRESS: "Open",
    Status.MITIGATED: "Mitigated",
    Status.ACCEPTED: "Mitigated",
    Status.TRANSFERRED: "Mitigated",
    Status.AVOIDED: "Mitigated",
    Status.FALSE_POSITIVE: "NotApplicable",
    Status.NOT_APPLICABLE: "NotApplicable",
}
_SHAPES = {
    DfdKind.EXTERNAL_ENTITY: ("actor", "tm.Actor"),
    DfdKind.PROCESS: ("process", "tm.Process"),
    DfdKind.DATA_STORE: ("store", "tm.Store"),
}

# layout, in Threat Dragon canvas units
_NODE_W, _NODE_H = 160, 80
_GAP = 70
_PAD = 30
_HEADER = 40
_COLUMNS = 3
_ORIGIN = 40


def cell_id(kind: str, ident: str) -> str:
    """Deterministic UUID of a cell: kind is ``element``, ``flow``, ``boundary`` or ``threat``."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{ident}"))


# --- layout ----------------------------------------------------------------------------


@dataclass
class _Box:
    """A laid-out rectangle; for a boundary, the boxes inside it (relative positions)."""

    width: int
    height: int
    items: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)  # kind, id, x, y, w, h


def _layout(system: System) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """Absolute (x, y, width, height) of every element and non-empty boundary."""
    known = {b.id: b for b in system.boundaries}
    parents = {b.id: b.parent for b in system.boundaries}
    children: dict[str | None, list[Boundary]] = {}
    members: dict[str | None, list[Element]] = {}
    for boundary in system.boundaries:
        parent = boundary.parent if boundary.parent in known and not nested_in_itself(boundary.id, parents) else None
        children.setdefault(parent, []).append(boundary)
    for element in system.elements:
        members.setdefault(element.boundary if element.boundary in known else None, []).append(element)

    def pack(owner: str | None, root: bool) -> _Box:
        elements = members.get(owner, [])
        boxes = [(b, pack(b.id, False)) for b in children.get(owner, [])]
        boxes = [(b, box) for b, box in boxes if box.items]
        columns = 1 if root else _COLUMNS
        grid_cols = min(len(elements), columns)
        grid_rows = -(-len(elements) // columns) if elements else 0
        grid_w = grid_cols * _NODE_W + max(grid_cols - 1, 0) * _GAP
        grid_h = grid_rows * _NODE_H + max(grid_rows - 1, 0) * _GAP
        row_w = sum(box.width for _, box in boxes) + max(len(boxes) - 1, 0) * _GAP
        row_h = max((box.height for _, box in boxes), default=0)
        left, top = (0, 0) if root else (_PAD, _HEADER)
        result = _Box(0, 0)
        for index, element in enumerate(elements):
            col, row = index % columns, index // columns
            x = left + col * (_NODE_W + _GAP)
            y = top + row * (_NODE_H + _GAP)
            result.items.append(("element", element.id, x, y, _NODE_W, _NODE_H))
        if root:  # actors and other unbounded elements in a column on the left, boundaries to the right
            bx, by = left + (grid_w + _GAP if elements else 0), top
            inner_w, inner_h = bx - left + row_w, max(grid_h, row_h)
        else:  # members in a grid, nested boundaries in a row beneath
            bx, by = left, top + (grid_h + _GAP if elements else 0)
            inner_w, inner_h = max(grid_w, row_w), by - top + row_h
        for boundary, box in boxes:
            result.items.append(("boundary", boundary.id, bx, by, box.width, box.height))
            result.items.extend((k, i, bx + x, by + y, w, h) for k, i, x, y, w, h in box.items)
            bx += box.width + _GAP
        result.width = inner_w + (0 if root else 2 * _PAD)
        result.height = inner_h + (0 if root else _HEADER + _PAD)
        return result

    root = pack(None, True)
    return {(kind, ident): (x + _ORIGIN, y + _ORIGIN, w, h) for kind, ident, x, y, w, h in root.items}


# --- threats -----------------------------------------------------------------------------


def _threat(finding: Finding, number: int) -> dict[str, Any]:
    threat = finding.threat
    if threat.stride:
        model_type, kind = "STRIDE", _STRIDE_TYPES[threat.stride[0]]
    elif threat.linddun:
        model_type, kind = "LINDDUN", _LINDDUN_TYPES[threat.linddun[0]]
    else:
        model_type, kind = "STRIDE", ""
    description = [threat.description, "", f"modelward finding {finding.id} ({finding.status.value})."]
    if finding.applies_because:
        description.append("Applies because: " + "; ".join(finding.applies_because) + ".")
    if finding.mitigated_because:
        description.append("Mitigated because: " + "; ".join(finding.mitigated_because) + ".")
    if finding.unmitigated_because:
        description.append("Not mitigated because: " + "; ".join(finding.unmitigated_because) + ".")
    justification = finding.triage.get("justification")
    if justification:
        description.append(f"Triage ({finding.status.value}): {justification}")
    tags = [*threat.atlas, *threat.owasp, *threat.cwe]
    if tags:
        description.append("Taxonomy: " + ", ".join(tags) + ".")
    mitigation = "\n".join(
        f"- {m.title}" + (f" (controls: {', '.join(c.value for c in m.controls)})" if m.controls else "")
        for m in threat.mitigations
    )
    score = f"OWASP {finding.severity.value}: likelihood {finding.likelihood:.1f}, impact {finding.impact:.1f}"
    if finding.rating_vector:
        score += f" ({finding.rating_vector})"
    uid = cell_id("threat", finding.id)
    return {
        "id": uid,
        "threatId": uid,  # the v2 schema's name for the threat's UUID; older readers use "id"
        "title": threat.title,
        "status": _STATUS[finding.status],
        "severity": _SEVERITY[finding.severity],
        "type": kind,
        "description": "\n".join(description),
        "mitigation": mitigation,
        "modelType": model_type,
        "number": number,
        "score": score,
    }


# --- cells -------------------------------------------------------------------------------


def _node_cell(
    element: Element, box: tuple[int, int, int, int], threats: list[dict[str, Any]], z_index: int
) -> dict[str, Any]:
    shape, data_type = _SHAPES[element.kind]
    has_open = any(t["status"] == "Open" for t in threats)
    line = {
        "stroke": "#d32f2f" if has_open else "#333333",
        "strokeWidth": 2.5 if has_open else 1.5,
        "strokeDasharray": "4 3" if not element.in_scope else None,
    }
    attrs: dict[str, Any] = {"text": {"text": element.label}}
    if shape == "store":
        attrs["topLine"] = dict(line)
        attrs["bottomLine"] = dict(line)
    else:
        attrs["body"] = line
    data: dict[str, Any] = {
        "type": data_type,
        "name": element.label,
        "description": element.description or f"{element.type.value} ({element.id})",
        "outOfScope": not element.in_scope,
        "reasonOutOfScope": "" if element.in_scope else "declared out of scope in the modelward system file",
        "isTrustBoundary": False,
        "hasOpenThreats": has_open,
        "threats": threats,
    }
    if shape == "actor":
        data["providesAuthentication"] = element.authentication is not None and element.authentication.value != "none"
    elif shape == "process":
        data["handlesCardPayment"] = False
        data["handlesGoodsOrServices"] = False
        data["isWebApplication"] = element.type.value in {"api", "service"}
        data["privilegeLevel"] = element.trust.value if element.trust else ""
    else:
        data["isALog"] = element.type.value == "log-store"
        data["storesCredentials"] = False
        data["isEncrypted"] = bool(element.encryption_at_rest)
        data["isSigned"] = False
        data["storesInventory"] = False
    x, y, width, height = box
    return {
        "id": cell_id("element", element.id),
        "shape": shape,
        "zIndex": z_index,
        "visible": True,
        "position": {"x": x, "y": y},
        "size": {"width": width, "height": height},
        "attrs": attrs,
        "data": data,
    }


def _flow_cell(
    flow: Flow, threats: list[dict[str, Any]], public: bool, encrypted: bool, z_index: int
) -> dict[str, Any]:
    has_open = any(t["status"] == "Open" for t in threats)
    return {
        "id": cell_id("flow", flow.fid),
        "shape": "flow",
        "zIndex": z_index,
        "connector": "smooth",
        "source": {"cell": cell_id("element", flow.source)},
        "target": {"cell": cell_id("element", flow.target)},
        "vertices": [],
        "attrs": {
            "line": {
                "stroke": "#d32f2f" if has_open else "#333333",
                "strokeWidth": 2 if has_open else 1,
                "targetMarker": {"name": "block"},
                "sourceMarker": {"name": ""},
                "strokeDasharray": None,
            }
        },
        "labels": [
            {
                "markup": [
                    {"tagName": "ellipse", "selector": "labelBody"},
                    {"tagName": "text", "selector": "labelText"},
                ],
                "attrs": {
                    "labelText": {"text": flow.label, "textAnchor": "middle", "textVerticalAnchor": "middle"},
                    "labelBody": {"ref": "labelText", "refRx": "50%", "refRy": "60%", "fill": "#fff", "strokeWidth": 0},
                },
                "position": 0.5,
            }
        ],
        "data": {
            "type": "tm.Flow",
            "name": flow.label,
            "description": flow.description or f"{flow.source} → {flow.target}",
            "outOfScope": False,
            "reasonOutOfScope": "",
            "isTrustBoundary": False,
            "hasOpenThreats": has_open,
            "isBidirectional": False,
            "isEncrypted": encrypted,
            "isPublicNetwork": public,
            "protocol": flow.protocol or "",
            "threats": threats,
        },
    }


def _boundary_cell(boundary: Boundary, box: tuple[int, int, int, int], z_index: int) -> dict[str, Any]:
    x, y, width, height = box
    colour = BOUNDARY_COLOURS[boundary.trust]
    name = f"{boundary.label} ({boundary.trust.value})"
    return {
        "id": cell_id("boundary", boundary.id),
        "shape": "trust-boundary-box",
        "zIndex": z_index,
        "visible": True,
        "position": {"x": x, "y": y},
        "size": {"width": width, "height": height},
        "attrs": {
            "text": {"text": name},
            "body": {"stroke": colour, "strokeWidth": 2, "strokeDasharray": "8 4"},
        },
        "data": {
            "type": "tm.BoundaryBox",
            "name": name,
            "description": boundary.description or "",
            "isTrustBoundary": True,
            "hasOpenThreats": False,
        },
    }


def _depth(boundary: Boundary, known: dict[str, Boundary]) -> int:
    depth, current, seen = 0, boundary.parent, {boundary.id}
    while current is not None and current in known and current not in seen:
        seen.add(current)
        depth += 1
        current = known[current].parent
    return depth


def threat_dragon_model(system: System, register: Register, *, contributors: Iterable[str] = ()) -> dict[str, Any]:
    """The Threat Dragon v2 model (a dict ready for ``json.dumps``)."""
    layout = _layout(system)
    by_element: dict[str, list[Finding]] = {}
    by_flow: dict[str, list[Finding]] = {}
    for finding in sorted_findings(register.findings):
        if finding.flow:
            by_flow.setdefault(finding.flow, []).append(finding)
        else:
            by_element.setdefault(finding.element, []).append(finding)
    number = 0

    def threats_of(findings: list[Finding]) -> list[dict[str, Any]]:
        nonlocal number
        out = []
        for finding in findings:
            number += 1
            out.append(_threat(finding, number))
        return out

    cells: list[dict[str, Any]] = []
    known = {b.id: b for b in system.boundaries}
    for boundary in system.boundaries:
        box = layout.get(("boundary", boundary.id))
        if box is not None:
            cells.append(_boundary_cell(boundary, box, z_index=-10 + _depth(boundary, known)))
    elements = {e.id: e for e in system.elements}
    for z_index, element in enumerate(system.elements, start=1):
        box = layout[("element", element.id)]
        cells.append(_node_cell(element, box, threats_of(by_element.get(element.id, [])), z_index))
    graph = SystemGraph(system)
    untrusted = {e.id for e in system.elements if graph.effective_trust(e.id) is TrustLevel.UNTRUSTED}
    for flow in system.flows:
        if flow.source not in elements or flow.target not in elements:
            continue
        public = flow.source in untrusted or flow.target in untrusted
        threats = threats_of(by_flow.get(flow.fid, []))
        cells.append(_flow_cell(flow, threats, public, graph.flow_encrypted(flow.fid), z_index=100))
    diagram = {
        "id": 0,
        "title": f"{system.name} (modelward)",
        "diagramType": "STRIDE",
        "placeholder": "New STRIDE diagram description",
        "thumbnail": "./public/content/images/thumbnail.stride.jpg",
        "version": THREAT_DRAGON_VERSION,
        "description": system.description or "",
        "cells": cells,
    }
    return {
        "version": THREAT_DRAGON_VERSION,
        "summary": {
            "title": system.name,
            "owner": system.owner or "",
            "description": system.description or "",
            "id": 0,
        },
        "detail": {
            "contributors": [{"name": name} for name in contributors],
            "diagrams": [diagram],
            "diagramTop": 1,
            "reviewer": "",
            "threatTop": number,
        },
    }


def render_threat_dragon(system: System, register: Register, *, contributors: Iterable[str] = ()) -> str:
    """The Threat Dragon v2 model as indented JSON text with a final newline."""
    model = threat_dragon_model(system, register, contributors=contributors)
    return dumps_pretty(model)
