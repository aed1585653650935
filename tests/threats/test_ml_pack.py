"""The ML and LLM packs: complete taxonomy data, and a register of the bundled scenario that reads like a review.

Pack-level tests hold every ML/LLM threat to the catalog's bar (exact ATLAS ids, OWASP ids with their
year, all 12 default risk factors, mitigations). Scenario tests run the real engine on
``examples/content-moderation`` and assert which findings fire, which are mitigated by declared
controls, which must not fire at all, and that changing the system moves them as it should.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from modelward.core.severity import Severity
from modelward.system.lint import lint_system
from modelward.system.loader import load_system
from modelward.system.model import System
from modelward.system.vocabulary import ArtifactFormat, Control
from modelward.threats.catalog import Catalog, load_catalog
from modelward.threats.model import Finding, Register, Status
from modelward.threats.register import build_register
from modelward.threats.risk import LIKELIHOOD, TECHNICAL
from modelward.threats.triage import load_triage

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "examples" / "content-moderation"
#: A fixed "today" so review-by dates in the triage file do not make the tests drift with time.
TODAY = date(2026, 12, 1)

#: ATLAS technique ids from the project's reference table (v5, 2026); the packs may use no others.
ATLAS_TECHNIQUES = frozenset(
    (
        # staging and evasion
        *("T0043", "T0043.000", "T0043.001", "T0043.002", "T0043.003", "T0043.004", "T0015", "T0005", "T0042"),
        "T0088",
        # poisoning and persistence
        *("T0020", "T0018", "T0018.000", "T0018.001", "T0018.002", "T0019", "T0058", "T0059", "T0070", "T0071"),
        *("T0080", "T0080.000", "T0080.001", "T0110"),
        # supply chain
        *("T0010", "T0010.000", "T0010.001", "T0010.002", "T0010.003", "T0010.004", "T0010.005"),
        *("T0011", "T0011.000", "T0002", "T0002.000", "T0002.001"),
        # model access
        *("T0040", "T0044", "T0047", "T0041"),
        # privacy and exfiltration
        *("T0024", "T0024.000", "T0024.001", "T0024.002", "T0025", "T0057", "T0056", "T0077", "T0086"),
        # LLMs and agents
        *("T0051", "T0051.000", "T0051.001", "T0051.002", "T0054", "T0068", "T0053", "T0093", "T0061", "T0060"),
        # discovery
        *("T0007", "T0013", "T0014", "T0063", "T0069", "T0084"),
        # impact
        *("T0029", "T0031", "T0034", "T0046", "T0048", "T0048.000", "T0048.001", "T0048.002", "T0048.003"),
        "T0048.004",
    )
)
_OWASP = re.compile(r"^(ML(0[1-9]|10):2023|LLM(0[1-9]|10):(2025|2026))$")
#: LLM Top 10 2025 -> 2026 renumbering (reference table); a 2026 id must sit next to its 2025 twin.
LLM_2025_TO_2026 = {
    "LLM01": "LLM01",  # prompt injection
    "LLM02": "LLM02",  # sensitive information disclosure
    "LLM06": "LLM03",  # excessive agency
    "LLM03": "LLM04",  # supply chain
    "LLM04": "LLM05",  # data and model poisoning
    "LLM10": "LLM06",  # unbounded consumption
    "LLM09": "LLM07",  # misinformation
    "LLM08": "LLM09",  # vector and embedding weaknesses
    "LLM05": "LLM10",  # improper output handling
    "LLM07": "LLM08",  # system prompt leakage -> hidden context exposure
}


@pytest.fixture(scope="module")
def packs() -> Catalog:
    """The shipped ML and LLM packs only."""
    return load_catalog(packs=["ml", "llm"])


@pytest.fixture(scope="module")
def system() -> System:
    """The bundled content-moderation scenario."""
    return load_system(SCENARIO)


@pytest.fixture(scope="module")
def register(system: System) -> Register:
    """The scenario's register with every shipped pack and its triage file."""
    triage = load_triage(SCENARIO / "modelward.triage.yaml")
    return build_register(system, load_catalog(), triage, TODAY)


def ml_register(system: System) -> dict[str, Finding]:
    """Findings of the ML and LLM packs on a (possibly modified) system, without triage."""
    return build_register(system, load_catalog(packs=["ml", "llm"]), None, TODAY).by_id()


# ---------------------------------------------------------------------------
# the packs


def test_packs_have_at_least_forty_threats_with_pack_prefixes(packs: Catalog) -> None:
    ml = packs.list(pack="ml")
    llm = packs.list(pack="llm")
    assert len(ml) + len(llm) >= 40
    assert all(t.id.startswith("ML-") for t in ml)
    assert all(t.id.startswith("LLM-") for t in llm)


def test_every_threat_has_exact_atlas_and_dated_owasp_ids(packs: Catalog) -> None:
    for threat in packs:
        assert threat.atlas, threat.id
        for ident in threat.atlas:
            assert ident.removeprefix("AML.") in ATLAS_TECHNIQUES, (threat.id, ident)
        if threat.id not in WITHOUT_OWASP_ITEM:
            assert threat.owasp, threat.id
        for ident in threat.owasp:
            assert _OWASP.match(ident), (threat.id, ident)
        dated_2025 = {i.split(":")[0] for i in threat.owasp if i.endswith(":2025")}
        dated_2026 = {i.split(":")[0] for i in threat.owasp if i.endswith(":2026")}
        # The cross-walk is complete both ways: every 2025 id has its 2026 twin and nothing else.
        assert dated_2026 == {LLM_2025_TO_2026[old] for old in dated_2025}, threat.id


#: Threats no OWASP ML/LLM Top 10 item describes; a wrong id would mislead more than none.
WITHOUT_OWASP_ITEM = {
    "ML-LABELER-DATA-EXPOSURE",
    "ML-REIDENTIFICATION-LINKING",
    "ML-TRAINING-DATA-EXFIL",
    "ML-COST-HARVESTING",
}


def test_every_threat_has_full_default_risk_and_mitigations(packs: Catalog) -> None:
    vectors = set()
    for threat in packs:
        factors = threat.risk_factors
        assert factors.missing(LIKELIHOOD + TECHNICAL) == [], threat.id
        vectors.add(factors.to_vector())
        assert threat.mitigations, threat.id
        assert all(m.controls for m in threat.mitigations), threat.id
        assert threat.stride or threat.linddun, threat.id
        if threat.linddun:
            assert threat.trim, f"{threat.id}: privacy threats name their TRIM aspect"
        assert any(ref.startswith("https://atlas.mitre.org/") for ref in threat.references), threat.id
        assert threat.applies_when is not None or threat.targets in (
            ["model-registry"],
            ["labeler"],
            ["training-pipeline"],
            ["training-pipeline", "inference-service"],
        ), f"{threat.id} applies to every target: keep that for single-purpose element types"
    assert len(vectors) >= 30, "default risk factors should be specific to each threat, not copied"


def test_packs_cover_the_threats_a_reviewer_expects(packs: Catalog) -> None:
    expected = {
        "ML-EVASION-WHITEBOX",
        "ML-EVASION-BLACKBOX-SCORE",
        "ML-EVASION-BLACKBOX-DECISION",
        "ML-EVASION-TRANSFER",
        "ML-POISON-TELEMETRY",
        "ML-POISON-USER-REPORTS",
        "ML-POISON-CROWDSOURCED-LABELS",
        "ML-POISON-PUBLIC-DATASET",
        "ML-BACKDOOR",
        "ML-TRANSFER-POISONED-BASE",
        "ML-EXTRACTION",
        "ML-MODEL-INVERSION",
        "ML-MEMBERSHIP-INFERENCE",
        "ML-ATTRIBUTE-INFERENCE",
        "ML-MEMORISATION-PII",
        "ML-CONFIDENCE-DISCLOSURE",
        "ML-UNSAFE-ARTIFACT",
        "ML-UNTRUSTED-PRETRAINED",
        "ML-REGISTRY-TAMPERING",
        "ML-LABELER-INSIDER",
        "ML-SPONGE-DOS",
        "ML-COST-HARVESTING",
        "ML-REIDENTIFICATION-LINKING",
        "ML-DRIFT-SKEWING",
        "ML-TRAINING-DATA-EXFIL",
        "ML-OUTPUT-RECON",
        "LLM-PROMPT-INJECTION-DIRECT",
        "LLM-PROMPT-INJECTION-INDIRECT",
        "LLM-PROMPT-INJECTION-MULTIMODAL",
        "LLM-JAILBREAK",
        "LLM-SYSTEM-PROMPT-LEAK",
        "LLM-IMPROPER-OUTPUT-HANDLING",
        "LLM-EXCESSIVE-AGENCY",
        "LLM-RAG-POISONING",
        "LLM-EMBEDDING-INVERSION",
        "LLM-UNBOUNDED-CONSUMPTION",
        "LLM-MISINFORMATION",
    }
    assert expected <= set(packs.ids())
    owasp = {i for t in packs for i in t.owasp}
    assert {f"ML{n:02d}:2023" for n in range(1, 11)} <= owasp
    assert {f"LLM{n:02d}:2025" for n in range(1, 11)} <= owasp


def test_llm_threats_target_only_llm_components_and_their_stores(packs: Catalog) -> None:
    for threat in packs.list(pack="llm"):
        assert set(threat.targets) <= {"llm", "agent", "vector-index", "feature-store"}, threat.id


# ---------------------------------------------------------------------------
# the scenario


def test_scenario_is_valid_and_lint_clean(system: System) -> None:
    assert lint_system(system) == []
    assert {r.check for r in system.requirements} == {
        "design.encrypted_boundary_flows",
        "design.score_exposure",
        "design.training_data_sanitation",
        "design.personal_data_retention",
        "design.safe_model_artifacts",
        "evasion.robust_accuracy",
        "evasion.detection_rate",
        "evasion.certified_accuracy",
        "privacy.membership_inference",
        "privacy.dp_epsilon",
        "privacy.extraction_fidelity",
        "privacy.privacy_utility",
        "gateway.credentials_required",
        "gateway.scores_withheld",
        "gateway.uploads_refused",
        "gateway.rate_limit_enforced",
        "gateway.audit_chain_valid",
        "gateway.model_signature_valid",
    }


def test_open_findings_read_like_a_review(register: Register) -> None:
    found = register.by_id()
    expected_open = [
        "ML-EVASION-BLACKBOX-SCORE@moderation-model",
        "ML-EVASION-TRANSFER@moderation-model",
        "ML-CONFIDENCE-DISCLOSURE@moderation-model",
        "ML-POISON-TELEMETRY@moderation-model",
        "ML-BACKDOOR@moderation-model",
        "ML-DRIFT-SKEWING@moderation-model",
        "ML-MEMBERSHIP-INFERENCE@moderation-model",
        "ML-EXTRACTION@moderation-model",
        "ML-UNSAFE-ARTIFACT@legacy-caption-model",
        "LLM-PROMPT-INJECTION-MULTIMODAL@moderation-llm",
        "LLM-PROMPT-INJECTION-INDIRECT@moderation-llm",
        "LLM-EXCESSIVE-AGENCY@moderation-llm",
        "LLM-SENSITIVE-INFO-DISCLOSURE@moderation-llm",
        "LLM-MEMORY-PERSISTENCE@moderation-llm",
        "LLM-RAG-POISONING@case-index",
        "ML-REIDENTIFICATION-LINKING@labeling-tool@label-tasks",
        "ML-COST-HARVESTING@moderation-service",
    ]
    for finding_id in expected_open:
        assert finding_id in found, finding_id
        assert found[finding_id].status is Status.OPEN, finding_id


def test_declared_controls_mitigate_what_they_should(register: Register) -> None:
    found = register.by_id()
    expected_mitigated = [
        "ML-EVASION-BLACKBOX-DECISION@moderation-model",  # rate limit + query monitoring upstream
        "ML-POISON-CROWDSOURCED-LABELS@moderation-model",  # consensus labeling in the labeling tool
        "ML-POISON-PUBLIC-DATASET@moderation-model",  # pinned dataset + outlier detection
        "ML-UNTRUSTED-PRETRAINED@moderation-model",  # verified base, signed artifacts
        "ML-ERASURE-UNLEARNING@moderation-model",  # deletions propagate, weekly retraining
        "ML-EXTRACTION@legacy-caption-model",  # labels only, rate-limited, monitored
        "ML-REGISTRY-TAMPERING@model-registry",
        "ML-ARTIFACT-THEFT@model-registry",
        "ML-TRAINING-STORE-TAMPERING@training-data",
        "ML-LABELER-INSIDER@crowd-labelers",
        "ML-OUTPUT-INTEGRITY@moderation-model@scores",
        "LLM-SUPPLY-CHAIN@moderation-llm",
        "LLM-TOOL-EXFILTRATION@moderation-llm",
        "LLM-EMBEDDING-INVERSION@case-index",
    ]
    for finding_id in expected_mitigated:
        assert finding_id in found, finding_id
        assert found[finding_id].status is Status.MITIGATED, finding_id
        assert found[finding_id].mitigated_because, finding_id


def test_threats_do_not_fire_where_they_make_no_sense(register: Register) -> None:
    ids = set(register.by_id())
    # a safetensors model has no unsafe-artifact finding; the joblib one does
    assert "ML-UNSAFE-ARTIFACT@moderation-model" not in ids
    assert "ML-UNSAFE-ARTIFACT@moderation-llm" not in ids
    # no LLM threats on the image classifier or the caption classifier
    for element in ("moderation-model", "legacy-caption-model"):
        assert not [i for i in ids if i.startswith("LLM-") and i.split("@")[1] == element], element
    # image-classifier evasion threats stay off the LLM and off components without a model
    assert not [i for i in ids if i.startswith("ML-EVASION-") and i.split("@")[1] in {"moderation-llm", "upload-api"}]
    # nobody types prompts: no direct injection; the LLM fine-tunes on internal data from a verified base
    assert not [i for i in ids if i.startswith(("LLM-PROMPT-INJECTION-DIRECT@", "LLM-FINETUNE-POISONING@"))]
    # the caption model trains on an internal corpus: no poisoning from untrusted sources
    assert not [i for i in ids if i.startswith(("ML-POISON-", "ML-BACKDOOR@")) and "legacy-caption-model" in i]
    # labels-only outputs disclose no confidence; image inputs get no tabular attribute inference
    assert "ML-CONFIDENCE-DISCLOSURE@legacy-caption-model" not in ids
    assert "ML-ATTRIBUTE-INFERENCE@moderation-model" not in ids
    # internal reviewers are not an external transfer of personal data
    assert "ML-LABELER-DATA-EXPOSURE@trust-safety-team" not in ids
    # cost harvesting lands once, on the component that autoscales
    assert [i for i in ids if i.startswith("ML-COST-HARVESTING@")] == ["ML-COST-HARVESTING@moderation-service"]


def test_findings_explain_themselves(register: Register) -> None:
    found = register.by_id()
    score = found["ML-EVASION-BLACKBOX-SCORE@moderation-model"]
    assert "model.outputs is 'scores'" in score.applies_because
    assert any("user → upload-api → moderation-service → moderation-model" in r for r in score.applies_because)
    assert any("output-hardening" in r for r in score.unmitigated_because)
    reports = found["ML-POISON-USER-REPORTS@moderation-model"]
    assert any("report-labels" in r for r in reports.applies_because)
    multimodal = found["LLM-PROMPT-INJECTION-MULTIMODAL@moderation-llm"]
    assert any("uploaded-images" in r for r in multimodal.applies_because)
    crowd = found["ML-POISON-CROWDSOURCED-LABELS@moderation-model"]
    assert any("labeling-tool" in r and "label-review" in r for r in crowd.mitigated_because)


def test_register_has_a_reviewers_size_and_spread(register: Register) -> None:
    assert 120 <= len(register.findings) <= 200
    still_open = [f for f in register.findings if f.status.is_open]
    by_severity = Counter(f.severity for f in still_open)
    critical = {f.id for f in still_open if f.severity is Severity.CRITICAL}
    assert 1 <= len(critical) <= 12, sorted(critical)
    # What a reviewer escalates: code execution through the pickle artifact, and prompt injection of the
    # moderation LLM that can remove posts and write statements of reasons the uploader reads.
    assert {
        "ML-UNSAFE-ARTIFACT@legacy-caption-model",
        "LLM-PROMPT-INJECTION-INDIRECT@moderation-llm",
        "LLM-PROMPT-INJECTION-MULTIMODAL@moderation-llm",
    } <= critical
    assert not [fid for fid in critical if fid.startswith(("STRIDE-", "LINDDUN-"))]
    # Most open findings are high, medium or low, and each of those levels is used.
    assert min(by_severity[s] for s in (Severity.HIGH, Severity.MEDIUM, Severity.LOW)) >= 5
    assert by_severity[Severity.CRITICAL] < by_severity[Severity.HIGH] < len(still_open) / 2


def test_severity_follows_each_threats_business_harm(register: Register) -> None:
    found = register.by_id()
    # Systematic integrity failures of the screening models: brand damage; privacy violation does not apply.
    for finding_id in (
        "ML-EVASION-BLACKBOX-SCORE@moderation-model",
        "ML-EVASION-TRANSFER@moderation-model",
        "ML-POISON-TELEMETRY@moderation-model",
        "LLM-EXCESSIVE-AGENCY@moderation-llm",
    ):
        assert found[finding_id].severity is Severity.CRITICAL, finding_id
    # Report flooding is bounded by review: cheaper to the business, so high, not critical.
    assert found["ML-POISON-USER-REPORTS@moderation-model"].severity is Severity.HIGH
    assert found["ML-EVASION-BLACKBOX-SCORE@moderation-model"].rating_vector.endswith("FD:7/RD:9/NC:5")
    # Reconnaissance, leaked scores and cost abuse cost little, and disclose nothing about people.
    for finding_id in (
        "ML-OUTPUT-RECON@moderation-model",
        "ML-CONFIDENCE-DISCLOSURE@moderation-model",
        "ML-EXTRACTION@moderation-model",
        "ML-COST-HARVESTING@moderation-service",
    ):
        assert found[finding_id].severity <= Severity.MEDIUM, finding_id
    assert found["ML-OUTPUT-RECON@moderation-model"].rating_vector.endswith("FD:1/RD:1/NC:2")
    # Code execution in the inference VPC reads what the caption model handles: 40 million people's captions.
    assert found["ML-UNSAFE-ARTIFACT@legacy-caption-model"].rating_vector.endswith("FD:7/RD:5/NC:5/PV:9")


def test_the_systems_business_impact_caps_every_estimate(system: System) -> None:
    caps = system.business_impact
    assert caps is not None
    assert (caps.financial_damage, caps.reputation_damage, caps.non_compliance) == (7, 9, 7)

    def frugal(s: System) -> None:
        assert s.business_impact is not None
        s.business_impact.financial_damage = 3

    found = ml_register(_modified(system, frugal))
    assert found["ML-EVASION-BLACKBOX-SCORE@moderation-model"].rating_vector.endswith("FD:3/RD:9/NC:5")
    assert found["ML-OUTPUT-RECON@moderation-model"].rating_vector.endswith("FD:1/RD:1/NC:2")  # under the cap


def test_baselines_list_only_what_a_reviewer_would(register: Register) -> None:
    ids = set(register.by_id())

    def on(threat: str) -> set[str]:
        return {fid.split("@", 1)[1] for fid in ids if fid.startswith(threat + "@")}

    # Flooding a flow needs an untrusted sender; hops between the system's own components are not listed.
    assert on("STRIDE-D-FLOW") == {"user@upload", "user@report-and-share"}
    internal = (
        "moderation-service@classify",
        "upload-api@screen",
        "moderation-actions@takedown",
        "training-pipeline@publish",
    )
    for flow in internal:
        assert not [fid for fid in ids if fid.startswith(("STRIDE-", "LINDDUN-")) and fid.endswith("@" + flow)], flow
    # ... but the plain-HTTP bucket read across the VPC peering link is, and it is open.
    for threat in ("STRIDE-T-FLOW", "STRIDE-I-FLOW"):
        assert register.by_id()[f"{threat}@image-store@telemetry-images"].status is Status.OPEN
    # Privacy threats in transit: transfers to or from a party outside the organisation.
    transfers = {fid.split("@", 1)[1] for fid in ids if fid.startswith("LINDDUN-") and fid.count("@") == 2}
    assert transfers == {"user@upload", "user@report-and-share", "labeling-tool@label-tasks"}
    # Components that only pass images through do not link or identify people; the telemetry job does.
    for element in ("moderation-model", "legacy-caption-model", "moderation-service"):
        assert not on("LINDDUN-L-PROCESS") & {element} and not on("LINDDUN-I-PROCESS") & {element}, element
    assert "telemetry-service" in on("LINDDUN-L-PROCESS")
    # Non-repudiation only where an individual acts; public sources the pipeline pulls from do not act.
    assert {fid for fid in ids if fid.startswith("LINDDUN-NR-")} == {
        "LINDDUN-NR-FLOW@user@upload",
        "LINDDUN-NR-FLOW@user@report-and-share",
        "LINDDUN-NR-PROCESS@upload-api",
        "LINDDUN-NR-STORE@moderation-logs",
    }
    assert on("STRIDE-R-ENTITY") == on("STRIDE-S-ENTITY") == {"user", "crowd-labelers", "trust-safety-team"}
    # Input manipulation of model components is rated by the ML and LLM packs, not the generic baseline.
    for threat in ("STRIDE-T-PROCESS", "STRIDE-I-PROCESS", "STRIDE-E-PROCESS"):
        assert not on(threat) & {"moderation-model", "legacy-caption-model", "moderation-llm"}, threat
    # Denial of service where the load enters: the rate-limited public API.
    assert on("STRIDE-D-PROCESS") == {"upload-api"} and on("STRIDE-D-STORE") == set()


def test_declared_controls_mitigate_baseline_threats(register: Register) -> None:
    found = register.by_id()
    expected = {
        "STRIDE-D-PROCESS@upload-api": "rate_limit is '120/minute'",
        "STRIDE-R-PROCESS@moderation-actions": "declares control 'audit-logging'",
        "STRIDE-R-PROCESS@training-pipeline": "declares control 'audit-logging'",
        "STRIDE-T-STORE@training-data": "declares control 'data-provenance'",
        "STRIDE-T-STORE@image-store": "declares control 'backups'",
        "LINDDUN-NC-STORE@training-data": "upstream 'upload-api' (declares control 'consent-management')",
        "LINDDUN-NC-PROCESS@training-pipeline": "upstream 'upload-api' (declares control 'consent-management')",
    }
    for finding_id, reason in expected.items():
        finding = found[finding_id]
        assert finding.status is Status.MITIGATED, finding_id
        assert any(r.startswith(reason) for r in finding.mitigated_because), (finding_id, finding.mitigated_because)


def test_every_reason_is_a_short_statement(register: Register) -> None:
    for finding in register.findings:
        assert finding.applies_because, finding.id
        for reason in finding.why:
            assert 0 < len(reason) <= 250, (finding.id, reason)
            assert not re.search(r"\w=|\w\(\w+=|ElementType\.|TrustLevel\.|<\w", reason), (finding.id, reason)


def test_triage_decisions_apply_without_orphans(register: Register) -> None:
    found = register.by_id()
    assert register.orphan_triage == []
    accepted = found["ML-EVASION-WHITEBOX@moderation-model"]
    assert accepted.status is Status.ACCEPTED
    assert accepted.triage["owner"] and accepted.triage["ticket"] and accepted.triage["review_by"].startswith("2027")
    assert accepted.rating_vector and "S:2" in accepted.rating_vector
    assert found["ML-EVASION-WHITEBOX@legacy-caption-model"].status is Status.ACCEPTED  # same wildcard entry
    assert found["LLM-SYSTEM-PROMPT-LEAK@moderation-llm"].status is Status.ACCEPTED
    assert found["ML-POISON-USER-REPORTS@moderation-model"].status is Status.IN_PROGRESS
    assert found["ML-LABELER-DATA-EXPOSURE@crowd-labelers"].status is Status.TRANSFERRED
    # an exact entry beats the wildcard; the wildcard covers the rest
    assert found["ML-SPONGE-DOS@legacy-caption-model"].status is Status.FALSE_POSITIVE
    assert found["ML-SPONGE-DOS@moderation-model"].status is Status.IN_PROGRESS
    assert found["ML-SPONGE-DOS@moderation-model"].triage["key"] == "ML-SPONGE-DOS@*"


def test_triage_review_dates_expire(system: System) -> None:
    triage = load_triage(SCENARIO / "modelward.triage.yaml")
    catalog = load_catalog(packs=["ml", "llm"])
    now = build_register(system, catalog, triage, date(2026, 11, 23)).by_id()
    later = build_register(system, catalog, triage, date(2028, 1, 1)).by_id()
    untriaged = build_register(system, catalog).by_id()
    assert later["ML-EVASION-WHITEBOX@moderation-model"].status is Status.OPEN
    # While the decision holds, its rating override ("O:4/S:2") applies; once expired it no longer does.
    assert "O:4" in now["ML-EVASION-WHITEBOX@moderation-model"].rating_vector
    expired = later["ML-EVASION-WHITEBOX@moderation-model"]
    assert expired.rating_vector == untriaged["ML-EVASION-WHITEBOX@moderation-model"].rating_vector
    assert expired.severity is untriaged["ML-EVASION-WHITEBOX@moderation-model"].severity
    assert later["ML-SPONGE-DOS@legacy-caption-model"].status is Status.FALSE_POSITIVE  # no review-by date


# ---------------------------------------------------------------------------
# changing the system moves the findings


def _modified(system: System, change: Callable[[System], None]) -> System:
    copy = system.model_copy(deep=True)
    change(copy)
    return copy


def test_output_hardening_closes_score_exposure(system: System) -> None:
    def harden(s: System) -> None:
        s.element("moderation-model").controls.append(Control.OUTPUT_HARDENING)

    found = ml_register(_modified(system, harden))
    for threat in ("ML-EVASION-BLACKBOX-SCORE", "ML-CONFIDENCE-DISCLOSURE", "ML-MODEL-INVERSION", "ML-EXTRACTION"):
        assert found[f"{threat}@moderation-model"].status is Status.MITIGATED, threat
    assert found["ML-EVASION-TRANSFER@moderation-model"].status is Status.OPEN  # offline attack, no queries


def test_pickle_artifact_appears_and_safe_loading_mitigates(system: System) -> None:
    def to_pickle(s: System) -> None:
        model = s.element("moderation-model").model
        assert model is not None
        model.artifact_format = ArtifactFormat.PYTORCH_PICKLE

    pickled = _modified(system, to_pickle)
    assert ml_register(pickled)["ML-UNSAFE-ARTIFACT@moderation-model"].status is Status.OPEN

    def safe_loader(s: System) -> None:
        to_pickle(s)
        s.element("moderation-model").controls.append(Control.SAFE_SERIALIZATION)

    assert ml_register(_modified(system, safe_loader))["ML-UNSAFE-ARTIFACT@moderation-model"].status is Status.MITIGATED


def test_sanitisation_in_the_pipeline_closes_feedback_poisoning(system: System) -> None:
    def sanitise(s: System) -> None:
        s.element("training-pipeline").controls.append(Control.DATA_SANITIZATION)

    found = ml_register(_modified(system, sanitise))
    for threat in ("ML-POISON-TELEMETRY", "ML-POISON-USER-REPORTS", "ML-DRIFT-SKEWING"):
        assert found[f"{threat}@moderation-model"].status is Status.MITIGATED, threat
    assert found["ML-BACKDOOR@moderation-model"].status is Status.OPEN  # still needs backdoor scanning


def test_multimodal_injection_needs_a_model_that_reads_images(system: System) -> None:
    def text_only(s: System) -> None:
        llm = s.element("moderation-llm").llm
        assert llm is not None
        llm.multimodal = False

    found = ml_register(_modified(system, text_only))
    assert "LLM-PROMPT-INJECTION-MULTIMODAL@moderation-llm" not in found
    assert "LLM-PROMPT-INJECTION-INDIRECT@moderation-llm" in found  # retrieved cases still carry user text


def test_human_review_of_actions_closes_excessive_agency(system: System) -> None:
    def review(s: System) -> None:
        s.element("moderation-actions").controls.append(Control.HUMAN_IN_THE_LOOP)

    found = ml_register(_modified(system, review))
    assert found["LLM-EXCESSIVE-AGENCY@moderation-llm"].status is Status.MITIGATED


def test_score_based_evasion_needs_scores(system: System) -> None:
    def labels_only(s: System) -> None:
        from modelward.system.vocabulary import ModelOutput

        model = s.element("moderation-model").model
        assert model is not None
        model.outputs = ModelOutput.LABELS

    found = ml_register(_modified(system, labels_only))
    assert "ML-EVASION-BLACKBOX-SCORE@moderation-model" not in found
    assert "ML-CONFIDENCE-DISCLOSURE@moderation-model" not in found
    assert "ML-EVASION-BLACKBOX-DECISION@moderation-model" in found
