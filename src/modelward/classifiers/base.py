"""The classifier protocol every attack and defense uses: capabilities, bounds, normalisation, queries.

A classifier owns its input domain. Inputs arrive in raw units (images in [0, 1], standardised
tables in their declared bounds) as torch tensors of shape ``(N, *input_shape)``; normalisation
happens inside, so an attack never needs to know it. Out-of-bounds or wrongly shaped input is an
error, never silently clipped. Every call that reaches the model counts queries, and a budget,
once spent, stops further queries with an error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import torch

from modelward.core.errors import ModelwardError


class Capability(StrEnum):
    """What a classifier can give an attacker."""

    GRADIENTS = "gradients"  # differentiable logits (white-box)
    SCORES = "scores"  # class probabilities (black-box, score-based)
    LABELS = "labels"  # predicted labels only (decision-based)


class ClassifierError(ModelwardError):
    """Misuse of a classifier: wrong shape, out-of-bounds input, missing capability, spent budget."""


class MissingCapabilityError(ClassifierError):
    """An attack or defense needs a capability the classifier does not offer."""


class QueryBudgetExceeded(ClassifierError):
    """The classifier's query budget is spent."""


@dataclass(frozen=True)
class InputSpec:
    """Shape of one input (without the batch dimension) and the closed interval its values live in."""

    shape: tuple[int, ...]
    lower: float = 0.0
    upper: float = 1.0

    def __post_init__(self) -> None:
        if not self.shape or any(d <= 0 for d in self.shape):
            raise ClassifierError(f"input shape must be positive dimensions, got {self.shape}")
        if not self.lower < self.upper:
            raise ClassifierError(f"input bounds must satisfy lower < upper, got [{self.lower}, {self.upper}]")


class Classifier(ABC):
    """Base of every classifier adapter (torch module, scikit-learn estimator, remote endpoint)."""

    def __init__(
        self,
        input_spec: InputSpec,
        num_classes: int,
        capabilities: Iterable[Capability],
        query_budget: int | None = None,
    ) -> None:
        if num_classes < 2:
            raise ClassifierError(f"a classifier needs at least 2 classes, got {num_classes}")
        if query_budget is not None and query_budget < 0:
            raise ClassifierError(f"query budget must be >= 0, got {query_budget}")
        self.input_spec = input_spec
        self.num_classes = num_classes
        self.capabilities = frozenset(capabilities)
        self.query_budget = query_budget
        self.queries = 0

    # --- capability and input checks -------------------------------------------------
    def require(self, *needed: Capability, by: str) -> None:
        """Fail, naming what is missing, unless the classifier offers every needed capability."""
        missing = [c.value for c in needed if c not in self.capabilities]
        if missing:
            offered = ", ".join(sorted(c.value for c in self.capabilities)) or "none"
            raise MissingCapabilityError(
                f"{by} needs capability {', '.join(missing)}; this classifier offers {offered}"
            )

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse a batch of the wrong shape, a non-finite value or a value outside the bounds."""
        expected = self.input_spec.shape
        if x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            raise ClassifierError(
                f"expected inputs of shape (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}"
            )
        values = x.detach()
        if values.numel() == 0:
            return
        if not torch.isfinite(values).all():
            raise ClassifierError("inputs contain NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        spec = self.input_spec
        if low < spec.lower - 1e-6 or high > spec.upper + 1e-6:
            raise ClassifierError(
                f"inputs span [{low:.4g}, {high:.4g}], outside the classifier's bounds [{spec.lower}, {spec.upper}]"
            )

    def _count(self, n: int) -> None:
        if self.query_budget is not None and self.queries + n > self.query_budget:
            raise QueryBudgetExceeded(
                f"query budget of {self.query_budget} spent ({self.queries} used, {n} more requested)"
            )
        self.queries += n

    def reset_queries(self) -> None:
        """Start counting queries from zero again (the budget applies afresh)."""
        self.queries = 0

    # --- model access ------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits ``(N, C)``; needs ``gradients``. Counts N queries."""
        self.require(Capability.GRADIENTS, by="logits()")
        self.check_input(x)
        self._count(x.shape[0])
        return self._logits(x)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, C)`` without gradients; needs ``scores``. Counts N queries."""
        self.require(Capability.SCORES, by="probabilities()")
        self.check_input(x)
        self._count(x.shape[0])
        with torch.no_grad():
            return self._probabilities(x)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels ``(N,)``; every classifier offers this. Counts N queries."""
        self.check_input(x)
        self._count(x.shape[0])
        with torch.no_grad():
            return self._labels(x)

    # --- adapters implement these (inputs already checked and counted) ----------------
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        raise MissingCapabilityError("this classifier has no gradients")

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self._logits(x), dim=1)

    @abstractmethod
    def _labels(self, x: torch.Tensor) -> torch.Tensor: ...
