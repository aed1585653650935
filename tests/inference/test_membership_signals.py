"""Membership signals read through the classifier protocol: loss, confidence, φ, label-only."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modelward.attacks.inference.signals import (
    correctness_signal,
    log_probabilities,
    logit_scaled_confidence,
    loss_signal,
    noisy_correctness_signal,
    phi_from_logits,
    signal_from_log_probabilities,
)
from modelward.classifiers.base import Capability, Classifier, MissingCapabilityError
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.core.errors import InputError


class FixedLogits(nn.Module):
    """Returns stored logits row by row: input i (a one-hot-ish index in x[:, 0]) gets row i."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.table = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x[:, 0].round().long()]


class ScoresOnly(Classifier):
    """A black box over a torch module offering probabilities (float32, as a remote model would)."""

    def __init__(self, inner: TorchClassifier, labels_only: bool = False) -> None:
        capabilities = {Capability.LABELS} if labels_only else {Capability.SCORES, Capability.LABELS}
        super().__init__(inner.input_spec, inner.num_classes, capabilities)
        self.inner = inner

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner.module(x), dim=1).float()

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.module(x).argmax(dim=1)


def _classifier(logits: torch.Tensor) -> tuple[TorchClassifier, torch.Tensor]:
    n = logits.shape[0]
    x = torch.zeros((n, 2))
    x[:, 0] = torch.arange(n, dtype=torch.float32)
    return TorchClassifier(FixedLogits(logits), (2,), bounds=(0.0, float(n)), num_classes=logits.shape[1]), x


def test_phi_matches_its_definition_and_stays_finite_where_naive_overflows() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [-80.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 0, 0])
    classifier, x = _classifier(logits)
    phi = logit_scaled_confidence(classifier, x, y)
    p = torch.softmax(logits.double(), dim=1)
    expected = torch.log(p[0, 0] / (1 - p[0, 0]))
    assert phi[0].item() == pytest.approx(expected.item(), rel=1e-9)
    assert phi[1].item() == pytest.approx(math.log(0.5), rel=1e-9)
    # p_y rounds to exactly 1 in float64 here: the naive log(p / (1 - p)) is inf.
    assert torch.isinf(torch.log(p[2, 0] / (1 - p[2, 0])))
    assert phi[2].item() == pytest.approx(100.0 - math.log(2.0), rel=1e-12)
    assert phi[3].item() == pytest.approx(-80.0 - math.log(2.0), rel=1e-12)
    assert torch.allclose(phi, phi_from_logits(logits, y))


def test_scores_only_path_agrees_with_logits_path() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn((50, 5), generator=generator) * 4
    y = torch.randint(0, 5, (50,), generator=generator)
    white, x = _classifier(logits)
    black = ScoresOnly(white)
    for name in ("loss", "confidence", "phi"):
        a = signal_from_log_probabilities(log_probabilities(white, x), y, name)  # type: ignore[arg-type]
        b = signal_from_log_probabilities(log_probabilities(black, x), y, name)  # type: ignore[arg-type]
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), name
    assert white.queries == 150 and black.queries == 150


def test_loss_signal_is_cross_entropy() -> None:
    logits = torch.tensor([[3.0, 1.0], [0.2, 0.9], [-1.0, 4.0]])
    y = torch.tensor([0, 0, 1])
    classifier, x = _classifier(logits)
    expected = F.cross_entropy(logits.double(), y, reduction="none")
    assert torch.allclose(loss_signal(classifier, x, y), expected)


def test_label_only_classifier_refuses_score_signals_but_gives_label_signals() -> None:
    logits = torch.tensor([[3.0, 1.0], [0.2, 0.9], [-1.0, 4.0], [1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    white, x = _classifier(logits)
    labels_only = ScoresOnly(white, labels_only=True)
    with pytest.raises(MissingCapabilityError, match="scores"):
        loss_signal(labels_only, x, y)
    assert correctness_signal(labels_only, x, y).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_noisy_correctness_is_seeded_and_counts_queries() -> None:
    module = nn.Linear(3, 2)
    torch.nn.init.constant_(module.weight, 0.0)
    with torch.no_grad():
        module.weight[0, 0] = 1.0  # class 0 iff x0 > 0 (bias 0)
        module.bias.zero_()
    classifier = TorchClassifier(module, (3,), bounds=(-1.0, 1.0))
    x = torch.tensor([[0.9, 0.0, 0.0], [0.02, 0.0, 0.0], [-0.9, 0.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    first = noisy_correctness_signal(classifier, x, y, queries=20, sigma=0.1, seed=3)
    assert classifier.queries == 3 * 21
    again = noisy_correctness_signal(classifier, x, y, queries=20, sigma=0.1, seed=3)
    assert torch.equal(first, again)
    assert first[0] == 1.0 and first[2] == 0.0 and 0.0 < first[1] < 1.0  # the borderline one flips under noise


def test_bad_labels_and_parameters_are_input_errors() -> None:
    classifier, x = _classifier(torch.zeros((3, 2)))
    with pytest.raises(InputError):
        loss_signal(classifier, x, torch.tensor([0, 1]))
    with pytest.raises(InputError):
        loss_signal(classifier, x, torch.tensor([0, 1, 2]))
    with pytest.raises(InputError):
        noisy_correctness_signal(classifier, x, torch.tensor([0, 1, 1]), sigma=0.0)
    with pytest.raises(InputError):
        signal_from_log_probabilities(torch.zeros((3, 2)), torch.tensor([0, 1, 1]), "entropy")  # type: ignore[arg-type]
