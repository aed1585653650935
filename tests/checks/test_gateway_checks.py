"""The gateway checks probe a real launched gateway: they pass on the demo and fail where it is weakened.

One demo gateway is launched for the module (the checks share it, as in an audit). The negative controls
launch a second gateway from a weakened copy of the demo configuration (end users get scores, the rate
limit is far above the probe), and tamper with the served artifact on disk.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelward.checks.base import CheckContext, Evidence
from modelward.checks.gateway_probe import (
    CACHE_SUBDIR,
    PURPOSES,
    GatewayUnavailable,
    cli,
    gateway_target,
    key_prefix,
)
from modelward.checks.registry import get_check
from modelward.core.errors import InputError
from modelward.system.loader import parse_system

if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
    pytest.skip("the gateway needs the serve extra (fastapi, uvicorn)", allow_module_level=True)

SYSTEM = parse_system("name: s\nelements: [{id: svc, type: inference-service}]\n")
CHECKS = [
    "gateway.credentials_required",
    "gateway.scores_withheld",
    "gateway.uploads_refused",
    "gateway.rate_limit_enforced",
    "gateway.audit_chain_valid",
    "gateway.model_signature_valid",
]
# The scenario's limits (the demo runs the gateway's defaults: 40 requests of burst, 20/s after).
LIMITS = {"burst": 40, "rate_per_s": 20}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A system folder whose demo gateway finds its moderation model already trained (quickly, 2 epochs).

    ``serve --prepare-only`` trains the digits-cnn recipe into the work folder's cache on first use; a
    briefly trained stand-in there keeps this file fast without changing what the gateway does with it.
    """
    from modelward.classifiers.models import SmallCNN
    from modelward.classifiers.store import save_model
    from modelward.classifiers.training import train_classifier
    from modelward.datasets.builtin import load_digits_images

    folder = tmp_path_factory.mktemp("system")
    split = load_digits_images(seed=0)
    module = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=2, seed=0)
    cache = folder / CACHE_SUBDIR / ".modelward-cache" / "models" / "digits-cnn"
    cache.parent.mkdir(parents=True)
    save_model(module, cache, {"recipe": "digits-cnn", "training": "standard", "epochs": 2})
    return folder


def run(folder: Path, name: str, params: dict[str, Any], threshold: float | None = None) -> Evidence:
    context = CheckContext(
        system=SYSTEM,
        base_dir=str(folder),
        artifacts_dir=str(folder / "artifacts"),
        params=params,
        requirement=name.split(".")[1],
    )
    return get_check(name)(params=params, threshold=threshold).run(context, ["svc"])


def describe(evidence: Evidence) -> str:
    rows = "\n".join(" | ".join(row) for table in evidence.tables for row in table.rows)
    return f"{evidence.message}\n{evidence.details}\n{rows}"


@pytest.mark.parametrize("name", CHECKS)
def test_each_check_passes_against_the_demo_gateway(demo: Path, name: str) -> None:
    params: dict[str, Any] = {"launch": "demo", **(LIMITS if name == "gateway.rate_limit_enforced" else {})}
    evidence = run(demo, name, params)
    assert evidence.passed, describe(evidence)
    assert evidence.tables and evidence.tables[0].rows
    assert evidence.failed_targets == []


def test_the_probes_saw_what_a_secure_gateway_answers(demo: Path) -> None:
    credentials = run(demo, "gateway.credentials_required", {"launch": "demo"})
    observed = {row[0]: row[3] for row in credentials.tables[0].rows}
    assert observed["revoked key"] == "401 revoked"
    assert observed["known prefix, wrong secret"] == "401 hash_mismatch"
    assert observed["admin creates a key without MFA"] == "403 mfa_required"
    assert credentials.metrics["refused_fraction"] == 1.0
    uploads = run(demo, "gateway.uploads_refused", {"launch": "demo"})
    observed = {row[0]: row[3] for row in uploads.tables[0].rows}
    assert observed["decompression bomb"].startswith("413")
    assert observed["valid WebP (control)"] == "200"
    scores = run(demo, "gateway.scores_withheld", {"launch": "demo"})
    assert any("moderator sees: 200;" in d and "scores" in d for d in scores.details)  # the contrast is recorded


def test_probe_keys_expire_on_their_own(demo: Path) -> None:
    launched = gateway_target(
        CheckContext(
            system=SYSTEM, base_dir=str(demo), artifacts_dir=str(demo / "artifacts"), params={"launch": "demo"}
        )
    )
    rows = cli("keys", "list", "--config", str(launched.config_path), "--format", "json")
    prefixes = {key_prefix(launched.key(purpose)) for purpose in PURPOSES}
    probes = [row for row in rows if row["prefix"] in prefixes]
    assert len(probes) == len(PURPOSES)
    for row in probes:  # the admin and ML-engineer keys an audit made do not outlive it by more than 2 h
        assert row["expires_at"] is not None
        assert 2 * 3600 - 5 <= row["expires_at"] - row["created_at"] <= 2 * 3600 + 5, row


def test_url_mode_probes_a_running_gateway_with_keys_from_the_environment(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launched = gateway_target(
        CheckContext(
            system=SYSTEM, base_dir=str(demo), artifacts_dir=str(demo / "artifacts"), params={"launch": "demo"}
        )
    )
    auditor = cli("keys", "create", "--config", str(launched.config_path), "--principal", "test-auditor",
                  "--role", "auditor", "--format", "json")  # fmt: skip
    keys = {purpose: launched.key(purpose) for purpose in ("end-user", "moderator", "revoked")}
    names = {}
    for purpose, key in {**keys, "auditor": auditor["key"]}.items():
        variable = f"MODELWARD_TEST_{purpose.upper().replace('-', '_')}_KEY"
        monkeypatch.setenv(variable, key)
        names[purpose] = variable
    params: dict[str, Any] = {"url": launched.url, "keys": names}
    credentials = run(demo, "gateway.credentials_required", params)
    assert credentials.passed, describe(credentials)
    assert "revoked key" in {row[0] for row in credentials.tables[0].rows}
    audit = run(demo, "gateway.audit_chain_valid", params)  # through GET /v1/audit-log/verify, as an auditor
    assert audit.passed, describe(audit)
    assert audit.metrics["missing"] == 0
    with pytest.raises(InputError, match="artifact_path and public_key"):
        run(demo, "gateway.model_signature_valid", {**params, "keys": {**names, "ml-engineer": names["auditor"]}})


@pytest.fixture(scope="module")
def weak(demo: Path) -> str:
    """A second configuration beside the demo's: end users get (rounded) scores, no effective rate limit."""
    work = demo / CACHE_SUBDIR
    run(demo, "gateway.model_signature_valid", {"launch": "demo"})  # the demo folder exists from here on
    config = yaml.safe_load((work / "gateway.yaml").read_text())
    config["output_policy"] = {"end-user": [{"kind": "rounding", "decimals": 2}]}
    bucket = {"rate_per_s": 10_000, "burst": 10_000}
    config["rate_limits"] = {"backend": "memory", "per_principal": bucket, "per_address": bucket}
    (work / "weak.yaml").write_text(yaml.safe_dump(config))
    return str(CACHE_SUBDIR / "weak.yaml")


def test_scores_given_to_end_users_fail_the_check(demo: Path, weak: str) -> None:
    evidence = run(demo, "gateway.scores_withheld", {"launch": weak})
    assert not evidence.passed
    assert evidence.metrics["leaks"] == evidence.metrics["answered"] > 0
    assert evidence.failed_targets == ["svc"]


def test_a_rate_limit_far_above_the_probe_fails_the_check(demo: Path, weak: str) -> None:
    evidence = run(demo, "gateway.rate_limit_enforced", {"launch": weak, **LIMITS, "requests": 80})
    assert not evidence.passed
    assert evidence.metrics["allowed"] == 80
    assert evidence.metrics["first_429_at"] == -1


def test_a_tampered_artifact_fails_the_signature_check_and_the_launch(demo: Path) -> None:
    target = gateway_target(
        CheckContext(
            system=SYSTEM, base_dir=str(demo), artifacts_dir=str(demo / "artifacts"), params={"launch": "demo"}
        )
    )
    assert target.models_dir is not None
    weights = target.models_dir / "digits-cnn" / "model.safetensors"
    original = weights.read_bytes()
    tampered = bytearray(original)
    tampered[-1] ^= 0x01
    weights.write_bytes(bytes(tampered))
    try:
        evidence = run(demo, "gateway.model_signature_valid", {"launch": "demo"})
        assert not evidence.passed
        assert evidence.metrics["signature_valid"] == 0.0
        assert any("model.safetensors" in d for d in evidence.details), evidence.details
        # A gateway started on the tampered folder refuses to serve it: the launch fails, saying why.
        (demo / CACHE_SUBDIR / "tampered.yaml").write_text((demo / CACHE_SUBDIR / "gateway.yaml").read_text())
        with pytest.raises(GatewayUnavailable, match="exited"):
            run(demo, "gateway.model_signature_valid", {"launch": str(CACHE_SUBDIR / "tampered.yaml")})
    finally:
        weights.write_bytes(original)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "exactly one of url or launch"),
        ({"url": "http://x", "launch": "demo"}, "exactly one of url or launch"),
        ({"url": "ftp://x"}, "http(s) URL"),
        ({"url": "http://127.0.0.1:9", "keys": {"end-user": "MODELWARD_TEST_UNSET_VARIABLE"}}, "is not set"),
        ({"launch": "missing.yaml"}, "no gateway configuration"),
    ],
)
def test_bad_targets_are_clear_errors(tmp_path: Path, params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(tmp_path, "gateway.credentials_required", params)
