"""Small hand-built systems, threats and findings for the report tests (no engine involved)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from modelward.checks.base import Evidence
from modelward.core.severity import Severity
from modelward.system.model import System
from modelward.threats.model import Finding, Mitigation, Register, Status, Threat

EVIL = "<script>alert(1)</script>"

SYSTEM_DATA: dict[str, Any] = {
    "name": 'Demo <b>moderation</b> & "friends"',
    "description": "Uploads screened by a model.",
    "owner": "trust-and-safety",
    "boundaries": [
        {"id": "internet", "name": "Internet", "trust": "untrusted"},
        {"id": "cloud", "name": "Cloud account", "trust": "internal"},
        {"id": "ml-zone", "name": "ML zone", "trust": "privileged", "parent": "cloud"},
    ],
    "data": [
        {
            "id": "uploads",
            "name": "User uploads",
            "personal": True,
            "origin": "user-supplied",
            "classification": "confidential",
            "data_subjects": 100000,
        }
    ],
    "elements": [
        {"id": "user", "type": "end-user", "name": 'User "quoted" #1 | pipe', "boundary": "internet"},
        {"id": "upload-api", "type": "api", "name": EVIL, "boundary": "cloud", "authentication": "oauth2"},
        {
            "id": "moderation-model",
            "type": "model",
            "name": "Moderation model",
            "boundary": "ml-zone",
            "model": {"outputs": "scores", "trained_on": ["uploads"]},
        },
        {
            "id": "uploads-db",
            "type": "object-store",
            "name": "Uploads bucket",
            "boundary": "cloud",
            "data": ["uploads"],
        },
        {"id": "legacy", "type": "service", "name": "Legacy thing", "in_scope": False},
    ],
    "flows": [
        {"from": "user", "to": "upload-api", "name": "upload | image", "data": ["uploads"], "protocol": "https"},
        {"from": "upload-api", "to": "moderation-model", "name": "classify"},
        {"from": "upload-api", "to": "uploads-db", "name": "store"},
    ],
}


def make_system(data: dict[str, Any] | None = None) -> System:
    return System.model_validate(data or SYSTEM_DATA)


def threat(
    ident: str,
    *,
    title: str = "A threat",
    pack: str = "ml",
    stride: list[str] | None = None,
    linddun: list[str] | None = None,
    **extra: Any,
) -> Threat:
    return Threat.model_validate(
        {
            "id": ident,
            "title": title,
            "description": f"Description of {ident}.",
            "pack": pack,
            "targets": ["process"],
            "stride": stride or [],
            "linddun": linddun or [],
            **extra,
        }
    )


EVASION = threat(
    "ML-EVASION-WHITEBOX",
    title="White-box evasion",
    stride=["T"],
    atlas=["AML.T0043.000", "AML.T0015"],
    owasp=["ML01:2023"],
    cwe=["CWE-1039"],
    mitigations=[
        Mitigation(
            id="adversarial-training",
            title="Adversarial training",
            controls=["adversarial-training"],
            atlas=["AML.M0003"],
        )
    ],
    references=["https://atlas.mitre.org/techniques/AML.T0043", "javascript:alert(1)"],
)
MEMBERSHIP = threat(
    "ML-MEMBERSHIP-INFERENCE",
    title="Membership inference",
    stride=["I"],
    linddun=["I", "DD"],
    trim=["inference"],
    atlas=["AML.T0024.000"],
    owasp=["ML04:2023"],
)
FLOW_DISCLOSURE = threat("STRIDE-I-FLOW", title="Disclosure on the wire", pack="stride", stride=["I"])
STORE_DISCLOSURE = threat("LINDDUN-DD-STORE", title="Stored personal data disclosed", pack="linddun", linddun=["DD"])
API_SPOOFING = threat("STRIDE-S-PROCESS", title="Spoofing the API", pack="stride", stride=["S"])
API_DOS = threat("STRIDE-D-PROCESS", title="Flooding the API", pack="stride", stride=["D"])
USER_SPOOFING = threat("STRIDE-S-ENTITY", title="Spoofing the user", pack="stride", stride=["S"])


def make_findings() -> list[Finding]:
    return [
        Finding(
            EVASION,
            "moderation-model",
            applies_because=["model.outputs is 'scores'", "reachable from untrusted 'user' via user → upload-api"],
            unmitigated_because=["no control among: adversarial-training"],
            status=Status.OPEN,
            severity=Severity.CRITICAL,
            likelihood=7.125,
            impact=8.25,
            rating_vector="SL:6/M:9/O:7/S:9/ED:7/EE:5/A:9/ID:9/LC:2/LI:7/LAV:1/LAC:7",
        ),
        Finding(
            MEMBERSHIP,
            "moderation-model",
            applies_because=["trained on personal data 'uploads'"],
            mitigated_because=["declares control 'differential-privacy'"],
            status=Status.OPEN,
            severity=Severity.HIGH,
            likelihood=6.0,
            impact=6.5,
            evidence=[{"check": "membership-inference", "passed": False, "message": "AUC 0.71 above 0.6"}],
            verified=False,
        ),
        Finding(
            FLOW_DISCLOSURE,
            "user",
            flow="user-to-upload-api",
            applies_because=["crosses a trust boundary"],
            mitigated_because=["flow is encrypted (https)"],
            status=Status.MITIGATED,
            severity=Severity.MEDIUM,
            likelihood=4.0,
            impact=5.0,
            verified=True,
        ),
        Finding(
            STORE_DISCLOSURE,
            "uploads-db",
            applies_because=["stores personal data 'uploads'"],
            status=Status.ACCEPTED,
            severity=Severity.HIGH,
            likelihood=6.0,
            impact=7.0,
            triage={
                "status": "accepted",
                "justification": '=HYPERLINK("http://evil.example","click")',
                "owner": "@alice",
                "ticket": "SEC-1",
                "review_by": date(2027, 1, 31),
            },
        ),
        Finding(
            API_SPOOFING,
            "upload-api",
            status=Status.FALSE_POSITIVE,
            severity=Severity.LOW,
            likelihood=2.0,
            impact=4.0,
            triage={"status": "false-positive", "justification": "-OAuth2 is enforced at the gateway"},
        ),
        Finding(API_DOS, "upload-api", status=Status.IN_PROGRESS, severity=Severity.MEDIUM, likelihood=5, impact=4),
        Finding(USER_SPOOFING, "user", status=Status.NOT_APPLICABLE, severity=Severity.NOTE, likelihood=1, impact=2),
    ]


def make_register(findings: list[Finding] | None = None) -> Register:
    return Register(
        system_name=SYSTEM_DATA["name"],
        findings=make_findings() if findings is None else findings,
        catalog_version="2026.11.0",
        orphan_triage=["ML-OLD-THREAT@gone-element"],
        not_applicable=12,
        out_of_scope=["legacy"],
    )


def make_evidence() -> list[Evidence]:
    return [
        Evidence(
            check="membership-inference",
            passed=False,
            message="attack AUC above threshold",
            requirement="mi-audit",
            targets=["moderation-model"],
            verifies=["ML-MEMBERSHIP-INFERENCE"],
            metrics={"auc": 0.71, "advantage": 0.2},
            threshold=0.6,
            details=["shadow models: 4", EVIL],
            artifacts=["artifacts/mi/roc.png"],
            duration_s=3.25,
        ),
        Evidence(
            check="artifact-scan",
            passed=True,
            message="no unsafe opcodes",
            targets=["moderation-model"],
            metrics={"unsafe_files": 0.0},
            threshold=0.0,
        ),
    ]


@pytest.fixture
def system() -> System:
    return make_system()


@pytest.fixture
def register() -> Register:
    return make_register()


@pytest.fixture
def evidence() -> list[Evidence]:
    return make_evidence()
