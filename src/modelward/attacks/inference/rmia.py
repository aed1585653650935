"""RMIA, the Robust Membership Inference Attack (Zarifzadeh et al., "Low-Cost High-Power Membership Inference
Attacks", ICML 2024).

The attack compares how much more likely the target makes an example ``x`` than the reference
models do, Pr(x|θ)/Pr(x), with the same ratio for population records ``z``: the pairwise
likelihood ratio LR(x, z) = [Pr(x|θ)/Pr(x)] / [Pr(z|θ)/Pr(z)]. The score of ``x`` is the fraction
of population records it dominates, LR(x, z) ≥ γ. Pr(·|θ) is the probability of the true class (optionally
from logits softened by a ``temperature``, as in the authors' experiments); Pr(x) is the mean over
reference models.

* offline (``online=False``, the default): only reference models trained without each record are
  used, and the missing IN models are approximated as Pr_IN ≈ a·Pr_OUT + (1 − a), so
  Pr(x) = ½((1 + a)·Pr_OUT(x) + (1 − a)). ``a`` is tuned by attacking one reference model with the
  others (the value with the best AUC), unless given.
* online: Pr(x) is the mean over all reference models (half of them trained on each record).

The z's are a seeded random sample of the population, queried on the target once (on the first
``infer``). Because every ``x`` is compared with the same z's, the dominated fraction is a step
function of the ratio Pr(x|θ)/Pr(x); ties (``x``'s dominating the same z's) are broken by that
ratio, scaled below one step, so the ranking is the one many more z's would give.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modelward.attacks.inference.base import ReferenceAttack
from modelward.attacks.inference.metrics import roc
from modelward.attacks.inference.reference_models import ReferenceModels
from modelward.attacks.inference.signals import check_labels, log_probabilities, signal_from_log_probabilities
from modelward.classifiers.base import Classifier
from modelward.core.errors import InputError

A_GRID: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
"""Values of ``a`` tried when tuning the offline approximation."""


def _auc(scores: torch.Tensor, members: torch.Tensor) -> float:
    from sklearn.metrics import auc

    curve = roc(scores, members)
    return float(auc(curve.fpr, curve.tpr))


def reference_probability(confidences: torch.Tensor, inside: torch.Tensor, *, online: bool, a: float) -> torch.Tensor:
    """Pr(x) per column of reference confidences ``(K, N)``: online mean, or offline OUT mean corrected by ``a``."""
    if online:
        return confidences.mean(dim=0)
    out = (~inside).to(confidences.dtype)
    count = out.sum(dim=0)
    if bool((count == 0).any()):
        raise InputError("offline RMIA needs at least one reference model trained without each record")
    mean_out = (confidences * out).sum(dim=0) / count
    return 0.5 * ((1.0 + a) * mean_out + (1.0 - a))


def dominated_fraction(ratio_x: torch.Tensor, ratio_z: torch.Tensor, gamma: float) -> torch.Tensor:
    """Fraction of z's with ratio_x / ratio_z ≥ γ, for every x, ties broken by ratio_x (below one step)."""
    sorted_z = torch.sort(ratio_z).values
    count = torch.searchsorted(sorted_z, ratio_x / gamma, right=True).double()
    steps = float(sorted_z.numel())
    tie_break = torch.sigmoid(torch.log(ratio_x.clamp_min(1e-300))) * 0.5
    return (count + tie_break) / steps


class RMIA(ReferenceAttack):
    """Relative membership inference against population records, online or offline (tuned ``a``), threshold γ.

    Target queries: one per example, plus ``z_count`` population records on the first call.
    """

    name = "RMIA"

    def __init__(
        self,
        target: Classifier,
        references: ReferenceModels,
        *,
        online: bool = False,
        gamma: float = 2.0,
        a: float | None = None,
        z_count: int = 1000,
        temperature: float = 1.0,
        a_grid: Sequence[float] = A_GRID,
        seed: int = 0,
        batch_size: int = 1024,
    ) -> None:
        super().__init__(target, references, batch_size=batch_size)
        if not gamma > 0:
            raise InputError(f"gamma must be > 0, got {gamma}")
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature}")
        if a is not None and not 0.0 <= a <= 1.0:
            raise InputError(f"a must lie in [0, 1], got {a}")
        if not a_grid or any(not 0.0 <= v <= 1.0 for v in a_grid):
            raise InputError("a_grid must hold values in [0, 1]")
        population = references.population
        if not 1 <= z_count <= len(population):
            raise InputError(f"z_count must lie in [1, {len(population)}], got {z_count}")
        self.online = bool(online)
        self.gamma = float(gamma)
        self.temperature = float(temperature)
        order = torch.randperm(len(population), generator=torch.Generator().manual_seed(int(seed)))
        self.z_indices = order[:z_count].sort().values
        self.a_scores: dict[float, float] = {}
        self.a = 1.0 if self.online else (float(a) if a is not None else self._tune_a(a_grid))
        self._z_ratio: torch.Tensor | None = None

    @property
    def label(self) -> str:
        return f"RMIA {'online' if self.online else 'offline'}"

    def details(self) -> dict[str, object]:
        return {
            "online": self.online,
            "gamma": self.gamma,
            "temperature": self.temperature,
            "a": None if self.online else self.a,
            "z_count": int(self.z_indices.numel()),
            "reference_models": len(self.references),
            **({"a_auc": {f"{k:g}": round(v, 4) for k, v in self.a_scores.items()}} if self.a_scores else {}),
        }

    def _confidences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference confidences ``(K, N)`` on the whole population and their membership ``(K, N)``."""
        population = self.references.population
        log_probs = self.references.log_probabilities(batch_size=self.batch_size)
        return self._confidence(log_probs, population.y), self.references.membership

    def _confidence(self, log_probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Pr(x|θ): the true class's probability after softening the logits by the temperature.

        softmax(z / T) equals softmax(log p / T), so this needs only probabilities, not logits.
        """
        if self.temperature != 1.0:
            log_probs = torch.log_softmax(log_probs / self.temperature, dim=-1)
        return signal_from_log_probabilities(log_probs, y, "confidence")

    def _target_confidence(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._confidence(
            log_probabilities(self.target, x, batch_size=self.batch_size), check_labels(self.target, x, y)
        )

    def _tune_a(self, grid: Sequence[float]) -> float:
        """Attack reference model 0 with the others, offline, for every ``a``; keep the best AUC."""
        if len(self.references) < 2:
            raise InputError("tuning RMIA's a needs at least 2 reference models (or pass a=)")
        confidences, inside = self._confidences()
        target_conf, target_members = confidences[0], inside[0]
        others, others_inside = confidences[1:], inside[1:]
        if bool((~others_inside).sum(dim=0).eq(0).any()):
            # Some records are inside every other model: tune on the records that are not.
            usable = (~others_inside).any(dim=0)
            target_conf, target_members = target_conf[usable], target_members[usable]
            others, others_inside = others[:, usable], others_inside[:, usable]
        if bool(target_members.all()) or not bool(target_members.any()):
            raise InputError(
                f"tuning RMIA's a needs reference models whose training sets overlap in varied ways; "
                f"{len(self.references)} are too few (use at least 4, or pass a=)"
            )
        best, best_auc = float(grid[0]), -1.0
        for a in grid:
            ratio = target_conf / reference_probability(others, others_inside, online=False, a=float(a))
            area = _auc(ratio, target_members)
            self.a_scores[float(a)] = area
            if area > best_auc:
                best, best_auc = float(a), area
        return best

    def _ratio(self, target_conf: torch.Tensor, reference_conf: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        pr_x = reference_probability(reference_conf, inside, online=self.online, a=self.a)
        return target_conf / pr_x.clamp_min(1e-300)

    def _infer(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        if self.online and indices is None:
            raise InputError("online RMIA needs the examples' population indices; pass indices=, or use online=False")
        log_probs, inside = self._reference_view(x, y, indices)
        reference_conf = self._confidence(log_probs, y)
        if self._z_ratio is None:
            population = self.references.population
            z_conf, z_inside = self._confidences()
            z = self.z_indices
            target_z = self._target_confidence(population.x[z], population.y[z])
            self._z_ratio = self._ratio(target_z, z_conf[:, z], z_inside[:, z])
        target_x = self._target_confidence(x, y)
        return dominated_fraction(self._ratio(target_x, reference_conf, inside), self._z_ratio, self.gamma)
