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
    assert upload.applies_because == ["carries 'photos' (classification confidential)"]
    assert upload.mitigated_because == ["flow uses https"]
    classify = shop["STRIDE-I-FLOW@api@classify"]
    assert classify.status is Status.OPEN
    assert classify.unmitigated_because == ["flow is not encrypted"]
    spoof = shop["STRIDE-S-ENTITY@user"]
    assert spoof.status is Status.OPEN  # one of the user's flows (to anon) is not authenticated
    assert spoof.applies_because == ["sends to 'api': is a process"]
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
    # clf is reached only through the rate-limited api: every chain from the internet is guarded.
    assert shop["STRIDE-D-PROCESS@clf"].status is Status.MITIGATED
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
    tampering = risk_context(graph, findings["STRIDE-T-PROCESS@clf"])
    assert tampering.scores["privacy_violation"] == 0
    assert tampering.reasons["privacy_violation"] == "the threat discloses no personal data"
    # Baseline threats carry no business estimate: the technical impact is the one used.
    finding = findings["LINDDUN-DD-STORE@db"]
    factors = RiskFactors.from_vector(finding.rating_vector)
    assert factors.financial_damage is None
    assert finding.impact == pytest.approx(factors.rate().technical_impact)


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
    # An outage discloses nothing: PV 0, and the business impact (all four known) is used.
    assert outage.rating_vector.endswith("FD:3/RD:3/NC:2/PV:0")
    assert outage.impact == pytest.approx((3 + 3 + 2 + 0) / 4)
    # Without caps, the catalog's estimates stand.
    free = {f.id: f for f in run_engine(parse_system(SHOP), pack).findings}
    assert free["BIZ-LEAK@db"].rating_vector.endswith("FD:7/RD:9/NC:5/PV:7")
    audit = findings["BIZ-OUTAGE@audit"]
    assert audit.rating_vector.endswith("PV:0")


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
