"""Randomized smoothing (Cohen, Rosenfeld and Kolter 2019): certified L2 robustness from Gaussian noise.

The smoothed classifier ``g(x) = argmax_c P(f(x + δ) = c)``, ``δ ~ N(0, σ²I)``, returns the class
the base classifier ``f`` predicts most often under noise. If the top class has probability at
least ``p_A > 1/2``, ``g`` provably returns it on the whole L2 ball of radius ``σ·Φ⁻¹(p_A)``.

This module follows the paper's procedures exactly:

- **CERTIFY**: ``n0`` noisy samples select the top class; ``n`` *fresh* samples count its votes
  ``n_A``; ``p_A`` is the one-sided Clopper–Pearson lower bound at confidence ``1 − α``
  (``Beta(α; n_A, n − n_A + 1)``); abstain when ``p_A ≤ 1/2``, else certify radius ``σ·Φ⁻¹(p_A)``.
- **PREDICT**: ``n`` samples, the two most frequent classes; abstain unless a two-sided
  binomial test of ``n_A`` against ``n_A + n_B`` at ½ rejects at level ``α``.

Both hold with probability at least ``1 − α`` over the noise, for any base classifier. The base
classifier here is any :class:`Classifier` (labels suffice): noisy inputs are clipped to its
declared bounds before it sees them, which makes the base classifier ``f ∘ clip``, still a fixed
function of its input, so the guarantee is unchanged (and no out-of-bounds input is ever sent).
Train the base classifier with the same noise (:func:`train_gaussian_augmentation`) or the
smoothed classifier will abstain almost everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modelward.classifiers.base import Capability, Classifier, ClassifierError
from modelward.core.errors import InputError
from modelward.core.progress import Progress, report, scaled
from modelward.defenses.adversarial_training import TrainingHistory, train_on_perturbed

ModuleT = TypeVar("ModuleT", bound=nn.Module)

ABSTAIN = -1
"""The label a smoothed classifier returns when it cannot commit to a class at confidence ``1 − α``."""


# --------------------------------------------------------------------------------------------
# the statistics, as pure functions (vectorised over inputs)
# --------------------------------------------------------------------------------------------
def lower_confidence_bound(counts: torch.Tensor, n: int, alpha: float) -> torch.Tensor:
    """One-sided Clopper–Pearson lower bound on a binomial proportion: ``Beta(α; k, n − k + 1)``, 0 at ``k = 0``.

    ``counts`` holds successes ``k`` out of ``n`` trials per input; the result is float64 on the CPU.
    """
    from scipy.stats import beta

    k = counts.detach().cpu().to(torch.float64).numpy()
    if (k < 0).any() or (k > n).any():
        raise InputError(f"counts must lie in [0, {n}]")
    safe = np.where(k > 0, k, 1.0)
    bound = np.where(k > 0, beta.ppf(alpha, safe, n - safe + 1), 0.0)
    return torch.from_numpy(np.asarray(bound, dtype=np.float64))


def certified_radius(p_lower: torch.Tensor, sigma: float) -> torch.Tensor:
    """``σ·Φ⁻¹(p_A)`` where ``p_A > 1/2``, else 0 (no certificate): the L2 radius CERTIFY returns."""
    from scipy.stats import norm

    p = p_lower.detach().cpu().to(torch.float64).numpy()
    radius = np.where(p > 0.5, sigma * norm.ppf(np.clip(p, 0.5, 1.0)), 0.0)
    return torch.from_numpy(np.asarray(radius, dtype=np.float64))


def certified_accuracy(predictions: torch.Tensor, radii: torch.Tensor, y: torch.Tensor, radius: float) -> float:
    """Fraction of inputs certified correct at L2 ``radius``: predicted ``y`` with a radius ≥ ``radius``."""
    if predictions.shape != y.shape or radii.shape != y.shape:
        raise InputError(f"predictions, radii and labels must have one shape, got {predictions.shape}, {radii.shape}")
    if y.numel() == 0:
        return float("nan")
    correct = (predictions.cpu() == y.cpu()) & (radii.cpu() >= radius)
    return float(correct.double().mean())


def certified_accuracy_curve(
    predictions: torch.Tensor, radii: torch.Tensor, y: torch.Tensor, grid: Sequence[float]
) -> list[tuple[float, float]]:
    """``(radius, certified accuracy)`` for each radius of ``grid``, sorted; never increasing in the radius."""
    return [(float(r), certified_accuracy(predictions, radii, y, float(r))) for r in sorted(grid)]


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificationResult:
    """CERTIFY's outcome per input, with the parameters and cost that produced it.

    ``predictions`` is the certified class or :data:`ABSTAIN`; ``radii`` the certified L2 radius
    (0 where abstained); ``counts`` the votes ``n_A`` of the selected class among the ``n``
    estimation samples; ``p_lower`` its Clopper–Pearson lower bound. ``queries`` counts base
    classifier queries (``n0 + n`` per input).
    """

    predictions: torch.Tensor
    radii: torch.Tensor
    counts: torch.Tensor
    p_lower: torch.Tensor
    sigma: float
    n0: int
    n: int
    alpha: float
    seconds: float
    queries: int

    @property
    def abstained(self) -> torch.Tensor:
        """Mask of inputs CERTIFY abstained on."""
        return self.predictions == ABSTAIN

    @property
    def abstain_rate(self) -> float:
        """Fraction of inputs abstained on."""
        return float(self.abstained.double().mean()) if self.predictions.numel() else float("nan")

    @property
    def seconds_per_input(self) -> float:
        """Wall time per certified input."""
        return self.seconds / self.predictions.numel() if self.predictions.numel() else float("nan")

    def certified_accuracy(self, y: torch.Tensor, radius: float = 0.0) -> float:
        """Fraction of inputs certified correct at L2 ``radius`` (see :func:`certified_accuracy`)."""
        return certified_accuracy(self.predictions, self.radii, y, radius)

    def curve(self, y: torch.Tensor, grid: Sequence[float] | None = None) -> list[tuple[float, float]]:
        """Certified accuracy vs L2 radius; the grid defaults to 0 … max radius in 20 steps."""
        if grid is None:
            top = float(self.radii.max()) if self.radii.numel() else 0.0
            grid = [top * i / 20 for i in range(21)]
        return certified_accuracy_curve(self.predictions, self.radii, y, grid)


# --------------------------------------------------------------------------------------------
# the smoothed classifier
# --------------------------------------------------------------------------------------------
class SmoothedClassifier(Classifier):
    """A base classifier smoothed with Gaussian noise ``σ``: certify (CERTIFY) and predict (PREDICT).

    It is itself a label-only :class:`Classifier` (same input domain and classes; ``predict``
    runs PREDICT with ``n`` and ``alpha`` and returns :data:`ABSTAIN` where it abstains), so
    decision-based attacks can target it. Noise is drawn in batches of ``batch_size`` rows across
    inputs; every call starts a fresh generator from ``seed``, so a call is reproducible on its
    own (for the same inputs and batch size). Queries are counted by the base classifier and its
    budget applies.
    """

    def __init__(
        self,
        base: Classifier,
        sigma: float,
        *,
        n: int = 1000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        seed: int = 0,
    ) -> None:
        base.require(Capability.LABELS, by="randomized smoothing")
        if not sigma > 0:
            raise InputError(f"smoothing needs a noise level sigma > 0, got {sigma}")
        _check_counts(n=n, alpha=alpha, batch_size=batch_size)
        super().__init__(base.input_spec, base.num_classes, {Capability.LABELS})
        self.base = base
        self.sigma = float(sigma)
        self.n = n
        self.alpha = alpha
        self.batch_size = batch_size
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"SmoothedClassifier(sigma={self.sigma}, n={self.n}, alpha={self.alpha}, seed={self.seed})"

    # --- the two procedures ---------------------------------------------------------------
    def certify(
        self,
        x: torch.Tensor,
        *,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        progress: Progress | None = None,
    ) -> CertificationResult:
        """CERTIFY each input: pick the class with ``n0`` samples, count it in ``n`` fresh ones, bound at ``1 − α``.

        ``progress`` hears ``(noisy samples drawn, N · (n0 + n))``.
        """
        _check_counts(n=n, alpha=alpha, batch_size=self.batch_size)
        if n0 < 1:
            raise InputError(f"n0 must be >= 1, got {n0}")
        self.check_input(x)
        started = time.perf_counter()
        queries_before = self.base.queries
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        total = x.shape[0] * (n0 + n)
        selection = self.sample_counts(x, n0, generator, progress=scaled(progress, 0, total))
        top = selection.argmax(dim=1)
        estimation = self.sample_counts(x, n, generator, progress=scaled(progress, x.shape[0] * n0, total))
        n_a = estimation.gather(1, top.unsqueeze(1)).squeeze(1)
        p_lower = lower_confidence_bound(n_a, n, alpha)
        certified = p_lower > 0.5
        predictions = torch.where(certified, top.cpu(), torch.full_like(top.cpu(), ABSTAIN))
        return CertificationResult(
            predictions=predictions,
            radii=certified_radius(p_lower, self.sigma),
            counts=n_a.cpu(),
            p_lower=p_lower,
            sigma=self.sigma,
            n0=n0,
            n=n,
            alpha=alpha,
            seconds=time.perf_counter() - started,
            queries=self.base.queries - queries_before,
        )

    def predict_smoothed(self, x: torch.Tensor, *, n: int | None = None, alpha: float | None = None) -> torch.Tensor:
        """PREDICT each input: the top class of ``n`` noisy samples, or :data:`ABSTAIN` when a tie can't be rejected."""
        n = self.n if n is None else n
        alpha = self.alpha if alpha is None else alpha
        _check_counts(n=n, alpha=alpha, batch_size=self.batch_size)
        self.check_input(x)
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        return self._predict_counts(self.sample_counts(x, n, generator), alpha)

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        return self._predict_counts(self.sample_counts(x, self.n, generator), self.alpha)

    @staticmethod
    def _predict_counts(counts: torch.Tensor, alpha: float) -> torch.Tensor:
        """Cohen's PREDICT decision from vote counts ``(N, C)``: top class, or abstain on an unresolved tie."""
        from scipy.stats import binomtest

        top2 = counts.topk(2, dim=1)
        labels = top2.indices[:, 0].cpu().clone()
        votes = top2.values.cpu().tolist()
        for i, (n_a, n_b) in enumerate(votes):
            if binomtest(int(n_a), int(n_a + n_b), 0.5).pvalue > alpha:
                labels[i] = ABSTAIN
        return labels

    # --- sampling -------------------------------------------------------------------------
    def sample_counts(
        self, x: torch.Tensor, num: int, generator: torch.Generator, *, progress: Progress | None = None
    ) -> torch.Tensor:
        """Votes ``(N, C)`` of the base classifier over ``num`` noisy copies of each input, in batches of rows.

        Rows of consecutive inputs share a batch, so small inputs fill the base model's batches.
        Noisy inputs are clipped to the input bounds (see the module docstring).
        """
        count = x.shape[0]
        classes = self.num_classes
        votes = torch.zeros(count * classes, dtype=torch.int64, device=x.device)
        lower, upper = self.input_spec.lower, self.input_spec.upper
        total = count * num
        for start in range(0, total, self.batch_size):
            stop = min(start + self.batch_size, total)
            rows = torch.arange(start, stop, device=x.device) // num
            noise = torch.randn((stop - start, *x.shape[1:]), generator=generator, device=x.device, dtype=x.dtype)
            noisy = noise.mul_(self.sigma).add_(x[rows]).clamp_(lower, upper)
            labels = self.base.predict(noisy).to(x.device)
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
                raise ClassifierError(f"the base classifier returned labels outside [0, {classes})")
            votes.index_add_(0, rows * classes + labels, torch.ones_like(labels))
            report(progress, stop, total)
        return votes.view(count, classes)


def _check_counts(*, n: int, alpha: float, batch_size: int) -> None:
    """Refuse sample sizes, confidence levels and batch sizes that make no sense."""
    if n < 1:
        raise InputError(f"the number of noise samples n must be >= 1, got {n}")
    if not 0 < alpha < 1:
        raise InputError(f"alpha must lie in (0, 1), got {alpha}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")


# --------------------------------------------------------------------------------------------
# training the base classifier for smoothing
# --------------------------------------------------------------------------------------------
def train_gaussian_augmentation(
    module: ModuleT,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    sigma: float,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    bounds: tuple[float, float] = (0.0, 1.0),
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
) -> tuple[ModuleT, TrainingHistory]:
    """Train a raw-input module on ``clip(x + N(0, σ²I))``, the inputs its smoothed version will see.

    Cohen et al. train with the same σ they certify with; the clipping matches :class:`SmoothedClassifier`.
    Returns the module in eval mode and its history (perturbed accuracy = accuracy on noisy inputs).
    """
    if not sigma > 0:
        raise InputError(f"Gaussian augmentation needs sigma > 0, got {sigma}")
    lower, upper = bounds
    if not lower < upper:
        raise InputError(f"bounds must satisfy lower < upper, got {bounds}")

    def batch_loss(
        xb: torch.Tensor, yb: torch.Tensor, strength: float, gen: torch.Generator
    ) -> tuple[torch.Tensor, int]:
        noise = torch.randn(xb.shape, generator=gen, device=xb.device, dtype=xb.dtype)
        logits = module(noise.mul_(strength).add_(xb).clamp_(lower, upper))
        return F.cross_entropy(logits, yb), int((logits.argmax(dim=1) == yb).sum())

    history = train_on_perturbed(
        module, x, y, batch_loss, method="gaussian-augmentation", epsilon=sigma, epochs=epochs,
        batch_size=batch_size, lr=lr, weight_decay=weight_decay, eval_data=eval_data, seed=seed,
    )  # fmt: skip
    return module, history
