"""The condition language: every predicate holds and fails with reasons; every bad condition is a located error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelward.core.errors import CatalogError
from modelward.core.yamlio import parse_yaml
from modelward.system.graph import SystemGraph
from modelward.system.loader import parse_system
from modelward.threats.conditions import (
    CONDITION_KEYS,
    Condition,
    Evaluator,
    Outcome,
    SubjectKind,
    parse_condition,
)

SYSTEM = """\
name: conditions
boundaries:
  - {id: internet, trust: untrusted}
  - {id: cloud, trust: internal}
  - {id: vpc, parent: cloud}
  - {id: ml, parent: cloud, trust: privileged}
data:
  - {id: photos, classification: confidential, personal: true, data_subjects: 2000000, origin: user-supplied,
     format: images, purpose: hosting}
  - {id: reports, personal: true, origin: user-supplied, format: events, purpose: abuse, retention: 2y}
  - {id: scores, classification: public, origin: generated}
  - {id: secrets, credentials: true, classification: restricted}
  - {id: audit, format: logs}
elements:
  - {id: user, type: end-user, boundary: internet}
  - id: api
    type: api
    boundary: cloud
    authentication: oauth2
    rate_limit: 60/minute
    controls: [rate-limiting, input-validation]
    logging: central
  - {id: svc, type: service, boundary: vpc, authentication: none, data: [secrets]}
  - id: clf
    type: model
    boundary: vpc
    controls: [adversarial-training]
    model: {outputs: scores, trained_on: [photos, reports]}
  - id: bot
    type: llm
    boundary: vpc
    model: {outputs: text}
    llm: {untrusted_input: true, tools: [shell, email], system_prompt: true}
  - {id: shell, type: tool, boundary: vpc}
  - {id: logs, type: log-store, boundary: ml, data: [audit], encryption_at_rest: true}
  - {id: pipeline, type: training-pipeline, boundary: ml}
flows:
  - {id: upload, from: user, to: api, data: [photos], protocol: https}
  - {id: report, from: user, to: api, data: [reports], protocol: http}
  - {id: screen, from: api, to: svc, data: [photos], authenticated: true, controls: [size-limits]}
  - {id: classify, from: svc, to: clf, data: [photos]}
  - {id: verdict, from: clf, to: svc, data: [scores]}
  - {id: ask, from: svc, to: bot, data: [photos]}
  - {id: run, from: bot, to: shell}
  - {id: log, from: svc, to: logs, data: [audit], encrypted: true}
  - {id: train, from: pipeline, to: clf, data: [reports]}
"""


@pytest.fixture(scope="module")
def ev() -> Evaluator:
    return Evaluator(SystemGraph(parse_system(SYSTEM)))


def on(ev: Evaluator, raw: Any, element: str) -> Outcome:
    return ev.element(parse_condition(raw, "element"), element)


def on_flow(ev: Evaluator, raw: Any, flow: str) -> Outcome:
    return ev.flow(parse_condition(raw, "flow"), flow)


def error(raw: Any, subject: SubjectKind = "element") -> CatalogError:
    with pytest.raises(CatalogError) as info:
        parse_condition(raw, subject)
    return info.value


# --- combinators ----------------------------------------------------------------------


def test_all_collects_reasons_of_every_item_or_of_the_failures(ev: Evaluator) -> None:
    holds, reasons = on(ev, {"all": [{"type": "model"}, {"control": "adversarial-training"}]}, "clf")
    assert holds and reasons == ["type is 'model'", "declares control 'adversarial-training'"]
    holds, reasons = on(ev, {"all": [{"type": "model"}, {"control": "waf"}, {"encrypted": True}]}, "clf")
    assert not holds and reasons == ["no control 'waf'", "does not declare encryption at rest"]


def test_any_stops_at_the_first_success_and_lists_every_failure(ev: Evaluator) -> None:
    holds, reasons = on(ev, {"any": [{"control": "waf"}, {"type": "model"}, {"type": "llm"}]}, "clf")
    assert holds and reasons == ["type is 'model'"]
    holds, reasons = on(ev, {"any": [{"control": "waf"}, {"control": "mfa"}]}, "clf")
    assert not holds and reasons == ["no control 'waf'", "no control 'mfa'"]


def test_not_inverts_and_keeps_the_facts(ev: Evaluator) -> None:
    holds, reasons = on(ev, {"not": {"control": "waf"}}, "clf")
    assert holds and reasons == ["no control 'waf'"]
    assert not on(ev, {"not": {"type": "model"}}, "clf").holds


# --- the subject ----------------------------------------------------------------------


def test_type_and_kind(ev: Evaluator) -> None:
    assert on(ev, {"type": ["model", "llm"]}, "bot") == Outcome(True, ["type is 'llm'"])
    holds, reasons = on(ev, {"type": "model"}, "svc")
    assert not holds and reasons == ["type is 'service', not one of: model"]
    assert on(ev, {"kind": "process"}, "clf").reasons == ["is a process"]
    assert not on(ev, {"kind": ["data-store"]}, "clf").holds
    assert on_flow(ev, {"kind": "data-flow"}, "upload").holds
    assert not ev.flow(parse_condition({"type": "model"}, "any"), "upload").holds


def test_attr_operators(ev: Evaluator) -> None:
    assert on(ev, {"attr": {"path": "model.outputs", "in": ["scores", "logits"]}}, "clf") == Outcome(
        True, ["model.outputs is 'scores'"]
    )
    holds, reasons = on(ev, {"attr": {"path": "model.outputs", "in": ["scores", "logits"]}}, "bot")
    assert not holds and reasons == ["model.outputs is 'text', not one of: logits, scores"]
    assert on(ev, {"attr": {"path": "model.outputs", "equals": "scores"}}, "clf").holds
    assert on(ev, {"attr": {"path": "model.outputs", "equals": "scores"}}, "svc").reasons == [
        "model.outputs is not set"
    ]
    assert on(ev, {"attr": {"path": "rate_limit", "is_set": True}}, "api").reasons == ["rate_limit is '60/minute'"]
    assert on(ev, {"attr": {"path": "rate_limit", "is_set": False}}, "svc").holds
    assert on(ev, {"attr": {"path": "llm.untrusted_input", "truthy": True}}, "bot").holds
    assert on(ev, {"attr": {"path": "llm.tools", "truthy": False}}, "clf").holds
    assert on(ev, {"attr": {"path": "llm.tools", "contains": "shell"}}, "bot").reasons == ["llm.tools contains 'shell'"]
    holds, reasons = on(ev, {"attr": {"path": "llm.tools", "contains": "browser"}}, "bot")
    assert not holds and reasons == ["llm.tools does not contain 'browser' (is [shell, email])"]
    assert on(ev, {"attr": {"path": "controls", "contains": "rate-limiting"}}, "api").holds
    assert on(ev, {"attr": {"path": "trust", "lte": "internal"}}, "clf").reasons == ["trust is not set"]
    assert on(ev, {"attr": {"path": "encryption_at_rest", "equals": True}}, "logs").holds
    assert on(ev, {"attr": {"path": "authentication", "is_set": True}}, "svc").holds  # 'none' is declared


def test_attr_on_flows_with_aliases(ev: Evaluator) -> None:
    assert on_flow(ev, {"attr": {"path": "from", "equals": "user"}}, "upload").holds
    assert on_flow(ev, {"attr": {"path": "protocol", "contains": "http"}}, "report").holds
    assert on_flow(ev, {"attr": {"path": "authenticated", "equals": True}}, "screen").holds


def test_controls_on_elements_and_flows(ev: Evaluator) -> None:
    assert on(ev, {"control": "rate-limiting"}, "api").reasons == ["declares control 'rate-limiting'"]
    assert on(ev, {"controls_any": ["waf", "input-validation"]}, "api").reasons == [
        "declares control 'input-validation'"
    ]
    holds, reasons = on(ev, {"controls_any": ["adversarial-training", "input-sanitization"]}, "svc")
    assert not holds and reasons == ["no control among: adversarial-training, input-sanitization"]
    assert on_flow(ev, {"control": "size-limits"}, "screen").reasons == ["flow declares control 'size-limits'"]
    assert on_flow(ev, {"control": "rate-limiting"}, "upload").reasons == [
        "target 'api' declares control 'rate-limiting'"
    ]
    assert on_flow(ev, {"control": "waf"}, "classify").reasons == ["no control 'waf' on the flow or its target 'clf'"]


def test_authenticated(ev: Evaluator) -> None:
    assert on(ev, {"authenticated": True}, "api").reasons == ["authenticates callers (oauth2)"]
    assert on(ev, {"authenticated": False}, "svc").reasons == ["authentication is 'none'"]
    assert on(ev, {"authenticated": False}, "clf").reasons == ["authentication is not declared"]
    assert on_flow(ev, {"authenticated": True}, "screen").reasons == ["flow is authenticated"]
    assert on_flow(ev, {"authenticated": True}, "upload").reasons == ["target 'api' authenticates callers (oauth2)"]
    holds, reasons = on_flow(ev, {"authenticated": True}, "classify")
    assert not holds and reasons == ["flow is not authenticated and target 'clf' does not authenticate callers"]


def test_encrypted(ev: Evaluator) -> None:
    assert on_flow(ev, {"encrypted": True}, "upload").reasons == ["flow uses https"]
    assert on_flow(ev, {"encrypted": True}, "log").reasons == ["flow is encrypted"]
    assert on_flow(ev, {"encrypted": False}, "report").reasons == ["flow is not encrypted (protocol http)"]
    assert on(ev, {"encrypted": True}, "logs").reasons == ["encrypts data at rest"]


def test_trust(ev: Evaluator) -> None:
    assert on(ev, {"trust": {"at_most": "untrusted"}}, "user").reasons == ["trust is 'untrusted'"]
    holds, reasons = on(ev, {"trust": {"at_most": "partner"}}, "clf")
    assert not holds and reasons == ["trust is 'internal', not at most partner"]
    assert on(ev, {"trust": {"at_least": "privileged"}}, "pipeline").holds
    assert on_flow(ev, {"trust": {"at_most": "untrusted"}}, "upload").reasons == ["flow trust is 'untrusted'"]


def test_in_boundary(ev: Evaluator) -> None:
    assert on(ev, {"in_boundary": "cloud"}, "clf").reasons == ["sits in boundary 'cloud'"]
    assert not on(ev, {"in_boundary": "ml"}, "clf").holds
    assert on(ev, {"in_boundary": {"trust_at_most": "untrusted"}}, "user").reasons == [
        "sits in boundary 'internet' (trust untrusted)"
    ]
    assert on(ev, {"in_boundary": {"trust_at_least": "privileged"}}, "logs").holds
    assert ev.flow(parse_condition({"in_boundary": "vpc"}, "flow"), "classify").holds
    assert not ev.flow(parse_condition({"in_boundary": "vpc"}, "flow"), "screen").holds


# --- data -----------------------------------------------------------------------------


def test_data_matches_element_and_flow_data(ev: Evaluator) -> None:
    assert on(ev, {"data": {"personal": True}}, "clf").reasons == ["handles 'photos' (personal)"]
    assert on(ev, {"data": {"credentials": True}}, "svc").reasons == ["handles 'secrets' (credentials)"]
    assert on(ev, {"data": {"format": "logs"}}, "logs").holds
    assert on_flow(ev, {"data": {"classification_at_least": "confidential"}}, "upload").reasons == [
        "carries 'photos' (classification confidential)"
    ]
    holds, reasons = on_flow(ev, {"data": {"classification_at_least": "internal"}}, "verdict")
    assert not holds and reasons == ["carries no data that is: classification at least internal"]
    assert on_flow(ev, {"data": {}}, "run").reasons == ["carries no declared data"]


def test_unclassified_data_counts_as_internal(ev: Evaluator) -> None:
    outcome = on_flow(ev, {"data": {"classification_at_least": "internal"}}, "report")
    assert outcome == Outcome(True, ["carries 'reports' (classification internal (unclassified))"])
    assert not on_flow(ev, {"data": {"classification_at_most": "public"}}, "report").holds


def test_data_spec_fields(ev: Evaluator) -> None:
    spec = {
        "personal": True,
        "origin_in": ["user-supplied"],
        "trust_at_most": "untrusted",
        "data_subjects_at_least": 1000,
        "format": ["images", "text"],
    }
    outcome = on_flow(ev, {"data": spec}, "upload")
    assert outcome.holds
    assert outcome.reasons == [
        "carries 'photos' (personal, origin user-supplied, trust untrusted, format images, 2,000,000 data subjects)"
    ]
    assert on_flow(ev, {"data": {"personal": True, "retention_declared": False}}, "upload").holds
    assert not on_flow(ev, {"data": {"personal": True, "retention_declared": False}}, "report").holds
    assert on_flow(ev, {"data": {"purpose_declared": True, "retention_declared": True}}, "report").holds
    assert not on_flow(ev, {"data": {"special_category": True}}, "upload").holds


def test_training_data(ev: Evaluator) -> None:
    assert on(ev, {"training_data": {"origin_in": ["user-supplied"]}}, "clf").reasons == [
        "trained on 'photos' (origin user-supplied)"
    ]
    assert on(ev, {"training_data": {}}, "bot").reasons == ["trained on no declared data"]


def test_training_source(ev: Evaluator) -> None:
    holds, reasons = on(ev, {"training_source": {"trust": {"at_most": "untrusted"}}}, "clf")
    assert holds and reasons == ["training data comes from 'user': trust is 'untrusted'"]
    holds, reasons = on(ev, {"training_source": {"type": "dataset"}}, "clf")
    assert not holds and reasons == ["no training source matches (type in [dataset])"]
    assert on(ev, {"training_source": {"type": "dataset"}}, "bot").reasons == ["no element supplies its training data"]


# --- the graph ------------------------------------------------------------------------


def test_exposed_and_reachable(ev: Evaluator) -> None:
    assert on(ev, {"exposed_to_untrusted": True}, "api").reasons == ["receives directly from untrusted 'user'"]
    assert not on(ev, {"exposed_to_untrusted": True}, "svc").holds
    assert on(ev, {"reachable_from_untrusted": True}, "clf").reasons == [
        "reachable from untrusted 'user' via user → api → svc → clf"
    ]
    holds, reasons = on(ev, {"reachable_from_untrusted": True}, "pipeline")
    assert not holds and reasons == ["not reachable from any untrusted element"]
    assert on(ev, {"reachable_from_untrusted": False}, "pipeline").holds
    assert on_flow(ev, {"reachable_from_untrusted": True}, "classify").reasons == [
        "reachable from untrusted 'user' via user → api → svc → clf"
    ]
    assert on_flow(ev, {"exposed_to_untrusted": True}, "upload").reasons == ["comes from untrusted 'user'"]


def test_reachable_avoiding_a_guard(ev: Evaluator) -> None:
    guarded = {"reachable_from_untrusted": {"avoiding": {"control": "rate-limiting"}}}
    holds, reasons = on(ev, guarded, "clf")
    assert not holds
    assert reasons == ["every chain from an untrusted element passes an element where control 'rate-limiting'"]
    assert on(ev, {"not": guarded}, "clf").holds
    assert not on(ev, guarded, "api").holds  # the subject itself is a guard
    open_path = {"reachable_from_untrusted": {"avoiding": {"control": "waf"}}}
    assert on(ev, open_path, "clf").reasons == [
        "reachable from untrusted 'user' via user → api → svc → clf, avoiding control 'waf'"
    ]
    assert on(ev, guarded, "pipeline").reasons == ["not reachable from any untrusted element"]


def test_crosses_boundary(ev: Evaluator) -> None:
    assert on_flow(ev, {"crosses_boundary": True}, "upload").reasons == [
        "crosses a trust boundary ('internet' → 'cloud')"
    ]
    assert on_flow(ev, {"crosses_boundary": False}, "classify").reasons == ["flow stays within 'vpc'"]
    assert on(ev, {"crosses_boundary": True}, "svc").reasons == [
        "incoming flow 'screen' crosses a trust boundary ('cloud' → 'vpc')"
    ]
    assert on(ev, {"crosses_boundary": False}, "shell").reasons == ["no incoming flow crosses a trust boundary"]


def test_source_and_target(ev: Evaluator) -> None:
    assert on_flow(ev, {"source": {"trust": {"at_most": "untrusted"}}}, "upload").reasons == [
        "source 'user': trust is 'untrusted'"
    ]
    holds, reasons = on_flow(ev, {"target": {"authenticated": True}}, "classify")
    assert not holds and reasons == ["target 'clf': authentication is not declared"]


def test_receives_from_and_sends_to(ev: Evaluator) -> None:
    assert on(ev, {"receives_from": {"type": "end-user"}}, "api").reasons == [
        "receives from 'user': type is 'end-user'"
    ]
    holds, reasons = on(ev, {"receives_from": {"type": "end-user"}}, "svc")
    assert not holds and reasons == ["no direct caller matches (type in [end-user])"]
    assert on(ev, {"sends_to": {"type": "tool"}}, "bot").holds
    assert on(ev, {"sends_to": {"type": "tool"}}, "shell").reasons == ["has no direct receivers"]


def test_upstream_and_downstream(ev: Evaluator) -> None:
    assert on(ev, {"downstream": {"type": "tool"}}, "api").reasons == [
        "downstream 'shell' (type is 'tool') via api → svc → bot → shell"
    ]
    assert on(ev, {"upstream": {"type": "end-user"}}, "bot").reasons == [
        "upstream 'user' (type is 'end-user') via user → api → svc → bot"
    ]
    holds, reasons = on(ev, {"upstream": {"type": "tool"}}, "bot")
    assert not holds and reasons == ["nothing upstream matches (type in [tool])"]
    assert on_flow(ev, {"downstream": {"type": "tool"}}, "ask").reasons == [
        "downstream 'shell' (type is 'tool') via bot → shell"
    ]
    assert on_flow(ev, {"downstream": {"type": "tool"}}, "run").reasons == ["target 'shell': type is 'tool'"]


def test_incoming_and_outgoing_flows(ev: Evaluator) -> None:
    assert on(ev, {"outgoing": {"data": {"personal": True}}}, "user").reasons == [
        "outgoing flow 'upload': carries 'photos' (personal)"
    ]
    assert on(ev, {"not": {"incoming": {"encrypted": False}}}, "clf").holds is False
    holds, reasons = on(ev, {"not": {"outgoing": {"authenticated": False}}}, "api")
    assert holds and reasons == ["no outgoing flow matches (not authenticated)"]
    assert on(ev, {"incoming": {"kind": "data-flow"}}, "user").reasons == ["has no incoming flows"]


def test_nested_element_results_are_memoised(ev: Evaluator) -> None:
    inner = parse_condition({"type": "end-user"}, "element")
    first, witnesses = ev.along(inner, "up")
    again, _ = ev.along(inner, "up")
    assert first is again  # one search per condition, however many subjects ask
    assert set(witnesses) == {"user"}
    assert ev.on_element(inner, "user") is ev.on_element(inner, "user")


def test_describe_reads_as_text() -> None:
    condition = parse_condition(
        {"all": [{"type": ["model"]}, {"any": [{"control": "waf"}, {"not": {"authenticated": True}}]}]}, "element"
    )
    assert condition.describe() == "type in [model] and (control 'waf' or not authenticated)"


# --- parse errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"contorl": "waf"}, "unknown condition 'contorl' (did you mean 'control'?)"),
        ({"type": "model", "kind": "process"}, "exactly one key, got 2 (type, kind)"),
        ({}, "exactly one key, got 0"),
        (["type"], "must be a mapping with one key, got a list"),
        ({"type": "modle"}, "unknown element type 'modle' (did you mean 'model'?)"),
        ({"kind": ["flow"]}, "unknown DFD kind 'flow'"),
        ({"control": "rate-limit"}, "unknown control 'rate-limit' (did you mean 'rate-limiting'?)"),
        ({"controls_any": []}, "expected a non-empty list, got an empty list"),
        ({"all": {"type": "model"}}, "expected a non-empty list, got a mapping"),
        ({"authenticated": "yes"}, "expected true or false, got 'yes'"),
        ({"attr": {"path": "model.outptus", "equals": "scores"}}, "unknown field 'outptus' in 'model.outptus'"),
        ({"attr": {"path": "model.outputs", "equals": "probabilities"}}, "unknown value for model.outputs"),
        ({"attr": {"path": "model.outputs", "matches": "x"}}, "unknown attr field 'matches'"),
        ({"attr": {"path": "model.outputs"}}, "exactly one operator"),
        ({"attr": {"path": "model.outputs", "equals": "scores", "in": ["logits"]}}, "exactly one operator"),
        ({"attr": {"equals": "scores"}}, "attr needs a 'path'"),
        ({"attr": {"path": "name", "equals": 3}}, "name is text, got 3"),
        ({"attr": {"path": "name", "gte": "x"}}, "'gte' needs a number or an ordered value"),
        ({"attr": {"path": "tags", "in": ["a"]}}, "tags is a list: use contains, truthy or is_set"),
        ({"attr": {"path": "model", "equals": "x"}}, "model is a group of fields"),
        ({"attr": {"path": "id.x", "is_set": True}}, "'id' has no fields"),
        ({"attr": {"path": "rate_limit", "is_set": "yes"}}, "expected true or false"),
        ({"trust": {"at_most": "low"}}, "unknown trust level 'low'"),
        ({"trust": {}}, "trust needs at_most and/or at_least"),
        ({"data": {"personel": True}}, "unknown data field 'personel' (did you mean 'personal'?)"),
        ({"data": {"classification_at_least": "secret"}}, "unknown classification 'secret'"),
        ({"data": {"origin_in": ["internet"]}}, "unknown origin 'internet'"),
        ({"data": {"data_subjects_at_least": -1}}, "expected a whole number of people"),
        ({"data": {"format": [3]}}, "a data format is a name"),
        ({"source": {"type": "api"}}, "'source' applies only to data flows"),
        ({"in_boundary": {"trust": "untrusted"}}, "unknown in_boundary field 'trust'"),
        ({"in_boundary": ""}, "in_boundary needs a boundary id"),
        ({"reachable_from_untrusted": {"via": {}}}, "unknown reachable_from_untrusted field 'via'"),
        ({"reachable_from_untrusted": {}}, "takes true, false or {avoiding: <condition>}"),
    ],
)
def test_bad_conditions_are_refused(raw: Any, message: str) -> None:
    assert message in error(raw).message


def test_flow_only_and_element_only_keys() -> None:
    assert "applies only to elements" in error({"receives_from": {"type": "api"}}, "flow").message
    assert "applies only to elements" in error({"training_data": {}}, "flow").message
    assert "applies only to elements" in error({"incoming": {"encrypted": True}}, "flow").message
    # Nested subjects switch: source is an element, incoming is a flow.
    assert "applies only to data flows" in error({"receives_from": {"source": {"type": "api"}}}, "element").message
    assert isinstance(parse_condition({"incoming": {"source": {"type": "api"}}}, "element"), Condition)
    # A threat on both elements and flows may use either, with the path valid on one model.
    assert isinstance(parse_condition({"attr": {"path": "protocol", "equals": "http"}}, "any"), Condition)
    assert "unknown field 'protocol'" in error({"attr": {"path": "protocol", "equals": "http"}}, "element").message


def test_attr_path_valid_for_one_subject_reads_unset_on_the_other(ev: Evaluator) -> None:
    condition = parse_condition({"attr": {"path": "protocol", "is_set": True}}, "any")
    assert ev.flow(condition, "upload").holds
    assert ev.element(condition, "api").reasons == ["protocol is not set"]


def test_errors_name_the_field_and_line() -> None:
    text = """\
applies_when:
  all:
    - type: [model]
    - attr:
        path: model.outputs
        in: [scores, probits]
"""
    document = parse_yaml(text, "pack.yaml")
    with pytest.raises(CatalogError) as info:
        parse_condition(document.data["applies_when"], "element", document=document, loc=("applies_when",))
    assert info.value.file == "pack.yaml"
    assert info.value.line == 6
    assert info.value.field == "applies_when.all[1].attr.in[1]"
    assert str(info.value).startswith("pack.yaml:6: applies_when.all[1].attr.in[1]: unknown value for model.outputs")


def test_every_documented_key_parses() -> None:
    samples: dict[str, Any] = {
        "all": [{"type": "model"}],
        "any": [{"type": "model"}],
        "not": {"type": "model"},
        "type": "model",
        "kind": "process",
        "attr": {"path": "model.outputs", "equals": "scores"},
        "control": "waf",
        "controls_any": ["waf"],
        "authenticated": True,
        "encrypted": True,
        "trust": {"at_most": "untrusted"},
        "data": {"personal": True},
        "training_data": {"personal": True},
        "training_source": {"type": "end-user"},
        "exposed_to_untrusted": True,
        "reachable_from_untrusted": True,
        "crosses_boundary": True,
        "source": {"type": "api"},
        "target": {"type": "api"},
        "receives_from": {"type": "api"},
        "sends_to": {"type": "api"},
        "upstream": {"type": "api"},
        "downstream": {"type": "api"},
        "incoming": {"encrypted": True},
        "outgoing": {"encrypted": True},
        "in_boundary": "cloud",
    }
    assert set(samples) == set(CONDITION_KEYS)
    for key, value in samples.items():
        assert isinstance(parse_condition({key: value}, "any"), Condition), key


# --- robustness -----------------------------------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from([*CONDITION_KEYS, "model", "x"]))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from([*CONDITION_KEYS, "path", "equals", "in", "at_most", "personal"]), inner, max_size=2
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_values, st.sampled_from(["element", "flow", "any"]))
def test_parser_never_fails_with_anything_but_a_catalog_error(raw: Any, subject: SubjectKind) -> None:
    try:
        condition = parse_condition(raw, subject)
    except CatalogError as exc:
        assert exc.message
    else:
        assert isinstance(condition.describe(), str)
