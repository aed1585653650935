"""The threat register of a system: engine findings, people's triage decisions, and risk, in one list.

The engine derives each finding's status from declarations (open or mitigated); a triage entry for
the finding id replaces it (an entry whose review-by date has passed re-opens the finding) and may
override risk factors. Findings come sorted by severity, critical first, then by id.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from modelward.system.graph import SystemGraph
from modelward.system.model import System
from modelward.threats.catalog import Catalog
from modelward.threats.engine import apply_catalog, rate_findings
from modelward.threats.model import Finding, Register, Status
from modelward.threats.risk import RiskFactors
from modelward.threats.triage import Triage, TriageDecision, TriageEntry, TriageFile

__all__ = ["build_register", "sort_findings"]


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Critical first, then by finding id (a stable order for reports and diffs)."""
    return sorted(findings, key=lambda f: (-f.severity.rank, f.id))


def build_register(
    system: System,
    catalog: Catalog,
    triage: Triage | TriageFile | None = None,
    today: date | None = None,
    *,
    graph: SystemGraph | None = None,
) -> Register:
    """Apply the catalog to the system, fold in triage as of ``today`` (default: the current date), rate."""
    result = apply_catalog(system, catalog, graph=graph)
    overrides: dict[str, RiskFactors | None] = {}
    orphans: list[str] = []
    if triage is not None:
        matcher = triage if isinstance(triage, Triage) else Triage(triage)
        matched = matcher.match([f.id for f in result.findings], today if today is not None else date.today())
        orphans = list(matched.orphans)
        for finding in result.findings:
            decision = matched.decisions.get(finding.id)
            if decision is None or decision.entry is None:
                continue
            _apply_decision(finding, decision, decision.entry)
            if not decision.expired:  # an expired decision re-opens the finding at its full rating
                overrides[finding.id] = decision.rating_factors()
    rate_findings(result.findings, result.graph, overrides=overrides)
    return Register(
        system_name=system.name,
        findings=sort_findings(result.findings),
        catalog_version=catalog.version,
        orphan_triage=orphans,
        not_applicable=result.not_applicable,
        out_of_scope=result.out_of_scope,
    )


def _apply_decision(finding: Finding, decision: TriageDecision, entry: TriageEntry) -> None:
    """Replace the derived status with the triage one and keep the entry's details on the finding."""
    details: dict[str, Any] = {
        "key": decision.key,
        "status": entry.status.value,
        "derived_status": finding.status.value,
    }
    for name in ("justification", "owner", "ticket", "rating"):
        value = getattr(entry, name)
        if value is not None:
            details[name] = value
    if entry.review_by is not None:
        details["review_by"] = entry.review_by.isoformat()
    if decision.expired:
        details["expired"] = True
        details["reason"] = decision.reason
    finding.triage = details
    finding.status = Status(decision.status.value)
