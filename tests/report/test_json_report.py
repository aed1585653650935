"""The JSON contract: schema-valid, complete, deterministic, and readable back for diffs."""

from __future__ import annotations

import json

import pytest
from conftest import make_evidence, make_register, make_system
from jsonschema import Draft202012Validator

from modelward.core.errors import InputError
from modelward.report.json_report import (
    SCHEMA_ID,
    build_report,
    load_findings_json,
    load_register_json,
    render_json,
    report_schema,
    validate_report,
)
from modelward.threats.diff import diff_registers
from modelward.threats.model import Status

STAMP = "2026-11-23T10:00:00Z"
REQUIRED_FINDING_KEYS = {
    "id", "threat", "title", "element", "flow", "stride", "linddun", "trim", "atlas", "owasp", "cwe",
    "likelihood", "impact", "severity", "rating_vector", "status", "verified", "why", "applies_because",
    "mitigated_because", "unmitigated_because", "mitigations", "triage",
}  # fmt: skip


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(report_schema())


def test_report_validates_against_the_published_schema() -> None:
    data = json.loads(render_json(make_system(), make_register(), evidence=make_evidence(), generated_at=STAMP))
    checker = Draft202012Validator.FORMAT_CHECKER
    assert list(Draft202012Validator(report_schema(), format_checker=checker).iter_errors(data)) == []
    assert validate_report(data) == []


def test_top_level_keys_in_contract_order() -> None:
    data = build_report(make_system(), make_register(), generated_at=STAMP)
    assert list(data) == [
        "schema", "tool", "system", "catalog_version", "generated_at",
        "summary", "findings", "orphan_triage", "evidence",
    ]  # fmt: skip
    assert data["schema"] == SCHEMA_ID == "modelward.threats/1"
    assert data["tool"]["name"] == "modelward"
    assert data["generated_at"] == STAMP
    assert data["orphan_triage"] == ["ML-OLD-THREAT@gone-element"]
    assert data["system"]["out_of_scope"] == ["legacy"]
    assert data["evidence"] == []


def test_every_finding_carries_the_required_keys_and_values() -> None:
    data = build_report(make_system(), make_register(), generated_at=STAMP)
    by_id = {f["id"]: f for f in data["findings"]}
    for finding in data["findings"]:
        assert set(finding) >= REQUIRED_FINDING_KEYS
    evasion = by_id["ML-EVASION-WHITEBOX@moderation-model"]
    assert evasion["severity"] == "critical"
    assert evasion["atlas"] == ["AML.T0043.000", "AML.T0015"]
    assert evasion["owasp"] == ["ML01:2023"]
    assert evasion["mitigations"][0] == {
        "id": "adversarial-training",
        "title": "Adversarial training",
        "description": None,
        "controls": ["adversarial-training"],
        "atlas": ["AML.M0003"],
    }
    assert evasion["why"] == evasion["applies_because"] + evasion["unmitigated_because"]
    flow = by_id["STRIDE-I-FLOW@user@user-to-upload-api"]
    assert (flow["element"], flow["flow"], flow["verified"]) == ("user", "user-to-upload-api", True)
    accepted = by_id["LINDDUN-DD-STORE@uploads-db"]
    assert accepted["triage"]["review_by"] == "2027-01-31"  # a date becomes ISO text
    assert list(accepted["triage"]) == sorted(accepted["triage"])


def test_summary_counts() -> None:
    summary = build_report(make_system(), make_register(), generated_at=STAMP)["summary"]
    assert summary["total"] == 7
    assert summary["open"] == 3  # open x2 + in-progress
    assert summary["by_severity"] == {"critical": 1, "high": 2, "medium": 2, "low": 1, "note": 1}
    assert summary["open_by_severity"] == {"critical": 1, "high": 1, "medium": 1, "low": 0, "note": 0}
    assert summary["by_status"]["accepted"] == 1 and summary["by_status"]["transferred"] == 0
    assert summary["verification"] == {"passing": 1, "failing": 1, "none": 5}
    assert summary["not_applicable_pairs"] == 12


def test_output_is_deterministic_and_sorted_by_id() -> None:
    register = make_register()
    first = render_json(make_system(), register, evidence=make_evidence(), generated_at=STAMP)
    register.findings.reverse()
    second = render_json(make_system(), register, evidence=make_evidence(), generated_at=STAMP)
    assert first == second
    ids = [f["id"] for f in json.loads(first)["findings"]]
    assert ids == sorted(ids)
    assert first.endswith("}\n")


def test_source_date_epoch_fixes_the_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert build_report(make_system(), make_register())["generated_at"] == "2023-11-14T22:13:20Z"


def test_evidence_is_included_for_audits() -> None:
    data = build_report(make_system(), make_register(), evidence=make_evidence(), generated_at=STAMP)
    first = data["evidence"][0]
    assert first["check"] == "membership-inference" and first["passed"] is False
    assert list(first["metrics"]) == ["advantage", "auc"]
    assert first["threshold"] == 0.6


def test_round_trip_through_load_register_json() -> None:
    text = render_json(make_system(), make_register(), generated_at=STAMP)
    register = load_register_json(text)
    assert register.catalog_version == "2026.11.0"
    assert register.orphan_triage == ["ML-OLD-THREAT@gone-element"]
    assert register.not_applicable == 12
    statuses = {f.id: f.status for f in register.findings}
    assert statuses["LINDDUN-DD-STORE@uploads-db"] is Status.ACCEPTED
    # reading back and writing again gives the same file
    assert render_json(make_system(), register, generated_at=STAMP) == text
    assert [f.id for f in load_findings_json(text)] == [f.id for f in register.findings]


def test_loaded_reports_feed_the_register_diff() -> None:
    old = make_register()
    new_findings = [f for f in make_register().findings if f.threat.id != "STRIDE-S-ENTITY"]
    new_findings[0].status = Status.MITIGATED
    old_text = render_json(make_system(), old, generated_at=STAMP)
    new_text = render_json(make_system(), make_register(new_findings), generated_at=STAMP)
    diff = diff_registers(load_register_json(old_text), load_register_json(new_text))
    assert [s.id for s in diff.fixed] == ["STRIDE-S-ENTITY@user"]
    assert [c.id for c in diff.changed] == [new_findings[0].id]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ('{"schema": "other/1"}', "not a modelward threat report"),
        ("[]", "not a modelward threat report"),
    ],
)
def test_load_rejects_what_is_not_a_report(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_register_json(text, file="old.json")


def test_load_reports_the_line_of_a_json_syntax_error() -> None:
    with pytest.raises(InputError) as caught:
        load_register_json('{\n  "schema": \n}', file="old.json")
    assert caught.value.line == 3 and caught.value.file == "old.json"


def test_load_rejects_a_report_that_breaks_the_contract() -> None:
    data = build_report(make_system(), make_register(), generated_at=STAMP)
    data["findings"][0]["severity"] = "catastrophic"
    with pytest.raises(InputError, match=r"findings/0/severity"):
        load_register_json(json.dumps(data))
    data = build_report(make_system(), make_register(), generated_at=STAMP)
    data["findings"][0]["id"] = "ML-OTHER@uploads-db"
    with pytest.raises(InputError, match="does not match its threat"):
        load_register_json(json.dumps(data))
