"""Privacy checks: membership inference, extraction fidelity, the DP record and the privacy–utility table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from modelward.checks.base import CheckContext, Evidence
from modelward.checks.registry import get_check
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.store import save_model
from modelward.classifiers.training import train_classifier
from modelward.core.errors import InputError
from modelward.datasets.builtin import load_digits_images
from modelward.defenses.dp import epsilon_for, train_dp
from modelward.system.loader import parse_system

SYSTEM = parse_system("name: s\nelements: [{id: clf, type: model}]\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    split = load_digits_images(seed=0)
    folder = tmp_path_factory.mktemp("privacy-models")
    torch.manual_seed(0)
    save_model(train_classifier(SmallCNN(width=8), split.x_train, split.y_train, epochs=6, seed=0), folder / "cnn", {})
    torch.manual_seed(0)
    dp = train_dp(SmallCNN(width=8), split.x_train, split.y_train, noise_multiplier=1.0, epochs=2, batch_size=256)
    record = {
        "epsilon": dp.epsilon,
        "delta": dp.delta,
        "noise_multiplier": dp.noise_multiplier,
        "sample_rate": dp.sample_rate,
        "steps": dp.steps,
        "accountant": dp.accountant,
        "poisson_sampling": True,
        "max_grad_norm": dp.max_grad_norm,
    }
    save_model(dp.module, folder / "dp", {"dp": record})
    return folder


def run(name: str, folder: Path, params: dict[str, Any], threshold: float) -> Evidence:
    context = CheckContext(
        system=SYSTEM, base_dir=str(folder), artifacts_dir=str(folder / "artifacts"), params=params, requirement="r"
    )
    return get_check(name)(params=params, threshold=threshold).run(context, ["clf"])


def tamper(folder: Path, name: str, **changes: Any) -> None:
    meta = folder / f"{name}.json"
    document = json.loads(meta.read_text())
    document["metadata"]["dp"].update(changes)
    meta.write_text(json.dumps(document))


# --- privacy.dp_epsilon -----------------------------------------------------------------------


def test_dp_epsilon_is_recomputed_by_the_accountant_and_compared(models: Path) -> None:
    record = json.loads((models / "dp.json").read_text())["metadata"]["dp"]
    expected = epsilon_for(record["noise_multiplier"], record["sample_rate"], record["steps"], record["delta"], "prv")
    lenient = run("privacy.dp_epsilon", models, {"model": {"path": "dp"}}, threshold=expected + 0.01)
    assert lenient.passed and lenient.metrics["epsilon"] == pytest.approx(expected)
    strict = run("privacy.dp_epsilon", models, {"model": {"path": "dp"}}, threshold=expected / 2)
    assert not strict.passed and strict.failed_targets == ["clf"]


def test_dp_epsilon_fails_without_a_record_and_flags_a_doctored_one(models: Path, tmp_path: Path) -> None:
    plain = run("privacy.dp_epsilon", models, {"model": {"path": "cnn"}}, threshold=100)
    assert not plain.passed and "no differential-privacy training recorded" in plain.message
    for suffix in (".json", ".safetensors"):
        (tmp_path / f"dp{suffix}").write_bytes((models / f"dp{suffix}").read_bytes())
    tamper(tmp_path, "dp", epsilon=0.01)  # claims far less than the parameters spend
    doctored = run("privacy.dp_epsilon", tmp_path, {"model": {"path": "dp"}}, threshold=100)
    assert any("the saved record claims ε = 0.01" in line for line in doctored.details)
    tamper(tmp_path, "dp", poisson_sampling=False)
    fixed_batches = run("privacy.dp_epsilon", tmp_path, {"model": {"path": "dp"}}, threshold=100)
    assert not fixed_batches.passed  # not a guarantee without Poisson sampling
    tamper(tmp_path, "dp", steps="many")
    with pytest.raises(InputError, match="DP record is incomplete or malformed"):
        run("privacy.dp_epsilon", tmp_path, {"model": {"path": "dp"}}, threshold=100)


# --- privacy.membership_inference ---------------------------------------------------------------

QUICK_MIA = {"references": 2, "epochs": 2}


def test_membership_inference_reports_tpr_at_the_fpr_and_decides_on_it(models: Path) -> None:
    params = {"model": {"path": "cnn"}, "attack": "lira", **QUICK_MIA}
    evidence = run("privacy.membership_inference", models, params, threshold=0.02)
    tpr = evidence.metrics["tpr_at_fpr"]
    assert 0.0 <= tpr <= 1.0 and 0.0 <= evidence.metrics["auc"] <= 1.0
    assert evidence.passed == (tpr <= 0.02)
    assert (models / "artifacts" / "r" / "roc.png").stat().st_size > 1000
    assert any("1257 members, 540 non-members" in line for line in evidence.details)
    # Reference models are cached beside the system file: a second run trains nothing new.
    cached = sorted((models / ".modelward-cache" / "references").rglob("*.safetensors"))
    assert cached
    again = run("privacy.membership_inference", models, params, threshold=0.02)
    assert again.metrics == evidence.metrics
    assert sorted((models / ".modelward-cache" / "references").rglob("*.safetensors")) == cached


def test_loss_attack_needs_no_reference_models(models: Path) -> None:
    evidence = run("privacy.membership_inference", models, {"model": {"path": "cnn"}, "attack": "loss"}, 1.0)
    assert evidence.passed and evidence.message.startswith("LOSS")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fpr": 0.001}, r"cannot be resolved with 540 non-members \(needs at least 1000\)"),
        ({"attack": "oracle"}, "attack must be one of"),
        ({"online": "yes"}, "online must be true or false"),
        ({"references": 0}, "references must be a number"),
    ],
)
def test_membership_bad_parameters(models: Path, params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        run("privacy.membership_inference", models, {"model": {"path": "cnn"}, **QUICK_MIA, **params}, 0.02)


# --- privacy.extraction_fidelity ----------------------------------------------------------------


def test_extraction_fidelity_and_hardening(models: Path) -> None:
    open_api = run("privacy.extraction_fidelity", models, {"model": {"path": "cnn"}, "budget": 60}, threshold=0.5)
    fidelity = open_api.metrics["fidelity"]
    assert open_api.passed == (fidelity <= 0.5)
    assert open_api.metrics["queries"] <= 60
    assert (models / "artifacts" / "r" / "extraction-curve.png").is_file()
    hardened = run(
        "privacy.extraction_fidelity",
        models,
        {"model": {"path": "cnn"}, "budget": 60, "hardening": [{"kind": "label_only"}]},
        threshold=0.5,
    )
    assert any("the attacker learns from labels" in line for line in hardened.details)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"strategy": "psychic"}, "strategy must be one of"),
        ({"output": "logits"}, "output must be scores or labels"),
        ({"hardening": "rounding"}, "hardening must be a list"),
        ({"hardening": [{"kind": "blur"}]}, "kind must be one of"),
    ],
)
def test_extraction_bad_parameters(models: Path, params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        run("privacy.extraction_fidelity", models, {"model": {"path": "cnn"}, "budget": 20, **params}, 0.5)


# --- privacy.privacy_utility ------------------------------------------------------------------------


def test_privacy_utility_table_lists_every_defense(tmp_path: Path) -> None:
    params = {"population": 1200, "fpr": 0.01, "references": 2, "epochs": 8, "epsilons": [8]}
    evidence = run("privacy.privacy_utility", tmp_path, params, threshold=1.0)
    [table] = evidence.tables
    labels = [row[0] for row in table.rows]
    assert labels[0] == "undefended"
    assert any(label.startswith("served with scores rounded") for label in labels)
    assert any(label.startswith("served label only") for label in labels)
    assert any(label.startswith("regularised") for label in labels)
    assert labels[-1] == "DP-SGD, ε = 8"
    assert all(len(row) == len(table.columns) for row in table.rows)
    assert evidence.passed  # a threshold of 100% TPR accepts any defense within the accuracy budget
    strict = run("privacy.privacy_utility", tmp_path, {**params, "max_accuracy_drop": 0.0}, threshold=0.0)
    [rows] = [t.rows for t in strict.tables]
    baseline = float(rows[0][1])
    qualifying = [r for r in rows[1:] if r[2] == "0.00%" and float(r[1]) >= baseline]
    assert strict.passed == bool(qualifying)  # the verdict follows the table it reports


def test_privacy_utility_refuses_an_unresolvable_fpr(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot resolve an FPR"):
        run("privacy.privacy_utility", tmp_path, {"population": 400, "fpr": 0.001}, threshold=0.01)


def test_dp_epsilon_audit_puts_an_empirical_lower_bound_beside_the_accountant(models: Path) -> None:
    params = {"model": {"path": "dp"}, "audit": {"canaries": 60, "guesses": 20}}
    evidence = run("privacy.dp_epsilon", models, params, threshold=100)
    lower = evidence.metrics["audited_epsilon_lower_bound"]
    assert 0.0 <= lower <= evidence.metrics["epsilon"]  # a sound audit never exceeds the guarantee
    assert any("one-run audit" in line and "60 mislabelled canaries" in line for line in evidence.details)
    with pytest.raises(InputError, match="audit must be a mapping"):
        run("privacy.dp_epsilon", models, {"model": {"path": "dp"}, "audit": True}, threshold=100)
