"""Randomized smoothing: Cohen et al.'s CERTIFY and PREDICT, checked against hand computations and a real model."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import pytest
import torch
from scipy.stats import beta, binomtest, norm

from modelward.classifiers.base import (
    Capability,
    Classifier,
    InputSpec,
    MissingCapabilityError,
    QueryBudgetExceeded,
)
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import train_classifier
from modelward.core.errors import InputError
from modelward.datasets.builtin import Split, load_digits_images
from modelward.defenses.smoothing import (
    ABSTAIN,
    CertificationResult,
    SmoothedClassifier,
    certified_accuracy,
    certified_accuracy_curve,
    certified_radius,
    lower_confidence_bound,
    train_gaussian_augmentation,
)

SIGMA = 0.25


class ScriptedClassifier(Classifier):
    """Label-only stub: answers query row ``i`` with ``script[i]``, whatever the input; records the range it saw."""

    def __init__(self, script: Sequence[int], num_classes: int = 10, query_budget: int | None = None) -> None:
        super().__init__(InputSpec((1, 4, 4)), num_classes, {Capability.LABELS}, query_budget)
        self.script = torch.tensor(list(script), dtype=torch.int64)
        self.position = 0
        self.seen = (float("inf"), float("-inf"))

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        out = self.script[self.position : self.position + x.shape[0]]
        self.position += x.shape[0]
        self.seen = (min(self.seen[0], float(x.min())), max(self.seen[1], float(x.max())))
        return out


def _certify_scripted(
    k: int, n: int, *, n0: int = 10, alpha: float = 0.001, sigma: float = 0.5, batch_size: int = 64
) -> tuple[CertificationResult, ScriptedClassifier]:
    """CERTIFY one input: all selection votes go to class 3, then class 3 gets exactly k of the n estimation votes."""
    base = ScriptedClassifier([3] * n0 + [3] * k + [5] * (n - k))
    smoothed = SmoothedClassifier(base, sigma, batch_size=batch_size)
    return smoothed.certify(torch.full((1, 1, 4, 4), 0.5), n0=n0, n=n, alpha=alpha), base


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: with pytest-xdist workers on few cores, more threads only contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# --------------------------------------------------------------------------------------------
# hand computations on a scripted base classifier
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("k", "n", "alpha", "sigma"), [(990, 1000, 0.001, 0.5), (180, 200, 0.01, 0.25), (77, 100, 0.05, 1.0)]
)
def test_certified_radius_matches_hand_computation(k: int, n: int, alpha: float, sigma: float) -> None:
    result, base = _certify_scripted(k, n, alpha=alpha, sigma=sigma)
    p_lower = beta.ppf(alpha, k, n - k + 1)
    assert int(result.predictions[0]) == 3
    assert int(result.counts[0]) == k
    assert float(result.p_lower[0]) == pytest.approx(p_lower, rel=1e-12)
    assert float(result.radii[0]) == pytest.approx(sigma * norm.ppf(p_lower), rel=1e-12)
    assert base.position == 10 + n  # n0 selection samples, then n fresh estimation samples
    assert result.queries == 10 + n


def test_clopper_pearson_bound_has_exact_coverage_and_closed_form_at_n() -> None:
    bound = lower_confidence_bound(torch.tensor([990, 1000, 0]), 1000, 0.001)
    # the one-sided bound p solves P(Binomial(n, p) >= k) = alpha
    from scipy.stats import binom

    assert float(binom.sf(989, 1000, float(bound[0]))) == pytest.approx(0.001, rel=1e-9)
    assert float(bound[1]) == pytest.approx(0.001 ** (1 / 1000), rel=1e-12)  # all votes: alpha^(1/n)
    assert float(bound[2]) == 0.0
    assert float(certified_radius(bound, 0.5)[0]) == pytest.approx(0.9890047910705997, rel=1e-9)


def test_abstains_exactly_when_the_bound_is_at_most_one_half() -> None:
    n, alpha = 1000, 0.001
    threshold = next(k for k in range(n + 1) if beta.ppf(alpha, k, n - k + 1) > 0.5)
    below, _ = _certify_scripted(threshold - 1, n, alpha=alpha)
    above, _ = _certify_scripted(threshold, n, alpha=alpha)
    assert int(below.predictions[0]) == ABSTAIN and float(below.radii[0]) == 0.0
    assert float(below.p_lower[0]) <= 0.5
    assert int(above.predictions[0]) == 3 and 0.0 < float(above.radii[0]) < 0.01
    assert below.abstain_rate == 1.0 and above.abstain_rate == 0.0


def test_selection_and_estimation_use_separate_samples() -> None:
    # selection votes for 3, but the fresh estimation samples never do: CERTIFY must abstain, not switch to 5
    base = ScriptedClassifier([3] * 10 + [5] * 100)
    result = SmoothedClassifier(base, 0.5).certify(torch.full((1, 1, 4, 4), 0.5), n0=10, n=100)
    assert int(result.predictions[0]) == ABSTAIN
    assert int(result.counts[0]) == 0


@pytest.mark.parametrize(("n_a", "n_b", "alpha"), [(60, 40, 0.05), (70, 30, 0.05), (50, 50, 0.5), (99, 1, 0.001)])
def test_predict_follows_the_binomial_test(n_a: int, n_b: int, alpha: float) -> None:
    base = ScriptedClassifier([7] * n_a + [2] * n_b)
    label = SmoothedClassifier(base, 0.5, n=n_a + n_b, alpha=alpha).predict(torch.full((1, 1, 4, 4), 0.5))
    expected = 7 if binomtest(n_a, n_a + n_b, 0.5).pvalue <= alpha else ABSTAIN
    assert int(label[0]) == expected
    assert (n_a, n_b, alpha) != (60, 40, 0.05) or expected == ABSTAIN  # p = 0.057: the tie is not rejected


def test_noisy_inputs_are_clipped_to_the_bounds_and_batches_cover_every_row() -> None:
    base = ScriptedClassifier([1] * 3 * 257)
    smoothed = SmoothedClassifier(base, 2.0, n=257, batch_size=100)  # large noise, rows split across inputs
    labels = smoothed.predict(torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)))
    assert labels.tolist() == [1, 1, 1]
    assert base.position == 3 * 257
    assert base.seen[0] >= 0.0 and base.seen[1] <= 1.0  # never an out-of-bounds query
    assert base.seen[0] == 0.0 and base.seen[1] == 1.0  # and the noise did reach both bounds


def test_query_budget_of_the_base_classifier_applies() -> None:
    base = ScriptedClassifier([3] * 200, query_budget=100)
    with pytest.raises(QueryBudgetExceeded):
        SmoothedClassifier(base, 0.5).certify(torch.full((1, 1, 4, 4), 0.5), n0=10, n=150)


def test_smoothed_classifier_is_label_only_and_refuses_bad_parameters() -> None:
    base = ScriptedClassifier([0])
    smoothed = SmoothedClassifier(base, 0.5)
    assert smoothed.capabilities == frozenset({Capability.LABELS})
    assert smoothed.input_spec == base.input_spec and smoothed.num_classes == 10
    with pytest.raises(MissingCapabilityError, match="gradients"):
        smoothed.logits(torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError, match="sigma"):
        SmoothedClassifier(base, 0.0)
    with pytest.raises(InputError, match="alpha"):
        smoothed.certify(torch.zeros(1, 1, 4, 4), n=10, alpha=1.5)
    with pytest.raises(InputError, match="n0"):
        smoothed.certify(torch.zeros(1, 1, 4, 4), n0=0, n=10)


def test_certified_accuracy_by_hand() -> None:
    predictions = torch.tensor([1, 2, ABSTAIN, 4, 5])
    radii = torch.tensor([0.1, 0.5, 0.0, 0.3, 0.9], dtype=torch.float64)
    y = torch.tensor([1, 2, 3, 0, 5])  # the fourth is certified but wrong
    assert certified_accuracy(predictions, radii, y, 0.0) == pytest.approx(3 / 5)
    assert certified_accuracy(predictions, radii, y, 0.3) == pytest.approx(2 / 5)
    assert certified_accuracy(predictions, radii, y, 0.5) == pytest.approx(2 / 5)
    assert certified_accuracy(predictions, radii, y, 0.6) == pytest.approx(1 / 5)
    assert certified_accuracy(predictions, radii, y, 1.0) == 0.0
    curve = certified_accuracy_curve(predictions, radii, y, [0.6, 0.0, 0.3])
    assert [r for r, _ in curve] == [0.0, 0.3, 0.6]


# --------------------------------------------------------------------------------------------
# a linear base classifier: the smoothed radius is known exactly (the distance to the hyperplane)
# --------------------------------------------------------------------------------------------
def test_certificate_is_sound_and_tight_for_a_linear_classifier() -> None:
    # class 1 iff w·x > b; smoothing a linear classifier gives p_A = Φ(d/σ), so the exact radius is |d|
    w, b, sigma = torch.tensor([3.0, 4.0]), 1.0, 0.5
    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight.copy_(torch.stack([torch.zeros(2), w]))
        module.bias.copy_(torch.tensor([0.0, -b]))
    base = TorchClassifier(module, (2,), bounds=(-10.0, 10.0))  # wide bounds: the noise is never clipped
    distances = torch.tensor([0.2, 0.5, -0.8, 0.002])
    on_plane = b * w / w.dot(w)
    x = on_plane + distances.unsqueeze(1) * (w / w.norm())
    result = SmoothedClassifier(base, sigma, batch_size=50_000).certify(x, n0=100, n=100_000, alpha=0.001)
    assert result.predictions.tolist() == [1, 1, 0, ABSTAIN]  # a point 0.002 from the boundary is a tie
    exact = distances[:3].abs().double()
    assert bool((result.radii[:3] <= exact).all())  # sound: never more than the true radius
    assert bool((result.radii[:3] >= exact - 0.03).all())  # and tight with n = 100,000


# --------------------------------------------------------------------------------------------
# a real model: the digits SmallCNN trained with Gaussian augmentation
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> Split:
    return load_digits_images(seed=0)


@pytest.fixture(scope="module")
def noise_trained(digits: Split) -> TorchClassifier:
    torch.manual_seed(0)
    module, history = train_gaussian_augmentation(SmallCNN(), digits.x_train, digits.y_train, sigma=SIGMA, epochs=10)
    assert history.method == "gaussian-augmentation" and history.epsilons == [SIGMA] * 10
    return TorchClassifier(module, digits.input_shape)


@pytest.fixture(scope="module")
def certified(noise_trained: TorchClassifier, digits: Split) -> CertificationResult:
    return SmoothedClassifier(noise_trained, SIGMA, seed=0).certify(digits.x_test[:120], n0=50, n=300, alpha=0.001)


def test_smoothed_noise_trained_model_certifies_most_digits(certified: CertificationResult, digits: Split) -> None:
    y = digits.y_test[:120]
    assert certified.certified_accuracy(y, 0.0) >= 0.9
    assert certified.certified_accuracy(y, 0.25) >= 0.75
    assert certified.queries == 120 * 350
    max_radius = SIGMA * norm.ppf(0.001 ** (1 / 300))  # all n votes: the largest radius n can certify
    assert float(certified.radii.max()) <= max_radius + 1e-9


def test_certified_accuracy_never_rises_with_the_radius(certified: CertificationResult, digits: Split) -> None:
    curve = certified.curve(digits.y_test[:120])
    values = [acc for _, acc in curve]
    assert len(curve) == 21 and curve[0][0] == 0.0
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[0] > values[-1]  # it does fall: certificates are finite


def test_certification_is_deterministic_under_a_seed(noise_trained: TorchClassifier, digits: Split) -> None:
    x = digits.x_test[:20]
    first = SmoothedClassifier(noise_trained, SIGMA, seed=3).certify(x, n0=20, n=100)
    second = SmoothedClassifier(noise_trained, SIGMA, seed=3).certify(x, n0=20, n=100)
    other = SmoothedClassifier(noise_trained, SIGMA, seed=4).certify(x, n0=20, n=100)
    assert torch.equal(first.predictions, second.predictions) and torch.equal(first.counts, second.counts)
    assert torch.equal(first.radii, second.radii)
    assert not torch.equal(first.counts, other.counts)


def test_gaussian_augmentation_beats_standard_training_under_smoothing(
    certified: CertificationResult, digits: Split
) -> None:
    torch.manual_seed(0)
    module = train_classifier(SmallCNN(), digits.x_train, digits.y_train, epochs=10, seed=0)
    standard = SmoothedClassifier(TorchClassifier(module, digits.input_shape), SIGMA, seed=0)
    baseline = standard.certify(digits.x_test[:120], n0=50, n=300, alpha=0.001)
    y = digits.y_test[:120]
    assert certified.certified_accuracy(y, 0.4) >= baseline.certified_accuracy(y, 0.4) + 0.1
