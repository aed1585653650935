"""The Threat Dragon export meets the v2 file format's rules (from its published JSON Schema)."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from modelward.report.threat_dragon import render_threat_dragon
from modelward.system.loader import load_system
from modelward.threats.catalog import load_catalog
from modelward.threats.register import build_register
from modelward.threats.triage import load_triage

SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "content-moderation"


def export() -> dict[str, Any]:
    system = load_system(SCENARIO)
    triage = load_triage(SCENARIO / "modelward.triage.yaml")
    register = build_register(system, load_catalog(), triage=triage, today=date(2026, 11, 23))
    data: dict[str, Any] = json.loads(render_threat_dragon(system, register))
    return data


def test_top_level_and_diagram_requirements() -> None:
    model = export()
    assert {"version", "summary", "detail"} <= set(model)
    assert len(model["version"]) <= 10
    assert model["summary"]["title"]
    detail = model["detail"]
    assert {"contributors", "diagrams", "diagramTop", "reviewer", "threatTop"} <= set(detail)
    for diagram in detail["diagrams"]:
        assert {"diagramType", "id", "thumbnail", "title", "version"} <= set(diagram)
        assert len(diagram["diagramType"]) >= 3 and len(diagram["version"]) <= 10
        assert isinstance(diagram["id"], int) and diagram["id"] >= 0


def test_every_cell_meets_the_cell_rules() -> None:
    cells = export()["detail"]["diagrams"][0]["cells"]
    ids = {cell["id"] for cell in cells}
    assert len(ids) == len(cells)
    threat_numbers = []
    for cell in cells:
        assert {"id", "shape", "zIndex"} <= set(cell) and isinstance(cell["zIndex"], int)
        data = cell["data"]
        assert {"hasOpenThreats", "name", "type"} <= set(data)
        body = cell.get("attrs", {}).get("body")
        if body is not None:
            assert {"stroke", "strokeWidth", "strokeDasharray"} <= set(body)
        line = cell.get("attrs", {}).get("line")
        if line is not None:
            assert "targetMarker" in line
        if "size" in cell:
            assert cell["size"]["width"] >= 10 and cell["size"]["height"] >= 10
        if cell["shape"] == "flow":
            assert cell["source"]["cell"] in ids and cell["target"]["cell"] in ids
        for threat in data.get("threats", []):
            assert {"description", "mitigation", "severity", "status", "title", "type"} <= set(threat)
            assert threat["status"] in {"Open", "Mitigated", "NotApplicable"}
            assert threat["severity"] in {"High", "Medium", "Low"}
            uuid.UUID(threat["threatId"])
            threat_numbers.append(threat["number"])
        open_threats = any(t["status"] == "Open" for t in data.get("threats", []))
        assert data["hasOpenThreats"] is open_threats
    assert threat_numbers and max(threat_numbers) <= export()["detail"]["threatTop"]
