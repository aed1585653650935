"""The shared membership-inference API, and the two attacks that need no reference models.

Every attack is built on its target classifier (the capabilities it needs are checked then, so a
label-only endpoint refuses a score-based attack at construction) and offers one verb, ``infer``:
a membership score per example, higher meaning "more likely a training member", with the target
queries it spent in ``last_queries``. ``evaluate`` adds ground truth and returns a
:class:`~modelward.attacks.inference.metrics.MembershipResult`. Attacks that compare against
reference models take ``indices``: where each queried example sits in the reference population,
so the attack knows which reference models trained on it.

* :class:`LossAttack` — a global threshold on the loss (or confidence) of the true class
  (Yeom et al., 2018): cheap, one query per example, but blind to how hard each example is.
* :class:`LabelOnlyAttack` — correctness, optionally averaged over noise-perturbed copies
  (Choquette-Choo et al., 2021): works when the model returns labels only.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch

from modelward.attacks.inference.metrics import DEFAULT_FPRS, MembershipResult, membership_result
from modelward.attacks.inference.reference_models import ReferenceModels
from modelward.attacks.inference.signals import (
    check_labels,
    noisy_correctness_signal,
    score_signal,
    signal_from_log_probabilities,
)
from modelward.classifiers.base import Capability, Classifier
from modelward.core.errors import InputError


class MembershipAttack(ABC):
    """Base of every membership attack: capability check at construction, input checks, query counting."""

    name: ClassVar[str] = "membership"
    requires: ClassVar[tuple[Capability, ...]] = (Capability.SCORES,)

    def __init__(self, target: Classifier, *, batch_size: int = 1024) -> None:
        target.require(*self.requires, by=self.name)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.target = target
        self.batch_size = int(batch_size)
        self.last_queries = 0

    @property
    def label(self) -> str:
        """A human-readable name including the attack's mode."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"

    def infer(self, x: torch.Tensor, y: torch.Tensor, *, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Membership scores ``(N,)`` (float64, higher: more likely a member); target queries in ``last_queries``."""
        self.target.check_input(x)
        labels = check_labels(self.target, x, y)
        if indices is not None:
            indices = torch.as_tensor(indices).long()
            if tuple(indices.shape) != (x.shape[0],):
                raise InputError(f"indices must have shape ({x.shape[0]},), got {tuple(indices.shape)}")
        before = self.target.queries
        scores = self._infer(x, labels, indices)
        self.last_queries = self.target.queries - before
        if tuple(scores.shape) != (x.shape[0],):  # pragma: no cover - a bug in an attack
            raise InputError(f"{self.name} returned {tuple(scores.shape)} scores for {x.shape[0]} examples")
        return scores.double()

    def evaluate(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        members: torch.Tensor,
        *,
        indices: torch.Tensor | None = None,
        fprs: Sequence[float] = DEFAULT_FPRS,
        top_k: int = 10,
    ) -> MembershipResult:
        """Score ``x`` and measure the scores against ``members`` (boolean ground truth)."""
        started = time.perf_counter()
        scores = self.infer(x, y, indices=indices)
        seconds = time.perf_counter() - started
        return membership_result(
            self.label,
            scores,
            members,
            fprs=fprs,
            top_k=top_k,
            queries=self.last_queries,
            seconds=seconds,
            details=self.details(),
        )

    def details(self) -> dict[str, object]:
        """Attack parameters worth recording beside its result."""
        return {}

    @abstractmethod
    def _infer(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        """Scores for checked inputs and labels; every target query goes through ``self.target``."""


class LossAttack(MembershipAttack):
    """LOSS / confidence threshold (Yeom et al., 2018): members have lower loss on an overfit model.

    ``signal="loss"`` scores −loss, ``signal="confidence"`` the probability of the true class (the
    two rank examples identically). One query per example.
    """

    name = "LOSS"

    def __init__(
        self,
        target: Classifier,
        *,
        signal: Literal["loss", "confidence"] = "loss",
        batch_size: int = 1024,
    ) -> None:
        super().__init__(target, batch_size=batch_size)
        if signal not in ("loss", "confidence"):
            raise InputError(f"signal must be 'loss' or 'confidence', got {signal!r}")
        self.signal: Literal["loss", "confidence"] = signal

    @property
    def label(self) -> str:
        return "LOSS" if self.signal == "loss" else "confidence"

    def _infer(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        values = score_signal(self.target, x, y, self.signal, batch_size=self.batch_size)
        return -values if self.signal == "loss" else values


class LabelOnlyAttack(MembershipAttack):
    """Label-only membership (Choquette-Choo et al., 2021): correct, and robustly so, suggests a member.

    With ``noise_queries=0`` the score is correctness alone (the "gap attack"); otherwise it is the
    fraction of the clean input and ``noise_queries`` Gaussian-perturbed copies (std ``sigma``,
    clipped to the bounds) labelled correctly. N × (1 + ``noise_queries``) queries.
    """

    name = "label-only"
    requires = (Capability.LABELS,)

    def __init__(
        self,
        target: Classifier,
        *,
        noise_queries: int = 0,
        sigma: float = 0.1,
        seed: int = 0,
        batch_size: int = 1024,
    ) -> None:
        super().__init__(target, batch_size=batch_size)
        if noise_queries < 0:
            raise InputError(f"noise_queries must be >= 0, got {noise_queries}")
        if not sigma > 0:
            raise InputError(f"sigma must be > 0, got {sigma}")
        self.noise_queries = int(noise_queries)
        self.sigma = float(sigma)
        self.seed = int(seed)

    @property
    def label(self) -> str:
        if self.noise_queries == 0:
            return "label-only (gap)"
        return f"label-only (augmented, {self.noise_queries} noisy queries)"

    def details(self) -> dict[str, object]:
        return {"noise_queries": self.noise_queries, "sigma": self.sigma}

    def _infer(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        return noisy_correctness_signal(
            self.target, x, y, queries=self.noise_queries, sigma=self.sigma, seed=self.seed, batch_size=self.batch_size
        )


class ReferenceAttack(MembershipAttack):
    """An attack that compares the target with reference models trained on halves of a population."""

    def __init__(self, target: Classifier, references: ReferenceModels, *, batch_size: int = 1024) -> None:
        super().__init__(target, batch_size=batch_size)
        population = references.population
        if tuple(population.input_shape) != tuple(target.input_spec.shape):
            raise InputError(
                f"reference models take inputs of shape {population.input_shape}, the target {target.input_spec.shape}"
            )
        if population.num_classes != target.num_classes:
            raise InputError(f"reference models have {population.num_classes} classes, the target {target.num_classes}")
        self.references = references

    def _reference_view(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference log-probabilities ``(K, N, C)`` on ``x`` and membership ``(K, N)`` of ``x`` in each model.

        With ``indices``, ``x`` must be those population records (checked) and the cached population
        signals are reused; without, ``x`` is taken to be outside every reference training set.
        """
        population = self.references.population
        if indices is None:
            log_probs = self.references.log_probabilities(x, batch_size=self.batch_size)
            return log_probs, torch.zeros((len(self.references), x.shape[0]), dtype=torch.bool)
        if x.shape[0] and (int(indices.min()) < 0 or int(indices.max()) >= len(population)):
            raise InputError(f"indices must lie in [0, {len(population) - 1}]")
        if not torch.equal(population.x[indices], x) or not torch.equal(population.y[indices], y):
            raise InputError("the inputs and labels are not the population records their indices name")
        log_probs = self.references.log_probabilities(batch_size=self.batch_size)[:, indices]
        return log_probs, self.references.membership[:, indices]

    def _reference_signal(
        self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None, signal: Literal["phi", "confidence"]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_probs, inside = self._reference_view(x, y, indices)
        return signal_from_log_probabilities(log_probs, y, signal), inside
