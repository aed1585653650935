"""The classifier protocol: bounds are enforced (never clipped), capabilities named, queries counted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from modelward.classifiers.base import (
    Capability,
    ClassifierError,
    InputSpec,
    MissingCapabilityError,
    QueryBudgetExceeded,
)
from modelward.classifiers.models import MLP, SmallCNN
from modelward.classifiers.sklearn_adapter import SklearnClassifier
from modelward.classifiers.store import load_model, save_model
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import accuracy, train_classifier
from modelward.datasets.builtin import load_breast_cancer_table, load_digits_images


@pytest.fixture(scope="module")
def digits_cnn() -> tuple[SmallCNN, torch.Tensor, torch.Tensor]:
    split = load_digits_images(seed=0)
    model = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=10, seed=0)
    return model, split.x_test, split.y_test


def test_torch_adapter_infers_classes_and_counts_queries(
    digits_cnn: tuple[SmallCNN, torch.Tensor, torch.Tensor],
) -> None:
    model, x, y = digits_cnn
    clf = TorchClassifier(model, (1, 8, 8))
    assert clf.num_classes == 10
    assert clf.capabilities == {Capability.GRADIENTS, Capability.SCORES, Capability.LABELS}
    labels = clf.predict(x[:50])
    assert clf.queries == 50
    assert float((labels == y[:50]).float().mean()) >= 0.9
    probabilities = clf.probabilities(x[:10])
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(10), atol=1e-5)
    assert clf.queries == 60
    logits = clf.logits(x[:5].clone().requires_grad_(True))
    assert logits.requires_grad


def test_out_of_bounds_and_bad_shapes_are_errors_not_clipped(
    digits_cnn: tuple[SmallCNN, torch.Tensor, torch.Tensor],
) -> None:
    clf = TorchClassifier(digits_cnn[0], (1, 8, 8))
    with pytest.raises(ClassifierError, match=r"outside the classifier's bounds \[0.0, 1.0\]"):
        clf.predict(torch.full((2, 1, 8, 8), 1.5))
    with pytest.raises(ClassifierError, match=r"expected inputs of shape \(N, 1, 8, 8\)"):
        clf.predict(torch.zeros(2, 64))
    with pytest.raises(ClassifierError, match="NaN"):
        clf.predict(torch.full((1, 1, 8, 8), float("nan")))
    assert clf.queries == 0  # refused inputs are not counted


def test_normalisation_lives_inside_the_classifier(digits_cnn: tuple[SmallCNN, torch.Tensor, torch.Tensor]) -> None:
    model, x, _ = digits_cnn
    clf = TorchClassifier(model, (1, 8, 8), mean=[0.5], std=[0.25])
    expected = model((x[:4] - 0.5) / 0.25)
    assert torch.allclose(clf.logits(x[:4]), expected)
    with pytest.raises(ClassifierError, match="std must be positive"):
        TorchClassifier(model, (1, 8, 8), std=[0.0])


def test_query_budget_is_enforced_before_the_model_runs(
    digits_cnn: tuple[SmallCNN, torch.Tensor, torch.Tensor],
) -> None:
    clf = TorchClassifier(digits_cnn[0], (1, 8, 8), query_budget=10)
    clf.predict(digits_cnn[1][:8])
    with pytest.raises(QueryBudgetExceeded, match="budget of 10 spent"):
        clf.predict(digits_cnn[1][:3])
    assert clf.queries == 8
    clf.reset_queries()
    clf.predict(digits_cnn[1][:10])
    assert clf.queries == 10


def test_sklearn_adapter_capabilities() -> None:
    table = load_breast_cancer_table(seed=0)
    x, y = table.x_train.numpy(), table.y_train.numpy()
    scored = SklearnClassifier(LogisticRegression(max_iter=500).fit(x, y), bounds=(table.lower, table.upper))
    assert scored.capabilities == {Capability.SCORES, Capability.LABELS}
    assert float((scored.predict(table.x_test) == table.y_test).float().mean()) > 0.9
    assert scored.probabilities(table.x_test[:3]).shape == (3, 2)
    labels_only = SklearnClassifier(LinearSVC().fit(x, y), bounds=(table.lower, table.upper))
    with pytest.raises(MissingCapabilityError, match="needs capability scores; this classifier offers labels"):
        labels_only.probabilities(table.x_test[:1])
    with pytest.raises(MissingCapabilityError, match="gradients"):
        labels_only.require(Capability.GRADIENTS, by="PGD")
    with pytest.raises(ClassifierError, match="must be fitted"):
        SklearnClassifier(LogisticRegression(), bounds=(0, 1))


def test_input_spec_validation() -> None:
    with pytest.raises(ClassifierError):
        InputSpec((0, 8))
    with pytest.raises(ClassifierError):
        InputSpec((8,), 1.0, 0.0)


def test_store_round_trips_weights_and_refuses_tampering(
    tmp_path: Path, digits_cnn: tuple[SmallCNN, torch.Tensor, torch.Tensor]
) -> None:
    model, x, y = digits_cnn
    save_model(model, tmp_path / "cnn", {"accuracy": accuracy(model, x, y)})
    loaded, metadata = load_model(tmp_path / "cnn")
    assert torch.equal(loaded(x[:20]), model(x[:20]))
    assert metadata["accuracy"] == pytest.approx(accuracy(model, x, y))
    assert not any(p.suffix in {".pt", ".pkl", ".pth"} for p in tmp_path.iterdir())
    weights = tmp_path / "cnn.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(ClassifierError, match="do not match the digest"):
        load_model(tmp_path / "cnn")
    with pytest.raises(ClassifierError, match="no saved model"):
        load_model(tmp_path / "missing")
    save_model(MLP(30), tmp_path / "mlp", {})
    assert isinstance(load_model(tmp_path / "mlp")[0], MLP)


def test_datasets_are_seeded_bounded_and_stratified() -> None:
    a, b = load_digits_images(seed=3), load_digits_images(seed=3)
    assert torch.equal(a.x_test, b.x_test)
    assert not torch.equal(a.x_test, load_digits_images(seed=4).x_test)
    assert a.x_train.shape[1:] == (1, 8, 8) and float(a.x_train.min()) >= 0.0 and float(a.x_train.max()) <= 1.0
    assert set(a.y_test.tolist()) == set(range(10))
    table = load_breast_cancer_table(seed=0)
    assert table.x_train.shape[1] == 30
    assert float(table.x_test.min()) >= table.lower and float(table.x_test.max()) <= table.upper
    assert abs(float(table.x_train.mean())) < 0.1
