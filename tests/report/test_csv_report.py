"""CSV for ticketing: one quoted row per finding, formula injection neutralised."""

from __future__ import annotations

import csv
import io

import pytest
from conftest import make_register

from modelward.report.csv_report import COLUMNS, neutralise, render_csv


def _parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_one_row_per_finding_with_header() -> None:
    register = make_register()
    text = render_csv(register)
    rows = _parse(text)
    assert len(rows) == len(register.findings)
    assert tuple(rows[0]) == COLUMNS
    assert rows[0]["id"] == "ML-EVASION-WHITEBOX@moderation-model"  # most severe first
    assert rows[0]["atlas"] == "AML.T0043.000; AML.T0015"
    assert text.startswith('"id","threat","title"')
    assert "\r\n" in text


def test_triage_columns_and_verification() -> None:
    rows = {row["id"]: row for row in _parse(render_csv(make_register()))}
    accepted = rows["LINDDUN-DD-STORE@uploads-db"]
    assert (accepted["ticket"], accepted["review_by"], accepted["status"]) == ("SEC-1", "2027-01-31", "accepted")
    assert rows["STRIDE-I-FLOW@user@user-to-upload-api"]["verified"] == "true"
    assert rows["ML-MEMBERSHIP-INFERENCE@moderation-model"]["verified"] == "false"
    assert rows["STRIDE-D-PROCESS@upload-api"]["verified"] == ""


def test_formula_cells_are_neutralised() -> None:
    rows = {row["id"]: row for row in _parse(render_csv(make_register()))}
    accepted = rows["LINDDUN-DD-STORE@uploads-db"]
    assert accepted["justification"] == '\'=HYPERLINK("http://evil.example","click")'
    assert accepted["owner"] == "'@alice"
    assert rows["STRIDE-S-PROCESS@upload-api"]["justification"] == "'-OAuth2 is enforced at the gateway"
    for row in rows.values():
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", value


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\nx", "\uff1dcmd", "\uff20x"])
def test_neutralise_prefixes_dangerous_starts(text: str) -> None:
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("text", ["", "plain", "a=b", "1-2", "'quoted", " =spaced? no: leading space is text"])
def test_neutralise_leaves_other_cells_alone(text: str) -> None:
    assert neutralise(text) == text


def test_quoting_survives_commas_quotes_and_newlines() -> None:
    register = make_register()
    register.findings[0].triage = {"justification": 'line one, "two"\nline three', "owner": "bob"}
    rows = {row["id"]: row for row in _parse(render_csv(register))}
    assert rows["ML-EVASION-WHITEBOX@moderation-model"]["justification"] == 'line one, "two"\nline three'


def test_empty_register_is_just_the_header() -> None:
    assert render_csv(make_register([])).count("\r\n") == 1
