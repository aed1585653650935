"""Adversarial training: PGD adversarial training (Madry et al. 2018) and TRADES (Zhang et al. 2019).

Both train a raw-input torch module (the convention of ``classifiers/training.py``: inputs in
their natural units and bounds, any normalisation inside the module) on worst-case inputs found
by an L∞ projected-gradient inner maximisation that stays within ``epsilon`` of the clean input
and within the input bounds.

- **PGD-AT** minimises the cross-entropy on PGD examples that maximise the cross-entropy.
- **TRADES** minimises ``CE(f(x), y) + β · KL(f(x) ‖ f(x'))`` where ``x'`` maximises that KL:
  clean accuracy and smoothness around the data traded off by ``β``.

The inner maximisation runs on the module directly (no classifier wrapper, no query counting,
no input checks): it is training machinery, batched and as cheap as a PGD step can be. Evaluate
the result with the evasion attacks of ``attacks/evasion`` through a ``Classifier``, never with
the attack it was trained against alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from modelward.core.errors import InputError
from modelward.core.progress import Progress, report

ModuleT = TypeVar("ModuleT", bound=nn.Module)

InnerObjective = Literal["ce", "kl"]

# One batch's loss and how many of its perturbed inputs were classified correctly:
# (x_batch, y_batch, perturbation strength of the epoch, generator) -> (loss, correct).
BatchLoss = Callable[[torch.Tensor, torch.Tensor, float, torch.Generator], tuple[torch.Tensor, int]]


@dataclass(frozen=True)
class TrainingHistory:
    """Per-epoch record of a robust training run: what was optimised and how it went.

    ``epsilon`` is the perturbation strength (the L∞ budget of adversarial training, the noise σ of
    Gaussian augmentation) and ``epsilons`` its value per epoch (0 during clean warm-up).
    ``perturbed_accuracy`` is the accuracy on the epoch's perturbed training inputs, as they were
    generated during the epoch (NaN for clean epochs); ``clean_accuracy`` is measured after the epoch.
    """

    method: str
    epsilon: float
    epoch_losses: list[float] = field(default_factory=list)
    clean_accuracy: list[float] = field(default_factory=list)
    perturbed_accuracy: list[float] = field(default_factory=list)
    epsilons: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_clean_accuracy(self) -> float:
        """Clean accuracy after the last epoch (NaN when no epoch ran)."""
        return self.clean_accuracy[-1] if self.clean_accuracy else math.nan


def pgd_linf_examples(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    steps: int,
    step_size: float,
    bounds: tuple[float, float] = (0.0, 1.0),
    objective: InnerObjective = "ce",
    generator: torch.Generator | None = None,
    random_start: bool = True,
) -> torch.Tensor:
    """Training-time L∞ PGD on a raw module: inputs within ``epsilon`` of ``x`` and inside ``bounds``.

    ``objective="ce"`` ascends the cross-entropy against ``y`` (Madry); ``"kl"`` ascends
    ``KL(f(x) ‖ f(x'))`` against the module's own clean prediction (TRADES; ``y`` unused), starting
    from a tiny Gaussian offset because the KL's gradient vanishes at ``x`` itself. The module is
    evaluated in eval mode and left in the mode it came in; no parameter gradient is accumulated.
    """
    lower, upper = bounds
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            target = F.softmax(module(x), dim=1) if objective == "kl" else None
            if objective == "kl":
                start = 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            elif random_start:
                start = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * epsilon
            else:
                start = torch.zeros_like(x)
            low = (x - epsilon).clamp_(min=lower)
            high = (x + epsilon).clamp_(max=upper)
            x_adv = torch.minimum(torch.maximum(x + start, low), high)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = module(x_adv)
            if target is None:
                loss = F.cross_entropy(logits, y, reduction="sum")
            else:
                loss = F.kl_div(F.log_softmax(logits, dim=1), target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, [x_adv])
            with torch.no_grad():
                x_adv = torch.minimum(torch.maximum(x_adv + step_size * grad.sign(), low), high)
    finally:
        module.train(was_training)
    return x_adv.detach()


def adversarial_training(
    module: ModuleT,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    steps: int = 10,
    step_size: float | None = None,
    epochs: int = 30,
    warmup_epochs: int = 0,
    ramp_epochs: int = 0,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    bounds: tuple[float, float] = (0.0, 1.0),
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[ModuleT, TrainingHistory]:
    """Madry et al.'s PGD adversarial training: minimise the cross-entropy on L∞ PGD examples.

    ``warmup_epochs`` first train on clean data; ``ramp_epochs`` then grow the budget linearly
    up to ``epsilon`` (both help small models start). The step size defaults to
    ``2.5 · epsilon / steps``. Returns the module in eval mode and its history (clean accuracy on
    ``eval_data`` when given, else on the training data).
    """
    _check_attack(epsilon, steps, bounds)

    def batch_loss(xb: torch.Tensor, yb: torch.Tensor, eps: float, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        size = step_size if step_size is not None else 2.5 * eps / steps
        x_adv = pgd_linf_examples(
            module, xb, yb, epsilon=eps, steps=steps, step_size=size, bounds=bounds, objective="ce", generator=gen
        )
        logits = module(x_adv)
        return F.cross_entropy(logits, yb), int((logits.argmax(dim=1) == yb).sum())

    history = train_on_perturbed(
        module, x, y, batch_loss, method="pgd-at", epsilon=epsilon, epochs=epochs, warmup_epochs=warmup_epochs,
        ramp_epochs=ramp_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, eval_data=eval_data,
        seed=seed, progress=progress,
    )  # fmt: skip
    return module, history


def trades_training(
    module: ModuleT,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    beta: float = 6.0,
    steps: int = 10,
    step_size: float | None = None,
    epochs: int = 30,
    warmup_epochs: int = 0,
    ramp_epochs: int = 0,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    bounds: tuple[float, float] = (0.0, 1.0),
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[ModuleT, TrainingHistory]:
    """TRADES: minimise ``CE(f(x), y) + β · KL(f(x) ‖ f(x'))`` with ``x'`` the L∞ PGD maximiser of the KL.

    ``beta`` trades clean accuracy (small) for robustness (large; the paper uses 6). Other
    parameters as in :func:`adversarial_training`. The gradient flows through both the clean and
    the adversarial prediction, as in the authors' formulation.
    """
    _check_attack(epsilon, steps, bounds)
    if beta < 0:
        raise InputError(f"TRADES beta must be >= 0, got {beta}")

    def batch_loss(xb: torch.Tensor, yb: torch.Tensor, eps: float, gen: torch.Generator) -> tuple[torch.Tensor, int]:
        size = step_size if step_size is not None else 2.5 * eps / steps
        x_adv = pgd_linf_examples(
            module, xb, yb, epsilon=eps, steps=steps, step_size=size, bounds=bounds, objective="kl", generator=gen
        )
        logits = module(torch.cat([xb, x_adv]))
        clean, adv = logits[: xb.shape[0]], logits[xb.shape[0] :]
        natural = F.cross_entropy(clean, yb)
        robust = F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="batchmean")
        return natural + beta * robust, int((adv.argmax(dim=1) == yb).sum())

    history = train_on_perturbed(
        module, x, y, batch_loss, method="trades", epsilon=epsilon, epochs=epochs, warmup_epochs=warmup_epochs,
        ramp_epochs=ramp_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, eval_data=eval_data,
        seed=seed, progress=progress,
    )  # fmt: skip
    return module, history


def _check_attack(epsilon: float, steps: int, bounds: tuple[float, float]) -> None:
    """Refuse inner-maximisation parameters that would make a run meaningless, naming the culprit."""
    if not epsilon > 0:
        raise InputError(f"adversarial training needs epsilon > 0, got {epsilon}")
    if steps < 1:
        raise InputError(f"the inner maximisation needs at least one step, got {steps}")
    if not bounds[0] < bounds[1]:
        raise InputError(f"bounds must satisfy lower < upper, got {bounds}")


def _epsilon_at(epoch: int, epsilon: float, warmup_epochs: int, ramp_epochs: int) -> float:
    """The budget of one epoch: 0 during warm-up, then a linear ramp, then ``epsilon``."""
    if epoch < warmup_epochs:
        return 0.0
    if epoch < warmup_epochs + ramp_epochs:
        return epsilon * (epoch - warmup_epochs + 1) / ramp_epochs
    return epsilon


def train_on_perturbed(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_loss: BatchLoss,
    *,
    method: str,
    epsilon: float,
    epochs: int,
    warmup_epochs: int = 0,
    ramp_epochs: int = 0,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> TrainingHistory:
    """The minibatch Adam loop every robust training shares: seeded, the caller's global RNG state untouched.

    ``batch_loss(xb, yb, strength, generator)`` returns the loss of one batch and how many of its
    perturbed inputs the module classified correctly; ``strength`` follows the warm-up (clean
    cross-entropy, ``batch_loss`` not called) and linear-ramp schedule up to ``epsilon``. ``progress``
    hears ``(epochs done, epochs)``.
    """
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InputError(f"x and y must hold the same positive number of samples, got {x.shape[0]} and {y.shape[0]}")
    if epochs < 1 or batch_size < 1:
        raise InputError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if warmup_epochs < 0 or ramp_epochs < 0 or warmup_epochs + ramp_epochs > epochs:
        raise InputError(
            f"warm-up ({warmup_epochs}) and ramp ({ramp_epochs}) epochs must be >= 0 and fit in {epochs} epochs"
        )
    history = TrainingHistory(method=method, epsilon=epsilon)
    started = time.perf_counter()
    eval_x, eval_y = eval_data if eval_data is not None else (x, y)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # modules with dropout draw from the global generator
        generator = torch.Generator(device=x.device).manual_seed(seed)
        optimiser = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
        for epoch in range(epochs):
            eps = _epsilon_at(epoch, epsilon, warmup_epochs, ramp_epochs)
            module.train()
            order = torch.randperm(x.shape[0], generator=generator, device=x.device)
            total_loss, adv_correct = 0.0, 0
            for start in range(0, x.shape[0], batch_size):
                batch = order[start : start + batch_size]
                xb, yb = x[batch], y[batch]
                if eps > 0:
                    loss, correct = batch_loss(xb, yb, eps, generator)
                    adv_correct += correct
                else:
                    loss = F.cross_entropy(module(xb), yb)
                optimiser.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                optimiser.step()
                total_loss += float(loss.detach()) * xb.shape[0]
            module.eval()
            history.epoch_losses.append(total_loss / x.shape[0])
            history.epsilons.append(eps)
            history.perturbed_accuracy.append(adv_correct / x.shape[0] if eps > 0 else math.nan)
            with torch.no_grad():
                history.clean_accuracy.append(float((module(eval_x).argmax(dim=1) == eval_y).float().mean()))
            report(progress, epoch + 1, epochs)
    return replace(history, seconds=time.perf_counter() - started)
