"""The engine and the register: which findings appear, why, their status, their risk, triage, and speed."""

from __future__ import annotations

import random
import time
from datetime import date

import pytest

from modelward.core.severity import Severity
from modelward.system.graph import SystemGraph
from modelward.system.loader import parse_system
from modelward.system.model import (
    Boundary,
    BusinessImpact,
    DataAsset,
    Element,
    Flow,
    LlmAttributes,
    ModelAttributes,
    System,
)
from modelward.system.vocabulary import LLM_TYPES, MODEL_TYPES, Control, ElementType
from modelward.threats.catalog import Catalog, load_catalog, parse_pack, shipped_catalog
from modelward.threats.engine import apply_catalog, exposure_size, risk_context, run_engine
from modelward.threats.model import Finding, Status
from modelward.threats.register import build_register
from modelward.threats.risk import RiskFactors, privacy_violation_for
from modelward.threats.triage import Triage, parse_triage

SHOP = """\
name: shop
boundaries:
  - {id: internet, trust: untrusted}
  - {id: cloud, trust: internal}
  - {id: vendor, trust: partner}
data:
  - {id: photos, classification: confidential, personal: true, data_subjects: 5000, origin: user-supplied,
     purpose: sharing, retention: 1 year}
  - {id: verdicts, classification: public, origin: generated}
  - {id: events, format: logs}
  - {id: feed, origin: third-party}
elements:
  - {id: user, type: end-user, boundary: internet}
  - {id: api, type: api, boundary: cloud, authentication: oauth2, rate_limit: 60/minute, logging: central}
  - id: clf
    type: model
    boundary: cloud
    model: {outputs: scores, trained_on: [photos]}
  - {id: db, type: database, boundary: cloud, encryption_at_rest: true, controls: [access-control]}
  - {id: audit, type: log-store, boundary: cloud}
  - {id: legacy, type: service, boundary: cloud, in_scope: false}
  - {id: partner, type: data-provider, boundary: vendor}
  - {id: ingest, type: service, boundary: cloud}
  - {id: anon, type: service, boundary: cloud}
  - {id: orphan, type: service, boundary: cloud}
flows:
  - {id: upload, from: user, to: api, data: [photos], protocol: https}
  - {id: classify, from: api, to: clf, data: [photos]}
  - {id: verdict, from: clf, to: api, data: [verdicts]}
  - {id: store, from: api, to: db, data: [photos], protocol: https}
  - {id: log, from: api, to: audit, data: [events]}
  - {id: old, from: legacy, to: db}
  - {id: partner-feed, from: partner, to: ingest, data: [feed]}
  - {id: anon-call, from: user, to: anon}
"""

STRIDE_AND_LINDDUN = load_catalog(packs=["stride", "linddun"])


def findings_of(text: str = SHOP) -> dict[str, Finding]:
    system = parse_system(text)
    return {f.id: f for f in run_engine(system, STRIDE_AND_LINDDUN).findings}


@pytest.fixture(scope="module")
def shop() -> dict[str, Finding]:
    return findings_of()


def test_element_and_flow_finding_ids(shop: dict[str, Finding]) -> None:
    assert "STRIDE-S-ENTITY@user" in shop
    assert "STRIDE-I-FLOW@user@upload" in shop  # THREAT@<source>@<flow>
    finding = shop["STRIDE-I-FLOW@api@classify"]
    assert (finding.element, finding.flow) == ("api", "classify")


def test_reasons_and_derived_status(shop: dict[str, Finding]) -> None:
    upload = shop["STRIDE-I-FLOW@user@upload"]
    assert upload.status is Status.MITIGATED
    assert upload.applies_because == [
        "carries 'photos' (classification confidential)",
        "source 'user': trust is 'untrusted'",
    ]
    assert upload.mitigated_because == ["flow uses https"]
    classify = shop["STRIDE-I-FLOW@api@classify"]
    assert classify.status is Status.OPEN
    assert classify.unmitigated_because == ["flow is not encrypted"]
    spoof = shop["STRIDE-S-ENTITY@user"]
    assert spoof.status is Status.OPEN  # one of the user's flows (to anon) is not authenticated
    assert spoof.applies_because == ["sends to 'api': is a process", "type is 'end-user'"]
    assert spoof.unmitigated_because == [
        "outgoing flow 'anon-call': flow is not authenticated and target 'anon' does not authenticate callers"
    ]
    assert "STRIDE-S-ENTITY@partner" in shop and shop["STRIDE-S-ENTITY@partner"].status is Status.OPEN


def test_spoofing_of_an_entity_is_mitigated_when_all_its_flows_are_authenticated() -> None:
    findings = findings_of(
        SHOP.replace(
            "{id: anon, type: service, boundary: cloud}",
            "{id: anon, type: service, boundary: cloud, authentication: mtls}",
        )
    )
    spoof = findings["STRIDE-S-ENTITY@user"]
    assert spoof.status is Status.MITIGATED
    assert spoof.mitigated_because == ["no outgoing flow matches (not authenticated)"]


def test_noise_is_cut(shop: dict[str, Finding]) -> None:
    assert "STRIDE-I-FLOW@clf@verdict" not in shop  # carries only public data
    assert "STRIDE-R-STORE@audit" in shop  # holds logs
    assert "STRIDE-R-STORE@db" not in shop  # holds no logs
    assert "STRIDE-S-PROCESS@clf" not in shop  # its only caller sits in the same boundary
    assert "STRIDE-S-PROCESS@api" in shop  # called across the internet boundary
    assert "STRIDE-D-PROCESS@orphan" not in shop  # nothing reaches it
    assert "LINDDUN-U-ENTITY@user" in shop  # supplies personal data
    assert "LINDDUN-U-ENTITY@partner" not in shop  # supplies no personal data
    assert "LINDDUN-DD-STORE@db" in shop
    assert "LINDDUN-DD-STORE@audit" not in shop


ZONES = """\
name: zones
boundaries:
  - {id: internet, trust: untrusted}
  - {id: cloud, trust: internal}
  - {id: vpc-a, trust: internal, parent: cloud}
  - {id: vpc-b, trust: internal, parent: cloud}
  - {id: ml, trust: privileged, parent: cloud}
data:
  - {id: faces, classification: confidential, personal: true, data_subjects: 200, origin: user-supplied,
     format: images, purpose: screening, retention: 30 days}
  - {id: reports, classification: confidential, personal: true, data_subjects: 200, origin: user-supplied,
     format: events, purpose: abuse handling, retention: 1 year}
elements:
  - {id: user, type: end-user, boundary: internet}
  - {id: hub, type: public-dataset, boundary: internet}
  - {id: api, type: api, boundary: vpc-a, authentication: oauth2, rate_limit: 10/second}
  - {id: scorer, type: service, boundary: vpc-b}
  - {id: plain, type: service, boundary: vpc-b}
  - {id: clf, type: model, boundary: vpc-b, model: {outputs: labels}}
  - {id: trainer, type: training-pipeline, boundary: ml}
flows:
  - {id: upload, from: user, to: api, data: [faces, reports], protocol: https}
  - {id: score, from: api, to: scorer, data: [faces], protocol: grpcs}
  - {id: legacy, from: api, to: plain, data: [faces], protocol: http}
  - {id: classify, from: scorer, to: clf, data: [faces], protocol: grpcs}
  - {id: feed, from: api, to: trainer, data: [reports], protocol: https}
  - {id: download, from: hub, to: trainer, protocol: https}
"""


def test_flow_threats_need_a_trust_change_an_outside_end_or_no_encryption() -> None:
    zones = findings_of(ZONES)
    # Two internal VPCs, encrypted: no tampering, disclosure or flooding in transit to list.
    assert not [fid for fid in zones if fid.startswith("STRIDE-") and fid.endswith("@api@score")]
    # The same zones over plain HTTP: listed, and open.
    assert zones["STRIDE-T-FLOW@api@legacy"].status is Status.OPEN
    assert zones["STRIDE-I-FLOW@api@legacy"].status is Status.OPEN
    # Internal to privileged changes trust: listed, mitigated by TLS.
    assert zones["STRIDE-T-FLOW@api@feed"].status is Status.MITIGATED
    assert zones["STRIDE-I-FLOW@api@feed"].mitigated_because == ["flow uses https"]
    # Only a flow an untrusted actor sends on can be flooded from outside; a download is not such a flow.
    assert [fid for fid in zones if fid.startswith("STRIDE-D-FLOW@")] == ["STRIDE-D-FLOW@user@upload"]
    assert zones["STRIDE-T-FLOW@hub@download"].status is Status.MITIGATED


def test_passive_sources_and_model_components_get_no_generic_process_threats() -> None:
    zones = findings_of(ZONES)
    # A public dataset sends nothing on its own: no spoofing, repudiation or flooding by it.
    assert not [fid for fid in zones if fid.startswith(("STRIDE-S-ENTITY@hub", "STRIDE-R-ENTITY@hub"))]
    assert "STRIDE-D-PROCESS@trainer" not in zones
    spoofed = zones["STRIDE-S-PROCESS@trainer"]  # the api's feed is a caller; the download is not
    assert spoofed.applies_because[0].startswith("incoming flow 'feed'")
    assert not [reason for reason in spoofed.why if "download" in reason]
    # Input manipulation of a model is the ML pack's evasion; the service around it keeps the baseline.
    assert "STRIDE-T-PROCESS@clf" not in zones and "STRIDE-E-PROCESS@clf" not in zones
    assert "STRIDE-T-PROCESS@scorer" in zones and "STRIDE-T-PROCESS@trainer" in zones


def test_denial_of_service_is_listed_where_untrusted_load_enters() -> None:
    guarded = findings_of(ZONES)
    assert guarded["STRIDE-D-PROCESS@api"].status is Status.MITIGATED
    assert "STRIDE-D-PROCESS@scorer" not in guarded  # behind the rate-limited api
    unguarded = findings_of(ZONES.replace(", rate_limit: 10/second", ""))
    assert unguarded["STRIDE-D-PROCESS@api"].status is Status.OPEN
    scorer = unguarded["STRIDE-D-PROCESS@scorer"]
    assert scorer.status is Status.OPEN
    assert scorer.applies_because[0].startswith("reachable from untrusted 'user' via user → api → scorer, avoiding ")


def test_privacy_threats_follow_what_the_element_does_with_personal_data() -> None:
    zones = findings_of(ZONES)
    # The scorer only passes images through; the api handles linkable report events.
    assert "LINDDUN-L-PROCESS@scorer" not in zones and "LINDDUN-I-PROCESS@scorer" not in zones
    assert "LINDDUN-L-PROCESS@api" in zones
    # Transfers inside the organisation are covered at their ends; only the upload from outside is listed.
    flows = {fid.split("@", 1)[1] for fid in zones if fid.startswith("LINDDUN-") and fid.count("@") == 2}
    assert flows == {"user@upload"}
    # Repurposing personal data for training needs a legal basis; consent recorded at collection counts.
    assert zones["LINDDUN-NC-PROCESS@trainer"].status is Status.OPEN
    consent = "rate_limit: 10/second, controls: [consent-management]}"
    consented = findings_of(ZONES.replace("rate_limit: 10/second}", consent))
    trainer = consented["LINDDUN-NC-PROCESS@trainer"]
    assert trainer.status is Status.MITIGATED
    assert trainer.mitigated_because[-1] == "upstream 'api' (declares control 'consent-management') via api → trainer"


def test_no_privacy_findings_without_personal_data() -> None:
    text = SHOP.replace("personal: true, data_subjects: 5000,", "")
    findings = findings_of(text)
    assert findings
    assert not [fid for fid in findings if fid.startswith("LINDDUN-")]


def test_mitigated_by_declared_controls(shop: dict[str, Finding]) -> None:
    assert shop["STRIDE-S-PROCESS@api"].status is Status.MITIGATED
    assert shop["STRIDE-S-PROCESS@api"].mitigated_because == ["authenticates callers (oauth2)"]
    assert shop["STRIDE-R-PROCESS@api"].mitigated_because == ["logging is 'central'"]
    assert shop["STRIDE-D-PROCESS@api"].status is Status.MITIGATED
    # Untrusted load enters at the rate-limited api; clf, reached only through it, gets no finding of its own.
    assert "STRIDE-D-PROCESS@clf" not in shop
    assert shop["STRIDE-D-PROCESS@anon"].status is Status.OPEN
    db = shop["STRIDE-I-STORE@db"]
    assert db.status is Status.MITIGATED
    assert db.mitigated_because == ["encryption_at_rest is true", "declares control 'access-control'"]


def test_out_of_scope_elements_produce_no_findings() -> None:
    result = apply_catalog(parse_system(SHOP), STRIDE_AND_LINDDUN)
    assert "legacy" in result.out_of_scope
    assert not [f for f in result.findings if f.element == "legacy"]
    # The flow from an out-of-scope element into an in-scope one still counts (db is in scope).
    assert "old" not in result.out_of_scope
    assert result.not_applicable > 0


def test_flow_between_two_out_of_scope_elements_is_out_of_scope() -> None:
    text = SHOP.replace("{id: db, type: database, boundary: cloud,", "{id: db, type: database, in_scope: false,")
    result = apply_catalog(parse_system(text), STRIDE_AND_LINDDUN)
    assert {"legacy", "db", "old"} <= set(result.out_of_scope)
    assert not [f for f in result.findings if f.flow == "old"]


# --- risk -----------------------------------------------------------------------------


def test_size_factor_from_exposure() -> None:
    graph = SystemGraph(parse_system(SHOP))
    assert exposure_size(graph, "user")[0] == 9  # the untrusted element itself
    assert exposure_size(graph, "anon")[0] == 9  # reached without authentication
    size, why = exposure_size(graph, "clf")
    assert size == 6 and why.startswith("reachable from untrusted only through authentication via user → api")
    assert exposure_size(graph, "ingest")[0] == 5  # only a partner reaches it
    assert exposure_size(graph, "orphan") == (4, "reachable at most from internal elements")


def test_privacy_violation_from_data_subjects_only_for_disclosure_threats() -> None:
    system = parse_system(SHOP)
    graph = SystemGraph(system)
    findings = {f.id: f for f in run_engine(system, STRIDE_AND_LINDDUN, graph=graph).findings}
    context = risk_context(graph, findings["LINDDUN-DD-STORE@db"])
    assert context.scores["privacy_violation"] == privacy_violation_for(5000)
    assert context.reasons["privacy_violation"] == "personal data about 5,000 people"
    # A tampering threat cannot disclose personal data, whatever the element holds.
    tampering = risk_context(graph, findings["STRIDE-T-PROCESS@api"])
    assert tampering.scores["privacy_violation"] is None
    assert tampering.reasons["privacy_violation"] == "does not apply: the threat discloses no personal data"
    # Baseline threats carry no business estimate: the technical impact is the one used.
    finding = findings["LINDDUN-DD-STORE@db"]
    factors = RiskFactors.from_vector(finding.rating_vector)
    assert factors.financial_damage is None
    assert finding.impact == pytest.approx(factors.rate().technical_impact)


def test_personal_data_without_a_count_leaves_privacy_violation_unknown() -> None:
    system = parse_system(SHOP.replace(" data_subjects: 5000,", ""))
    assert all(a.data_subjects is None for a in system.data if a.personal)
    graph = SystemGraph(system)
    findings = {f.id: f for f in run_engine(system, STRIDE_AND_LINDDUN, graph=graph).findings}
    context = risk_context(graph, findings["LINDDUN-DD-STORE@db"])
    assert context.scores["privacy_violation"] is None
    assert context.reasons["privacy_violation"] == "unknown: personal data without a number of data subjects"
    assert "PV" not in findings["LINDDUN-DD-STORE@db"].rating_vector


BUSINESS_PACK = """\
catalog: biz
version: "1"
threats:
  - id: BIZ-LEAK
    title: Leak of stored records
    description: Records leave the store.
    targets: [data-store]
    stride: [I]
    risk: {SL: 5, M: 5, O: 5, S: 5, ED: 5, EE: 5, A: 5, ID: 5, LC: 7, LI: 1, LAV: 1, LAC: 1, FD: 7, RD: 9, NC: 5}
  - id: BIZ-OUTAGE
    title: Store outage
    description: The store goes down.
    targets: [data-store]
    stride: [D]
    risk: {SL: 5, M: 5, O: 5, S: 5, ED: 5, EE: 5, A: 5, ID: 5, LC: 1, LI: 1, LAV: 7, LAC: 1, FD: 3, RD: 3, NC: 2}
"""


def test_business_impact_per_threat_capped_by_the_system() -> None:
    info, threats = parse_pack(BUSINESS_PACK, "biz.yaml", shipped=False)
    pack = Catalog(threats, [info])
    capped = parse_system(SHOP + "business_impact: {financial_damage: 3, reputation_damage: 5}\n")
    graph = SystemGraph(capped)
    findings = {f.id: f for f in run_engine(capped, pack, graph=graph).findings}
    leak = findings["BIZ-LEAK@db"]
    # FD 7 and RD 9 are capped at the system's 3 and 5; NC 5 stays; PV from 5,000 people.
    assert leak.rating_vector.endswith("FD:3/RD:5/NC:5/PV:7")
    assert leak.impact == pytest.approx((3 + 5 + 5 + 7) / 4)
    assert (
        risk_context(graph, leak).reasons["reputation_damage"]
        == "capped at the system's declared reputation damage (5)"
    )
    outage = findings["BIZ-OUTAGE@db"]
    # An outage discloses nothing: privacy violation does not apply, the business impact is FD, RD, NC.
    assert outage.rating_vector.endswith("FD:3/RD:3/NC:2")
    assert outage.impact == pytest.approx((3 + 3 + 2) / 3)
    # Without caps, the catalog's estimates stand.
    free = {f.id: f for f in run_engine(parse_system(SHOP), pack).findings}
    assert free["BIZ-LEAK@db"].rating_vector.endswith("FD:7/RD:9/NC:5/PV:7")
    audit = findings["BIZ-OUTAGE@audit"]
    assert "PV" not in audit.rating_vector


PINNED_PACK = """\
catalog: pin
version: "1"
threats:
  - id: PIN-SCORES
    title: Model scores read from the store
    description: Scores about the system leave; nothing about people.
    targets: [data-store]
    stride: [I]
    risk: {SL: 5, M: 5, O: 5, S: 5, ED: 5, EE: 5, A: 5, ID: 5, LC: 2, LI: 1, LAV: 1, LAC: 1, FD: 1, RD: 1, NC: 2, PV: 0}
  - id: PIN-RECORDS
    title: Records read from the store
    description: Records about people leave.
    targets: [data-store]
    stride: [I]
    risk: {SL: 5, M: 5, O: 5, S: 5, ED: 5, EE: 5, A: 5, ID: 5, LC: 7, LI: 1, LAV: 1, LAC: 1, FD: 1, RD: 1, NC: 2}
"""


def test_a_disclosure_threat_that_pins_pv_to_zero_discloses_no_personal_data() -> None:
    info, threats = parse_pack(PINNED_PACK, "pin.yaml", shipped=False)
    system = parse_system(SHOP)
    graph = SystemGraph(system)
    findings = {f.id: f for f in run_engine(system, Catalog(threats, [info]), graph=graph).findings}
    pinned = risk_context(graph, findings["PIN-SCORES@db"])
    assert pinned.scores["privacy_violation"] is None
    assert pinned.reasons["privacy_violation"] == "does not apply: the threat discloses no personal data"
    assert findings["PIN-SCORES@db"].rating_vector.endswith("FD:1/RD:1/NC:2")
    # Without the pin, the same disclosure of db (5,000 people's photos) takes PV from the data subjects.
    assert findings["PIN-RECORDS@db"].rating_vector.endswith("FD:1/RD:1/NC:2/PV:7")


def test_rating_matches_the_risk_module() -> None:
    findings = run_engine(parse_system(SHOP), STRIDE_AND_LINDDUN).findings
    assert findings
    for finding in findings:
        rating = RiskFactors.from_vector(finding.rating_vector).rate()
        assert finding.severity is rating.severity
        assert finding.likelihood == pytest.approx(rating.likelihood)
        assert finding.impact == pytest.approx(rating.impact)


# --- register and triage --------------------------------------------------------------

TRIAGE = """\
modelward-triage: 1
findings:
  STRIDE-I-FLOW@api@classify:
    status: accepted
    justification: same host
    owner: alice
    ticket: SEC-1
    review_by: 2027-01-31
  STRIDE-T-FLOW@user@upload:
    status: false-positive
    justification: loopback
    review_by: 2026-01-01
  "STRIDE-D-*@anon":
    status: in-progress
    rating: "S:2/M:1"
  STRIDE-S-ENTITY@gone:
    status: open
"""


def test_register_folds_in_triage() -> None:
    system = parse_system(SHOP)
    register = build_register(system, STRIDE_AND_LINDDUN, Triage(parse_triage(TRIAGE)), today=date(2026, 6, 1))
    by_id = register.by_id()
    accepted = by_id["STRIDE-I-FLOW@api@classify"]
    assert accepted.status is Status.ACCEPTED
    assert accepted.triage == {
        "key": "STRIDE-I-FLOW@api@classify",
        "status": "accepted",
        "derived_status": "open",
        "justification": "same host",
        "owner": "alice",
        "ticket": "SEC-1",
        "review_by": "2027-01-31",
    }
    expired = by_id["STRIDE-T-FLOW@user@upload"]
    assert expired.status is Status.OPEN  # review-by passed: re-opened
    assert expired.triage["expired"] is True and "2026-01-01" in expired.triage["reason"]
    overridden = by_id["STRIDE-D-PROCESS@anon"]
    assert overridden.status is Status.IN_PROGRESS
    assert "/S:2/" in overridden.rating_vector and overridden.rating_vector.startswith("SL:3/M:1/")
    assert register.orphan_triage == ["STRIDE-S-ENTITY@gone"]
    assert register.catalog_version == STRIDE_AND_LINDDUN.version
    assert register.system_name == "shop"
    untriaged = by_id["STRIDE-I-FLOW@user@upload"]
    assert untriaged.status is Status.MITIGATED and untriaged.triage == {}


def test_register_accepts_a_triage_file_and_defaults_to_today() -> None:
    register = build_register(parse_system(SHOP), STRIDE_AND_LINDDUN, parse_triage(TRIAGE))
    assert register.by_id()["STRIDE-I-FLOW@api@classify"].status is Status.ACCEPTED


def test_register_is_sorted_by_severity_then_id() -> None:
    findings = build_register(parse_system(SHOP), STRIDE_AND_LINDDUN).findings
    keys = [(-f.severity.rank, f.id) for f in findings]
    assert keys == sorted(keys)
    assert len({f.severity for f in findings}) > 1


def test_register_is_deterministic() -> None:
    first = build_register(parse_system(SHOP), STRIDE_AND_LINDDUN)
    second = build_register(parse_system(SHOP), STRIDE_AND_LINDDUN)
    assert [(f.id, f.severity, f.status, f.why) for f in first.findings] == [
        (f.id, f.severity, f.status, f.why) for f in second.findings
    ]


# --- scale ----------------------------------------------------------------------------


def big_system(n_elements: int = 2000, n_flows: int = 5000, seed: int = 7) -> System:
    """A random but deterministic system of every element type, with nested boundaries and personal data."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    boundaries = [Boundary(id="internet", trust="untrusted")]
    for i in range(40):
        parent = None if i < 5 else f"b{rng.randrange(5)}"
        boundaries.append(Boundary(id=f"b{i}", trust=rng.choice(["partner", "internal", "privileged"]), parent=parent))
    data = [
        DataAsset(
            id=f"d{i}",
            personal=rng.random() < 0.4,
            data_subjects=rng.choice([None, 50, 5000, 2_000_000]),
            classification=rng.choice([None, "public", "internal", "confidential"]),
            origin=rng.choice(["user-supplied", "internal", "telemetry", "public"]),
            format=rng.choice(["images", "text", "logs", "labels"]),
            purpose=rng.choice([None, "service"]),
            retention=rng.choice([None, "1 year"]),
        )
        for i in range(200)
    ]
    controls = list(Control)
    elements = []
    for i in range(n_elements):
        kind = rng.choice(list(ElementType))
        extra: dict[str, object] = {}
        if kind in MODEL_TYPES:
            extra["model"] = ModelAttributes(
                outputs=rng.choice(["labels", "scores", "text"]),
                trained_on=[f"d{rng.randrange(200)}" for _ in range(3)],
                artifact_format=rng.choice(["pickle", "safetensors", None]),
                retraining=rng.choice(["never", "continuous"]),
            )
        if kind in LLM_TYPES:
            extra["llm"] = LlmAttributes(
                untrusted_input=rng.random() < 0.5, tools=["act"] if rng.random() < 0.5 else [], rag=rng.random() < 0.5
            )
        elements.append(
            Element(
                id=f"e{i}",
                type=kind,
                boundary=rng.choice([*[b.id for b in boundaries], None]),
                data=[f"d{rng.randrange(200)}" for _ in range(rng.randrange(3))],
                controls=rng.sample(controls, rng.randrange(4)),
                authentication=rng.choice([None, "none", "oauth2"]),
                logging=rng.choice([None, "central", "local"]),
                in_scope=rng.random() > 0.02,
                **extra,  # type: ignore[arg-type]
            )
        )
    flows = []
    for j in range(n_flows):
        a, b = rng.sample(range(n_elements), 2)
        flows.append(
            Flow.model_validate(
                {
                    "id": f"f{j}",
                    "from": f"e{a}",
                    "to": f"e{b}",
                    "data": [f"d{rng.randrange(200)}" for _ in range(rng.randrange(3))],
                    "protocol": rng.choice(["https", "http", None]),
                    "authenticated": rng.choice([None, True]),
                }
            )
        )
    return System(
        name="big",
        boundaries=boundaries,
        data=data,
        elements=elements,
        flows=flows,
        business_impact=BusinessImpact(financial_damage=5, reputation_damage=5, non_compliance=5),
    )


def test_engine_is_fast_on_2000_elements_and_5000_flows() -> None:
    system = big_system()
    catalog = shipped_catalog()
    started = time.perf_counter()
    register = build_register(system, catalog)
    elapsed = time.perf_counter() - started
    assert len(register.findings) > 10_000
    assert register.not_applicable > 0
    assert {f.severity for f in register.findings} >= {Severity.HIGH, Severity.MEDIUM}
    assert elapsed < 15, f"engine took {elapsed:.1f} s"
