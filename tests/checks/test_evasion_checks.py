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
