"""Differentially private training (DP-SGD, Abadi et al. 2016) by wrapping Opacus.

Opacus does the work: per-sample gradients, clipping to ``max_grad_norm``, Gaussian noise of
standard deviation ``noise_multiplier · max_grad_norm``, Poisson sampling of batches and the
privacy accountant. This module only makes it one call with the house conventions:

- **Parameters are checked** before anything runs: exactly one of ``target_epsilon`` and
  ``noise_multiplier``; ``0 < δ < 1/n`` (the default ``δ = 1/(10·n)``: a δ of 1/n or more
  allows a mechanism that publishes one whole record and still calls itself private).
- **The model is made compatible**: layers Opacus cannot compute per-sample gradients for
  (BatchNorm mixes samples in a batch) are replaced by :meth:`ModuleValidator.fix` (BatchNorm →
  GroupNorm) on a copy, and in-place activations (``ReLU(inplace=True)``, which break Opacus'
  backward hooks) are switched to out-of-place. The result lists what was changed.
- **The accounting is Opacus'**: ε is ``PrivacyEngine.get_epsilon(δ)`` after training, from
  the accountant's own history of steps (``prv`` by default, the tightest; ``rdp`` and ``gdp``
  on request). :func:`epsilon_for` asks the same accountant for given parameters, so a report
  can state ε without training.
- **Target ε** is met with Opacus' calibration (:func:`opacus.accountants.utils.get_noise_multiplier`)
  for the exact number of steps the data loader will run. ``make_private_with_epsilon``
  derives that number as ``int(epochs / sample_rate)``, which floating point rounds one step
  short for some sizes (3 epochs of 75 batches → 224 steps), leaving ε a hair over target; the
  steps are counted here, then ``make_private`` runs with the calibrated noise.
- **Poisson sampling** is on by default, as the accountants assume. Turning it off warns:
  fixed-size shuffled batches are not what the accountant analyses, so the ε reported is then
  an approximation, not a guarantee.
- **Seeded**: the batch sampler and the noise each get a ``torch.Generator`` seeded from
  ``seed`` (``secure_mode=False``), so a seed reproduces the run bit for bit on one machine.
  For a production release, retrain with Opacus' ``secure_mode`` (cryptographic noise), which
  by design cannot be seeded.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, cast

import torch
from torch import nn

from modelward.core.errors import InputError

Accountant = Literal["prv", "rdp", "gdp"]
OptimizerName = Literal["sgd", "adam"]
ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp", "gdp")


@dataclass(frozen=True)
class DPTrainingResult:
    """A DP-SGD run: the trained module (eval mode) and the privacy it spent, as Opacus accounts it.

    ``epsilon`` is the accountant's ε at ``delta`` for the steps actually run (``inf`` when
    ``noise_multiplier`` is 0: clipping alone is not private). ``sample_rate`` is the Poisson
    probability that one record joins a batch (``1 / batches per epoch``). ``module`` is the
    module passed in, trained in place, unless Opacus had to replace layers: then it is the fixed
    copy, and ``fixes`` says what changed. ``losses`` holds the mean training loss per epoch.
    """

    module: nn.Module
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    epochs: int
    batch_size: int
    max_grad_norm: float
    accountant: str
    poisson_sampling: bool
    target_epsilon: float | None
    seconds: float
    fixes: tuple[str, ...] = ()
    losses: tuple[float, ...] = field(default=())

    @property
    def seconds_per_step(self) -> float:
        """Wall time of one optimiser step (data, per-sample gradients, clipping, noise)."""
        return self.seconds / self.steps if self.steps else float("nan")

    @property
    def guarantee(self) -> bool:
        """Whether ``(epsilon, delta)`` is a DP guarantee: Poisson sampling on and finite ε."""
        return self.poisson_sampling and math.isfinite(self.epsilon)

    def record(self, **training: float | int | str) -> dict[str, float | int | str | bool]:
        """What to save beside the weights so the guarantee can be recomputed later (``training``: e.g. ``lr``)."""
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "steps": self.steps,
            "max_grad_norm": self.max_grad_norm,
            "accountant": self.accountant,
            "poisson_sampling": self.poisson_sampling,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            **training,
        }


# --------------------------------------------------------------------------------------------
# accounting, straight from Opacus
# --------------------------------------------------------------------------------------------
def _check_accountant(accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise InputError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")


def _check_rate_and_delta(sample_rate: float, delta: float) -> None:
    if not 0.0 < sample_rate <= 1.0:
        raise InputError(f"sample_rate must lie in (0, 1], got {sample_rate}")
    if not 0.0 < delta < 1.0:
        raise InputError(f"delta must lie in (0, 1), got {delta}")


@contextmanager
def _opacus_quiet(accountant: str) -> Iterator[None]:
    """Silence Opacus warnings that this module documents instead of repeating on every call.

    GDP's "experimental" notice (the docstrings say it can underestimate ε); for PRV, the RDP
    "largest alpha" hint, which comes from PRV sizing its internal domain with RDP and says
    nothing about the PRV ε; torch's backward-hook notice for inputs that need no gradient.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="GDP accounting is experimental")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        if accountant == "prv":
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        yield


def epsilon_for(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: Accountant = "prv",
) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps, as Opacus' accountant computes it.

    The accountant gets the history ``[(noise_multiplier, sample_rate, steps)]``, exactly what a
    training run of those parameters records, and returns its ε at ``delta`` (``prv``: the upper
    end of its error interval; ``rdp``: the best order; ``gdp``: the CLT approximation, which can
    underestimate). ``noise_multiplier`` 0 gives ``inf``; no step gives 0.
    """
    _check_accountant(accountant)
    _check_rate_and_delta(sample_rate, delta)
    if noise_multiplier < 0 or not math.isfinite(noise_multiplier):
        raise InputError(f"noise_multiplier must be finite and >= 0, got {noise_multiplier}")
    if steps < 0:
        raise InputError(f"steps must be >= 0, got {steps}")
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    from opacus.accountants import create_accountant  # type: ignore[import-untyped]

    with _opacus_quiet(accountant):
        engine = create_accountant(mechanism=accountant)
        engine.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
        return float(engine.get_epsilon(delta=delta))


def noise_for(
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: Accountant = "prv",
) -> float:
    """The noise multiplier Opacus calibrates so that ``steps`` steps spend at most ``target_epsilon``.

    Opacus' ``get_noise_multiplier`` bisects on σ and returns the upper end, whose ε lies within
    0.01 below the target.
    """
    from opacus.accountants.utils import get_noise_multiplier  # type: ignore[import-untyped]

    _check_accountant(accountant)
    _check_rate_and_delta(sample_rate, delta)
    if not target_epsilon > 0 or not math.isfinite(target_epsilon):
        raise InputError(f"target_epsilon must be finite and > 0, got {target_epsilon}")
    if steps <= 0:
        raise InputError(f"steps must be > 0, got {steps}")
    with _opacus_quiet(accountant):
        try:
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
        except ValueError as error:  # "The privacy budget is too low."
            raise InputError(f"cannot reach epsilon {target_epsilon} at delta {delta}: {error}") from error
    return float(sigma)


# --------------------------------------------------------------------------------------------
# making a module Opacus-compatible
# --------------------------------------------------------------------------------------------
def make_compatible(module: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """``module`` made trainable by Opacus, and what was changed (empty when nothing was).

    Layers without per-sample gradients (BatchNorm) are replaced by Opacus'
    ``ModuleValidator.fix`` on a copy; in-place activations are switched off on the module that
    is returned. Anything still unsupported afterwards is an :class:`InputError` naming it.
    """
    from opacus.validators import ModuleValidator  # type: ignore[import-untyped]

    fixes: list[str] = []
    problems = ModuleValidator.validate(module, strict=False)
    if problems:
        before = {name: type(sub).__name__ for name, sub in module.named_modules()}
        module = cast(nn.Module, ModuleValidator.fix(module))
        for name, sub in module.named_modules():
            old = before.get(name)
            if old is not None and old != type(sub).__name__:
                fixes.append(f"{name or 'module'}: {old} -> {type(sub).__name__}")
        remaining = ModuleValidator.validate(module, strict=False)
        if remaining:
            raise InputError(f"Opacus cannot train this module privately: {remaining[0]}")
    for name, sub in module.named_modules():
        if getattr(sub, "inplace", False) is True:
            sub.inplace = False
            fixes.append(f"{name or 'module'}: {type(sub).__name__}(inplace=True) -> inplace=False")
    return module, tuple(fixes)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _check_training_args(
    x: torch.Tensor,
    y: torch.Tensor,
    target_epsilon: float | None,
    noise_multiplier: float | None,
    delta: float,
    max_grad_norm: float,
    epochs: int,
    batch_size: int,
    lr: float,
    accountant: str,
    optimizer: str,
) -> None:
    n = x.shape[0] if x.dim() else 0
    if n == 0 or y.dim() != 1 or y.shape[0] != n:
        raise InputError(
            f"need a non-empty batch x (N, ...) and labels y (N,), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InputError(f"labels y must be integer class indices, got {y.dtype}")
    if (target_epsilon is None) == (noise_multiplier is None):
        raise InputError("give exactly one of target_epsilon and noise_multiplier")
    if target_epsilon is not None and (not target_epsilon > 0 or not math.isfinite(target_epsilon)):
        raise InputError(f"target_epsilon must be finite and > 0, got {target_epsilon}")
    if noise_multiplier is not None and (not noise_multiplier >= 0 or not math.isfinite(noise_multiplier)):
        raise InputError(f"noise_multiplier must be finite and >= 0, got {noise_multiplier}")
    if not 0.0 < delta < 1.0 / n:
        raise InputError(f"delta must lie in (0, 1/n) = (0, {1.0 / n:.3g}) for n={n} records, got {delta}")
    if not max_grad_norm > 0 or not math.isfinite(max_grad_norm):
        raise InputError(f"max_grad_norm must be finite and > 0, got {max_grad_norm}")
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    if not 1 <= batch_size <= n:
        raise InputError(f"batch_size must lie in [1, {n}], got {batch_size}")
    if not lr > 0 or not math.isfinite(lr):
        raise InputError(f"lr must be finite and > 0, got {lr}")
    _check_accountant(accountant)
    if optimizer not in ("sgd", "adam"):
        raise InputError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")


def train_dp(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    target_epsilon: float | None = None,
    noise_multiplier: float | None = None,
    delta: float | None = None,
    max_grad_norm: float = 1.0,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: OptimizerName = "adam",
    accountant: Accountant = "prv",
    poisson_sampling: bool = True,
    seed: int = 0,
) -> DPTrainingResult:
    """Train ``module`` on raw inputs ``x`` and labels ``y`` with DP-SGD (Opacus), cross-entropy loss.

    Give either ``target_epsilon`` (the noise is calibrated so the run spends at most that ε at
    ``delta``) or ``noise_multiplier`` (ε is whatever that costs; 0 trains with clipping only
    and reports ``inf``). ``batch_size`` is the *expected* batch size under Poisson sampling
    (sample rate ``1/⌈n/batch_size⌉``). ``optimizer`` is the update rule applied to the noisy,
    clipped gradient (post-processing, so any rule keeps the guarantee).
    """
    from opacus import PrivacyEngine  # type: ignore[import-untyped]

    n = int(x.shape[0]) if x.dim() else 0
    delta_ = float(delta) if delta is not None else (1.0 / (10.0 * n) if n > 0 else 0.0)
    _check_training_args(
        x, y, target_epsilon, noise_multiplier, delta_, max_grad_norm, epochs, batch_size, lr, accountant, optimizer
    )
    if not poisson_sampling:
        warnings.warn(
            "poisson_sampling=False: batches are fixed-size shuffles, which the privacy accountant does not "
            "analyse; the reported epsilon is an approximation, not a guarantee",
            UserWarning,
            stacklevel=2,
        )

    torch.manual_seed(seed)
    module, fixes = make_compatible(module)
    module.train()
    data_generator = torch.Generator().manual_seed(seed)
    noise_generator = torch.Generator().manual_seed(seed + 1)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=data_generator
    )
    sample_rate = 1.0 / len(loader)
    steps = epochs * len(loader)
    sigma = (
        noise_for(target_epsilon, sample_rate, steps, delta_, accountant)
        if target_epsilon is not None
        else float(noise_multiplier or 0.0)
    )

    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise InputError("the module has no trainable parameters")
    base: torch.optim.Optimizer = (
        torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)
    )
    with _opacus_quiet(accountant), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")  # deliberate: seeded runs
        engine = PrivacyEngine(accountant=accountant, secure_mode=False)
        private, dp_optimizer, dp_loader = engine.make_private(
            module=module,
            optimizer=base,
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=max_grad_norm,
            poisson_sampling=poisson_sampling,
            noise_generator=noise_generator,
        )

    loss_fn = nn.CrossEntropyLoss()
    losses: list[float] = []
    taken = 0
    start = time.perf_counter()
    with _opacus_quiet(accountant):
        try:
            for _ in range(epochs):
                total, count = 0.0, 0
                for xb, yb in dp_loader:
                    # an empty Poisson batch still takes a step: Opacus adds the noise and the accountant counts it
                    dp_optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(private(xb), yb)
                    loss.backward()
                    dp_optimizer.step()
                    taken += 1
                    if xb.shape[0] > 0:
                        total += float(loss.detach()) * xb.shape[0]
                        count += xb.shape[0]
                losses.append(total / count if count else float("nan"))
        finally:
            seconds = time.perf_counter() - start
            module = cast(nn.Module, private.to_standard_module())
    module.eval()
    with _opacus_quiet(accountant):
        epsilon = math.inf if sigma == 0 else float(engine.get_epsilon(delta_))
    return DPTrainingResult(
        module=module,
        epsilon=epsilon,
        delta=delta_,
        noise_multiplier=sigma,
        sample_rate=sample_rate,
        steps=taken,
        epochs=epochs,
        batch_size=batch_size,
        max_grad_norm=float(max_grad_norm),
        accountant=accountant,
        poisson_sampling=poisson_sampling,
        target_epsilon=None if target_epsilon is None else float(target_epsilon),
        seconds=seconds,
        fixes=fixes,
        losses=tuple(losses),
    )
