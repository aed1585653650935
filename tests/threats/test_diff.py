"""Register diff: new, fixed, changed and unchanged findings, from registers or their JSON data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelward.core.errors import InputError
from modelward.system.loader import parse_system
from modelward.threats.catalog import load_catalog
from modelward.threats.diff import FindingState, diff_registers, finding_states
from modelward.threats.register import build_register

BEFORE = """\
name: diff
boundaries:
  - {id: internet, trust: untrusted}
  - {id: cloud, trust: internal}
data:
  - {id: photos, classification: confidential, origin: user-supplied}
elements:
  - {id: user, type: end-user, boundary: internet}
  - {id: api, type: api, boundary: cloud}
  - {id: db, type: database, boundary: cloud}
flows:
  - {id: upload, from: user, to: api, data: [photos], protocol: http}
  - {id: save, from: api, to: db, data: [photos]}
"""

CATALOG = load_catalog(packs=["stride"])


def data(*items: dict[str, Any]) -> dict[str, Any]:
    return {"findings": list(items)}


def test_diff_of_json_data_groups_by_id() -> None:
    old = data(
        {"id": "A@x", "severity": "high", "status": "open"},
        {"id": "B@x", "severity": "low", "status": "open"},
        {"id": "C@x", "severity": "medium", "status": "open"},
        {"id": "D@x", "severity": "medium", "status": "open"},
    )
    new = data(
        {"id": "A@x", "severity": "high", "status": "open"},
        {"id": "B@x", "severity": "critical", "status": "open"},
        {"id": "C@x", "severity": "medium", "status": "mitigated"},
        {"id": "E@x", "severity": "low", "status": "open", "threat": {"title": "Eek"}},
    )
    diff = diff_registers(old, new)
    assert [s.id for s in diff.new] == ["E@x"] and diff.new[0].title == "Eek"
    assert [s.id for s in diff.fixed] == ["D@x"]
    assert [c.id for c in diff.changed] == ["B@x", "C@x"]  # critical first
    assert diff.changed[0].describe() == "severity low → critical"
    assert diff.changed[1].describe() == "status open → mitigated"
    assert diff.changed[1].status_changed and not diff.changed[1].severity_changed
    assert [s.id for s in diff.unchanged] == ["A@x"]
    assert diff.has_changes
    assert diff.counts() == {"new": 1, "fixed": 1, "changed": 2, "unchanged": 1}
    assert json.loads(json.dumps(diff.to_data()))["changed"][0]["after"]["severity"] == "critical"


def test_identical_registers_have_no_changes() -> None:
    register = build_register(parse_system(BEFORE), CATALOG)
    diff = diff_registers(register, register)
    assert not diff.has_changes
    assert len(diff.unchanged) == len(register.findings)


def test_diff_of_two_real_registers() -> None:
    before = build_register(parse_system(BEFORE), CATALOG)
    fixed = BEFORE.replace("protocol: http}", "protocol: https}").replace(
        "  - {id: save, from: api, to: db, data: [photos]}\n", ""
    )
    after = build_register(parse_system(fixed + "  - {id: save2, from: api, to: db, data: [photos]}\n"), CATALOG)
    diff = diff_registers(before, after)
    changed = {c.id: c for c in diff.changed}
    assert changed["STRIDE-I-FLOW@user@upload"].describe() == "status open → mitigated"
    assert "STRIDE-I-FLOW@api@save2" in {s.id for s in diff.new}
    assert "STRIDE-I-FLOW@api@save" in {s.id for s in diff.fixed}


def test_register_against_its_json_form() -> None:
    register = build_register(parse_system(BEFORE), CATALOG)
    exported = {
        "register": {
            "findings": [
                {"id": f.id, "severity": f.severity.value, "status": f.status.value, "title": f.threat.title}
                for f in register.findings
            ]
        }
    }
    diff = diff_registers(json.loads(json.dumps(exported)), register)
    assert not diff.has_changes


def test_finding_states_accept_lists_and_states() -> None:
    states = finding_states([FindingState("A@x", "low", "open"), {"id": "B@x"}])
    assert states["B@x"] == FindingState("B@x", None, None, None)
    assert states["A@x"].severity_rank == 1
    assert FindingState("Z@x", "bogus", None).severity_rank == -1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"nothing": []}, "expected a 'findings' list"),
        ({"findings": "A@x"}, "'findings' must be a list"),
        (data({"severity": "low"}), "finding 0 has no 'id'"),
        (data("A@x"), "finding 0 has no 'id'"),
    ],
)
def test_malformed_register_data_is_an_input_error(bad: Any, message: str) -> None:
    with pytest.raises(InputError, match=message):
        diff_registers(bad, data())
