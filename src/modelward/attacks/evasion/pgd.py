"""Projected gradient descent (Madry et al. 2018) under L∞ and L2, with random start and restarts.

Each restart runs ``steps`` gradient steps from a random point of the epsilon ball (or from the
clean input) and evaluates the point after the last step, so it evaluates ``steps + 1`` points
with ``steps + 1`` queries. Over the iterates and the restarts each sample keeps its best point:
an adversarial one first, then the one with the highest loss. Restarts after the first run only on
samples not yet broken.

Queries per sample, exactly: ``1`` (clean prediction) for samples already adversarial, else
``1 + r·(steps + 1)`` where ``r`` is the number of restarts the sample took (``restarts`` at most).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from modelward.attacks.evasion.base import AttackError, EvasionAttack, random_in_ball, steepest_direction
from modelward.classifiers.base import Capability, Classifier

LOSSES = ("ce", "margin")

# One restart on a subset: (x, y, targets, index into the batch or None for all) -> (adv, success, loss).
RestartFn = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor],
]


def classification_loss(name: str, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Per-sample loss the attacker maximises: cross-entropy or logit margin, negated toward a target."""
    if name == "ce":
        if targets is None:
            return F.cross_entropy(logits, y, reduction="none")
        return -F.cross_entropy(logits, targets, reduction="none")
    label = y if targets is None else targets
    true = logits.gather(1, label.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, label.unsqueeze(1), float("-inf")).amax(dim=1)
    return others - true if targets is None else true - others


def run_restarts(
    x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None, restarts: int, run_one: RestartFn
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``run_one`` up to ``restarts`` times, later runs only on samples not yet broken; keep the per-sample best.

    Best means: adversarial before not, then higher loss. Returns ``(adversarial, success)``.
    """
    adv, success, loss = run_one(x, y, targets, None)
    for _ in range(restarts - 1):
        remaining = (~success).nonzero().squeeze(1)
        if remaining.numel() == 0:
            break
        sub_t = None if targets is None else targets[remaining]
        new_adv, new_success, new_loss = run_one(x[remaining], y[remaining], sub_t, remaining)
        better = new_success | (new_loss > loss[remaining])
        chosen = remaining[better]
        adv[chosen] = new_adv[better]
        success[chosen] = new_success[better]
        loss[chosen] = new_loss[better]
    return adv, success


class PGD(EvasionAttack):
    """PGD: iterated steepest-ascent steps on the loss, projected onto the epsilon ball and the input bounds.

    ``step_size`` defaults to ``2.5·epsilon/steps`` (Madry's rule, so a sweep scales it with epsilon).
    Targeted attacks descend the loss toward the target. ``loss`` is ``"ce"`` or ``"margin"`` (C&W).
    """

    name = "pgd"
    requires = (Capability.GRADIENTS,)

    def __init__(
        self,
        classifier: Classifier,
        *,
        norm: str = "linf",
        steps: int = 40,
        step_size: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
        seed: int = 0,
    ) -> None:
        super().__init__(classifier, norm=norm, seed=seed)
        if steps < 1:
            raise AttackError(f"steps must be >= 1, got {steps}")
        if restarts < 1:
            raise AttackError(f"restarts must be >= 1, got {restarts}")
        if restarts > 1 and not random_start:
            raise AttackError("restarts without a random start would repeat the same run; set random_start=True")
        if step_size is not None and not step_size > 0:
            raise AttackError(f"step_size must be > 0, got {step_size}")
        if loss not in LOSSES:
            raise AttackError(f"unknown loss {loss!r}; supported: {', '.join(LOSSES)}")
        self.steps = steps
        self.step_size = step_size
        self.random_start = random_start
        self.restarts = restarts
        self.loss = loss

    def queries_per_sample(self, restarts_taken: int | None = None) -> int:
        """Exact queries of one attacked sample that took ``restarts_taken`` restarts (all, by default)."""
        r = self.restarts if restarts_taken is None else restarts_taken
        return 1 + r * (self.steps + 1)

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
        alpha = self.step_size if self.step_size is not None else 2.5 * epsilon / self.steps

        def run_one(
            xs: torch.Tensor, ys: torch.Tensor, ts: torch.Tensor | None, index: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return self._one_run(xs, ys, ts, epsilon, alpha, queries, index, generator)

        return run_restarts(x, y, targets, self.restarts, run_one)

    def _one_run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        epsilon: float,
        alpha: float,
        queries: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One PGD run: ``steps`` gradient queries, then one query for the last point."""
        loss_name = self.loss

        def loss_fn(logits: torch.Tensor) -> torch.Tensor:
            return classification_loss(loss_name, logits, y, targets)

        start = random_in_ball(x, epsilon, self.norm, generator) if self.random_start else torch.zeros_like(x)
        x_adv = self._clip(x + start)
        best = x_adv
        best_success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        best_loss = torch.full((x.shape[0],), float("-inf"), dtype=x.dtype, device=x.device)
        shape = (-1, *([1] * (x.dim() - 1)))
        for _ in range(self.steps):
            grad, logits, loss = self._gradient(x_adv, loss_fn, queries, index)
            hit = self._is_success(logits.argmax(dim=1), y, targets)
            better = (hit & ~best_success) | ((hit == best_success) & (loss > best_loss))
            best = torch.where(better.view(shape), x_adv, best)
            best_success = best_success | hit
            best_loss = torch.where(better, loss, best_loss)
            x_adv = self._project(x, x_adv + alpha * steepest_direction(grad, self.norm), epsilon)
        with torch.no_grad():
            logits = self._logits(x_adv, queries, index)
            loss = loss_fn(logits)
        hit = self._is_success(logits.argmax(dim=1), y, targets)
        better = (hit & ~best_success) | ((hit == best_success) & (loss > best_loss))
        best = torch.where(better.view(shape), x_adv, best)
        best_loss = torch.where(better, loss, best_loss)
        return best, best_success | hit, best_loss
