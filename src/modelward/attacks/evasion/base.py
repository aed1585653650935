"""The shared evasion-attack API: results, the attack base class, norm and bound helpers.

Every evasion attack subclasses :class:`EvasionAttack` and implements one method, ``_attack``,
on a batch of inputs that are not yet adversarial. The base class does the rest, identically for
all attacks: capability checks at construction, batching, seeding (a fresh ``torch.Generator``
per call, so a call is reproducible on its own), the clean prediction, exact per-sample query
counting (checked against the classifier's own counter), and verification that every returned
input lies within the classifier's bounds and within epsilon in the attack's norm.

Query accounting, identical for every attack: each sample costs one clean ``predict`` query;
samples already adversarial on their clean input (misclassified, or classified as the target)
are not attacked further; all other queries are those the attack's ``_attack`` makes, counted
per sample through the helpers :meth:`EvasionAttack._logits`, :meth:`EvasionAttack._scores`,
:meth:`EvasionAttack._labels` and :meth:`EvasionAttack._gradient`.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal, cast

import torch

from modelward.classifiers.base import Capability, Classifier
from modelward.core.errors import ModelwardError
from modelward.core.progress import Progress, report, scaled

NormName = Literal["linf", "l2"]
NORMS: tuple[NormName, ...] = ("linf", "l2")

# Slack for float rounding when verifying bounds and norms (x + delta is rounded once).
_TOLERANCE = 1e-5


class AttackError(ModelwardError):
    """Misuse of an evasion attack (bad epsilon, norm, targets, parameters) or a broken attack contract."""


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass
class EpsilonResult:
    """The outcome of one attack at one epsilon, per sample.

    ``success`` is True where the adversarial input is misclassified (untargeted) or classified
    as its target (targeted); samples already adversarial on their clean input count as successes
    without being perturbed. ``queries`` is the exact number of model queries spent per sample.
    ``clean_correct`` records whether the clean input was classified correctly (None: unknown,
    taken as all correct).
    """

    epsilon: float
    adversarial: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    queries: torch.Tensor
    clean_correct: torch.Tensor | None = None
    targeted: bool = False

    @property
    def robust_accuracy(self) -> float:
        """Fraction of samples classified correctly on the clean input AND not successfully attacked."""
        n = int(self.success.numel())
        if n == 0:
            return float("nan")
        robust = ~self.success
        if self.clean_correct is not None:
            robust = robust & self.clean_correct
        return float(robust.sum()) / n

    @property
    def success_rate(self) -> float:
        """Fraction of samples the attack made adversarial (including those adversarial to begin with)."""
        n = int(self.success.numel())
        return float(self.success.sum()) / n if n else float("nan")

    @property
    def mean_queries(self) -> float:
        """Mean model queries per sample."""
        n = int(self.queries.numel())
        return float(self.queries.sum()) / n if n else float("nan")


@dataclass
class SweepResult:
    """One attack run over several epsilons (``per_epsilon`` in increasing epsilon).

    With ``monotone`` sweeps (the default) a sample broken at a smaller epsilon stays broken at a
    larger one (its smaller adversarial input lies inside the larger ball), so robust accuracy
    never rises with epsilon; ``raw_robust_accuracy`` keeps each epsilon's own figures, before that
    carry-over, for gradient-masking diagnostics.
    """

    attack: str
    norm: str
    per_epsilon: list[EpsilonResult]
    clean_accuracy: float
    seconds: float
    targeted: bool = False
    raw_robust_accuracy: list[float] = field(default_factory=list)

    @property
    def epsilons(self) -> list[float]:
        """The swept epsilons, increasing."""
        return [r.epsilon for r in self.per_epsilon]

    @property
    def robust_accuracy(self) -> list[float]:
        """Robust accuracy per epsilon (same order as :attr:`epsilons`)."""
        return [r.robust_accuracy for r in self.per_epsilon]

    def curve(self) -> list[tuple[float, float]]:
        """``(epsilon, robust accuracy)`` pairs, for plots and reports."""
        return [(r.epsilon, r.robust_accuracy) for r in self.per_epsilon]

    @property
    def total_queries(self) -> int:
        """All model queries the sweep spent."""
        return int(sum(int(r.queries.sum()) for r in self.per_epsilon))


# --------------------------------------------------------------------------------------------
# norm helpers (pure functions on (N, ...) tensors)
# --------------------------------------------------------------------------------------------
def check_norm(norm: str) -> NormName:
    """Return ``norm`` as a :data:`NormName`, or fail naming the supported norms."""
    if norm == "linf":
        return "linf"
    if norm == "l2":
        return "l2"
    raise AttackError(f"unknown norm {norm!r}; supported: {', '.join(NORMS)}")


def _view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample values ``(N,)`` to broadcast over ``like`` ``(N, ...)``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def perturbation_norms(delta: torch.Tensor, norm: NormName) -> torch.Tensor:
    """Per-sample norm ``(N,)`` of a perturbation batch ``(N, ...)``."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])
    return cast(torch.Tensor, torch.linalg.vector_norm(flat, ord=2, dim=1))


def project(delta: torch.Tensor, epsilon: float | torch.Tensor, norm: NormName) -> torch.Tensor:
    """Project a perturbation batch onto the epsilon ball of ``norm`` (per sample; new tensor).

    ``epsilon`` may be a float or a per-sample tensor ``(N,)``.
    """
    if norm == "linf":
        if isinstance(epsilon, torch.Tensor):
            bound = _view(epsilon, delta)
            return torch.maximum(torch.minimum(delta, bound), -bound)
        return delta.clamp(-epsilon, epsilon)
    norms = perturbation_norms(delta, "l2")
    eps = epsilon if isinstance(epsilon, torch.Tensor) else torch.full_like(norms, float(epsilon))
    factor = torch.where(norms > eps, eps / norms.clamp_min(1e-12), torch.ones_like(norms))
    return delta * _view(factor, delta)


def steepest_direction(grad: torch.Tensor, norm: NormName) -> torch.Tensor:
    """The unit-norm ascent direction for ``grad`` under ``norm``: sign (L∞) or normalised (L2)."""
    if norm == "linf":
        return grad.sign()
    norms = perturbation_norms(grad, "l2").clamp_min(1e-12)
    return grad / _view(norms, grad)


def random_in_ball(like: torch.Tensor, epsilon: float, norm: NormName, generator: torch.Generator) -> torch.Tensor:
    """A perturbation drawn uniformly from the epsilon ball of ``norm``, shaped like ``like``."""
    if norm == "linf":
        noise = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return noise.mul_(2 * epsilon).sub_(epsilon)
    direction = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
    direction = steepest_direction(direction, "l2")
    dims = max(1, like[0].numel())
    radius = torch.rand(like.shape[0], generator=generator, device=like.device, dtype=like.dtype)
    radius = radius.pow(1.0 / dims).mul_(epsilon)
    return direction * _view(radius, like)


# --------------------------------------------------------------------------------------------
# the attack base class
# --------------------------------------------------------------------------------------------
class EvasionAttack(ABC):
    """Base of every evasion attack: construction-time capability checks, batching, seeding, counting.

    Subclasses set ``name``, ``requires`` (the classifier capabilities they need) and ``norms``
    (those they support), take their own keyword parameters in ``__init__`` (calling
    ``super().__init__(classifier, norm=norm, seed=seed)`` first) and implement :meth:`_attack`.
    """

    name: ClassVar[str] = "evasion"
    requires: ClassVar[tuple[Capability, ...]] = ()
    norms: ClassVar[tuple[NormName, ...]] = NORMS

    def __init__(self, classifier: Classifier, *, norm: str = "linf", seed: int = 0) -> None:
        classifier.require(*self.requires, by=self.name)
        checked = check_norm(norm)
        if checked not in self.norms:
            raise AttackError(f"{self.name} supports the {' and '.join(self.norms)} norms, not {norm!r}")
        self.classifier = classifier
        self.norm: NormName = checked
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(norm={self.norm!r}, seed={self.seed})"

    # --- public verbs --------------------------------------------------------------------
    def perturb(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilon: float,
        *,
        targets: torch.Tensor | None = None,
        batch_size: int = 500,
        progress: Progress | None = None,
    ) -> EpsilonResult:
        """Attack ``x`` (labels ``y``, optional ``targets``) at one epsilon, in batches; reproducible per call.

        ``progress`` hears ``(samples done, samples)`` after each batch.
        """
        y, targets = self._check_call(x, y, targets, batch_size)
        eps = self._check_epsilon(epsilon)
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        parts: list[EpsilonResult] = []
        for start in range(0, x.shape[0], batch_size):
            stop = start + batch_size
            parts.append(
                self._perturb_batch(
                    x[start:stop], y[start:stop], eps, None if targets is None else targets[start:stop], generator
                )
            )
            report(progress, min(stop, x.shape[0]), x.shape[0])
        if len(parts) == 1:
            return parts[0]
        return EpsilonResult(
            epsilon=eps,
            adversarial=torch.cat([p.adversarial for p in parts]),
            success=torch.cat([p.success for p in parts]),
            norms=torch.cat([p.norms for p in parts]),
            queries=torch.cat([p.queries for p in parts]),
            clean_correct=torch.cat([cast(torch.Tensor, p.clean_correct) for p in parts]),
            targeted=targets is not None,
        )

    def sweep(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilons: Sequence[float],
        *,
        targets: torch.Tensor | None = None,
        batch_size: int = 500,
        monotone: bool = True,
        progress: Progress | None = None,
    ) -> SweepResult:
        """Attack at several epsilons (run in increasing order); see :class:`SweepResult` for ``monotone``.

        ``progress`` hears ``(samples done, samples × epsilons)`` as the sweep goes.
        """
        if len(epsilons) == 0:
            raise AttackError("sweep needs at least one epsilon")
        ordered = sorted(self._check_epsilon(e) for e in epsilons)
        started = time.perf_counter()
        results: list[EpsilonResult] = []
        raw: list[float] = []
        total = len(ordered) * x.shape[0]
        for index, eps in enumerate(ordered):
            part = scaled(progress, index * x.shape[0], total)
            result = self.perturb(x, y, eps, targets=targets, batch_size=batch_size, progress=part)
            raw.append(result.robust_accuracy)
            if monotone and results:
                result = _carry_over(results[-1], result)
            results.append(result)
        clean = results[0].clean_correct
        clean_accuracy = float(clean.float().mean()) if clean is not None and clean.numel() else float("nan")
        return SweepResult(
            attack=self.name,
            norm=self.norm,
            per_epsilon=results,
            clean_accuracy=clean_accuracy,
            seconds=time.perf_counter() - started,
            targeted=targets is not None,
            raw_robust_accuracy=raw,
        )

    # --- what subclasses implement ---------------------------------------------------------
    @abstractmethod
    def _attack(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilon: float,
        *,
        targets: torch.Tensor | None,
        queries: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attack a batch none of whose clean inputs is adversarial; return ``(adversarial, success)``.

        ``epsilon`` is > 0. Every model query for sample ``i`` must go through the counting helpers
        (which add to ``queries[i]``). ``success[i]`` must reflect a model output at exactly
        ``adversarial[i]``; the adversarial batch must stay within bounds and the epsilon ball.
        """

    # --- helpers for subclasses: counted model access ---------------------------------------
    def _logits(self, x: torch.Tensor, queries: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable logits of ``x``; adds one query to ``queries`` (at ``index`` if given)."""
        out = self.classifier.logits(x)
        _add_one(queries, index)
        return out

    def _scores(self, x: torch.Tensor, queries: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Class probabilities of ``x`` (no gradient); adds one query per sample."""
        out = self.classifier.probabilities(x)
        _add_one(queries, index)
        return out

    def _labels(self, x: torch.Tensor, queries: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted labels of ``x``; adds one query per sample."""
        out = self.classifier.predict(x)
        _add_one(queries, index)
        return out

    def _gradient(
        self,
        x: torch.Tensor,
        loss: Callable[[torch.Tensor], torch.Tensor],
        queries: torch.Tensor,
        index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradient of the per-sample ``loss(logits)`` ``(N,)`` w.r.t. ``x``: ``(grad, logits, loss)``, detached.

        One query per sample. Per-sample gradients are exact because samples are independent.
        """
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self._logits(x, queries, index)
            values = loss(logits)
            (grad,) = torch.autograd.grad(values.sum(), x)
        return grad, logits.detach(), values.detach()

    # --- helpers for subclasses: success, projection, bounds --------------------------------
    @staticmethod
    def _is_success(predicted: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Adversarial mask: misclassified (untargeted) or classified as the target (targeted)."""
        return predicted == targets if targets is not None else predicted != y

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp to the classifier's input bounds (only ever applied to attacker-made inputs)."""
        spec = self.classifier.input_spec
        return x.clamp(spec.lower, spec.upper)

    def _project(
        self, x: torch.Tensor, x_adv: torch.Tensor, epsilon: float | torch.Tensor, norm: NormName | None = None
    ) -> torch.Tensor:
        """Bring ``x_adv`` into the epsilon ball around ``x`` (attack's norm unless given), then into bounds.

        Clipping after projection never increases the norm, since ``x`` lies within the bounds.
        """
        return self._clip(x + project(x_adv - x, epsilon, norm or self.norm))

    # --- internals ---------------------------------------------------------------------------
    def _check_call(
        self, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if batch_size < 1:
            raise AttackError(f"batch_size must be >= 1, got {batch_size}")
        self.classifier.check_input(x)
        n = x.shape[0]
        y = torch.as_tensor(y, device=x.device).long()
        if tuple(y.shape) != (n,):
            raise AttackError(f"labels must have shape ({n},), got {tuple(y.shape)}")
        classes = self.classifier.num_classes
        if n and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise AttackError(f"labels must lie in [0, {classes - 1}]")
        if targets is None:
            return y, None
        targets = torch.as_tensor(targets, device=x.device).long()
        if tuple(targets.shape) != (n,):
            raise AttackError(f"targets must have shape ({n},), got {tuple(targets.shape)}")
        if n and (int(targets.min()) < 0 or int(targets.max()) >= classes):
            raise AttackError(f"targets must lie in [0, {classes - 1}]")
        if bool((targets == y).any()):
            raise AttackError("a target equals its true label; targeted attacks need a different class")
        return y, targets

    @staticmethod
    def _check_epsilon(epsilon: float) -> float:
        eps = float(epsilon)
        if not math.isfinite(eps) or eps < 0:
            raise AttackError(f"epsilon must be a finite number >= 0, got {epsilon}")
        return eps

    def _perturb_batch(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilon: float,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> EpsilonResult:
        n = x.shape[0]
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        before = self.classifier.queries
        predicted = self._labels(x, queries)
        clean_correct = predicted == y
        success = self._is_success(predicted, y, targets)
        adversarial = x.clone()
        active = (~success).nonzero().squeeze(1)
        if epsilon > 0 and active.numel():
            everyone = active.numel() == n
            sub_x = x if everyone else x[active]
            sub_y = y if everyone else y[active]
            sub_t = targets if (targets is None or everyone) else targets[active]
            sub_q = torch.zeros(active.numel(), dtype=torch.long, device=x.device)
            adv, hit = self._attack(sub_x, sub_y, epsilon, targets=sub_t, queries=sub_q, generator=generator)
            adv = adv.detach()
            self._verify(sub_x, adv, epsilon)
            adversarial[active] = adv
            success[active] = hit.to(torch.bool)
            queries[active] += sub_q
        spent = self.classifier.queries - before
        if spent != int(queries.sum()):
            raise AttackError(
                f"{self.name}: query accounting mismatch ({spent} queries reached the classifier, "
                f"{int(queries.sum())} were counted per sample)"
            )
        return EpsilonResult(
            epsilon=epsilon,
            adversarial=adversarial,
            success=success,
            norms=perturbation_norms(adversarial - x, self.norm),
            queries=queries,
            clean_correct=clean_correct,
            targeted=targets is not None,
        )

    def _verify(self, x: torch.Tensor, adversarial: torch.Tensor, epsilon: float) -> None:
        """Refuse an attack output outside the bounds or the epsilon ball (a bug in the attack)."""
        if adversarial.shape != x.shape:
            raise AttackError(f"{self.name} returned shape {tuple(adversarial.shape)} for inputs {tuple(x.shape)}")
        spec = self.classifier.input_spec
        if not torch.isfinite(adversarial).all():
            raise AttackError(f"{self.name} produced non-finite inputs")
        if float(adversarial.min()) < spec.lower or float(adversarial.max()) > spec.upper:
            raise AttackError(f"{self.name} produced inputs outside the bounds [{spec.lower}, {spec.upper}]")
        largest = float(perturbation_norms(adversarial - x, self.norm).max())
        if largest > epsilon * (1 + _TOLERANCE) + _TOLERANCE * 1e-1:
            raise AttackError(f"{self.name} produced a perturbation of {self.norm} norm {largest:.6g} > {epsilon:.6g}")


def _add_one(queries: torch.Tensor, index: torch.Tensor | None) -> None:
    """Count one query for every sample (or for the samples at ``index``)."""
    if index is None:
        queries += 1
    else:
        queries.index_add_(0, index, torch.ones_like(index, dtype=queries.dtype))


def _carry_over(previous: EpsilonResult, current: EpsilonResult) -> EpsilonResult:
    """Keep a sample broken at the smaller epsilon broken at the larger one (its input is still valid)."""
    keep = previous.success & ~current.success
    if not bool(keep.any()):
        return current
    view = _view(keep, current.adversarial)
    return EpsilonResult(
        epsilon=current.epsilon,
        adversarial=torch.where(view, previous.adversarial, current.adversarial),
        success=current.success | keep,
        norms=torch.where(keep, previous.norms, current.norms),
        queries=current.queries,
        clean_correct=current.clean_correct,
        targeted=current.targeted,
    )
