"""The model linter flags incomplete descriptions with stable codes and document paths."""

from __future__ import annotations

from modelward.system.lint import LintLevel, lint_system
from modelward.system.loader import parse_system
from modelward.system.model import Element, Flow, System
from modelward.system.vocabulary import ElementType

BASE = """\
name: lint me
boundaries:
  - {id: net, trust: untrusted}
  - {id: empty}
data:
  - {id: faces, personal: true}
  - {id: spare, classification: public}
  - {id: logs, classification: internal}
elements:
  - {id: user, type: end-user, boundary: net}
  - {id: db, type: database, data: [faces]}
  - {id: clf, type: model, boundary: net}
  - {id: lonely, type: service, boundary: net}
flows:
  - {from: user, to: db, data: [logs]}
  - {from: db, to: clf}
requirements:
  - {id: r1, check: design.nope}
"""


def codes() -> dict[str, list[str]]:
    messages = lint_system(parse_system(BASE), known_checks={"design.safe_model_artifacts"})
    found: dict[str, list[str]] = {}
    for message in messages:
        found.setdefault(message.code, []).append(message.path_text)
    return found


def test_each_rule_fires_where_it_should() -> None:
    found = codes()
    assert found["MW002"] == ["elements[3]"]  # lonely has no flows
    assert found["MW003"] == ["data[0]"] and found["MW004"] == ["data[0]"] and found["MW005"] == ["data[0]"]
    assert found["MW006"] == ["data[0]"]  # faces has no classification
    assert found["MW007"] == ["data[1]"]  # spare is never used
    assert found["MW008"] == ["elements[1]"]  # db is in no boundary
    assert found["MW009"] == ["boundaries[1]"]
    assert found["MW010"] == ["requirements[0].check"]
    assert found["MW011"] == ["elements[2]"]
    assert found["MW012"] == ["flows[1]"]
    assert found["MW013"] == ["flows[0]"]  # user straight into a database


def test_unknown_check_is_an_error_and_the_rest_warnings() -> None:
    messages = lint_system(parse_system(BASE), known_checks=set())
    errors = [m for m in messages if m.level is LintLevel.ERROR]
    assert [m.code for m in errors] == ["MW010"]


def test_complete_system_is_clean() -> None:
    clean = parse_system(
        """\
name: clean
data:
  - {id: d, classification: internal}
elements:
  - {id: a, type: api}
  - {id: b, type: database}
flows:
  - {from: a, to: b, data: [d]}
"""
    )
    assert lint_system(clean, known_checks=set()) == []


def test_python_built_system_with_broken_reference_is_reported() -> None:
    broken = System.model_construct(
        name="x",
        boundaries=[],
        data=[],
        elements=[Element(id="a", type=ElementType.API)],
        flows=[Flow(source="a", target="ghost")],
        requirements=[],
    )
    messages = lint_system(broken)
    assert any(m.code == "MW001" and "ghost" in m.message for m in messages)
