"""The command line as a user meets it: exit codes, one-line errors, outputs, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "examples" / "content-moderation"
TODAY = "2026-11-23"


def modelward(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    env.pop("MODELWARD_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "modelward.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or ROOT,
        timeout=120,
        check=False,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture
def system_copy(tmp_path: Path) -> Path:
    """The scenario without its evasion, privacy and gateway requirements, which train models, attack them
    or launch a gateway (minutes, tested in tests/checks); the design-rule requirements stay."""
    target = tmp_path / "system"
    shutil.copytree(SCENARIO, target, ignore=shutil.ignore_patterns(".modelward-cache"))
    path = target / "modelward.yaml"
    data = yaml.safe_load(path.read_text())
    data["requirements"] = [r for r in data["requirements"] if r["check"].startswith("design.")]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def test_help_on_every_command() -> None:
    for command in (
        [],
        ["threats"],
        ["threats", "diff"],
        ["audit"],
        ["lint"],
        ["schema"],
        ["catalog"],
        ["catalog", "list"],
        ["catalog", "describe"],
        ["checks", "list"],
    ):
        result = modelward(*command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert "Usage:" in result.stdout


def test_threats_json_contract_and_fail_on() -> None:
    result = modelward("threats", str(SCENARIO), "--format", "json", "--today", TODAY)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["schema"] == "modelward.threats/1"
    finding = report["findings"][0]
    for key in ("id", "threat", "title", "element", "stride", "linddun", "atlas", "owasp"):
        assert key in finding
    for key in ("likelihood", "impact", "severity", "status", "why"):
        assert key in finding
    severities = {f["severity"] for f in report["findings"] if f["status"] == "open"}
    assert "critical" in severities or "high" in severities
    failing = modelward("threats", str(SCENARIO), "--format", "json", "--fail-on", "high", "--today", TODAY)
    assert failing.returncode == 1
    assert "open finding(s) at or above high" in failing.stderr


def test_threats_writes_every_format(tmp_path: Path) -> None:
    for fmt, probe in (
        ("md", "# "),
        ("html", "<html"),
        ("sarif", '"version": "2.1.0"'),
        ("csv", '"id","threat"'),
        ("mermaid", "flowchart"),
        ("dot", "digraph"),
        ("threat-dragon", '"diagrams"'),
    ):
        out = tmp_path / f"out.{fmt}"
        result = modelward("threats", str(SCENARIO), "-f", fmt, "-o", str(out), "--today", TODAY)
        assert result.returncode == 0, (fmt, result.stderr)
        assert probe in out.read_text(encoding="utf-8"), fmt


def test_table_output_lists_findings_and_summary() -> None:
    result = modelward("threats", str(SCENARIO), "--today", TODAY)
    assert result.returncode == 0, result.stderr
    assert "ML-EVASION-BLACKBOX-SCORE@moderation-model" in result.stdout
    assert "findings" in result.stdout and "open" in result.stdout


def test_bad_inputs_give_one_line_and_exit_2(tmp_path: Path) -> None:
    assert_clean_error(modelward("threats", str(tmp_path / "missing.yaml")), 2, "file not found")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nelements:\n  - {id: a, type: spaceship}\n")
    result = modelward("threats", str(broken))
    assert_clean_error(result, 2, "broken.yaml:3: elements[0].type:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert_clean_error(modelward("threats", str(SCENARIO), "--fail-on", "urgent"), 2, "Invalid value")
    assert_clean_error(modelward("threats", str(SCENARIO), "--today", "tomorrow"), 2, "is not a date")
    assert_clean_error(modelward("catalog", "describe", "ML-EVASION-WHITEBOXX"), 2, "ML-EVASION-WHITEBOX")


def test_bad_triage_file_is_located(system_copy: Path) -> None:
    triage = system_copy / "modelward.triage.yaml"
    triage.write_text("modelward-triage: 1\nfindings:\n  ML-X@y:\n    status: maybe\n")
    result = modelward("threats", str(system_copy))
    assert_clean_error(result, 2, "modelward.triage.yaml:4")


def test_lint_scenario_is_clean_and_strict_mode(system_copy: Path) -> None:
    result = modelward("lint", str(SCENARIO), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    path = system_copy / "modelward.yaml"
    data = yaml.safe_load(path.read_text())
    data["data"].append({"id": "orphan-data", "personal": True})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = modelward("lint", str(system_copy), "--format", "json")
    assert result.returncode == 0  # warnings only
    codes = {row["code"] for row in json.loads(result.stdout)}
    assert {"MW003", "MW004", "MW006", "MW007"} <= codes
    assert modelward("lint", str(system_copy), "--strict").returncode == 1


def test_schema_validates_the_scenario() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    result = modelward("schema")
    schema = json.loads(result.stdout)
    document = yaml.safe_load((SCENARIO / "modelward.yaml").read_text())
    jsonschema.validate(document, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "colour": "red"}, schema)
    for what in ("triage", "report"):
        assert json.loads(modelward("schema", what).stdout)["$schema"]


def test_diff_between_versions(system_copy: Path, tmp_path: Path) -> None:
    old_json = tmp_path / "old.json"
    assert modelward("threats", str(SCENARIO), "-f", "json", "-o", str(old_json), "--today", TODAY).returncode == 0
    path = system_copy / "modelward.yaml"
    data = yaml.safe_load(path.read_text())
    for element in data["elements"]:
        if element["id"] == "legacy-caption-model":
            element["model"]["artifact_format"] = "safetensors"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = modelward("threats", "diff", str(old_json), str(system_copy), "-f", "json", "--today", TODAY)
    assert result.returncode == 0, result.stderr
    difference = json.loads(result.stdout)
    assert "ML-UNSAFE-ARTIFACT@legacy-caption-model" in {row["id"] for row in difference["fixed"]}
    assert difference["new"] == []
    back = modelward("threats", "diff", str(system_copy), str(SCENARIO), "--fail-on-new", "medium", "--today", TODAY)
    assert back.returncode == 1
    assert "ML-UNSAFE-ARTIFACT@legacy-caption-model" in back.stdout


def test_audit_writes_the_report_and_fails_on_failed_requirements(system_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = modelward("audit", str(system_copy), "--out", str(out), "--today", TODAY)
    assert result.returncode == 1, result.stderr  # two design requirements fail in the scenario
    assert "FAIL" in result.stdout
    for name in ("report.html", "report.md", "report.json", "report.sarif", "findings.csv", "dfd.mmd", "dfd.dot"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    checks = {e["requirement"]: e["passed"] for e in report["evidence"]}
    assert checks["safe-model-artifacts"] is False
    unsafe = next(f for f in report["findings"] if f["id"] == "ML-UNSAFE-ARTIFACT@legacy-caption-model")
    assert unsafe["verified"] is False and unsafe["status"] == "open"


def test_audit_passes_once_the_failing_requirements_are_fixed(system_copy: Path, tmp_path: Path) -> None:
    path = system_copy / "modelward.yaml"
    data = yaml.safe_load(path.read_text())
    for element in data["elements"]:
        if element.get("model", {}).get("artifact_format") in {"joblib", "pickle", "pytorch-pickle", "dill"}:
            element["model"]["artifact_format"] = "onnx"
    for flow in data["flows"]:
        flow["encrypted"] = True
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = modelward("audit", str(system_copy), "--out", str(tmp_path / "r"), "--today", TODAY)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert all(e["passed"] for e in report["evidence"])
    assert any(f["verified"] is True for f in report["findings"])


def test_audit_with_unknown_check_is_a_usage_error(system_copy: Path, tmp_path: Path) -> None:
    path = system_copy / "modelward.yaml"
    data = yaml.safe_load(path.read_text())
    data["requirements"].append({"id": "typo", "check": "design.safe_model_artifact"})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = modelward("audit", str(system_copy), "--out", str(tmp_path / "r"))
    assert_clean_error(result, 2, "unknown check 'design.safe_model_artifact'", "did you mean")


def test_published_schemas_are_up_to_date() -> None:
    for what in ("system", "triage", "report"):
        published = json.loads((ROOT / "schemas" / f"{what}.schema.json").read_text(encoding="utf-8"))
        assert published == json.loads(modelward("schema", what).stdout), f"regenerate schemas/{what}.schema.json"


def test_unwritable_output_is_a_clean_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    result = modelward("threats", str(SCENARIO), "-f", "json", "-o", str(blocker / "out.json"))
    assert_clean_error(result, 2, "file.txt")


def test_markup_and_injection_in_names_never_break_output(tmp_path: Path) -> None:
    hostile = "[/] [bold red]x[/] <img src=x onerror=alert(1)> =cmd|' /C calc'!A0 %%{init: {}}%%"
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "modelward.yaml").write_text(
        yaml.safe_dump(
            {
                "name": hostile,
                "data": [{"id": "d", "personal": True, "data_subjects": 10, "classification": "confidential"}],
                "elements": [
                    {"id": "user", "type": "end-user", "name": hostile},
                    {"id": "m", "type": "model", "name": hostile, "model": {"outputs": "scores", "trained_on": ["d"]}},
                ],
                "flows": [{"from": "user", "to": "m", "data": ["d"], "name": hostile}],
                "requirements": [{"id": "r", "check": "design.score_exposure", "description": hostile}],
            }
        )
    )
    audit = modelward("audit", str(folder), "--out", str(tmp_path / "r"))
    assert audit.returncode == 1, audit.stderr  # the requirement fails; nothing crashes
    assert "[bold red]x[/]" in audit.stdout  # shown literally, not interpreted as markup
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html
    csv_text = (tmp_path / "r" / "findings.csv").read_text()
    assert "=cmd|" not in csv_text.replace("'=cmd|", "")  # formula cells are neutralised
    mermaid = (tmp_path / "r" / "dfd.mmd").read_text()
    assert "%%{init" not in mermaid
    for fmt in ("table", "mermaid", "dot", "md"):
        result = modelward("threats", str(folder), "-f", fmt)
        assert result.returncode == 0, (fmt, result.stderr)
