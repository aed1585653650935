"""Input-sanitation defenses: real (masked) gradients vs the adaptive BPDA/EOT view, and the sanitisers themselves."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import median_filter

from modelward.attacks.evasion.pgd import PGD
from modelward.classifiers.base import Capability, Classifier, ClassifierError, InputSpec, MissingCapabilityError
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import accuracy, train_classifier
from modelward.datasets.builtin import Split, load_digits_images
from modelward.defenses.preprocessing import (
    AutoencoderReformer,
    BitDepthReduction,
    InputSanitizer,
    MedianSmoothing,
    median_smooth,
    reduce_bit_depth,
    train_autoencoder,
)

EPS = 0.1
STEPS = 20


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models run fastest on one thread, and the suite runs on two workers: don't oversubscribe."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def split(one_thread: None) -> Split:
    """The digit images (seeded split)."""
    return load_digits_images(seed=0)


@pytest.fixture(scope="module")
def digits(split: Split) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    """The undefended SmallCNN (≥ 95% clean) and 200 test digits."""
    torch.manual_seed(0)  # the initial weights too, whatever ran before in the session
    module = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=10, seed=0)
    assert accuracy(module, split.x_test, split.y_test) >= 0.95
    return TorchClassifier(module, split.input_shape), split.x_test[:200], split.y_test[:200]


def robust_accuracy_against(defense: InputSanitizer, adversarial: torch.Tensor, y: torch.Tensor) -> float:
    """Robust accuracy as the deployed defense scores the adversarial inputs (one fresh random draw)."""
    return float((defense.predict(adversarial) == y).double().mean())


def attack(target: Classifier, defense: InputSanitizer, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """PGD-L∞ against ``target`` (the defense or its adaptive view), scored by the defense itself."""
    result = PGD(target, steps=STEPS, seed=0).perturb(x, y, eps)
    return robust_accuracy_against(defense, result.adversarial, y)


# --- the key honest test: masked gradients vs BPDA ------------------------------------------


def test_bit_depth_reduction_masks_gradients_and_bpda_breaks_it(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    clf, x, y = digits
    defense = BitDepthReduction(clf, bits=3)
    clean = robust_accuracy_against(defense, x, y)
    assert clean >= 0.95

    # the real end-to-end gradient is exactly zero: rounding is flat
    probe = x[:20].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(defense.logits(probe).logsumexp(dim=1).sum(), probe)
    assert bool((grad == 0).all())

    plain = PGD(defense, steps=STEPS, seed=0).perturb(x, y, EPS)
    adaptive = PGD(defense.adaptive(), steps=STEPS, seed=0).perturb(x, y, EPS)
    # a deterministic sanitiser's adaptive view predicts exactly what the defense predicts
    assert adaptive.robust_accuracy == pytest.approx(robust_accuracy_against(defense, adaptive.adversarial, y))
    assert plain.robust_accuracy >= 0.9  # looks robust: the plain attack only got its random start
    assert adaptive.robust_accuracy <= plain.robust_accuracy - 0.3  # the adaptive attack breaks it
    assert adaptive.robust_accuracy <= 0.65


def test_eot_breaks_randomised_bit_depth_that_a_plain_attack_does_not(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    clf, x, y = digits
    defense = BitDepthReduction(clf, bits=3, noise=0.1, seed=0)
    plain = attack(defense, defense, x, y, EPS)
    adaptive = attack(defense.adaptive(eot_samples=8), defense, x, y, EPS)
    assert plain >= 0.9
    assert adaptive <= plain - 0.2


@pytest.mark.parametrize(
    "make",
    [
        lambda c: BitDepthReduction(c, bits=2),
        lambda c: MedianSmoothing(c, kernel=2),
        lambda c: MedianSmoothing(c, kernel=3, noise=0.05, seed=1),
    ],
    ids=["bit-depth-2", "median-2x2", "median-3x3-randomised"],
)
def test_adaptive_attack_is_never_weaker_than_the_plain_one(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor], make: Callable[[Classifier], InputSanitizer]
) -> None:
    clf, x, y = digits
    defense = make(clf)
    x, y = x[:100], y[:100]
    plain = attack(defense, defense, x, y, EPS)
    adaptive = attack(defense.adaptive(eot_samples=4), defense, x, y, EPS)
    assert adaptive <= plain + 0.03  # a fresh random draw re-scores the randomised one: small slack


# --- the adaptive view's contract -------------------------------------------------------------


def test_adaptive_view_forward_is_the_defense_and_bpda_gradient_is_the_models(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    clf, x, y = digits
    x, y = x[:32], y[:32]
    defense = BitDepthReduction(clf, bits=2)
    view = defense.adaptive()
    assert torch.allclose(view.logits(x), defense.logits(x), atol=1e-5)
    assert torch.equal(view.predict(x), defense.predict(x))

    # BPDA with the identity: the gradient at x is the model's gradient at the sanitised input
    probe = x.clone().requires_grad_(True)
    (through_view,) = torch.autograd.grad(torch.nn.functional.cross_entropy(view.logits(probe), y), probe)
    squeezed = reduce_bit_depth(x, 2).requires_grad_(True)
    (at_squeezed,) = torch.autograd.grad(torch.nn.functional.cross_entropy(clf.logits(squeezed), y), squeezed)
    assert torch.allclose(through_view, at_squeezed, atol=1e-6)
    assert float(through_view.abs().sum()) > 0


def test_eot_view_counts_queries_and_averages_draws(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    clf, x, _ = digits
    x = x[:10]
    defense = BitDepthReduction(clf, bits=3, noise=0.1, seed=3)
    view = defense.adaptive(eot_samples=5)
    clf.reset_queries()
    logits = view.logits(x)
    assert view.queries == 10 and clf.queries == 50
    assert torch.allclose(logits.exp().sum(dim=1), torch.ones(10), atol=1e-5)  # log of mean probabilities
    # a deterministic defense needs no repeated draws
    assert BitDepthReduction(clf, bits=3).adaptive(eot_samples=5).eot_samples == 1


def test_randomisation_is_seeded_and_fresh_per_call(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    clf, x, _ = digits
    first, second = (BitDepthReduction(clf, bits=4, noise=0.1, seed=7) for _ in range(2))
    a = first.transform(x[:8])
    assert torch.equal(a, second.transform(x[:8]))
    assert not torch.equal(a, first.transform(x[:8]))
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_median_exact_gradient_is_the_default_and_routes_to_window_medians(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    clf, x, y = digits
    defense = MedianSmoothing(clf, kernel=3)
    assert defense.adaptive().backward == "exact"
    probe = x[:16].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(defense.logits(probe), y[:16])
    (grad,) = torch.autograd.grad(loss, probe)
    assert float(grad.abs().sum()) > 0  # informative, not masked
    # identity BPDA is available and differs from the exact gradient
    view = defense.adaptive(backward="identity")
    probe = x[:16].clone().requires_grad_(True)
    (identity_grad,) = torch.autograd.grad(torch.nn.functional.cross_entropy(view.logits(probe), y[:16]), probe)
    assert not torch.allclose(identity_grad, grad)


# --- the autoencoder reformer ---------------------------------------------------------------------


def test_autoencoder_reformer_keeps_accuracy_and_its_gradient_is_exact(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor], split: Split
) -> None:
    clf, x, y = digits
    autoencoder = train_autoencoder(split.x_train, clf.input_spec, epochs=8, seed=0)
    reformer = AutoencoderReformer(clf, autoencoder)
    assert robust_accuracy_against(reformer, x, y) >= 0.85
    with torch.no_grad():
        reconstructed = reformer.transform(x)
    assert float(reconstructed.min()) >= 0.0 and float(reconstructed.max()) <= 1.0

    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    assert float(reformer.reconstruction_error(x).mean()) < 0.5 * float(reformer.reconstruction_error(noise).mean())

    # smooth transform: the adaptive (exact BPDA) gradient is the real gradient
    plain_probe, view_probe = (x[:16].clone().requires_grad_(True) for _ in range(2))
    (plain,) = torch.autograd.grad(torch.nn.functional.cross_entropy(reformer.logits(plain_probe), y[:16]), plain_probe)
    view = reformer.adaptive()
    (adaptive,) = torch.autograd.grad(torch.nn.functional.cross_entropy(view.logits(view_probe), y[:16]), view_probe)
    assert torch.allclose(plain, adaptive, atol=1e-6)


# --- the sanitisers as functions -----------------------------------------------------------------


def test_median_smooth_matches_scipy_and_the_true_median_for_even_kernels() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 7, 9, generator=generator)
    ours = median_smooth(x, 3).numpy()
    reference = median_filter(x.numpy(), size=(1, 1, 3, 3), mode="nearest")
    np.testing.assert_allclose(ours, reference, atol=1e-7)

    even = median_smooth(x, 2).numpy()
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 1), (0, 1)), mode="edge")
    for i, j in [(0, 0), (3, 4), (6, 8)]:
        window = padded[1, 1, i : i + 2, j : j + 2]
        assert even[1, 1, i, j] == pytest.approx(float(np.median(window)))
    assert median_smooth(x, 1).equal(x)


@settings(max_examples=50, deadline=None)
@given(
    bits=st.integers(min_value=1, max_value=6),
    lower=st.floats(min_value=-5, max_value=0),
    width=st.floats(min_value=0.5, max_value=10),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_bit_depth_reduction_stays_in_bounds_with_2_pow_bits_levels(
    bits: int, lower: float, width: float, seed: int
) -> None:
    upper = lower + width
    x = lower + width * torch.rand(200, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    out = reduce_bit_depth(x, bits, lower, upper)
    assert float(out.min()) >= lower and float(out.max()) <= upper
    assert out.unique().numel() <= 2**bits
    assert float((out - x).abs().max()) <= width / (2 * (2**bits - 1)) + 1e-9


class LabelsOnly(Classifier):
    """A decision-only view of a classifier (no gradients, no scores)."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__(inner.input_spec, inner.num_classes, {Capability.LABELS})
        self.inner = inner

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.predict(x)


def test_wrappers_refuse_misuse_and_inherit_capabilities(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    clf, x, y = digits
    blind = BitDepthReduction(LabelsOnly(clf), bits=3)
    assert blind.capabilities == {Capability.LABELS}
    assert float((blind.predict(x[:50]) == y[:50]).double().mean()) >= 0.9
    with pytest.raises(MissingCapabilityError, match="gradients"):
        blind.adaptive()
    with pytest.raises(MissingCapabilityError, match="gradients"):
        PGD(blind)
    with pytest.raises(ClassifierError, match="noise"):
        BitDepthReduction(clf, noise=-0.1)
    with pytest.raises(ClassifierError, match="bits"):
        BitDepthReduction(clf, bits=0)
    with pytest.raises(ClassifierError, match="kernel"):
        MedianSmoothing(clf, kernel=9)
    with pytest.raises(ClassifierError, match="eot_samples"):
        BitDepthReduction(clf).adaptive(eot_samples=0)
    with pytest.raises(ClassifierError, match="backward mode"):
        BitDepthReduction(clf).adaptive(backward="straight")  # type: ignore[arg-type]
    flat = TorchClassifier(torch.nn.Linear(4, 2), (4,), bounds=(-1.0, 1.0))
    with pytest.raises(ClassifierError, match="images"):
        MedianSmoothing(flat)
    with pytest.raises(ClassifierError, match="outside the classifier's bounds"):
        BitDepthReduction(clf).predict(torch.full((1, 1, 8, 8), 1.5))
    assert InputSpec((4,), -1.0, 1.0) == BitDepthReduction(flat).input_spec
