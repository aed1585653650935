"""Ties evidence to findings: a passing check verifies a claimed mitigation, a failing one re-opens it."""

from __future__ import annotations

from modelward.checks.base import Evidence
from modelward.threats.model import Finding, Register, Status


def covers(evidence: Evidence, finding: Finding) -> bool:
    """Whether this evidence speaks about this finding (its threat, on its element or flow)."""
    if finding.threat.id not in evidence.verifies:
        return False
    if not evidence.targets:
        return True
    return finding.element in evidence.targets or (finding.flow is not None and finding.flow in evidence.targets)


def failed_on(evidence: Evidence, finding: Finding) -> bool:
    """Whether the evidence failed for this finding in particular."""
    if evidence.passed:
        return False
    if evidence.error is not None or not evidence.failed_targets:
        return True
    return finding.element in evidence.failed_targets or (
        finding.flow is not None and finding.flow in evidence.failed_targets
    )


def apply_evidence(register: Register, evidence: list[Evidence]) -> None:
    """Mark findings verified or re-opened, recording which check said so and why."""
    for finding in register.findings:
        relevant = [e for e in evidence if covers(e, finding)]
        if not relevant:
            continue
        failures = [e for e in relevant if failed_on(e, finding)]
        for item in relevant:
            finding.evidence.append(
                {
                    "check": item.check,
                    "requirement": item.requirement,
                    "passed": not failed_on(item, finding),
                    "message": item.message,
                    "metrics": dict(item.metrics),
                }
            )
        if failures:
            finding.verified = False
            names = ", ".join(f"{e.check} ({e.requirement})" if e.requirement else e.check for e in failures)
            finding.unmitigated_because.append(f"check failed: {names}")
            if finding.status is Status.MITIGATED:
                finding.status = Status.OPEN
                finding.unmitigated_because.append("re-opened: the declared mitigation did not hold under its check")
        elif finding.status is Status.MITIGATED:
            # Only a mitigation someone claimed can be verified; a passing check on an open finding
            # is recorded as evidence but does not close it (the threat may need other mitigations).
            finding.verified = True
            names = ", ".join(f"{e.check} ({e.requirement})" if e.requirement else e.check for e in relevant)
            finding.mitigated_because.append(f"verified by passing check: {names}")
