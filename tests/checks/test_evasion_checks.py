"""The evasion check measures a real model, fails a weak one, writes its plots, and refuses bad parameters."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from modelward.checks.base import CheckContext
from modelward.checks.model_recipes import resolve_model
from modelward.checks.registry import get_check
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.store import save_model
from modelward.classifiers.training import train_classifier
from modelward.core.errors import InputError
from modelward.datasets.builtin import load_digits_images
from modelward.system.loader import parse_system

SYSTEM = parse_system("name: s\nelements: [{id: clf, type: model}]\n")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    split = load_digits_images(seed=0)
    folder = tmp_path_factory.mktemp("models")
    save_model(train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=8, seed=0), folder / "cnn", {})
    return folder


def run(folder: Path, params: dict[str, object], threshold: float) -> tuple[object, Path]:
    artifacts = folder / "artifacts"
    context = CheckContext(
        system=SYSTEM, base_dir=str(folder), artifacts_dir=str(artifacts), params=params, requirement="robust"
    )
    evidence = get_check("evasion.robust_accuracy")(params=params, threshold=threshold).run(context, ["clf"])
    return evidence, artifacts


QUICK = {"samples": 24, "steps": 5, "square_queries": 40, "target_classes": 1, "masking_steps": [3, 10]}


def test_undefended_model_fails_a_demanding_threshold(saved_model: Path) -> None:
    params = {"model": {"path": "cnn"}, "epsilon": 0.25, **QUICK}
    evidence, artifacts = run(saved_model, params, threshold=0.5)
    assert not evidence.passed
    assert evidence.failed_targets == ["clf"]
    assert evidence.metrics["robust_accuracy"] < 0.5 <= evidence.metrics["clean_accuracy"]
    curve = sorted((float(k.removeprefix("curve_")), v) for k, v in evidence.metrics.items() if k.startswith("curve_"))
    assert all(a[1] >= b[1] for a, b in pairwise(curve))  # never rises with epsilon
    assert (artifacts / "robust" / "robustness-curve.png").stat().st_size > 1000
    assert "artifacts/robust/robustness-curve.png" in evidence.artifacts
    assert any(line.startswith("apgd-ce: robust accuracy") for line in evidence.details)


def test_tiny_epsilon_passes(saved_model: Path) -> None:
    evidence, _ = run(saved_model, {"model": {"path": "cnn"}, "epsilon": 0.005, **QUICK}, threshold=0.8)
    assert evidence.passed, evidence.message
    assert evidence.metrics["robust_accuracy"] >= 0.8


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"model": {"recipe": "nope"}}, "unknown model recipe 'nope'"),
        ({"model": "cnn"}, "model must be"),
        ({"model": {"path": "cnn"}, "epsilon": -1}, "epsilon must be a number"),
        ({"model": {"path": "cnn"}, "norm": "l1"}, "norm must be linf or l2"),
        ({"model": {"path": "missing"}}, "no saved model"),
    ],
)
def test_bad_parameters_are_clear_errors(saved_model: Path, params: dict[str, object], message: str) -> None:
    with pytest.raises(Exception, match=message) as info:
        run(saved_model, params, threshold=0.5)
    assert "Traceback" not in str(info.value)


def test_recipe_is_trained_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelward.checks import model_recipes

    calls = []

    def quick(split: object) -> tuple[object, dict[str, object]]:
        calls.append(1)
        module = SmallCNN(width=4)
        return module, {"training": "quick"}

    monkeypatch.setitem(model_recipes.RECIPES, "quick", (model_recipes._digits, quick, "tiny test recipe"))
    first = resolve_model({"recipe": "quick"}, tmp_path)
    second = resolve_model({"recipe": "quick"}, tmp_path)
    assert calls == [1]
    assert first.source.endswith("(trained now)") and second.source.endswith("(cached)")
    assert (tmp_path / ".modelward-cache" / "models" / "quick.safetensors").is_file()
    assert second.metadata["recipe"] == "quick"
    with pytest.raises(InputError, match="unknown data"):
        resolve_model({"path": "x"}, tmp_path, data="imagenet")


def run_check(name: str, folder: Path, params: dict[str, object], threshold: float) -> object:
    context = CheckContext(
        system=SYSTEM, base_dir=str(folder), artifacts_dir=str(folder / "artifacts"), params=params, requirement="r"
    )
    return get_check(name)(params=params, threshold=threshold).run(context, ["clf"])


def test_sanitizer_is_attacked_adaptively_and_the_plain_figure_is_shown_beside(saved_model: Path) -> None:
    params = {"model": {"path": "cnn"}, "epsilon": 0.15, "sanitizer": {"kind": "bit-depth", "bits": 3}, **QUICK}
    evidence = run_check("evasion.robust_accuracy", saved_model, params, threshold=0.5)
    plain_line = next(line for line in evidence.details if "plain APGD-CE" in line)
    plain = float(plain_line.split("robust accuracy ")[1].split()[0])
    assert any("attacked adaptively (BPDA)" in line for line in evidence.details)
    # Rounding masks the gradient: the plain attack claims more robustness than survives BPDA.
    assert plain > evidence.metrics["robust_accuracy"]


def test_detection_rate_measures_feature_squeezing_at_the_target_fpr(saved_model: Path) -> None:
    params = {"model": {"path": "cnn"}, "epsilon": 0.2, "samples": 120, "steps": 10, "fpr": 0.1}
    strict = run_check("evasion.detection_rate", saved_model, params, threshold=1.01)
    assert not strict.passed and strict.failed_targets == ["clf"]
    rate = strict.metrics["detection_rate"]
    assert 0.0 <= strict.metrics["false_positive_rate"] <= 0.3
    assert rate > strict.metrics["false_positive_rate"]  # better than flagging at random
    lenient = run_check("evasion.detection_rate", saved_model, params, threshold=rate)
    assert lenient.passed and lenient.metrics["detection_rate"] == rate  # seeded: same figure twice
    assert set(get_check("evasion.detection_rate").verifies) == {
        "ML-EVASION-BLACKBOX-SCORE",
        "ML-EVASION-BLACKBOX-DECISION",
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"detector": "oracle"}, "detector must be one of"),
        ({"detector": "disagreement"}, "needs params.redundant"),
        ({"fpr": 0.9}, "fpr must be a number"),
        ({"epsilon": 0.0001, "steps": 1}, "broke no input"),
    ],
)
def test_detection_rate_bad_parameters(saved_model: Path, params: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        run_check("evasion.detection_rate", saved_model, {"model": {"path": "cnn"}, "samples": 40, **params}, 0.5)


def test_sanitizer_spec_is_validated(saved_model: Path) -> None:
    with pytest.raises(InputError, match="sanitizer must be"):
        params = {"model": {"path": "cnn"}, "sanitizer": {"kind": "jpeg"}}
        run_check("evasion.robust_accuracy", saved_model, params, 0.5)
