"""Auto-PGD (Croce & Hein 2020): PGD with momentum and a step size that halves at checkpoints.

The step size starts at ``2·epsilon`` and is halved, at checkpoints ``w_j = ceil(p_j·steps)``
(``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``), for each sample
whose loss increased in fewer than ``rho`` of the steps since the last checkpoint, or whose step
size was not reduced at the last checkpoint while its best loss did not improve since; such a
sample restarts from its best point. Steps use momentum ``momentum`` (0.75). Losses: cross-entropy
and the difference of logits ratio (DLR, invariant to the logits' scale), untargeted or targeted
(with explicit targets the targeted DLR compares the target with the best other class, so it
pushes until the target is reached).

:class:`APGDT` is AutoAttack's APGD-T: targeted DLR against each of the ``target_classes`` most
likely wrong classes in turn, counting as broken any sample that becomes misclassified.

Queries per sample, exactly: ``1`` (clean prediction) for samples already adversarial; else APGD
spends ``steps + 1`` per restart (the first point and one per step), and APGD-T one more query
(the clean logits that rank the target classes) plus ``steps + 1`` per target class tried.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from modelward.attacks.evasion.base import AttackError, EvasionAttack, random_in_ball, steepest_direction
from modelward.attacks.evasion.pgd import run_restarts
from modelward.classifiers.base import Capability, Classifier

APGD_LOSSES = ("ce", "dlr")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Untargeted DLR: ``-(z_y − max_{i≠y} z_i) / (z_π1 − z_π3)``; needs at least 3 classes."""
    ordered = logits.sort(dim=1, descending=True).values
    true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    top_is_true = logits.argmax(dim=1) == y
    best_other = torch.where(top_is_true, ordered[:, 1], ordered[:, 0])
    return -(true - best_other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def targeted_dlr_loss(
    logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, *, strict: bool = False
) -> torch.Tensor:
    """Targeted DLR: ``-(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2)``; needs at least 4 classes.

    ``strict`` replaces ``z_y`` by the largest non-target logit, so the loss keeps pushing until the
    target is the top class (for attacks whose success means reaching the target, not just leaving y).
    """
    ordered = logits.sort(dim=1, descending=True).values
    if strict:
        rival = logits.scatter(1, targets.unsqueeze(1), float("-inf")).amax(dim=1)
    else:
        rival = logits.gather(1, y.unsqueeze(1)).squeeze(1)
    target = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    return -(rival - target) / (ordered[:, 0] - 0.5 * (ordered[:, 2] + ordered[:, 3]) + 1e-12)


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD reconsiders its step size (Croce & Hein 2020, section 3.2)."""
    fractions = [0.0, 0.22]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    marks = {math.ceil(p * steps - 1e-9) for p in fractions[1:]}  # the slack absorbs float error in p
    return sorted(m for m in marks if 0 < m < steps)


class APGD(EvasionAttack):
    """APGD-CE / APGD-DLR under L∞ or L2; targeted when ``targets`` are given (CE toward, or targeted DLR)."""

    name = "apgd"
    requires = (Capability.GRADIENTS,)

    def __init__(
        self,
        classifier: Classifier,
        *,
        norm: str = "linf",
        loss: str = "ce",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        seed: int = 0,
    ) -> None:
        super().__init__(classifier, norm=norm, seed=seed)
        if loss not in APGD_LOSSES:
            raise AttackError(f"unknown APGD loss {loss!r}; supported: {', '.join(APGD_LOSSES)}")
        if loss == "dlr" and classifier.num_classes < 3:
            raise AttackError("the DLR loss needs at least 3 classes; use loss='ce'")
        if steps < 1 or restarts < 1:
            raise AttackError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
        if not 0 < rho <= 1 or not 0 <= momentum <= 1:
            raise AttackError(f"rho must be in (0, 1] and momentum in [0, 1], got {rho} and {momentum}")
        self.loss = loss
        self.steps = steps
        self.restarts = restarts
        self.rho = rho
        self.momentum = momentum
        self.name = f"apgd-{loss}"  # type: ignore[misc]  # instance name tells the loss apart in reports

    def _loss(
        self, logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None, *, strict: bool = True
    ) -> torch.Tensor:
        """Per-sample loss to maximise (``strict``: targeted DLR against every non-target class, see above)."""
        if self.loss == "ce":
            if targets is None:
                return F.cross_entropy(logits, y, reduction="none")
            return -F.cross_entropy(logits, targets, reduction="none")
        if targets is None:
            return dlr_loss(logits, y)
        if self.classifier.num_classes < 4:
            raise AttackError("the targeted DLR loss needs at least 4 classes")
        return targeted_dlr_loss(logits, y, targets, strict=strict)

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
        def run_one(
            xs: torch.Tensor, ys: torch.Tensor, ts: torch.Tensor | None, index: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return self._one_run(xs, ys, ts, ts, epsilon, queries, index, generator)

        return run_restarts(x, y, targets, self.restarts, run_one)

    def _one_run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_targets: torch.Tensor | None,
        success_targets: torch.Tensor | None,
        epsilon: float,
        queries: torch.Tensor,
        index: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One APGD run of ``steps`` iterations: ``steps + 1`` queries (the start and every new point).

        ``loss_targets`` steer the loss; ``success_targets`` define success (None: misclassification).
        Returns ``(adversarial, success, loss)``: an adversarial point where found, else the best-loss point.
        """
        n = x.shape[0]
        shape = (-1, *([1] * (x.dim() - 1)))

        strict = success_targets is not None  # reaching the target is the goal, not only leaving y

        def evaluate(point: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            grad, logits, loss = self._gradient(
                point, lambda z: self._loss(z, y, loss_targets, strict=strict), queries, index
            )
            return grad, loss, self._is_success(logits.argmax(dim=1), y, success_targets)

        x_cur = self._clip(x + random_in_ball(x, epsilon, self.norm, generator))
        grad, loss, hit = evaluate(x_cur)
        found = hit.clone()
        found_adv = x_cur.clone()
        x_best, grad_best, loss_best = x_cur.clone(), grad.clone(), loss.clone()
        step = torch.full((n,), 2.0 * epsilon, dtype=x.dtype, device=x.device)
        x_prev = x_cur
        marks = set(checkpoints(self.steps))
        last_mark = 0
        increases = torch.zeros(n, dtype=torch.long, device=x.device)
        loss_prev = loss
        reduced_last = torch.ones(n, dtype=torch.bool, device=x.device)
        loss_best_last = loss_best.clone()
        for k in range(self.steps):
            weight = self.momentum if k > 0 else 1.0
            z = self._project(x, x_cur + step.view(shape) * steepest_direction(grad, self.norm), epsilon)
            x_next = x_cur + weight * (z - x_cur) + (1.0 - weight) * (x_cur - x_prev)
            x_next = self._project(x, x_next, epsilon)
            x_prev, x_cur = x_cur, x_next
            grad, loss, hit = evaluate(x_cur)
            newly = hit & ~found
            found_adv = torch.where(newly.view(shape), x_cur, found_adv)
            found = found | hit
            increases += (loss > loss_prev).long()
            loss_prev = loss
            improved = loss > loss_best
            x_best = torch.where(improved.view(shape), x_cur, x_best)
            grad_best = torch.where(improved.view(shape), grad, grad_best)
            loss_best = torch.where(improved, loss, loss_best)
            iteration = k + 1
            if iteration in marks:
                window = iteration - last_mark
                oscillating = increases.double() < self.rho * window
                stalled = ~reduced_last & (loss_best_last >= loss_best)
                reduce = oscillating | stalled
                step = torch.where(reduce, step / 2, step)
                x_cur = torch.where(reduce.view(shape), x_best, x_cur)
                grad = torch.where(reduce.view(shape), grad_best, grad)
                reduced_last = reduce
                loss_best_last = loss_best.clone()
                increases.zero_()
                last_mark = iteration
        adversarial = torch.where(found.view(shape), found_adv, x_best)
        return adversarial, found, loss_best


class APGDT(APGD):
    """AutoAttack's APGD-T: targeted DLR toward each of the ``target_classes`` likeliest wrong classes in turn.

    Untargeted in effect (a sample counts as broken once misclassified); with explicit ``targets``
    it runs targeted DLR toward those only and success means reaching the target.
    """

    name = "apgd-t"

    def __init__(
        self,
        classifier: Classifier,
        *,
        norm: str = "linf",
        steps: int = 100,
        target_classes: int = 9,
        rho: float = 0.75,
        momentum: float = 0.75,
        seed: int = 0,
    ) -> None:
        if classifier.num_classes < 4:
            raise AttackError("APGD-T (targeted DLR) needs at least 4 classes; use APGD with loss='ce'")
        super().__init__(
            classifier, norm=norm, loss="dlr", steps=steps, restarts=1, rho=rho, momentum=momentum, seed=seed
        )
        if target_classes < 1:
            raise AttackError(f"target_classes must be >= 1, got {target_classes}")
        self.target_classes = min(target_classes, classifier.num_classes - 1)
        self.name = "apgd-t"  # type: ignore[misc]

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
        if targets is not None:
            adv, success, _ = self._one_run(x, y, targets, targets, epsilon, queries, None, generator)
            return adv, success
        with torch.no_grad():
            logits = self._logits(x, queries)
        ranked = logits.scatter(1, y.unsqueeze(1), float("-inf")).argsort(dim=1, descending=True)
        adversarial = x.clone()
        success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        best_loss = torch.full((x.shape[0],), float("-inf"), dtype=x.dtype, device=x.device)
        for rank in range(self.target_classes):
            remaining = (~success).nonzero().squeeze(1)
            if remaining.numel() == 0:
                break
            everyone = remaining.numel() == x.shape[0]
            index = None if everyone else remaining
            sub_x = x if everyone else x[remaining]
            sub_y = y if everyone else y[remaining]
            goal = ranked[:, rank] if everyone else ranked[remaining, rank]
            adv, hit, loss = self._one_run(sub_x, sub_y, goal, None, epsilon, queries, index, generator)
            better = hit | (loss > best_loss[remaining])
            chosen = remaining[better]
            adversarial[chosen] = adv[better]
            success[chosen] = hit[better]
            best_loss[chosen] = loss[better]
        return adversarial, success
