"""Result tables a check reports appear in every report format, escaped, and within the JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EVIL, make_register, make_system
from jsonschema import Draft202012Validator

from modelward.checks.base import Evidence, EvidenceTable
from modelward.report.json_report import report_schema
from modelward.report.writer import write_report


def test_tables_render_in_html_markdown_and_json(tmp_path: Path) -> None:
    table = EvidenceTable("Privacy against utility", ["model", "TPR"], [["undefended", "6.48%"], [EVIL, "0 | 1"]])
    evidence = [Evidence(check="privacy.privacy_utility", passed=True, message="ok", requirement="pu", tables=[table])]
    write_report(tmp_path, make_system(), make_register(), evidence=evidence, formats=("html", "md", "json"))
    html = (tmp_path / "report.html").read_text()
    assert "<h3>Privacy against utility</h3>" in html
    assert "<td>undefended</td><td>6.48%</td>" in html
    assert EVIL not in html  # cells are escaped
    markdown = (tmp_path / "report.md").read_text()
    assert "| model | TPR | " in markdown
    assert "| undefended | 6.48% | " in markdown
    assert "0 \\| 1" in markdown  # a pipe in a cell cannot split the row
    document = json.loads((tmp_path / "report.json").read_text())
    Draft202012Validator(report_schema()).validate(document)
    assert document["evidence"][0]["tables"] == [
        {
            "title": "Privacy against utility",
            "columns": ["model", "TPR"],
            "rows": [["undefended", "6.48%"], [EVIL, "0 | 1"]],
        }
    ]
