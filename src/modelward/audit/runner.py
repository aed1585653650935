"""The audit: build the threat register, run every check the system's requirements bind, tie the two."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from modelward.audit.evidence import apply_evidence
from modelward.checks.base import CheckContext, Evidence
from modelward.checks.registry import get_check
from modelward.core.errors import ModelwardError
from modelward.system.model import Requirement, System
from modelward.threats.catalog import Catalog
from modelward.threats.model import Register
from modelward.threats.register import build_register
from modelward.threats.triage import TriageFile


@dataclass
class AuditResult:
    """Everything an audit learnt: the register (with evidence applied) and each check's evidence."""

    system: System
    register: Register
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def failed_requirements(self) -> list[Evidence]:
        return [e for e in self.evidence if not e.passed]


def run_requirement(requirement: Requirement, context: CheckContext) -> Evidence:
    """Run one bound check; a crash becomes failing evidence that says why, never a traceback."""
    check_class = get_check(requirement.check)
    check = check_class(params=requirement.params, threshold=requirement.threshold)
    context = CheckContext(
        system=context.system,
        base_dir=context.base_dir,
        artifacts_dir=context.artifacts_dir,
        params=dict(requirement.params),
        requirement=requirement.id,
    )
    started = time.perf_counter()
    try:
        evidence = check.run(context, list(requirement.targets))
    except ModelwardError as exc:
        evidence = Evidence(check=requirement.check, passed=False, message=str(exc), error=str(exc))
    except Exception as exc:  # a check's crash must not end the audit
        evidence = Evidence(
            check=requirement.check, passed=False, message="the check crashed", error=f"{type(exc).__name__}: {exc}"
        )
    evidence.requirement = requirement.id
    evidence.targets = list(requirement.targets)
    evidence.verifies = list(check_class.verifies)
    evidence.duration_s = time.perf_counter() - started
    if evidence.threshold is None:
        evidence.threshold = check.threshold
    return evidence


def run_audit(
    system: System,
    catalog: Catalog,
    *,
    base_dir: Path,
    artifacts_dir: Path,
    triage: TriageFile | None = None,
    today: date | None = None,
) -> AuditResult:
    """Threats, then every requirement's check, then evidence applied to the findings."""
    for requirement in system.requirements:
        get_check(requirement.check)  # unknown checks fail before any work is done
    register = build_register(system, catalog, triage=triage, today=today)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    context = CheckContext(system=system, base_dir=str(base_dir), artifacts_dir=str(artifacts_dir))
    evidence = [run_requirement(requirement, context) for requirement in system.requirements]
    apply_evidence(register, evidence)
    return AuditResult(system=system, register=register, evidence=evidence)
