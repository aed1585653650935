"""Output hardening: serve less of what a model knows, so score-based attacks get less to work with.

Model extraction, membership inference and score-based evasion all feed on the probability
vector a served model returns. :class:`HardenedClassifier` wraps any :class:`Classifier` and
passes its probabilities through a list of steps, applied in order:

- :class:`LabelOnly` — return the label and nothing else (drops ``scores``); score-based
  attacks then fail at construction with :class:`MissingCapabilityError`.
- :class:`TopK` — keep the ``k`` highest probabilities and zero the rest.
- :class:`Rounding` — round to ``decimals`` decimal places.
- :class:`GaussianNoise` — add ``N(0, σ²)`` to each probability, clip to [0, 1], renormalise.
- :class:`ReverseSigmoid` — Lee et al. 2019, "Defending Against NN Model Stealing Attacks
  Using Deceptive Perturbations": subtract ``β·(s(γ·s⁻¹(y)) − ½)`` (``s`` the sigmoid,
  ``s⁻¹`` the logit) from each probability ``y`` and renormalise. The perturbation is large
  near 0 and 1, so the returned vector misleads a student model trained on it.

**The label is preserved.** Each step receives the inner model's top-1 labels and keeps them
the maximum: top-k, noise and reverse sigmoid keep the argmax exactly (where noise or the
reverse sigmoid would lift another class above the label, their two values are swapped, a
permutation that leaves the returned values otherwise intact; remaining exact ties, possible
after clipping, are broken by lowering the tied values one float step). **Rounding is the
documented exception**: rounding is monotone, so the label's value stays a maximum, but two
classes may round to the same value and ``argmax`` of the returned vector then picks the lower
index. :meth:`HardenedClassifier.predict` always returns the inner model's label.

Gradients are never exposed (a hardened model that also served differentiable logits would
protect nothing), so the wrapper offers ``scores`` and ``labels``, or ``labels`` alone.
Queries count on the wrapper (its own optional budget) and on the inner classifier.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from modelward.classifiers.base import Capability, Classifier
from modelward.core.errors import InputError


# --------------------------------------------------------------------------------------------
# helpers shared by the steps
# --------------------------------------------------------------------------------------------
def _label_values(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return p.gather(1, labels.unsqueeze(1)).squeeze(1)


def _keep_label_on_top(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Swap the label's value with the largest value where another class overtook it; break exact ties."""
    p = p.clone()
    rows = torch.arange(p.shape[0], device=p.device)
    top = p.argmax(dim=1)
    moved = _label_values(p, labels) < p[rows, top]
    if bool(moved.any()):
        r, lab, t = rows[moved], labels[moved], top[moved]
        label_value, top_value = p[r, lab].clone(), p[r, t].clone()
        p[r, lab], p[r, t] = top_value, label_value
    # exact ties with the label (clipping can produce several 1.0s): lower the others by one float step
    value = _label_values(p, labels).unsqueeze(1)
    tied = p >= value
    tied[rows, labels] = False
    if bool(tied.any()):
        lowered = torch.nextafter(p, torch.zeros_like(p))
        p = torch.where(tied, lowered, p)
    return p


def _renormalise(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Rows scaled to sum 1; a row with no mass left becomes one-hot on its label."""
    total = p.sum(dim=1, keepdim=True)
    empty = total <= 0
    if not bool(empty.any()):  # the common case in as few tensor ops as possible (they run per served request)
        return p / total
    out = p / total.clamp_min(torch.finfo(p.dtype).tiny)
    one_hot = torch.nn.functional.one_hot(labels, p.shape[1]).to(p.dtype)
    return torch.where(empty, one_hot, out)


# --------------------------------------------------------------------------------------------
# the steps
# --------------------------------------------------------------------------------------------
class HardeningStep(ABC):
    """One transformation of served probabilities ``(N, C)`` that keeps ``labels`` (N,) maximal."""

    kind: ClassVar[str]

    @abstractmethod
    def apply(self, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The hardened probabilities; ``labels`` are the inner model's top-1 classes."""

    def reset(self) -> None:  # noqa: B027 - optional hook, a no-op for deterministic steps
        """Restart any random stream from its seed (a no-op for deterministic steps)."""


@dataclass(frozen=True)
class LabelOnly(HardeningStep):
    """Serve labels only: the wrapper drops the ``scores`` capability, so probabilities are refused."""

    kind: ClassVar[str] = "label_only"

    def apply(self, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise InputError("label_only serves no probabilities")


@dataclass(frozen=True)
class TopK(HardeningStep):
    """Keep the ``k`` highest probabilities, set the rest to 0.

    With ``renormalise`` (the default) the kept values are rescaled to sum to 1, so the output
    is still a distribution and consumers that expect one keep working, and the removed mass is
    not revealed. Without it the kept values are the model's own and the row sums to less than
    1. ``k = 1`` with ``renormalise`` is a one-hot vector: labels only, in score form.
    """

    k: int
    renormalise: bool = True
    kind: ClassVar[str] = "top_k"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InputError(f"top_k needs k >= 1, got {self.k}")

    def apply(self, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        k = min(self.k, probabilities.shape[1])
        # the label first, then the k-1 highest others: the label is kept even among exact ties
        boosted = probabilities.clone()
        boosted.scatter_(1, labels.unsqueeze(1), float("inf"))
        keep = boosted.topk(k, dim=1).indices
        out = torch.zeros_like(probabilities).scatter_(1, keep, probabilities.gather(1, keep))
        return _renormalise(out, labels) if self.renormalise else out


@dataclass(frozen=True)
class Rounding(HardeningStep):
    """Round each probability to ``decimals`` decimal places (round half to even).

    Rounding is monotone, so the label's value remains a maximum, but near-equal classes may
    round to the same value: ``argmax`` of the output then takes the lower index (the one
    documented exception to label preservation). Rows need not sum to exactly 1 afterwards.
    """

    decimals: int
    kind: ClassVar[str] = "rounding"

    def __post_init__(self) -> None:
        if not 0 <= self.decimals <= 7:
            raise InputError(f"rounding needs 0 <= decimals <= 7 (float32 precision), got {self.decimals}")

    def apply(self, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.round(probabilities, decimals=self.decimals)


class GaussianNoise(HardeningStep):
    """Add ``N(0, σ²)`` to every probability, clip to [0, 1], renormalise; the label stays on top.

    The noise comes from a generator seeded with ``seed`` that advances from call to call, so a
    sequence of queries is reproducible and repeated queries of one input get fresh noise
    (an attacker who averages ``q`` answers divides σ by √q: noise slows extraction down, it does
    not stop it). :meth:`reset` restarts the stream.
    """

    kind: ClassVar[str] = "gaussian_noise"

    def __init__(self, sigma: float, seed: int = 0) -> None:
        if not sigma > 0:
            raise InputError(f"gaussian_noise needs sigma > 0, got {sigma}")
        self.sigma = float(sigma)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma}, seed={self.seed})"

    def reset(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    def apply(self, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(probabilities.shape, generator=self._generator, dtype=probabilities.dtype)
        noisy = (probabilities + self.sigma * noise.to(probabilities.device)).clamp(0.0, 1.0)
        return _keep_label_on_top(_renormalise(noisy, labels), labels)


@dataclass(frozen=True)
class ReverseSigmoid(HardeningStep):
    """Lee et al. 2019's deceptive perturbation: ``ŷ = α·(y − β·(s(γ·s⁻¹(y)) − ½))``, ``α`` normalising.

    ``s`` is the sigmoid and ``s⁻¹`` the logit; probabilities are clipped to ``[1e-9, 1 − 1e-9]``
    before the logit and the perturbed values to [0, 1] before normalising. ``β > 0`` scales the
    perturbation, ``γ > 0`` sets where it bites (small γ pushes every value towards β/2, hiding
    the confidence a student model would learn from). The map is not monotone, so it can lift a
    low class over the top one; the step then swaps those two values and the label stays top-1,
    as the paper requires of the defense (top-1 accuracy is not given up).
    """

    beta: float = 1.0
    gamma: float = 0.1
    kind: ClassVar[str] = "reverse_sigmoid"

    def __post_init__(self) -> None:
        if not self.beta > 0 or not self.gamma > 0:
            raise InputError(f"reverse_sigmoid needs beta > 0 and gamma > 0, got beta={self.beta}, gamma={self.gamma}")

    def apply(self, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        y = probabilities.clamp(1e-9, 1.0 - 1e-9)
        perturbation = self.beta * (torch.sigmoid(self.gamma * torch.logit(y)) - 0.5)
        perturbed = (probabilities - perturbation).clamp(0.0, 1.0)
        return _keep_label_on_top(_renormalise(perturbed, labels), labels)


STEP_KINDS: dict[str, type[HardeningStep]] = {
    cls.kind: cls for cls in (LabelOnly, TopK, Rounding, GaussianNoise, ReverseSigmoid)
}


def parse_steps(specs: Sequence[Mapping[str, Any]]) -> list[HardeningStep]:
    """Steps from plain data, e.g. ``[{"kind": "top_k", "k": 3}, {"kind": "rounding", "decimals": 2}]``.

    For configuration files: every unknown kind or parameter is an :class:`InputError`.
    """
    steps: list[HardeningStep] = []
    for index, spec in enumerate(specs):
        params = dict(spec)
        kind = params.pop("kind", None)
        if kind not in STEP_KINDS:
            known = ", ".join(sorted(STEP_KINDS))
            raise InputError(f"hardening step {index}: kind must be one of {known}, got {kind!r}")
        try:
            steps.append(STEP_KINDS[str(kind)](**params))
        except TypeError as error:
            raise InputError(f"hardening step {index} ({kind}): {error}") from error
    return steps


# --------------------------------------------------------------------------------------------
# the wrapper
# --------------------------------------------------------------------------------------------
class HardenedClassifier(Classifier):
    """``inner`` served through ``steps``: same inputs and classes, fewer capabilities, hardened scores.

    ``steps`` apply in order (put :class:`Rounding` or :class:`TopK` last to keep their form in
    the output). :class:`LabelOnly` stands alone: combined with score steps it is an error,
    since they would never apply. An inner classifier without ``scores`` only takes
    :class:`LabelOnly` (or no step). ``query_budget`` limits the wrapper's own queries; the
    inner classifier keeps counting (and enforcing its budget) as well.
    """

    def __init__(
        self,
        inner: Classifier,
        steps: Sequence[HardeningStep] = (),
        *,
        query_budget: int | None = None,
    ) -> None:
        steps = list(steps)
        for step in steps:
            if not isinstance(step, HardeningStep):
                raise InputError(f"hardening steps must be HardeningStep objects, got {type(step).__name__}")
        label_only = any(isinstance(step, LabelOnly) for step in steps)
        if label_only and len(steps) > 1:
            raise InputError("label_only cannot be combined with other hardening steps: they would never apply")
        capabilities = {Capability.LABELS}
        if not label_only and Capability.SCORES in inner.capabilities:
            capabilities.add(Capability.SCORES)
        if steps and not label_only:
            inner.require(Capability.SCORES, by=f"output hardening ({', '.join(s.kind for s in steps)})")
        super().__init__(inner.input_spec, inner.num_classes, capabilities, query_budget)
        self.inner = inner
        self.steps: tuple[HardeningStep, ...] = tuple(steps)

    def __repr__(self) -> str:
        return f"HardenedClassifier({self.inner!r}, steps={list(self.steps)!r})"

    @property
    def label_only(self) -> bool:
        """Whether the wrapper serves labels alone."""
        return Capability.SCORES not in self.capabilities

    def reset(self) -> None:
        """Restart every step's random stream from its seed."""
        for step in self.steps:
            step.reset()

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = self.inner.probabilities(x).to(torch.float32)
        labels = probabilities.argmax(dim=1)
        for step in self.steps:
            probabilities = step.apply(probabilities, labels)
        return probabilities

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.predict(x)
