"""Fast gradient sign method (Goodfellow et al. 2015) and its L2 form (fast gradient method).

One gradient step of size epsilon from the clean input: the sign of the gradient under L∞, the
normalised gradient under L2. Queries per sample, exactly: ``1`` (clean prediction) for samples
already adversarial, else ``3`` (clean prediction, gradient, evaluation of the result).
"""

from __future__ import annotations

import torch

from modelward.attacks.evasion.base import AttackError, EvasionAttack, steepest_direction
from modelward.attacks.evasion.pgd import LOSSES, classification_loss
from modelward.classifiers.base import Capability, Classifier


class FGSM(EvasionAttack):
    """A single steepest-ascent step of length epsilon on the loss (toward the target when targeted)."""

    name = "fgsm"
    requires = (Capability.GRADIENTS,)

    def __init__(self, classifier: Classifier, *, norm: str = "linf", loss: str = "ce", seed: int = 0) -> None:
        super().__init__(classifier, norm=norm, seed=seed)
        if loss not in LOSSES:
            raise AttackError(f"unknown loss {loss!r}; supported: {', '.join(LOSSES)}")
        self.loss = loss

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
        loss_name = self.loss

        def loss_fn(logits: torch.Tensor) -> torch.Tensor:
            return classification_loss(loss_name, logits, y, targets)

        grad, _, _ = self._gradient(x, loss_fn, queries)
        x_adv = self._project(x, x + epsilon * steepest_direction(grad, self.norm), epsilon)
        predicted = self._labels(x_adv, queries)
        return x_adv, self._is_success(predicted, y, targets)
