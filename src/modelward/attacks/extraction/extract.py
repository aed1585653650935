"""Model extraction: copy a black-box classifier into a surrogate trained on its answers to chosen queries.

:class:`ModelExtraction` reaches the target only through the :class:`Classifier` protocol: with the
``scores`` capability the surrogate learns the target's probabilities (soft cross-entropy), with
labels only it learns the hard labels. Queries are chosen by a strategy (``random``, ``natural``,
``knockoff``, ``jacobian``; see :mod:`.strategies`) and spent in stages: after each stage the surrogate
is trained afresh on every answer so far and scored, which gives fidelity and accuracy against the
number of queries within one run. *Fidelity* is the agreement of surrogate and target labels on
held-out inputs (how good a copy it is); *accuracy* is the surrogate's accuracy on their true labels
(how useful the stolen model is).

Query accounting is the target's own: the result reports the target's counter before and after, so
a remote endpoint's counted inputs match it. The target's ``query_budget`` is respected: the run
stops cleanly where it is spent and says so in :attr:`ExtractionResult.stop_reason`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import torch
import torch.nn.functional as F
from torch import nn

from modelward.attacks.extraction.strategies import (
    JacobianQueries,
    KnockoffQueries,
    NaturalQueries,
    Oracle,
    Output,
    QueryStrategy,
    RandomQueries,
    kmeans_groups,
    soft_cross_entropy,
)
from modelward.classifiers.base import Capability, Classifier, QueryBudgetExceeded
from modelward.core.errors import InputError
from modelward.core.progress import Progress, report

StrategyName = Literal["random", "natural", "knockoff", "jacobian"]
STRATEGIES: tuple[StrategyName, ...] = get_args(StrategyName)
OutputChoice = Literal["auto", "scores", "labels"]
SurrogateFactory = Callable[[], nn.Module]
"""Builds a fresh, untrained surrogate mapping raw inputs ``(N, *shape)`` to logits ``(N, C)``."""


@dataclass(frozen=True)
class ExtractionPoint:
    """The surrogate after ``queries`` target queries: its fidelity and accuracy on the test data."""

    queries: int
    fidelity: float
    accuracy: float
    seconds: float


@dataclass
class ExtractionResult:
    """The outcome of one extraction run.

    ``queries`` is the number of attack queries the target counted (evaluation queries, spent once
    to learn the target's labels on the test inputs when they were not given, are separate in
    ``evaluation_queries``). ``curve`` holds one point per stage, in increasing queries; the last
    point is the final surrogate's. ``inputs``/``answers`` are the transfer set (probabilities
    ``(N, C)`` or labels ``(N,)``). ``stop_reason`` is None when the whole budget was spent.
    """

    strategy: str
    output: Output
    surrogate: nn.Module
    queries: int
    budget: int
    fidelity: float
    accuracy: float
    target_accuracy: float
    curve: list[ExtractionPoint]
    inputs: torch.Tensor
    answers: torch.Tensor
    evaluation_queries: int
    seconds: float
    stop_reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def stopped_early(self) -> bool:
        """True when the run ended before spending its budget (target budget, refusal, or pool spent)."""
        return self.stop_reason is not None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors, no module)."""
        return {
            "strategy": self.strategy,
            "output": self.output,
            "queries": self.queries,
            "budget": self.budget,
            "fidelity": self.fidelity,
            "accuracy": self.accuracy,
            "target_accuracy": self.target_accuracy,
            "evaluation_queries": self.evaluation_queries,
            "seconds": self.seconds,
            "stop_reason": self.stop_reason,
            "curve": [
                {"queries": p.queries, "fidelity": p.fidelity, "accuracy": p.accuracy, "seconds": p.seconds}
                for p in self.curve
            ],
            **self.details,
        }

    def plot(self, path: Path | str) -> Path:
        """Fidelity and accuracy against queries as a PNG (see :func:`plot_extraction`)."""
        from modelward.attacks.extraction.plots import plot_extraction

        return plot_extraction([self], Path(path))


def geometric_schedule(budget: int, rounds: int) -> list[int]:
    """``rounds`` cumulative query counts, doubling up to ``budget`` (as Jacobian augmentation grows)."""
    points = sorted({max(1, math.ceil(budget / 2 ** (rounds - 1 - k))) for k in range(rounds)})
    return points


class ModelExtraction:
    """Query-based model extraction against any :class:`Classifier` with scores or labels.

    ``budget`` is the number of queries the attack may spend; the surrogate is (re)trained and
    scored after each stage of the schedule: ``checkpoints`` (cumulative query counts, ending at
    ``budget``) when given, else ``rounds`` stages doubling up to ``budget``. ``output`` picks what
    the surrogate learns from: ``"auto"`` takes scores when the target offers them, else labels.
    Training is Adam for ``epochs`` epochs (at least ``min_steps`` minibatch steps) from a fresh
    ``surrogate_factory()`` seeded per stage, so a run is reproducible from ``seed``.

    Strategy parameters: ``jacobian_step`` (λ, as a fraction of the input range) and ``jacobian_tau``
    (τ, rounds between sign flips); ``knockoff_groups`` (k-means clusters when the pool has no
    groups of its own), ``knockoff_batch`` (queries per bandit step), ``knockoff_lr`` (bandit α).
    """

    def __init__(
        self,
        strategy: StrategyName,
        surrogate_factory: SurrogateFactory,
        budget: int,
        rounds: int = 4,
        seed: int = 0,
        *,
        checkpoints: Sequence[int] | None = None,
        output: OutputChoice = "auto",
        epochs: int = 30,
        min_steps: int = 200,
        batch_size: int = 64,
        lr: float = 1e-3,
        query_batch: int = 256,
        jacobian_step: float = 0.1,
        jacobian_tau: int = 3,
        knockoff_groups: int = 10,
        knockoff_batch: int = 16,
        knockoff_lr: float = 0.1,
    ) -> None:
        if strategy not in STRATEGIES:
            raise InputError(f"unknown extraction strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not callable(surrogate_factory):
            raise InputError("surrogate_factory must be a callable returning a fresh nn.Module")
        _positive_int(budget, "budget")
        _positive_int(rounds, "rounds")
        if output not in ("auto", "scores", "labels"):
            raise InputError(f"output must be 'auto', 'scores' or 'labels', got {output!r}")
        for value, name in (
            (epochs, "epochs"),
            (batch_size, "batch_size"),
            (query_batch, "query_batch"),
            (jacobian_tau, "jacobian_tau"),
            (knockoff_groups, "knockoff_groups"),
            (knockoff_batch, "knockoff_batch"),
        ):
            _positive_int(value, name)
        if not isinstance(min_steps, int) or min_steps < 0:
            raise InputError(f"min_steps must be a non-negative integer, got {min_steps!r}")
        for number, name in ((lr, "lr"), (jacobian_step, "jacobian_step"), (knockoff_lr, "knockoff_lr")):
            if not (isinstance(number, (int, float)) and math.isfinite(number) and number > 0):
                raise InputError(f"{name} must be a positive number, got {number!r}")
        if checkpoints is None:
            schedule = geometric_schedule(budget, rounds)
        else:
            schedule = [int(c) for c in checkpoints]
            if not schedule or schedule[0] < 1 or any(b <= a for a, b in itertools.pairwise(schedule)):
                raise InputError(f"checkpoints must be increasing positive query counts, got {list(checkpoints)}")
            if schedule[-1] != budget:
                raise InputError(f"the last checkpoint must equal the budget ({budget}), got {schedule[-1]}")
        self.strategy: StrategyName = strategy
        self.surrogate_factory = surrogate_factory
        self.budget = budget
        self.schedule = schedule
        self.seed = seed
        self.output: OutputChoice = output
        self.epochs = epochs
        self.min_steps = min_steps
        self.batch_size = batch_size
        self.lr = float(lr)
        self.query_batch = query_batch
        self.jacobian_step = float(jacobian_step)
        self.jacobian_tau = jacobian_tau
        self.knockoff_groups = knockoff_groups
        self.knockoff_batch = knockoff_batch
        self.knockoff_lr = float(knockoff_lr)

    # ----------------------------------------------------------------------------------------
    def extract(
        self,
        target: Classifier,
        seed_data: torch.Tensor | None,
        test_x: torch.Tensor,
        test_y: torch.Tensor,
        *,
        target_test_labels: torch.Tensor | None = None,
        pool_groups: torch.Tensor | None = None,
        progress: Progress | None = None,
    ) -> ExtractionResult:
        """Steal ``target`` into a surrogate; score it on ``test_x``/``test_y`` after every stage.

        ``seed_data`` is the attacker's data: the pool for ``natural`` and ``knockoff``, the seed set
        for ``jacobian`` (ignored by ``random``, which may pass None). ``pool_groups`` optionally
        gives the knockoff bandit its groups (one integer per pool input; k-means otherwise).
        ``target_test_labels`` are the target's labels on ``test_x`` when known; otherwise they are
        queried once, before the attack, and counted in ``evaluation_queries`` (pass them to keep a
        budgeted target's queries for the attack). ``progress`` hears ``(queries spent, budget)``
        after each stage. Raises :class:`QueryBudgetExceeded` only when the target answers no attack
        query at all; a budget spent part-way ends the run with :attr:`ExtractionResult.stop_reason`.
        """
        output = self._resolve_output(target)
        pool = self._check_seed_data(seed_data, target)
        test_x, test_y = _check_test(test_x, test_y, target)
        groups = self._check_groups(pool_groups, pool)
        started = time.perf_counter()
        evaluation_queries = 0
        if target_test_labels is None:
            before = target.queries
            target_test_labels = target.predict(test_x)
            evaluation_queries = target.queries - before
        elif not isinstance(target_test_labels, torch.Tensor) or target_test_labels.shape != test_y.shape:
            raise InputError(f"target_test_labels must be a tensor of shape {tuple(test_y.shape)}")
        target_test_labels = target_test_labels.to(torch.long)
        start_queries = target.queries
        if target.query_budget is not None and target.queries >= target.query_budget:
            raise QueryBudgetExceeded(
                f"the target's query budget of {target.query_budget} is already spent; nothing left to extract with"
            )
        generator = torch.Generator().manual_seed(self.seed)
        oracle = Oracle(target, output, self.budget)
        stage = [0]

        def fit(x: torch.Tensor, answers: torch.Tensor) -> nn.Module:
            stage[0] += 1
            return self._fit(x, answers, target.num_classes, seed=self.seed * 1009 + stage[0])

        strategy = self._make_strategy(oracle, generator, pool, groups, fit)
        curve: list[ExtractionPoint] = []
        surrogate: nn.Module | None = None
        for checkpoint in self.schedule:
            strategy.collect(checkpoint - oracle.used, surrogate)
            if oracle.used == 0 or (curve and curve[-1].queries == oracle.used):
                break
            surrogate = fit(*oracle.dataset())
            fidelity, accuracy = _scores(surrogate, test_x, target_test_labels, test_y)
            curve.append(ExtractionPoint(oracle.used, fidelity, accuracy, time.perf_counter() - started))
            report(progress, oracle.used, self.budget)
            if oracle.exhausted and oracle.used < checkpoint:
                break
        oracle.settle()
        if surrogate is None:
            raise QueryBudgetExceeded(oracle.stop_reason or "the target answered no queries; nothing to extract with")
        inputs, answers = oracle.dataset()
        details: dict[str, Any] = {}
        if isinstance(strategy, KnockoffQueries):
            details["knockoff_policy"] = [round(float(p), 4) for p in strategy.policy()]
            details["knockoff_group_queries"] = [int(c) for c in strategy.group_counts]
        return ExtractionResult(
            strategy=self.strategy,
            output=output,
            surrogate=surrogate,
            queries=target.queries - start_queries,
            budget=self.budget,
            fidelity=curve[-1].fidelity,
            accuracy=curve[-1].accuracy,
            target_accuracy=float((target_test_labels == test_y).float().mean()),
            curve=curve,
            inputs=inputs,
            answers=answers,
            evaluation_queries=evaluation_queries,
            seconds=time.perf_counter() - started,
            stop_reason=oracle.stop_reason,
            details=details,
        )

    # ----------------------------------------------------------------------------------------
    def _resolve_output(self, target: Classifier) -> Output:
        if self.output == "scores":
            target.require(Capability.SCORES, by="score-based extraction")
            return "scores"
        if self.output == "labels":
            return "labels"
        return "scores" if Capability.SCORES in target.capabilities else "labels"

    def _check_seed_data(self, seed_data: torch.Tensor | None, target: Classifier) -> torch.Tensor | None:
        if seed_data is None:
            if self.strategy != "random":
                raise InputError(f"the {self.strategy} strategy needs seed_data (the attacker's own inputs)")
            return None
        return _check_inputs(seed_data, target, "seed_data")

    def _check_groups(self, pool_groups: torch.Tensor | None, pool: torch.Tensor | None) -> torch.Tensor | None:
        if self.strategy != "knockoff" or pool is None:
            return None
        if pool_groups is None:
            return kmeans_groups(pool, self.knockoff_groups, self.seed)
        if pool_groups.dim() != 1 or pool_groups.shape[0] != pool.shape[0]:
            raise InputError(f"pool_groups must hold one group per pool input ({pool.shape[0]})")
        if pool_groups.dtype.is_floating_point or bool((pool_groups < 0).any()):
            raise InputError("pool_groups must be non-negative integers")
        dense = torch.unique(pool_groups, return_inverse=True)[1]
        return cast(torch.Tensor, dense).to(torch.long)

    def _make_strategy(
        self,
        oracle: Oracle,
        generator: torch.Generator,
        pool: torch.Tensor | None,
        groups: torch.Tensor | None,
        fit: Callable[[torch.Tensor, torch.Tensor], nn.Module],
    ) -> QueryStrategy:
        if self.strategy == "random" or pool is None:
            return RandomQueries(oracle, generator, self.query_batch)
        if self.strategy == "natural":
            return NaturalQueries(oracle, generator, self.query_batch, pool)
        if self.strategy == "knockoff":
            return KnockoffQueries(
                oracle,
                generator,
                self.query_batch,
                pool,
                cast(torch.Tensor, groups),
                factory=lambda: self._fresh(seed=self.seed * 1009),
                step_batch=self.knockoff_batch,
                bandit_lr=self.knockoff_lr,
                online_lr=self.lr,
            )
        return JacobianQueries(
            oracle, generator, self.query_batch, pool, fit=fit, step=self.jacobian_step, tau=self.jacobian_tau
        )

    def _fresh(self, *, seed: int) -> nn.Module:
        """A new surrogate, its initial weights drawn from ``seed``."""
        torch.manual_seed(seed)
        module = self.surrogate_factory()
        if not isinstance(module, nn.Module):
            raise InputError(f"surrogate_factory must return an nn.Module, got {type(module).__name__}")
        return module

    def _fit(self, x: torch.Tensor, answers: torch.Tensor, num_classes: int, *, seed: int) -> nn.Module:
        """Train a fresh surrogate on the transfer set: soft cross-entropy on scores, cross-entropy on labels."""
        module = self._fresh(seed=seed)
        generator = torch.Generator().manual_seed(seed)
        batches = max(1, math.ceil(x.shape[0] / self.batch_size))
        epochs = max(self.epochs, math.ceil(self.min_steps / batches))
        optimiser = torch.optim.Adam(module.parameters(), lr=self.lr)
        soft = answers.dtype != torch.long
        module.train()
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for start in range(0, x.shape[0], self.batch_size):
                batch = order[start : start + self.batch_size]
                logits = module(x[batch])
                if logits.dim() != 2 or logits.shape[1] != num_classes:
                    raise InputError(
                        f"the surrogate must return logits of shape (N, {num_classes}), got {tuple(logits.shape)}"
                    )
                if soft:
                    loss = soft_cross_entropy(logits, answers[batch]).mean()
                else:
                    loss = F.cross_entropy(logits, answers[batch])
                optimiser.zero_grad()
                torch.autograd.backward(loss)
                optimiser.step()
        return module.eval()


def _positive_int(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def _check_inputs(x: torch.Tensor, target: Classifier, name: str) -> torch.Tensor:
    """Inputs shaped ``(N, *shape)``, finite and within the target's bounds, as float32."""
    spec = target.input_spec
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch tensor, got {type(x).__name__}")
    if x.dim() != len(spec.shape) + 1 or tuple(x.shape[1:]) != spec.shape:
        raise InputError(f"{name} must have shape (N, {', '.join(map(str, spec.shape))}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{name} is empty")
    x = x.detach().to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    if float(x.min()) < spec.lower - 1e-6 or float(x.max()) > spec.upper + 1e-6:
        raise InputError(f"{name} lies outside the target's bounds [{spec.lower}, {spec.upper}]")
    return x


def _check_test(test_x: torch.Tensor, test_y: torch.Tensor, target: Classifier) -> tuple[torch.Tensor, torch.Tensor]:
    test_x = _check_inputs(test_x, target, "test_x")
    if not isinstance(test_y, torch.Tensor) or test_y.dim() != 1 or test_y.shape[0] != test_x.shape[0]:
        raise InputError(f"test_y must be a vector of {test_x.shape[0]} labels")
    test_y = test_y.to(torch.long)
    if bool((test_y < 0).any()) or bool((test_y >= target.num_classes).any()):
        raise InputError(f"test_y must hold class indices in [0, {target.num_classes})")
    return test_x, test_y


def _scores(
    surrogate: nn.Module, x: torch.Tensor, target_labels: torch.Tensor, true_labels: torch.Tensor
) -> tuple[float, float]:
    """Fidelity (agreement with the target) and accuracy of the surrogate on held-out inputs."""
    with torch.no_grad():
        predicted = torch.cat([surrogate(x[i : i + 1024]).argmax(dim=1) for i in range(0, x.shape[0], 1024)])
    return float((predicted == target_labels).float().mean()), float((predicted == true_labels).float().mean())
