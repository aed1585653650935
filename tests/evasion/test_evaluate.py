"""Robustness evaluation: the per-sample worst case over an ensemble, epsilon curves, gradient-masking warnings."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator

import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from modelward.attacks.evasion.apgd import APGD, APGDT
from modelward.attacks.evasion.base import AttackError, EvasionAttack, perturbation_norms
from modelward.attacks.evasion.evaluate import (
    default_ensemble,
    epsilon_warnings,
    evaluate_robustness,
    gradient_masking_warnings,
    robustness_curve,
    steps_warnings,
)
from modelward.attacks.evasion.pgd import PGD
from modelward.attacks.evasion.square import Square
from modelward.classifiers.base import Capability, Classifier, InputSpec
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.sklearn_adapter import SklearnClassifier
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import accuracy, train_classifier
from modelward.datasets.builtin import load_digits_images


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models run fastest on one thread, and the suite runs on two workers: don't oversubscribe."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cnn(one_thread: None) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A SmallCNN trained on digits (≥ 95% clean) and 100 test digits."""
    split = load_digits_images(seed=0)
    torch.manual_seed(0)  # the initial weights come from the global generator: fix them
    module = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=10, seed=0)
    assert accuracy(module, split.x_test, split.y_test) >= 0.95
    return module, split.x_test[:100], split.y_test[:100]


class Quantised(nn.Module):
    """Gradient masking by construction: inputs rounded to 5 levels before the model (zero gradient a.e.)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def small_ensemble(classifier: Classifier) -> list[EvasionAttack]:
    """APGD-CE, APGD-T and Square with a small budget, white-box first."""
    return [
        APGD(classifier, steps=10),
        APGDT(classifier, steps=10, target_classes=2),
        Square(classifier, max_queries=200),
    ]


def test_worst_case_is_at_most_every_attack(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    classifier = TorchClassifier(module, (1, 8, 8))
    before = classifier.queries
    result = evaluate_robustness(classifier, x, y, 0.1, attacks=small_ensemble(classifier), cascade=False)
    spent = classifier.queries - before
    assert 0.0 < result.robust_accuracy < result.clean_accuracy
    for summary in result.attacks:
        assert result.robust_accuracy <= summary.robust_accuracy, summary.name
    clean = result.worst.clean_correct
    assert clean is not None
    union = torch.stack([a.success for a in result.attacks]).any(dim=0)
    assert torch.equal(result.worst.success, union | ~clean)
    assert result.robust_accuracy == pytest.approx(float((clean & ~union).float().mean()))
    # the worst-case inputs are real: adversarial where claimed, inside the ball and the bounds
    broken = result.worst.success & clean
    assert torch.all(classifier.predict(result.worst.adversarial)[broken] != y[broken])
    assert float(perturbation_norms(result.worst.adversarial - x, "linf").max()) <= 0.1 * (1 + 1e-6)
    assert float(result.worst.adversarial.min()) >= 0.0 and float(result.worst.adversarial.max()) <= 1.0
    assert torch.equal(result.broken_by >= 0, broken)
    assert torch.equal(result.broken_by == -2, ~clean)
    # queries: per sample over all attacks, equal to what reached the classifier
    assert int(result.worst.queries.sum()) == sum(a.queries for a in result.attacks) == spent
    assert [a.black_box for a in result.attacks] == [False, False, True]


def test_cascade_attacks_only_the_survivors(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    classifier = TorchClassifier(module, (1, 8, 8))
    attacks = small_ensemble(classifier)
    cascade = evaluate_robustness(classifier, x, y, 0.1, attacks=attacks, cascade=True)
    alone = evaluate_robustness(classifier, x, y, 0.1, attacks=attacks[:1], cascade=False)
    running = [a.robust_accuracy for a in cascade.attacks]
    assert running == sorted(running, reverse=True)
    assert running[-1] == cascade.robust_accuracy <= alone.robust_accuracy
    survivors_after_first = round(running[0] * x.shape[0])
    second = cascade.attacks[1]
    assert not second.success[cascade.broken_by == 0].any()  # broken samples are not attacked again
    assert second.queries <= survivors_after_first * (1 + 1 + 2 * 11)  # APGD-T: clean, ranking, 2 targets × 11
    assert sum(a.newly_broken for a in cascade.attacks) == int((cascade.broken_by >= 0).sum())


def test_robustness_curve_never_rises(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    classifier = TorchClassifier(module, (1, 8, 8))
    attacks = [APGD(classifier, steps=5), Square(classifier, max_queries=100)]
    curve = robustness_curve(classifier, x, y, [0.2, 0.0, 0.05, 0.1], attacks=attacks)
    assert curve.epsilons == [0.0, 0.05, 0.1, 0.2]
    accuracies = curve.robust_accuracy
    assert all(later <= earlier for earlier, later in itertools.pairwise(accuracies))
    assert accuracies[0] == pytest.approx(curve.clean_accuracy)
    assert accuracies[-1] < accuracies[0] - 0.5
    assert all(c <= r for c, r in zip(accuracies, curve.raw_robust_accuracy, strict=True))
    assert curve.points()[1] == (0.05, accuracies[1])


def test_masking_is_flagged_on_a_quantised_model_and_not_on_the_plain_cnn(
    cnn: tuple[nn.Module, torch.Tensor, torch.Tensor],
) -> None:
    module, x, y = cnn
    plain = TorchClassifier(module, (1, 8, 8))
    masked = TorchClassifier(Quantised(module), (1, 8, 8))
    assert float((masked.predict(x) == y).float().mean()) >= 0.9  # still a good model

    found = gradient_masking_warnings(plain, x, y, 0.15, attacks=small_ensemble(plain), steps=(5, 20))
    assert found == []

    masked_result = evaluate_robustness(masked, x, y, 0.15, attacks=small_ensemble(masked))
    white_box = masked_result.attacks[1].robust_accuracy
    assert masked_result.robust_accuracy < white_box - 0.3  # Square sees through the rounding
    found = gradient_masking_warnings(masked, x, y, 0.15, ensemble=masked_result, steps=(5, 20))
    kinds = {w.kind for w in found}
    assert "black-box-beats-white-box" in kinds
    assert "large-epsilon-not-broken" in kinds
    assert all(w.message for w in found)


def test_warning_rules() -> None:
    rising = epsilon_warnings([0.1, 0.2, 0.3], [0.6, 0.4, 0.5], norm="linf", input_range=1.0, dimension=64)
    assert [w.kind for w in rising] == ["accuracy-rises-with-epsilon"]
    assert rising[0].epsilon == 0.3 and rising[0].magnitude == pytest.approx(0.1)
    assert epsilon_warnings([0.1, 0.2, 0.3], [0.6, 0.4, 0.41], norm="linf", input_range=1.0, dimension=64) == []
    stuck = epsilon_warnings([0.1, 1.0], [0.5, 0.3], norm="linf", input_range=1.0, dimension=64)
    assert [w.kind for w in stuck] == ["large-epsilon-not-broken"]
    # an L2 epsilon of 1.0 does not span a 64-dimensional unit box (that takes 8.0)
    assert epsilon_warnings([0.1, 1.0], [0.5, 0.3], norm="l2", input_range=1.0, dimension=64) == []
    assert [w.kind for w in steps_warnings(0.1, [(40, 0.35), (10, 0.3)])] == ["more-steps-raise-accuracy"]
    assert steps_warnings(0.1, [(40, 0.3), (10, 0.35)]) == []


def test_default_ensemble_fits_the_classifier(
    cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _, _ = cnn
    white = TorchClassifier(module, (1, 8, 8))
    attacks, notes = default_ensemble(white, steps=5)
    assert [a.name for a in attacks] == ["apgd-ce", "apgd-t", "square"] and notes == []

    binary = TorchClassifier(nn.Linear(3, 2), (3,))
    attacks, notes = default_ensemble(binary)
    assert [a.name for a in attacks] == ["apgd-ce", "square"]
    assert any("3 classes" in n for n in notes)

    table = torch.rand(60, 3, generator=torch.Generator().manual_seed(0))
    labels = (table.sum(dim=1) > 1.5).long()
    scores_only = SklearnClassifier(LogisticRegression().fit(table.numpy(), labels.numpy()), bounds=(0.0, 1.0))
    attacks, notes = default_ensemble(scores_only)
    assert [a.name for a in attacks] == ["square"]
    assert any("no gradients" in n for n in notes)

    labels_only = _LabelsOnly()
    attacks, notes = default_ensemble(labels_only)
    assert attacks == [] and len(notes) == 2
    with pytest.raises(AttackError, match="no attack"):
        evaluate_robustness(labels_only, table, labels, 0.1)

    monkeypatch.setitem(sys.modules, "modelward.attacks.evasion.square", None)  # as if square.py were missing
    attacks, notes = default_ensemble(white, steps=5)
    assert [a.name for a in attacks] == ["apgd-ce", "apgd-t"]
    assert any("Square attack skipped" in n for n in notes)


def test_ensemble_refuses_mismatched_attacks(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    classifier = TorchClassifier(module, (1, 8, 8))
    other = TorchClassifier(module, (1, 8, 8))
    with pytest.raises(AttackError, match="different classifier"):
        evaluate_robustness(classifier, x, y, 0.1, attacks=[PGD(other, steps=2)])
    with pytest.raises(AttackError, match="norm"):
        evaluate_robustness(classifier, x, y, 0.1, attacks=[PGD(classifier, norm="l2", steps=2)])


class _LabelsOnly(Classifier):
    """A decision-only classifier on 3 features (sum above 1.5)."""

    def __init__(self) -> None:
        super().__init__(InputSpec((3,)), 2, {Capability.LABELS})

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return (x.sum(dim=1) > 1.5).long()
