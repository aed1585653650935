"""Design-rule checks find exactly the violations in a system, and honour targets and thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelward.checks.base import Check, CheckContext, Evidence
from modelward.checks.registry import all_checks, get_check, register
from modelward.core.errors import InputError
from modelward.system.loader import parse_system

SYSTEM = """\
name: design rules
boundaries:
  - {id: internet, trust: untrusted}
  - {id: cloud, trust: internal}
data:
  - {id: uploads, classification: confidential, personal: true, data_subjects: 10000, purpose: moderation,
     origin: user-supplied}
  - {id: reports, classification: internal, origin: telemetry}
  - {id: curated, classification: internal, origin: internal}
elements:
  - {id: user, type: end-user, boundary: internet}
  - {id: api, type: api, boundary: cloud}
  - {id: gated-api, type: api, boundary: cloud, rate_limit: 30/minute}
  - id: open-model
    type: model
    boundary: cloud
    model: {outputs: scores, trained_on: [reports], artifact_format: pytorch-pickle}
  - id: gated-model
    type: model
    boundary: cloud
    model: {outputs: scores, trained_on: [curated], artifact_format: safetensors}
  - id: label-model
    type: model
    boundary: cloud
    controls: [label-review]
    model: {outputs: labels, trained_on: [reports]}
  - {id: store, type: dataset, boundary: cloud, data: [uploads]}
flows:
  - {id: up, from: user, to: api, data: [uploads], protocol: http}
  - {id: up2, from: user, to: gated-api, data: [uploads], protocol: https}
  - {id: score, from: api, to: open-model, data: [uploads]}
  - {id: score2, from: gated-api, to: gated-model, data: [uploads]}
  - {id: label, from: api, to: label-model, data: [uploads]}
  - {id: keep, from: api, to: store, data: [uploads]}
"""


def run(name: str, targets: list[str] | None = None, threshold: float | None = None) -> Evidence:
    system = parse_system(SYSTEM)
    check = get_check(name)(threshold=threshold)
    return check.run(CheckContext(system=system, base_dir=".", artifacts_dir="."), targets or [])


def test_unencrypted_boundary_flow() -> None:
    evidence = run("design.encrypted_boundary_flows")
    assert not evidence.passed
    assert evidence.failed_targets == ["up"]
    assert evidence.metrics == {"violations": 1.0, "checked": 2.0}
    assert "crosses a boundary unencrypted" in evidence.details[0]
    assert run("design.encrypted_boundary_flows", targets=["gated-api"]).passed


def test_threshold_tolerates_violations() -> None:
    evidence = run("design.encrypted_boundary_flows", threshold=1)
    assert evidence.passed and evidence.failed_targets == []
    assert evidence.threshold == 1


def test_scores_to_untrusted_without_rate_limit() -> None:
    evidence = run("design.score_exposure")
    assert not evidence.passed
    assert evidence.failed_targets == ["open-model"]
    assert "user → api → open-model" in evidence.details[0]
    assert evidence.metrics["checked"] == 2.0  # label-model returns labels only


def test_one_unthrottled_side_door_is_enough() -> None:
    system = parse_system(
        """\
name: side door
elements:
  - {id: u, type: end-user, trust: untrusted}
  - {id: api, type: api, rate_limit: 10/minute}
  - {id: api2, type: api}
  - {id: z, type: service}
  - {id: m, type: model, model: {outputs: scores}}
flows:
  - {from: u, to: api}
  - {from: api, to: m}
  - {from: u, to: api2}
  - {from: api2, to: z}
  - {from: z, to: m}
"""
    )
    check = get_check("design.score_exposure")()
    evidence = check.run(CheckContext(system=system, base_dir=".", artifacts_dir="."), [])
    assert not evidence.passed and evidence.failed_targets == ["m"]
    assert "u → api2 → z → m" in evidence.details[0]


def test_training_data_paths_are_not_query_paths() -> None:
    system = parse_system(
        """\
name: training is not querying
elements:
  - {id: pub, type: public-dataset, trust: untrusted}
  - {id: pipe, type: training-pipeline}
  - {id: m, type: model, model: {outputs: scores}}
flows:
  - {from: pub, to: pipe}
  - {from: pipe, to: m}
"""
    )
    evidence = get_check("design.score_exposure")().run(
        CheckContext(system=system, base_dir=".", artifacts_dir="."), []
    )
    assert evidence.passed and evidence.metrics["checked"] == 0.0


def test_untrusted_training_data_needs_sanitation() -> None:
    evidence = run("design.training_data_sanitation")
    assert evidence.failed_targets == ["open-model"]  # label-model declares label-review; gated-model is internal
    assert "reports" in evidence.details[0]


def test_personal_data_retention() -> None:
    evidence = run("design.personal_data_retention")
    assert not evidence.passed
    assert "has no retention" in evidence.details[0]
    assert set(evidence.failed_targets) >= {"user", "api", "store"}
    fixed = SYSTEM.replace("purpose: moderation,", "purpose: moderation, retention: 30 days,")
    system = parse_system(fixed)
    check = get_check("design.personal_data_retention")()
    assert check.run(CheckContext(system=system, base_dir=".", artifacts_dir="."), []).passed


def test_pickle_artifacts() -> None:
    evidence = run("design.safe_model_artifacts")
    assert evidence.failed_targets == ["open-model"]
    assert evidence.metrics["checked"] == 2.0  # label-model declares no format
    assert run("design.safe_model_artifacts", targets=["gated-model"]).passed


def test_registry_rejects_unknown_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"did you mean 'design\.score_exposure'"):
        get_check("design.score_exposur")
    assert set(all_checks()) >= {
        "design.encrypted_boundary_flows",
        "design.score_exposure",
        "design.training_data_sanitation",
        "design.personal_data_retention",
        "design.safe_model_artifacts",
    }

    class Bad(Check):
        name = "no-dot"
        title = "bad"

    with pytest.raises(ValueError, match="must look like"):
        register(Bad)

    class Twin(Check):
        name = "design.score_exposure"
        title = "twin"

    with pytest.raises(ValueError, match="registered twice"):
        register(Twin)
