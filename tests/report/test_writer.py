"""write_report: every file, written atomically, in one consistent run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_evidence, make_register, make_system

from modelward.core import files
from modelward.core.errors import ModelwardError
from modelward.report import writer
from modelward.report.json_report import validate_report
from modelward.report.writer import write_report

STAMP = "2026-11-23T10:00:00Z"
CORE = ["report.html", "report.md", "report.json", "report.sarif", "findings.csv", "dfd.mmd", "dfd.dot"]


def test_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "demo"
    written = write_report(
        out,
        make_system(),
        make_register(),
        evidence=make_evidence(),
        system_file="examples/demo/modelward.yaml",
        element_lines={"moderation-model": 10},
        generated_at=STAMP,
    )
    names = [path.name for path in written]
    assert names[: len(CORE)] == CORE
    expected = set(CORE) | ({"dfd.svg"} if shutil.which("dot") else set())
    assert {p.name for p in out.iterdir()} == expected  # no temporary files left behind
    for path in written:
        assert path.stat().st_size > 0
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert validate_report(data) == []
    assert data["generated_at"] == STAMP and len(data["evidence"]) == 2
    sarif = json.loads((out / "report.sarif").read_text(encoding="utf-8"))
    location = sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "examples/demo/modelward.yaml"
    assert (out / "dfd.mmd").read_text(encoding="utf-8").startswith("flowchart LR")
    assert (out / "dfd.dot").read_text(encoding="utf-8").startswith("digraph dfd {")
    assert STAMP in (out / "report.html").read_text(encoding="utf-8")
    assert STAMP in (out / "report.md").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed (make graphviz)")
def test_svg_written_and_inlined_with_graphviz(tmp_path: Path) -> None:
    write_report(tmp_path, make_system(), make_register(), generated_at=STAMP)
    assert (tmp_path / "dfd.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<div class="dfd"><svg' in html and '<pre class="mermaid">' not in html
    assert "![Data-flow diagram](dfd.svg)" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_without_graphviz_falls_back_to_mermaid_and_drops_a_stale_svg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dfd.svg").write_text("<svg>old</svg>", encoding="utf-8")
    monkeypatch.setattr(writer, "render_svg", lambda dot: None)
    written = write_report(tmp_path, make_system(), make_register(), formats=("html", "md"), generated_at=STAMP)
    assert [p.name for p in written] == ["report.html", "report.md", "dfd.mmd", "dfd.dot"]
    assert not (tmp_path / "dfd.svg").exists()
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<pre class="mermaid">flowchart LR' in html
    assert "dfd.svg" not in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_threat_dragon_format_on_request(tmp_path: Path) -> None:
    written = write_report(tmp_path, make_system(), make_register(), formats=("threat-dragon",), generated_at=STAMP)
    assert written[0].name == "threat-dragon.json"
    assert json.loads(written[0].read_text(encoding="utf-8"))["detail"]["diagrams"][0]["diagramType"] == "STRIDE"


def test_overwrites_previous_reports(tmp_path: Path) -> None:
    write_report(tmp_path, make_system(), make_register(), formats=("json",), generated_at=STAMP)
    write_report(tmp_path, make_system(), make_register([]), formats=("json",), generated_at=STAMP)
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["findings"] == []


def test_unknown_format_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ModelwardError, match="unknown report format 'pdf'"):
        write_report(tmp_path / "out", make_system(), make_register(), formats=("html", "pdf"))
    assert not (tmp_path / "out").exists()  # nothing written


def test_out_dir_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("x", encoding="utf-8")
    with pytest.raises(ModelwardError, match="not a folder"):
        write_report(target, make_system(), make_register(), formats=("json",))


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "report.json").write_text("old", encoding="utf-8")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(ModelwardError, match="No space left"):
        write_report(tmp_path, make_system(), make_register(), formats=("json",))
    assert (tmp_path / "report.json").read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]
