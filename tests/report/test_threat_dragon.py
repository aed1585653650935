"""Threat Dragon v2 export: cell kinds, flows between existing cells, threats attached, stable ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

from conftest import make_register, make_system

from modelward.report.threat_dragon import cell_id, render_threat_dragon, threat_dragon_model


def _model() -> dict[str, Any]:
    return threat_dragon_model(make_system(), make_register())


def _cells(model: dict[str, Any]) -> list[dict[str, Any]]:
    return list(model["detail"]["diagrams"][0]["cells"])


def _by_id(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cell["id"]: cell for cell in _cells(model)}


def test_top_level_shape() -> None:
    model = _model()
    assert model["version"].startswith("2.")
    assert model["summary"]["title"] == make_system().name
    detail = model["detail"]
    assert set(detail) >= {"contributors", "diagrams", "diagramTop", "reviewer", "threatTop"}
    (diagram,) = detail["diagrams"]
    assert diagram["diagramType"] == "STRIDE"
    assert diagram["id"] == 0
    assert diagram["thumbnail"] == "./public/content/images/thumbnail.stride.jpg"
    for key in ("title", "version", "cells"):
        assert key in diagram


def test_cell_kinds() -> None:
    cells = _by_id(_model())
    expect = {
        ("element", "user"): ("actor", "tm.Actor"),
        ("element", "upload-api"): ("process", "tm.Process"),
        ("element", "moderation-model"): ("process", "tm.Process"),
        ("element", "uploads-db"): ("store", "tm.Store"),
        ("boundary", "cloud"): ("trust-boundary-box", "tm.BoundaryBox"),
        ("flow", "user-to-upload-api"): ("flow", "tm.Flow"),
    }
    for (kind, ident), (shape, data_type) in expect.items():
        cell = cells[cell_id(kind, ident)]
        assert (cell["shape"], cell["data"]["type"]) == (shape, data_type)
    for cell in cells.values():
        assert len(cell["id"]) == 36 and uuid.UUID(cell["id"])
        assert {"id", "shape", "zIndex"} <= set(cell)
        assert {"name", "type", "hasOpenThreats"} <= set(cell["data"])
        if cell["shape"] != "flow":
            assert cell["size"]["width"] >= 10 and cell["size"]["height"] >= 10
    assert cells[cell_id("boundary", "cloud")]["data"]["isTrustBoundary"] is True
    assert cells[cell_id("element", "legacy")]["data"]["outOfScope"] is True


def test_flows_reference_existing_cells() -> None:
    model = _model()
    cells = _by_id(model)
    flows = [c for c in cells.values() if c["shape"] == "flow"]
    assert len(flows) == 3
    for flow in flows:
        assert cells[flow["source"]["cell"]]["shape"] in {"actor", "process", "store"}
        assert cells[flow["target"]["cell"]]["shape"] in {"actor", "process", "store"}
    wire = cells[cell_id("flow", "user-to-upload-api")]
    assert wire["source"]["cell"] == cell_id("element", "user")
    assert wire["data"]["isEncrypted"] is True and wire["data"]["isPublicNetwork"] is True
    assert wire["data"]["protocol"] == "https"


def test_threats_are_attached_with_mapped_fields() -> None:
    model = _model()
    cells = _by_id(model)
    model_threats = cells[cell_id("element", "moderation-model")]["data"]["threats"]
    assert [t["title"] for t in model_threats] == ["White-box evasion", "Membership inference"]
    evasion = model_threats[0]
    assert evasion["status"] == "Open" and evasion["severity"] == "High"  # critical maps to High
    assert evasion["type"] == "Tampering" and evasion["modelType"] == "STRIDE"
    assert "Adversarial training" in evasion["mitigation"]
    assert "ML-EVASION-WHITEBOX@moderation-model" in evasion["description"]
    assert "SL:6/M:9" in evasion["score"]
    assert cells[cell_id("element", "moderation-model")]["data"]["hasOpenThreats"] is True

    store = cells[cell_id("element", "uploads-db")]["data"]["threats"][0]
    assert store["modelType"] == "LINDDUN" and store["type"] == "Disclosure of information"
    assert store["status"] == "Mitigated" and "accepted" in store["description"]
    assert cells[cell_id("element", "uploads-db")]["data"]["hasOpenThreats"] is False

    flow_threats = cells[cell_id("flow", "user-to-upload-api")]["data"]["threats"]
    assert [t["status"] for t in flow_threats] == ["Mitigated"]
    user_threats = cells[cell_id("element", "user")]["data"]["threats"]
    assert [t["status"] for t in user_threats] == ["NotApplicable"]  # the flow finding is not on the user cell

    api_threats = cells[cell_id("element", "upload-api")]["data"]["threats"]
    assert {t["status"] for t in api_threats} == {"Open", "NotApplicable"}  # in-progress, false-positive

    every = [t for cell in cells.values() for t in cell["data"].get("threats", [])]
    assert len(every) == len(make_register().findings)
    assert sorted(t["number"] for t in every) == list(range(1, len(every) + 1))
    assert model["detail"]["threatTop"] == len(every)
    for threat in every:
        assert {"description", "mitigation", "severity", "status", "title", "type", "modelType"} <= set(threat)
        assert threat["severity"] in {"High", "Medium", "Low"}
        assert threat["status"] in {"Open", "Mitigated", "NotApplicable"}


def _inside(inner: dict[str, Any], outer: dict[str, Any]) -> bool:
    ix, iy = inner["position"]["x"], inner["position"]["y"]
    ox, oy = outer["position"]["x"], outer["position"]["y"]
    return (
        ix >= ox
        and iy >= oy
        and ix + inner["size"]["width"] <= ox + outer["size"]["width"]
        and iy + inner["size"]["height"] <= oy + outer["size"]["height"]
    )


def test_layout_places_elements_inside_their_boundaries() -> None:
    cells = _by_id(_model())
    cloud = cells[cell_id("boundary", "cloud")]
    zone = cells[cell_id("boundary", "ml-zone")]
    internet = cells[cell_id("boundary", "internet")]
    assert _inside(zone, cloud)
    assert _inside(cells[cell_id("element", "moderation-model")], zone)
    assert _inside(cells[cell_id("element", "upload-api")], cloud)
    assert not _inside(cells[cell_id("element", "upload-api")], zone)
    assert _inside(cells[cell_id("element", "user")], internet)
    assert not _inside(cells[cell_id("element", "legacy")], cloud)
    assert zone["zIndex"] > cloud["zIndex"]  # nested boxes drawn above their parents, below nodes
    nodes = [c for c in cells.values() if c["shape"] in {"actor", "process", "store"}]
    for a in nodes:  # no two nodes overlap
        for b in nodes:
            if a is not b:
                assert not _inside(a, b)


def test_export_is_deterministic_json() -> None:
    first = render_threat_dragon(make_system(), make_register())
    second = render_threat_dragon(make_system(), make_register())
    assert first == second
    assert json.loads(first)["detail"]["diagrams"][0]["cells"]
    assert cell_id("element", "user") == cell_id("element", "user") != cell_id("flow", "user")
