"""The threat engine: apply every catalog threat to every in-scope target, then rate each finding.

Phase one (:func:`apply_catalog`) matches threats to elements by type or DFD kind (and to every flow
for ``data-flow`` threats), evaluates ``applies_when`` and ``mitigated_when`` and records their
reasons. Phase two (:func:`rate_findings`) rates each finding with the OWASP method: the threat's
default factors, then what the system says (who can reach the target, how many people its personal
data is about, the declared business impact), then a triage override, last.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from modelward.system.graph import SystemGraph
from modelward.system.model import Element, Flow, System
from modelward.system.vocabulary import ElementType, TrustLevel
from modelward.threats.catalog import Catalog
from modelward.threats.conditions import Condition, Evaluator
from modelward.threats.model import Finding, Status, Threat
from modelward.threats.risk import FACTORS, RiskFactors, RiskRating, privacy_violation_for, rate

__all__ = [
    "EngineResult",
    "RiskContext",
    "apply_catalog",
    "exposure_size",
    "rate_findings",
    "risk_context",
    "run_engine",
]

#: OWASP "size" scores of the threat-agent population, by the lowest trust that reaches a target.
SIZE_ANONYMOUS = 9
SIZE_AUTHENTICATED = 6
SIZE_BY_TRUST: dict[TrustLevel, int] = {
    TrustLevel.PARTNER: 5,
    TrustLevel.INTERNAL: 4,
    TrustLevel.PRIVILEGED: 2,
}


@dataclass
class EngineResult:
    """Findings of one run, how many (threat, target) pairs did not apply, and what was out of scope."""

    findings: list[Finding]
    graph: SystemGraph
    not_applicable: int = 0
    out_of_scope: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RiskContext:
    """Factors the system itself determines for one finding, each with the reason it was chosen."""

    scores: dict[str, int | None]  # None: the factor does not apply (it removes a catalog default)
    reasons: dict[str, str]


def apply_catalog(system: System, catalog: Catalog, *, graph: SystemGraph | None = None) -> EngineResult:
    """Every threat applied to every in-scope target, with derived status and reasons (not yet rated)."""
    graph = graph if graph is not None else SystemGraph(system)
    evaluator = Evaluator(graph)
    findings: list[Finding] = []
    not_applicable = 0
    out_of_scope: list[str] = []
    # Parsed conditions read once per threat (they live in pydantic private attributes).
    prepared = {t.id: _Prepared(t, t.applies_condition, t.mitigated_condition) for t in catalog}
    by_type = {t: [prepared[th.id] for th in catalog.for_element_type(t)] for t in ElementType}
    for element in system.elements:
        if not element.in_scope:
            out_of_scope.append(element.id)
            continue
        for entry in by_type[element.type]:
            finding = entry.apply(element, element.id, None, evaluator)
            if finding is None:
                not_applicable += 1
            else:
                findings.append(finding)
    flow_threats = [prepared[th.id] for th in catalog.flow_threats]
    if flow_threats:
        for flow in system.flows:
            if not (graph.elements[flow.source].in_scope or graph.elements[flow.target].in_scope):
                out_of_scope.append(flow.fid)
                continue
            for entry in flow_threats:
                finding = entry.apply(flow, flow.source, flow.fid, evaluator)
                if finding is None:
                    not_applicable += 1
                else:
                    findings.append(finding)
    return EngineResult(findings, graph, not_applicable, out_of_scope)


@dataclass(frozen=True)
class _Prepared:
    """A threat with its parsed conditions at hand."""

    threat: Threat
    applies: Condition | None
    mitigated: Condition | None

    def apply(self, subject: Element | Flow, element: str, flow: str | None, ev: Evaluator) -> Finding | None:
        """One threat on one subject: None when ``applies_when`` does not hold."""
        if self.applies is None:
            what = "data flow" if isinstance(subject, Flow) else f"{subject.type.value} ({subject.kind.value})"
            because = [f"applies to every {what}"]
        else:
            holds, because = self.applies.evaluate(ev, subject)
            if not holds:
                return None
        finding = Finding(threat=self.threat, element=element, flow=flow, applies_because=list(because))
        if self.mitigated is not None:
            holds, reasons = self.mitigated.evaluate(ev, subject)
            if holds:
                finding.status = Status.MITIGATED
                finding.mitigated_because = list(reasons)
            else:
                finding.unmitigated_because = list(reasons)
        return finding


def run_engine(
    system: System,
    catalog: Catalog,
    *,
    graph: SystemGraph | None = None,
    overrides: Mapping[str, RiskFactors | None] | None = None,
) -> EngineResult:
    """:func:`apply_catalog` then :func:`rate_findings`: a rated set of findings without triage."""
    result = apply_catalog(system, catalog, graph=graph)
    rate_findings(result.findings, result.graph, overrides=overrides)
    return result


# ---------------------------------------------------------------------------
# risk


def exposure_size(graph: SystemGraph, element_id: str) -> tuple[int, str]:
    """The OWASP size factor for threats against an element: who can reach it, and whether anonymously."""
    if graph.effective_trust(element_id) is TrustLevel.UNTRUSTED:
        if graph.element_authenticated(element_id):
            return SIZE_AUTHENTICATED, f"'{element_id}' is untrusted but authenticated"
        return SIZE_ANONYMOUS, f"'{element_id}' is untrusted"
    path = graph.anonymous_path(element_id)
    if path is not None:
        return SIZE_ANONYMOUS, f"reachable without authentication from untrusted via {' → '.join(path)}"
    path = graph.untrusted_path(element_id)
    if path is not None:
        return SIZE_AUTHENTICATED, f"reachable from untrusted only through authentication via {' → '.join(path)}"
    lowest = graph.lowest_upstream_trust(element_id)
    return SIZE_BY_TRUST[lowest], f"reachable at most from {lowest.value} elements"


def discloses_personal_data(threat: Threat) -> bool:
    """Whether a threat can expose personal data: a privacy (LINDDUN) or disclosure (STRIDE I) threat.

    A catalog entry that pins ``PV: 0`` says it cannot: it discloses information about the system
    (model outputs, weights, a system prompt), not about people.
    """
    if threat.risk_factors.privacy_violation == 0:
        return False
    return bool(threat.linddun) or "I" in threat.stride


@dataclass(frozen=True)
class _Exposure:
    """What the system says about one element or flow, whatever the threat: who reaches it, whose data."""

    size: int
    size_why: str
    personal: bool
    largest_subjects: int | None


def _exposure(graph: SystemGraph, element: str, flow: str | None) -> _Exposure:
    size, why = exposure_size(graph, element)
    data, training = graph.data_of(element), graph.training_data(element)
    assets = graph.flow_data(flow) if flow is not None else (*data, *training)
    personal = [a for a in assets if a.personal]
    subjects = [a.data_subjects for a in personal if a.data_subjects]
    return _Exposure(size, why, bool(personal), max(subjects) if subjects else None)


def risk_context(graph: SystemGraph, finding: Finding, exposure: _Exposure | None = None) -> RiskContext:
    """The factors the system determines for a finding: S from exposure, PV from data subjects, business caps.

    Business impact is per threat: the catalog's FD/RD/NC estimate for the threat, capped by the
    system's declared ``business_impact`` (the worst this system can cost). PV is derived from the
    data subjects involved (0 when none is personal; unknown, so unset, when personal data does not
    say how many people it is about), and does not apply (left unset, even if the
    catalog pins it) for threats that cannot disclose personal data. When a threat has no business
    estimate, the business impact stays unknown and the technical impact is used.
    """
    if exposure is None:
        exposure = _exposure(graph, finding.element, finding.flow)
    scores: dict[str, int | None] = {"size": exposure.size}
    reasons: dict[str, str] = {"size": exposure.size_why}
    threat = finding.threat
    if not discloses_personal_data(threat):
        scores["privacy_violation"] = None
        reasons["privacy_violation"] = "does not apply: the threat discloses no personal data"
    elif not exposure.personal:
        scores["privacy_violation"] = 0
        reasons["privacy_violation"] = "no personal data involved"
    elif exposure.largest_subjects is None:
        scores["privacy_violation"] = None
        reasons["privacy_violation"] = "unknown: personal data without a number of data subjects"
    else:
        pv = privacy_violation_for(exposure.largest_subjects)
        if pv is not None:
            scores["privacy_violation"] = pv
            reasons["privacy_violation"] = f"personal data about {exposure.largest_subjects:,} people"
    caps = graph.system.business_impact
    if caps is not None:
        estimates = threat.risk_factors
        for name in ("financial_damage", "reputation_damage", "non_compliance"):
            estimate = estimates.get(name)
            cap = getattr(caps, name)
            if estimate is not None and cap is not None and cap < estimate:
                scores[name] = cap
                reasons[name] = f"capped at the system's declared {name.replace('_', ' ')} ({cap})"
    return RiskContext(scores, reasons)


_NAMES = tuple(f.name for f in FACTORS)
_Key = tuple[int | None, ...]


class _Rater:
    """Rates merged factor sets, once per distinct set (a large system repeats a handful of them)."""

    def __init__(self) -> None:
        """Start with no ratings."""
        self._ratings: dict[_Key, tuple[RiskRating, str]] = {}

    def rate(self, *layers: Mapping[str, int | None]) -> tuple[RiskRating, str]:
        """The rating of the merged layers (later layers win; None unsets) and its calculator vector."""
        merged: dict[str, int | None] = {}
        for layer in layers:
            merged.update(layer)
        key = tuple(map(merged.get, _NAMES))
        found = self._ratings.get(key)
        if found is None:
            rating = rate(RiskFactors.model_validate(merged))
            found = (rating, rating.vector)
            self._ratings[key] = found
        return found


def rate_findings(
    findings: list[Finding],
    graph: SystemGraph,
    *,
    overrides: Mapping[str, RiskFactors | None] | Callable[[Finding], RiskFactors | None] | None = None,
) -> None:
    """Set likelihood, impact, severity and rating vector on each finding.

    Layers: the threat's defaults, then :func:`risk_context`, then the override for the finding's id
    (a triage ``rating`` vector), which wins.
    """
    rater = _Rater()
    defaults: dict[str, dict[str, int]] = {}
    exposures: dict[tuple[str, str | None], _Exposure] = {}
    for finding in findings:
        threat = finding.threat
        base = defaults.get(threat.id)
        if base is None:
            base = threat.risk_factors.scores()
            defaults[threat.id] = base
        exposure = exposures.get((finding.element, finding.flow))
        if exposure is None:
            exposure = _exposure(graph, finding.element, finding.flow)
            exposures[(finding.element, finding.flow)] = exposure
        context = risk_context(graph, finding, exposure).scores
        if overrides is None:
            override = None
        elif callable(overrides):
            override = overrides(finding)
        else:
            override = overrides.get(finding.id)
        rating, vector = rater.rate(base, context, override.scores() if override is not None else {})
        finding.likelihood = rating.likelihood
        finding.impact = rating.impact
        finding.severity = rating.severity
        finding.rating_vector = vector
