"""How well a membership attack separates members from non-members: ROC, AUC, TPR at a fixed low FPR.

The figure that matters for privacy is the true-positive rate at a *low* false-positive rate
(Carlini et al., 2022): an attack that confidently identifies a few members is a real leak even
with an AUC near 0.5. That figure is computed exactly here: the largest TPR among the ROC's
thresholds whose FPR does not exceed the target, never an interpolation between points. When
there are too few non-members to resolve the rate (0.1% needs at least 1,000: ``n * fpr < 1``
allows no false positive at all), the result says *unresolvable* and why, instead of a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modelward.core.errors import InputError

DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)
"""The false-positive rates every result reports a TPR at: 0.1% and 1%."""


@dataclass(frozen=True)
class TprAtFpr:
    """The TPR at (at most) one false-positive rate, or why it cannot be stated.

    ``tpr`` is None exactly when ``reason`` says why (too few non-members). ``achieved_fpr`` is the
    FPR of the threshold chosen (≤ ``fpr``) and ``threshold`` the score at or above which an example
    is called a member there (``inf``: nobody is).
    """

    fpr: float
    tpr: float | None
    achieved_fpr: float | None = None
    threshold: float | None = None
    reason: str | None = None

    @property
    def resolvable(self) -> bool:
        return self.tpr is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "fpr": self.fpr,
            "tpr": self.tpr,
            "achieved_fpr": self.achieved_fpr,
            "threshold": None if self.threshold is None or not math.isfinite(self.threshold) else self.threshold,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        if self.tpr is None:
            return f"unresolvable ({self.reason})"
        return f"{self.tpr:.4f}"


@dataclass(frozen=True)
class Roc:
    """ROC points (increasing FPR) and the thresholds that produce them (score ≥ threshold ⇒ member)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_members: int
    n_nonmembers: int


@dataclass
class MembershipResult:
    """One membership attack's outcome on labelled examples.

    ``scores`` are per example (higher: more likely a member), ``members`` the ground truth.
    ``balanced_accuracy`` is the best over all thresholds (the attack's accuracy on a balanced set
    if its threshold were tuned on this data: an upper bound). ``top_leaking`` lists the indices
    of the members the attack ranks highest, the records it exposes most confidently.
    ``queries`` counts the target-model queries the attack spent.
    """

    attack: str
    scores: torch.Tensor
    members: torch.Tensor
    auc: float
    balanced_accuracy: float
    tpr_at: dict[float, TprAtFpr]
    roc: Roc
    top_leaking: list[int]
    queries: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def n_members(self) -> int:
        return self.roc.n_members

    @property
    def n_nonmembers(self) -> int:
        return self.roc.n_nonmembers

    def tpr(self, fpr: float) -> float | None:
        """The TPR at ``fpr`` (computed on demand when it is not one of the stored rates); None if unresolvable."""
        found = self.tpr_at.get(fpr)
        if found is None:
            found = tpr_at_fpr(self.roc, fpr)
        return found.tpr

    def summary(self) -> dict[str, Any]:
        """The headline numbers as plain JSON-ready data (no per-example arrays)."""
        return {
            "attack": self.attack,
            "auc": self.auc,
            "balanced_accuracy": self.balanced_accuracy,
            "tpr_at_fpr": {f"{fpr:g}": value.to_dict() for fpr, value in sorted(self.tpr_at.items())},
            "members": self.n_members,
            "nonmembers": self.n_nonmembers,
            "queries": self.queries,
            "seconds": self.seconds,
            "top_leaking": self.top_leaking,
            **({"details": self.details} if self.details else {}),
        }


def _as_arrays(scores: torch.Tensor | np.ndarray, members: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    m = np.asarray(members.detach().cpu().numpy() if isinstance(members, torch.Tensor) else members)
    if s.ndim != 1 or m.shape != s.shape:
        raise InputError(f"scores and membership labels must be 1-D of equal length, got {s.shape} and {m.shape}")
    if m.dtype != np.bool_:
        if not np.isin(m, (0, 1)).all():
            raise InputError("membership labels must be booleans or 0/1")
        m = m.astype(bool)
    if np.isnan(s).any():
        raise InputError("membership scores contain NaN")
    if not m.any() or m.all():
        raise InputError("membership evaluation needs both members and non-members")
    return s, m


def roc(scores: torch.Tensor | np.ndarray, members: torch.Tensor | np.ndarray) -> Roc:
    """The full ROC (every distinct threshold, none dropped) of member scores against non-member scores."""
    from sklearn.metrics import roc_curve

    s, m = _as_arrays(scores, members)
    # ±inf scores are legitimate (a certain member / non-member); roc_curve needs finite values,
    # so map them beyond the finite range, which keeps their order.
    finite = s[np.isfinite(s)]
    high = float(finite.max()) + 1.0 if finite.size else 1.0
    low = float(finite.min()) - 1.0 if finite.size else -1.0
    s = np.where(np.isposinf(s), high, np.where(np.isneginf(s), low, s))
    fpr, tpr, thresholds = roc_curve(m, s, drop_intermediate=False)
    return Roc(fpr, tpr, thresholds, int(m.sum()), int((~m).sum()))


def tpr_at_fpr(curve: Roc, fpr: float) -> TprAtFpr:
    """The largest TPR whose FPR is ≤ ``fpr``, exactly; unresolvable when ``n_nonmembers * fpr < 1``."""
    if not 0.0 < fpr < 1.0:
        raise InputError(f"false-positive rate must lie in (0, 1), got {fpr}")
    n = curve.n_nonmembers
    if n * fpr < 1.0:
        needed = math.ceil(1.0 / fpr - 1e-9)
        return TprAtFpr(
            fpr,
            None,
            reason=f"{n} non-members cannot resolve FPR {fpr:g}: it needs at least {needed} (one false positive)",
        )
    allowed = curve.fpr <= fpr + 1e-12
    best = int(np.flatnonzero(allowed)[np.argmax(curve.tpr[allowed])])
    return TprAtFpr(fpr, float(curve.tpr[best]), float(curve.fpr[best]), float(curve.thresholds[best]))


def membership_result(
    attack: str,
    scores: torch.Tensor | np.ndarray,
    members: torch.Tensor | np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    top_k: int = 10,
    queries: int = 0,
    seconds: float = 0.0,
    details: dict[str, Any] | None = None,
) -> MembershipResult:
    """Evaluate per-example scores against ground-truth membership: AUC, best balanced accuracy, TPR at ``fprs``."""
    from sklearn.metrics import auc

    if top_k < 0:
        raise InputError(f"top_k must be >= 0, got {top_k}")
    s, m = _as_arrays(scores, members)
    curve = roc(s, m)
    area = float(auc(curve.fpr, curve.tpr))
    balanced = float(np.max((curve.tpr + 1.0 - curve.fpr) / 2.0))
    member_index = np.flatnonzero(m)
    # Highest-scoring members first; ties broken by index so the list is reproducible.
    order = np.lexsort((member_index, -s[member_index]))
    top = [int(i) for i in member_index[order[:top_k]]]
    return MembershipResult(
        attack=attack,
        scores=torch.as_tensor(s),
        members=torch.as_tensor(m),
        auc=area,
        balanced_accuracy=balanced,
        tpr_at={float(f): tpr_at_fpr(curve, float(f)) for f in fprs},
        roc=curve,
        top_leaking=top,
        queries=queries,
        seconds=seconds,
        details=dict(details or {}),
    )
