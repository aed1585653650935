"""LiRA, the Likelihood Ratio Attack (Carlini et al., "Membership Inference Attacks From First Principles", 2022).

For each example, reference models trained with it (IN) and without it (OUT) give two
distributions of its logit-scaled confidence φ; each is fitted with a Gaussian. The target's φ on
the example is then scored by how much more likely it is under IN than under OUT. Because the
Gaussians are per example, a hard example with a naturally low confidence is not mistaken for a
non-member, nor an easy one for a member: that calibration is what lifts the true-positive rate
at low false-positive rates far above a global loss threshold.

* online (``online=True``): log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out); needs IN and OUT
  models for every example (reference models trained on random halves of the population);
* offline (``online=False``): a one-sided test against OUT only, −log Pr[Z > φ] for
  Z ~ N(μ_out, σ_out), so reference models never need the target's examples;
* ``fixed_variance=True``: one pooled (global) σ for all examples instead of per-example σ. With
  few reference models per-example σ's are noisy estimates, and the paper recommends the global
  one below 64 models; ``fixed_variance=None`` (the default) follows that rule.
"""

from __future__ import annotations

import math

import torch

from modelward.attacks.inference.base import ReferenceAttack
from modelward.attacks.inference.reference_models import ReferenceModels
from modelward.attacks.inference.signals import score_signal
from modelward.classifiers.base import Classifier
from modelward.core.errors import InputError

FIXED_VARIANCE_BELOW = 64
"""With fewer reference models than this, ``fixed_variance=None`` uses the global variance."""


def masked_gaussians(
    values: torch.Tensor, mask: torch.Tensor, *, fixed_variance: bool, min_std: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-column mean and std of ``values`` ``(K, N)`` over the rows where ``mask`` is True.

    Returns ``(mean, std, count)``. The std is the unbiased per-column one, or the pooled
    within-column std for every column with ``fixed_variance`` (also used for columns with fewer
    than two values); it is floored at ``min_std``.
    """
    weights = mask.to(values.dtype)
    count = weights.sum(dim=0)
    mean = (values * weights).sum(dim=0) / count.clamp_min(1.0)
    squares = ((values - mean) ** 2 * weights).sum(dim=0)
    degrees = (count - 1).clamp_min(0.0)
    total_degrees = float(degrees.sum())
    pooled = math.sqrt(float(squares.sum()) / total_degrees) if total_degrees > 0 else min_std
    pooled_std = torch.full_like(mean, max(pooled, min_std))
    if fixed_variance:
        return mean, pooled_std, count
    per_column = (squares / degrees.clamp_min(1.0)).sqrt()
    std = torch.where(count >= 2, per_column, pooled_std).clamp_min(min_std)
    return mean, std, count


def _log_normal(value: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((value - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)


class LiRA(ReferenceAttack):
    """The likelihood-ratio attack, online (IN and OUT models) or offline (OUT only), per-example or fixed variance.

    One target query per example. Reference models are the population's (see
    :func:`~modelward.attacks.inference.reference_models.train_reference_models`); pass ``indices``
    to ``infer`` so the attack knows which of them trained on each example.
    """

    name = "LiRA"

    def __init__(
        self,
        target: Classifier,
        references: ReferenceModels,
        *,
        online: bool = True,
        fixed_variance: bool | None = None,
        min_std: float = 1e-4,
        batch_size: int = 1024,
    ) -> None:
        super().__init__(target, references, batch_size=batch_size)
        if not min_std > 0:
            raise InputError(f"min_std must be > 0, got {min_std}")
        self.online = bool(online)
        if fixed_variance is None:
            fixed_variance = len(references) < FIXED_VARIANCE_BELOW
        self.fixed_variance = bool(fixed_variance)
        self.min_std = float(min_std)

    @property
    def label(self) -> str:
        mode = "online" if self.online else "offline"
        variance = ", fixed variance" if self.fixed_variance else ""
        return f"LiRA {mode}{variance}"

    def details(self) -> dict[str, object]:
        return {"online": self.online, "fixed_variance": self.fixed_variance, "reference_models": len(self.references)}

    def _infer(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        if self.online and indices is None:
            raise InputError(
                "online LiRA needs the examples' population indices (to find the reference models trained on them); "
                "pass indices=, or use online=False"
            )
        reference_phi, inside = self._reference_signal(x, y, indices, "phi")
        mean_out, std_out, count_out = masked_gaussians(
            reference_phi, ~inside, fixed_variance=self.fixed_variance, min_std=self.min_std
        )
        if bool((count_out == 0).any()):
            raise InputError("every example needs at least one reference model trained without it (OUT)")
        if self.online:
            mean_in, std_in, count_in = masked_gaussians(
                reference_phi, inside, fixed_variance=self.fixed_variance, min_std=self.min_std
            )
            if bool((count_in == 0).any()):
                raise InputError(
                    f"online LiRA needs every example inside at least one reference model; "
                    f"{int((count_in == 0).sum())} are in none (train more reference models, or use online=False)"
                )
        target_phi = score_signal(self.target, x, y, "phi", batch_size=self.batch_size)
        if self.online:
            return _log_normal(target_phi, mean_in, std_in) - _log_normal(target_phi, mean_out, std_out)
        # One-sided: −log Pr[Z > φ], Z ~ N(μ_out, σ_out), via log Φ for precision far in the tail.
        tail: torch.Tensor = torch.special.log_ndtr(-(target_phi - mean_out) / std_out)
        return -tail
