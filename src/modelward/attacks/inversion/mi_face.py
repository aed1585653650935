"""Model inversion in the MI-Face style (Fredrikson, Jha and Ristenpart, CCS 2015): class representatives.

For each class ``c`` the attack searches the input space for ``x`` that the target classifies as ``c``
with the highest confidence, by gradient descent on the cost ``−log p_c(x) + tv·TV(x) + l2·‖x − x₀‖²``
from a blank start ``x₀``, projected onto the target's bounds after every step. Total variation
(``TV``, images only) and the optional periodic denoising (a 3×3 blur, MI-Face's ``Process`` step)
keep the search away from adversarial high-frequency noise. As in MI-Face the search stops after
``steps`` iterations, after ``patience`` iterations without improving the cost, or once
``p_c ≥ 1 − tolerance``, keeping the best point seen.

With the ``gradients`` capability the cost is differentiated exactly. With ``scores`` only, the
class term's gradient is estimated from queries (antithetic Gaussian sampling, ``samples`` pairs
per step, NES-style), every query counted by the target; the regulariser's gradient needs no
queries. Whether the result means anything is measured, not assumed: :func:`reconstruction_similarity`
compares each reconstruction with the real class mean, against the same measure for random images
and against the other classes' means.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from modelward.classifiers.base import Capability, Classifier
from modelward.core.errors import InputError

GradientMode = Literal["auto", "white-box", "zeroth-order"]


@dataclass(frozen=True)
class InversionSimilarity:
    """How much the reconstructions look like the real data of their class.

    ``per_class`` is the Pearson correlation of each reconstruction with its real class mean;
    ``random`` the mean correlation of uniform random images with the class means (about 0);
    ``match_rate`` the fraction of reconstructions whose most correlated class mean is their own
    (chance: ``1 / len(classes)``); ``ssim``/``random_ssim`` the same comparison with a global
    (single-window) SSIM. ``meaningful`` holds when reconstructions beat random images on average
    and identify their class more often than chance.
    """

    classes: list[int]
    per_class: list[float]
    mean: float
    random: float
    match_rate: float
    chance: float
    ssim: float
    random_ssim: float

    @property
    def advantage(self) -> float:
        """Mean correlation of reconstructions minus that of random images."""
        return self.mean - self.random

    @property
    def meaningful(self) -> bool:
        """Reconstructions are closer to their class means than random images, and identify classes above chance."""
        return self.mean > self.random and self.match_rate > self.chance


@dataclass
class InversionResult:
    """One reconstruction per class, the target's confidence in each, and the queries spent."""

    classes: list[int]
    reconstructions: torch.Tensor
    confidence: torch.Tensor
    steps: list[int]
    queries: int
    gradient: Literal["white-box", "zeroth-order"]
    seconds: float
    bounds: tuple[float, float] = (0.0, 1.0)
    similarity: InversionSimilarity | None = None
    class_means: torch.Tensor | None = field(default=None, repr=False)

    def plot(self, path: Path | str, *, with_means: bool = True) -> Path | None:
        """An image grid PNG: reconstructions in a row, the real class means beneath (None for non-images)."""
        from modelward.attacks.inversion.plots import plot_inversion

        means = self.class_means if with_means else None
        return plot_inversion(self, Path(path), class_means=means, bounds=self.bounds)


class ModelInversion:
    """MI-Face class-representative reconstruction against a classifier with gradients or scores.

    ``step_size`` is the Adam step on the input, in units of the input range; ``start`` is the
    blank image the search begins from (``"lower"``: all at the lower bound, ``"middle"``);
    ``samples``/``sigma`` set the zeroth-order estimator (pairs per step, probe radius as a fraction
    of the range) and ``max_queries`` caps the queries spent per class.
    """

    def __init__(
        self,
        *,
        steps: int = 300,
        step_size: float = 0.05,
        tv_weight: float = 0.0,
        l2_weight: float = 0.0,
        denoise_every: int = 0,
        patience: int = 50,
        tolerance: float = 1e-3,
        start: Literal["lower", "middle"] = "lower",
        gradient: GradientMode = "auto",
        samples: int = 20,
        sigma: float = 0.02,
        max_queries: int | None = None,
        seed: int = 0,
    ) -> None:
        for value, name in ((steps, "steps"), (patience, "patience"), (samples, "samples")):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(denoise_every, int) or denoise_every < 0:
            raise InputError(f"denoise_every must be a non-negative integer, got {denoise_every!r}")
        for number, name in ((step_size, "step_size"), (sigma, "sigma"), (tolerance, "tolerance")):
            if not (isinstance(number, (int, float)) and math.isfinite(number) and number > 0):
                raise InputError(f"{name} must be a positive number, got {number!r}")
        for number, name in ((tv_weight, "tv_weight"), (l2_weight, "l2_weight")):
            if not (isinstance(number, (int, float)) and math.isfinite(number) and number >= 0):
                raise InputError(f"{name} must be a non-negative number, got {number!r}")
        if start not in ("lower", "middle"):
            raise InputError(f"start must be 'lower' or 'middle', got {start!r}")
        if gradient not in ("auto", "white-box", "zeroth-order"):
            raise InputError(f"gradient must be 'auto', 'white-box' or 'zeroth-order', got {gradient!r}")
        if max_queries is not None and (not isinstance(max_queries, int) or max_queries < 1):
            raise InputError(f"max_queries must be a positive integer, got {max_queries!r}")
        self.steps = steps
        self.step_size = float(step_size)
        self.tv_weight = float(tv_weight)
        self.l2_weight = float(l2_weight)
        self.denoise_every = denoise_every
        self.patience = patience
        self.tolerance = float(tolerance)
        self.start = start
        self.gradient: GradientMode = gradient
        self.samples = samples
        self.sigma = float(sigma)
        self.max_queries = max_queries
        self.seed = seed

    def invert(
        self,
        target: Classifier,
        classes: Sequence[int] | None = None,
        *,
        reference_x: torch.Tensor | None = None,
        reference_y: torch.Tensor | None = None,
    ) -> InversionResult:
        """Reconstruct a representative input for each class (all classes by default).

        With ``reference_x``/``reference_y`` (real data, e.g. a sample of the training set) the
        result carries the class means and :class:`InversionSimilarity` for the report.
        """
        mode = self._mode(target)
        wanted = list(range(target.num_classes)) if classes is None else [int(c) for c in classes]
        if not wanted or any(not 0 <= c < target.num_classes for c in wanted) or len(set(wanted)) != len(wanted):
            raise InputError(f"classes must be distinct class indices in [0, {target.num_classes})")
        if (reference_x is None) != (reference_y is None):
            raise InputError("give reference_x and reference_y together, or neither")
        started = time.perf_counter()
        before = target.queries
        spec = target.input_spec
        span = spec.upper - spec.lower
        labels = torch.tensor(wanted, dtype=torch.long)
        origin = spec.lower if self.start == "lower" else (spec.lower + spec.upper) / 2
        x = torch.full((len(wanted), *spec.shape), float(origin))
        start_point = x.clone()
        generator = torch.Generator().manual_seed(self.seed)
        best = x.clone()
        best_cost = torch.full((len(wanted),), float("inf"))
        best_confidence = torch.zeros(len(wanted))
        stale = torch.zeros(len(wanted), dtype=torch.long)
        active = torch.ones(len(wanted), dtype=torch.bool)
        steps_taken = [0] * len(wanted)
        per_step = 1 if mode == "white-box" else 1 + 2 * self.samples
        query_cap = self.max_queries
        variable = x.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([variable], lr=self.step_size * span)
        for step in range(self.steps):
            if query_cap is not None and (step + 1) * per_step > query_cap:
                break
            index = torch.nonzero(active).flatten()
            if index.numel() == 0:
                break
            current = variable.detach()[index]
            if mode == "white-box":
                log_p, class_grad = self._white_box(target, current, labels[index])
            else:
                log_p, class_grad = self._zeroth_order(target, current, labels[index], generator)
            reg_cost, reg_grad = self._regulariser(current, start_point[index])
            cost = -log_p + reg_cost
            improved = cost < best_cost[index] - 1e-6
            best[index[improved]] = current[improved]
            best_cost[index[improved]] = cost[improved]
            best_confidence[index[improved]] = log_p[improved].exp()
            stale[index] = torch.where(improved, torch.zeros_like(stale[index]), stale[index] + 1)
            for i in index.tolist():
                steps_taken[i] = step + 1
            done = (log_p.exp() >= 1 - self.tolerance) | (stale[index] >= self.patience)
            active[index[done]] = False
            gradient = torch.zeros_like(variable)
            gradient[index] = -class_grad + reg_grad
            gradient[~active] = 0
            optimiser.zero_grad()
            variable.grad = gradient
            optimiser.step()
            with torch.no_grad():
                if self.denoise_every and (step + 1) % self.denoise_every == 0 and len(spec.shape) == 3:
                    variable.copy_(_blur(variable))
                variable.clamp_(spec.lower, spec.upper)
        result = InversionResult(
            classes=wanted,
            reconstructions=best.clamp(spec.lower, spec.upper),
            confidence=best_confidence,
            steps=steps_taken,
            queries=target.queries - before,
            gradient=mode,
            seconds=time.perf_counter() - started,
            bounds=(spec.lower, spec.upper),
        )
        if reference_x is not None and reference_y is not None:
            means = class_means(reference_x, reference_y, wanted)
            result.class_means = means
            result.similarity = reconstruction_similarity(
                result.reconstructions, means, bounds=(spec.lower, spec.upper), classes=wanted, seed=self.seed
            )
        return result

    # ----------------------------------------------------------------------------------------
    def _mode(self, target: Classifier) -> Literal["white-box", "zeroth-order"]:
        if self.gradient == "white-box":
            target.require(Capability.GRADIENTS, by="white-box model inversion")
            return "white-box"
        if self.gradient == "zeroth-order":
            target.require(Capability.SCORES, by="zeroth-order model inversion")
            return "zeroth-order"
        if Capability.GRADIENTS in target.capabilities:
            return "white-box"
        target.require(Capability.SCORES, by="model inversion")
        return "zeroth-order"

    def _white_box(
        self, target: Classifier, x: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p_label(x)`` and its exact gradient (one query per input)."""
        probe = x.clone().requires_grad_(True)
        with torch.enable_grad():
            log_p = F.log_softmax(target.logits(probe), dim=1).gather(1, labels.view(-1, 1)).flatten()
            (gradient,) = torch.autograd.grad(log_p.sum(), probe)
        return log_p.detach(), gradient

    def _zeroth_order(
        self, target: Classifier, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p_label(x)`` and an antithetic Gaussian estimate of its gradient (``1 + 2·samples`` queries each)."""
        spec = target.input_spec
        n, q = x.shape[0], self.samples
        radius = self.sigma * (spec.upper - spec.lower)
        noise = torch.randn((n, q, *x.shape[1:]), generator=generator)
        plus = (x.unsqueeze(1) + radius * noise).clamp(spec.lower, spec.upper)
        minus = (x.unsqueeze(1) - radius * noise).clamp(spec.lower, spec.upper)
        batch = torch.cat([x, plus.flatten(0, 1), minus.flatten(0, 1)])
        probabilities = target.probabilities(batch).clamp_min(1e-12)
        log_all = probabilities.log()
        log_p = log_all[:n].gather(1, labels.view(-1, 1)).flatten()
        repeated = labels.repeat_interleave(q).view(-1, 1)
        f_plus = log_all[n : n + n * q].gather(1, repeated).view(n, q)
        f_minus = log_all[n + n * q :].gather(1, repeated).view(n, q)
        weights = ((f_plus - f_minus) / (2 * radius)).view(n, q, *([1] * (x.dim() - 1)))
        return log_p, (weights * noise).mean(dim=1)

    def _regulariser(self, x: torch.Tensor, origin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-input ``tv·TV(x) + l2·‖x − x₀‖²`` and its gradient (no queries)."""
        probe = x.clone().requires_grad_(True)
        with torch.enable_grad():
            cost = self.l2_weight * (probe - origin).flatten(1).pow(2).sum(dim=1)
            if self.tv_weight and x.dim() == 4:
                cost = cost + self.tv_weight * total_variation(probe)
            (gradient,) = torch.autograd.grad(cost.sum(), probe)
        return cost.detach(), gradient


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image of a batch ``(N, C, H, W)``: the sum of absolute neighbour differences."""
    down = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).sum(dim=1)
    right = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).sum(dim=1)
    return down + right


def _blur(x: torch.Tensor) -> torch.Tensor:
    """A 3×3 binomial blur per channel with edge replication (MI-Face's denoising ``Process`` step)."""
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    channels = x.shape[1]
    weight = kernel.view(1, 1, 3, 3).repeat(channels, 1, 1, 1)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=channels)


def class_means(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """The mean real input of each class in ``classes``, stacked ``(len(classes), *shape)``."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError("reference_x and reference_y must be non-empty and of equal length")
    means = []
    for c in classes:
        members = x[y == c]
        if members.shape[0] == 0:
            raise InputError(f"the reference data has no example of class {c}")
        means.append(members.to(torch.float32).mean(dim=0))
    return torch.stack(means)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between every row of ``a`` ``(n, d)`` and every row of ``b`` ``(m, d)``: ``(n, m)``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return a @ b.T


def global_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float) -> torch.Tensor:
    """SSIM over the whole input as one window (an "SSIM-lite"), row-wise for ``(n, d)`` pairs."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = a.mean(dim=1), b.mean(dim=1)
    var_a, var_b = a.var(dim=1, unbiased=False), b.var(dim=1, unbiased=False)
    cov = ((a - mu_a[:, None]) * (b - mu_b[:, None])).mean(dim=1)
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def reconstruction_similarity(
    reconstructions: torch.Tensor,
    means: torch.Tensor,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    classes: Sequence[int] | None = None,
    random_images: int = 64,
    seed: int = 0,
) -> InversionSimilarity:
    """Compare reconstructions with the real class means, and random uniform images with the same means.

    Row ``i`` of ``reconstructions`` and of ``means`` belong to the same class (``classes[i]``, by
    default ``i``).
    """
    if reconstructions.shape != means.shape or reconstructions.shape[0] == 0:
        raise InputError("reconstructions and class means must have the same, non-empty shape")
    if random_images < 1:
        raise InputError(f"random_images must be positive, got {random_images}")
    k = reconstructions.shape[0]
    rec = reconstructions.detach().flatten(1).to(torch.float64)
    ref = means.detach().flatten(1).to(torch.float64)
    low, high = bounds
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((random_images, rec.shape[1]), generator=generator, dtype=torch.float64) * (high - low) + low
    correlation = _correlation(rec, ref)
    per_class = correlation.diagonal()
    random = _correlation(noise, ref)
    matches = correlation.argmax(dim=1) == torch.arange(k)
    ssim = global_ssim(rec, ref, high - low)
    random_ssim = torch.stack([global_ssim(noise, r.expand_as(noise), high - low).mean() for r in ref])
    return InversionSimilarity(
        classes=list(range(k)) if classes is None else [int(c) for c in classes],
        per_class=[float(v) for v in per_class],
        mean=float(per_class.mean()),
        random=float(random.mean()),
        match_rate=float(matches.float().mean()),
        chance=1.0 / k,
        ssim=float(ssim.mean()),
        random_ssim=float(random_ssim.mean()),
    )
