"""The audit ties evidence to findings: verification, re-opening, crashes and unknown checks."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from modelward.audit.evidence import apply_evidence, covers, failed_on
from modelward.audit.runner import run_audit, run_requirement
from modelward.checks.base import Check, CheckContext, Evidence
from modelward.checks.registry import register
from modelward.core.errors import InputError
from modelward.system.loader import parse_system
from modelward.threats.catalog import load_catalog
from modelward.threats.model import Finding, Register, Status, Threat

THREAT = Threat(
    id="ML-TEST-THREAT",
    title="Test threat",
    description="A threat for tests.",
    pack="test",
    targets=["model"],
    stride=["T"],
    risk={"SL": 5, "M": 5, "O": 5, "S": 5, "ED": 5, "EE": 5, "A": 5, "ID": 5, "LC": 5, "LI": 5, "LAV": 5, "LAC": 5},
)


def finding(element: str, status: Status, flow: str | None = None) -> Finding:
    return Finding(threat=THREAT, element=element, flow=flow, status=status)


def evidence(passed: bool, targets: list[str] | None = None, failed: list[str] | None = None) -> Evidence:
    return Evidence(
        check="test.check",
        passed=passed,
        message="ok" if passed else "bad",
        requirement="REQ-1",
        targets=targets or [],
        failed_targets=failed or [],
        verifies=["ML-TEST-THREAT"],
    )


def test_covers_matches_threat_and_target() -> None:
    assert covers(evidence(True), finding("m1", Status.OPEN))
    assert covers(evidence(True, targets=["m1"]), finding("m1", Status.OPEN))
    assert not covers(evidence(True, targets=["m2"]), finding("m1", Status.OPEN))
    assert covers(evidence(True, targets=["f1"]), finding("src", Status.OPEN, flow="f1"))
    other = Evidence(check="x.y", passed=True, message="", verifies=["OTHER-THREAT"])
    assert not covers(other, finding("m1", Status.OPEN))


def test_failed_on_uses_failed_targets_when_given() -> None:
    failing = evidence(False, failed=["m2"])
    assert failed_on(failing, finding("m2", Status.OPEN))
    assert not failed_on(failing, finding("m1", Status.OPEN))
    assert failed_on(evidence(False), finding("m1", Status.OPEN))  # no per-target detail: fails everywhere


def test_passing_check_verifies_a_claimed_mitigation_only() -> None:
    mitigated, still_open = finding("m1", Status.MITIGATED), finding("m2", Status.OPEN)
    register = Register("s", [mitigated, still_open], "1")
    apply_evidence(register, [evidence(True)])
    assert mitigated.verified is True and mitigated.status is Status.MITIGATED
    assert any("verified by passing check: test.check (REQ-1)" in reason for reason in mitigated.why)
    assert still_open.verified is None and still_open.status is Status.OPEN  # evidence alone does not close it
    assert still_open.evidence == [
        {"check": "test.check", "requirement": "REQ-1", "passed": True, "message": "ok", "metrics": {}}
    ]


def test_failing_check_reopens_only_the_failed_targets() -> None:
    hit, spared, accepted = (
        finding("m1", Status.MITIGATED),
        finding("m2", Status.MITIGATED),
        finding("m1", Status.ACCEPTED),
    )
    register = Register("s", [hit, spared, accepted], "1")
    apply_evidence(register, [evidence(False, failed=["m1"])])
    assert hit.status is Status.OPEN and hit.verified is False
    assert "re-opened: the declared mitigation did not hold under its check" in hit.why
    assert spared.status is Status.MITIGATED and spared.verified is True
    assert accepted.status is Status.ACCEPTED and accepted.verified is False  # a decision stays, flagged


SYSTEM = """\
name: audit
elements:
  - {id: user, type: end-user}
  - id: clf
    type: model
    model: {artifact_format: pickle}
flows:
  - {from: user, to: clf}
requirements:
  - {id: artifacts, check: design.safe_model_artifacts, targets: [clf]}
  - {id: boom, check: test.crashing}
"""


@register
class Crashing(Check):
    name = "test.crashing"
    title = "A check that crashes"
    verifies: ClassVar[tuple[str, ...]] = ("ML-UNSAFE-ARTIFACT",)

    def run(self, context: CheckContext, targets: list[str]) -> Evidence:
        raise RuntimeError("disk on fire")


def test_crashing_check_becomes_failing_evidence(tmp_path: Path) -> None:
    system = parse_system(SYSTEM)
    context = CheckContext(system=system, base_dir=str(tmp_path), artifacts_dir=str(tmp_path))
    result = run_requirement(system.requirements[1], context)
    assert not result.passed
    assert result.error == "RuntimeError: disk on fire"
    assert result.requirement == "boom" and result.verifies == ["ML-UNSAFE-ARTIFACT"]


def test_run_audit_end_to_end(tmp_path: Path) -> None:
    system = parse_system(SYSTEM)
    result = run_audit(system, load_catalog(), base_dir=tmp_path, artifacts_dir=tmp_path / "artifacts")
    assert [e.requirement for e in result.failed_requirements] == ["artifacts", "boom"]
    unsafe = result.register.by_id()["ML-UNSAFE-ARTIFACT@clf"]
    assert unsafe.verified is False
    assert {item["requirement"] for item in unsafe.evidence} == {"artifacts", "boom"}
    assert (tmp_path / "artifacts").is_dir()


def test_unknown_check_fails_before_any_work(tmp_path: Path) -> None:
    system = parse_system(SYSTEM.replace("test.crashing", "test.crashin"))
    with pytest.raises(InputError, match=r"did you mean 'test\.crashing'"):
        run_audit(system, load_catalog(), base_dir=tmp_path, artifacts_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()
