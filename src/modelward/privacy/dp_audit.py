"""Empirical DP audit in one training run (Steinke, Nasr and Jagielski, NeurIPS 2023).

An accountant gives an *upper* bound on ε; an audit gives a *lower* bound, by exhibiting
leakage. The one-run audit needs a single training run instead of hundreds:

1. Take ``m`` canaries (records an attack can recognise: here mislabeled or random inputs
   with random labels). Include each in the training set independently with probability ½:
   ``S_i = +1`` (in) or ``−1`` (out).
2. Train once, on the real data plus the included canaries.
3. Score every canary (the higher, the more it looks trained on: minus its loss, or its logit
   margin), guess ``T_i = +1`` for the ``k₊`` highest scores, ``T_i = −1`` for the ``k₋``
   lowest, and abstain on the rest. With ``r = k₊ + k₋`` guesses, count the correct ones
   ``v = #{i : T_i = S_i}``.
4. Turn ``v`` out of ``r`` into a lower bound on ε at confidence ``1 − β``.

**The bound.** For pure ε-DP, the paper's main theorem shows the number of correct guesses
``W`` is stochastically dominated by ``Binomial(r, q_ε)``, ``q_ε = e^ε / (1 + e^ε)``: each
guess is at best as good as ε-randomised response, *even though the canaries share one
training run* (the proof couples the guesses one at a time). So

    p(ε) = P[Binomial(r, q_ε) ≥ v]

is a p-value for the hypothesis "the training is ε-DP". For (ε, δ)-DP the paper extends it to

    p(ε, δ) = P[Binomial(r, q_ε) ≥ v] + 2·m·δ · max_{1 ≤ i ≤ v} (1/i)·P[v − i ≤ Binomial(r, q_ε) < v].

The reported bound is ``ε_lb = sup{ε ≥ 0 : p(ε, δ) < β}``: every ε below it is rejected at
level β, so with confidence ``1 − β`` over the canaries' coin flips the training is not
(ε, δ)-DP for any ε < ε_lb. The search is a bisection on ε (``p`` grows with ε) and returns
the low end of the final bracket, so rounding can only make the bound smaller. It is 0 when
even ε = 0 cannot be rejected. The binomial terms come from ``scipy.stats.binom``; the
formula is written out here because no maintained library we depend on ships it.

``k₊``/``k₋`` must be fixed before looking at the scores: trying several and keeping the best
spends the confidence several times. The audit is always a *lower* bound: a loose one (near
0 for DP-SGD on real data, as the paper also finds for input-space canaries) does not prove
the model private; a bound above the accountant's ε would prove the accounting or the
implementation wrong.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modelward.classifiers.base import Classifier
from modelward.core.errors import InputError
from modelward.defenses.dp import DPTrainingResult

Score = Literal["loss", "margin"]
Trained = nn.Module | DPTrainingResult | Classifier
TrainFn = Callable[[torch.Tensor, torch.Tensor], Trained]


# --------------------------------------------------------------------------------------------
# the statistics
# --------------------------------------------------------------------------------------------
def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise InputError(f"need 0 <= correct <= guesses <= canaries, got {v}, {r}, {m}")


def audit_p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """``p(ε, δ)``: how likely ``v`` or more correct guesses out of ``r`` are if training is (ε, δ)-DP.

    ``m`` is the number of canaries (it enters only through the δ term). See the module
    docstring for the formula.
    """
    from scipy.stats import binom

    _check_counts(m, r, v)
    if not epsilon >= 0:
        raise InputError(f"epsilon must be >= 0, got {epsilon}")
    if not 0.0 <= delta <= 1.0:
        raise InputError(f"delta must lie in [0, 1], got {delta}")
    if v == 0:
        return 1.0
    q = 1.0 / (1.0 + math.exp(-epsilon)) if epsilon < 700 else 1.0
    tail = float(binom.sf(v - 1, r, q))  # P[Bin(r, q) >= v]
    if delta == 0.0:
        return min(tail, 1.0)
    below = binom.pmf(np.arange(v - 1, -1, -1), r, q)  # P[Bin = v-1], P[Bin = v-2], ..., P[Bin = 0]
    alpha = float(np.max(np.cumsum(below) / np.arange(1, v + 1)))  # max_i (1/i) P[v-i <= Bin < v]
    return min(tail + 2.0 * m * delta * alpha, 1.0)


def epsilon_lower_bound(
    m: int,
    r: int,
    v: int,
    *,
    delta: float = 0.0,
    confidence: float = 0.95,
    tolerance: float = 1e-6,
) -> float:
    """The largest ε that ``v`` correct guesses out of ``r`` (``m`` canaries) reject at ``confidence``.

    ``sup{ε ≥ 0 : p(ε, δ) < 1 − confidence}``, by bisection to ``tolerance`` (the low end of the
    bracket is returned, so the bound is never overstated); 0 when ε = 0 is not rejected.
    """
    _check_counts(m, r, v)
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")
    beta = 1.0 - confidence
    if audit_p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    low, high = 0.0, 1.0
    while audit_p_value(m, r, v, high, delta) < beta:
        low, high = high, 2.0 * high
        if high > 1e4:  # only v = r with an impossibly small beta gets here
            return low
    while high - low > tolerance:
        middle = (low + high) / 2.0
        if audit_p_value(m, r, v, middle, delta) < beta:
            low = middle
        else:
            high = middle
    return low


# --------------------------------------------------------------------------------------------
# canaries and scores
# --------------------------------------------------------------------------------------------
def mislabeled_canaries(
    x: torch.Tensor, y: torch.Tensor, m: int, num_classes: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` rows of ``x`` (without replacement) each given a random *wrong* label.

    Take them from data the model never trains on otherwise (a held-out split): a model can
    only fit a wrong label by memorising the record, which is what DP is meant to prevent.
    """
    if not 1 <= m <= x.shape[0] or y.shape[0] != x.shape[0]:
        raise InputError(f"need 1 <= m <= {x.shape[0]} rows with one label each, got m={m}")
    if num_classes < 2:
        raise InputError(f"canaries need at least 2 classes, got {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(x.shape[0], generator=generator)[:m]
    shift = torch.randint(1, num_classes, (m,), generator=generator)
    return x[rows].clone(), (y[rows] + shift) % num_classes


def noise_canaries(
    input_shape: tuple[int, ...],
    m: int,
    num_classes: int,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``m`` inputs uniform in ``bounds`` with uniformly random labels: out-of-distribution canaries."""
    if m < 1 or num_classes < 2 or not bounds[0] < bounds[1]:
        raise InputError(f"need m >= 1, >= 2 classes and lower < upper bounds, got {m}, {num_classes}, {bounds}")
    generator = torch.Generator().manual_seed(seed)
    x = bounds[0] + (bounds[1] - bounds[0]) * torch.rand((m, *input_shape), generator=generator)
    return x, torch.randint(0, num_classes, (m,), generator=generator)


def canary_scores(model: Trained, x: torch.Tensor, y: torch.Tensor, score: Score = "loss") -> torch.Tensor:
    """Membership scores ``(m,)``, higher meaning "trained on": ``-loss`` or the logit margin.

    ``loss`` is the cross-entropy of the canary's label (any increasing function of its
    probability, such as the logit-scaled confidence ``log(p / (1 − p))``, ranks canaries the
    same way, so they give the same audit). ``margin`` is the label's logit minus the largest
    other logit (log-probabilities for a :class:`Classifier`, which only has to offer scores).
    """
    if isinstance(model, DPTrainingResult):
        model = model.module
    if score not in ("loss", "margin"):
        raise InputError(f"score must be 'loss' or 'margin', got {score!r}")
    with torch.no_grad():
        if isinstance(model, Classifier):
            logits = model.probabilities(x).clamp_min(1e-12).log()
        else:
            model.eval()
            logits = model(x)
        if score == "loss":
            return -F.cross_entropy(logits, y, reduction="none")
        own = logits.gather(1, y.unsqueeze(1)).squeeze(1)
        others = logits.scatter(1, y.unsqueeze(1), float("-inf"))
        return own - others.max(dim=1).values


# --------------------------------------------------------------------------------------------
# the audit
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DPAuditResult:
    """One-run audit outcome: ``correct`` of ``guesses`` right gives ``epsilon_lower_bound`` at ``confidence``.

    ``epsilon_upper_bound_from_accountant`` is the ε the training claims (from the
    :class:`DPTrainingResult` the training function returned, or given), ``None`` for a
    training that claims nothing; ``delta`` is the δ both bounds are stated at. ``included``
    marks the canaries that were trained on, ``scores`` their membership scores.
    """

    epsilon_lower_bound: float
    guesses: int
    correct: int
    confidence: float
    epsilon_upper_bound_from_accountant: float | None
    delta: float
    canaries: int
    k_plus: int
    k_minus: int
    score: str
    included: torch.Tensor
    scores: torch.Tensor
    seconds: float

    @property
    def precision(self) -> float:
        """Fraction of guesses that were right (½ is chance)."""
        return self.correct / self.guesses if self.guesses else float("nan")

    @property
    def consistent(self) -> bool | None:
        """Whether the lower bound stays at or below the claimed ε (``None`` when nothing is claimed)."""
        upper = self.epsilon_upper_bound_from_accountant
        return None if upper is None else self.epsilon_lower_bound <= upper


def audit_dp(
    train: TrainFn,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    canary_x: torch.Tensor,
    canary_y: torch.Tensor,
    *,
    k_plus: int,
    k_minus: int,
    confidence: float = 0.95,
    delta: float | None = None,
    epsilon_upper_bound: float | None = None,
    score: Score = "loss",
    seed: int = 0,
) -> DPAuditResult:
    """Audit ``train`` in one run: include each canary with probability ½, train once, guess, bound ε.

    ``train(x, y)`` gets the real data followed by the included canaries and returns a module,
    a :class:`Classifier` with scores, or a :class:`DPTrainingResult` (then its ε and δ are the
    claimed upper bound and the δ of the audit, unless ``epsilon_upper_bound``/``delta`` are
    given). ``delta`` defaults to 0: the pure-DP bound, right for training that claims nothing.
    """
    m = canary_x.shape[0]
    if canary_y.dim() != 1 or canary_y.shape[0] != m or m == 0:
        raise InputError(
            f"need canaries (m, ...) with labels (m,), got {tuple(canary_x.shape)}, {tuple(canary_y.shape)}"
        )
    if tuple(canary_x.shape[1:]) != tuple(x_train.shape[1:]):
        raise InputError(
            f"canaries of shape {tuple(canary_x.shape[1:])} do not match inputs {tuple(x_train.shape[1:])}"
        )
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus == 0 or k_plus + k_minus > m:
        raise InputError(f"need k_plus, k_minus >= 0 with 1 <= k_plus + k_minus <= {m}, got {k_plus}, {k_minus}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must lie in (0, 1), got {confidence}")

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    included = torch.rand(m, generator=generator) < 0.5
    x = torch.cat([x_train, canary_x[included].to(x_train.dtype)])
    y = torch.cat([y_train, canary_y[included].to(y_train.dtype)])
    trained = train(x, y)

    claimed, claimed_delta = epsilon_upper_bound, delta
    if isinstance(trained, DPTrainingResult):
        claimed = trained.epsilon if claimed is None else claimed
        claimed_delta = trained.delta if claimed_delta is None else claimed_delta
    audit_delta = 0.0 if claimed_delta is None else float(claimed_delta)

    scores = canary_scores(trained, canary_x.to(x_train.dtype), canary_y, score).detach().cpu().to(torch.float64)
    # ties broken at random, so the ordering of the canaries themselves carries no signal
    jitter = torch.rand(m, generator=generator, dtype=torch.float64)
    order = torch.from_numpy(np.lexsort((jitter.numpy(), -scores.numpy())))  # descending score
    guess = torch.zeros(m, dtype=torch.int64)
    guess[order[:k_plus]] = 1
    if k_minus:
        guess[order[m - k_minus :]] = -1
    truth = torch.where(included, 1, -1)
    correct = int(((guess != 0) & (guess == truth)).sum())
    guesses = k_plus + k_minus
    lower = epsilon_lower_bound(m, guesses, correct, delta=audit_delta, confidence=confidence)
    return DPAuditResult(
        epsilon_lower_bound=lower,
        guesses=guesses,
        correct=correct,
        confidence=confidence,
        epsilon_upper_bound_from_accountant=None if claimed is None else float(claimed),
        delta=audit_delta,
        canaries=m,
        k_plus=k_plus,
        k_minus=k_minus,
        score=score,
        included=included,
        scores=scores,
        seconds=time.perf_counter() - started,
    )
