"""Query strategies for model extraction: which inputs the attacker sends to the target next.

Every strategy answers one request, "collect ``n`` more answered inputs", through an :class:`Oracle`
that owns the target, the attacker's budget and the transfer set gathered so far. The oracle is the
only code that queries the target, so the budget is enforced in one place and every input it sends
is kept (the transfer set the surrogate trains on).

- ``random``: inputs drawn uniformly within the target's declared bounds (no data needed).
- ``natural``: the attacker's own unlabelled inputs from the task's distribution, in random order.
- ``knockoff``: Knockoff Nets' adaptive policy (Orekondy, Schiele and Fritz, CVPR 2019). The pool is
  split into groups (its own labels, or k-means clusters); a gradient bandit chooses the group each
  query comes from, rewarded by the victim's certainty, the diversity of its answers and the loss of
  the current knockoff on them, so the budget flows to groups that still teach the knockoff something.
- ``jacobian``: Jacobian-based dataset augmentation (Papernot et al., AsiaCCS 2017). Starting from
  a small seed set, each round adds ``x + λ·sign(∂F_ŷ(x)/∂x)`` for the points already labelled,
  where ``F`` is the *surrogate's* softmax and ``ŷ`` the target's label, so new queries probe where
  the surrogate's decision would change; ``λ`` flips sign every ``τ`` rounds, points stay in bounds.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from modelward.classifiers.base import Classifier, QueryBudgetExceeded

Output = Literal["scores", "labels"]
Fit = Callable[[torch.Tensor, torch.Tensor], nn.Module]
"""Trains a fresh surrogate on ``(inputs, answers)`` and returns it in evaluation mode."""


class Oracle:
    """The target as the attacker reaches it: answers within a budget, and every answered input kept.

    ``ask`` sends at most :attr:`remaining` inputs (the attacker's budget, and the target's own
    ``query_budget`` when it declares one) and returns the answers for the prefix it sent. When the
    target's budget, or a refusal from the target (:class:`QueryBudgetExceeded`), ends the run early,
    :attr:`stop_reason` says so; the caller reports it instead of swallowing it.
    """

    def __init__(self, target: Classifier, output: Output, budget: int) -> None:
        self.target = target
        self.output: Output = output
        self.budget = budget
        self.used = 0
        self.stop_reason: str | None = None
        self._inputs: list[torch.Tensor] = []
        self._answers: list[torch.Tensor] = []

    @property
    def remaining(self) -> int:
        """Queries still allowed: the attacker's budget, capped by what the target's budget leaves."""
        left = self.budget - self.used
        if self.target.query_budget is not None:
            left = min(left, self.target.query_budget - self.target.queries)
        return max(0, left)

    @property
    def exhausted(self) -> bool:
        """True once no further query can be sent (budget spent, target refused, or strategy out of inputs)."""
        return self.stop_reason is not None or self.remaining == 0

    def settle(self) -> None:
        """Record why the run ended short of the attacker's budget, when the target's budget is the cause."""
        if self.used < self.budget and self.stop_reason is None and self.remaining == 0:
            self.stop(f"the target's query budget of {self.target.query_budget} is spent after {self.used} queries")

    def stop(self, reason: str) -> None:
        """End the run early for ``reason`` (the first reason given is kept)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def ask(self, x: torch.Tensor) -> torch.Tensor:
        """Answers for the first ``min(len(x), remaining)`` inputs: probabilities ``(n, C)`` or labels ``(n,)``."""
        n = min(int(x.shape[0]), self.remaining)
        if n < x.shape[0] and self.budget - self.used > n:
            # the target's budget, not the attacker's, is what stops us here
            self.stop(f"the target's query budget of {self.target.query_budget} is spent after {self.used + n} queries")
        if n == 0:
            return self._empty()
        batch = x[:n].detach()
        try:
            answers = self.target.probabilities(batch) if self.output == "scores" else self.target.predict(batch)
        except QueryBudgetExceeded as exc:
            self.stop(f"the target refused further queries after {self.used}: {exc}")
            return self._empty()
        answers = answers.detach().to(torch.float32 if self.output == "scores" else torch.long)
        self._inputs.append(batch)
        self._answers.append(answers)
        self.used += n
        return answers

    def dataset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every input sent so far and the target's answers, in query order."""
        shape = self.target.input_spec.shape
        if not self._inputs:
            return torch.empty((0, *shape)), self._empty()
        if len(self._inputs) > 1:  # keep one tensor, so repeated calls stay cheap
            self._inputs = [torch.cat(self._inputs)]
            self._answers = [torch.cat(self._answers)]
        return self._inputs[0], self._answers[0]

    def _empty(self) -> torch.Tensor:
        if self.output == "scores":
            return torch.empty((0, self.target.num_classes))
        return torch.empty((0,), dtype=torch.long)


def soft_targets(answers: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Answers as probability rows: scores as they are, labels one-hot."""
    if answers.dtype == torch.long:
        return F.one_hot(answers, num_classes).to(torch.float32)
    return answers


def answer_labels(answers: torch.Tensor) -> torch.Tensor:
    """The target's label for each answer (argmax of scores, or the label itself)."""
    return answers if answers.dtype == torch.long else answers.argmax(dim=1)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of ``logits`` against probability rows ``targets``."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)


class QueryStrategy(ABC):
    """Chooses the inputs of one extraction run; see the module docstring for the four strategies."""

    name: ClassVar[str]

    def __init__(self, oracle: Oracle, generator: torch.Generator, query_batch: int) -> None:
        self.oracle = oracle
        self.generator = generator
        self.query_batch = query_batch

    @abstractmethod
    def collect(self, n: int, surrogate: nn.Module | None) -> None:
        """Have the oracle answer up to ``n`` more inputs; ``surrogate`` is the latest trained one (or None)."""


class RandomQueries(QueryStrategy):
    """Inputs drawn uniformly within the target's bounds: the attacker needs no data at all."""

    name = "random"

    def collect(self, n: int, surrogate: nn.Module | None) -> None:
        spec = self.oracle.target.input_spec
        while n > 0 and not self.oracle.exhausted:
            m = min(n, self.query_batch, self.oracle.remaining)
            x = torch.rand((m, *spec.shape), generator=self.generator)
            x = x.mul_(spec.upper - spec.lower).add_(spec.lower)
            n -= int(self.oracle.ask(x).shape[0])


class NaturalQueries(QueryStrategy):
    """The attacker's own inputs from the task's distribution, each sent once, in a seeded random order."""

    name = "natural"

    def __init__(self, oracle: Oracle, generator: torch.Generator, query_batch: int, pool: torch.Tensor) -> None:
        super().__init__(oracle, generator, query_batch)
        self.pool = pool
        self.order = torch.randperm(pool.shape[0], generator=generator)
        self.cursor = 0

    def collect(self, n: int, surrogate: nn.Module | None) -> None:
        while n > 0 and not self.oracle.exhausted:
            if self.cursor >= self.pool.shape[0]:
                self.oracle.stop(f"all {self.pool.shape[0]} inputs of the attacker's pool are spent")
                return
            m = min(n, self.query_batch, self.oracle.remaining, self.pool.shape[0] - self.cursor)
            chosen = self.order[self.cursor : self.cursor + m]
            got = int(self.oracle.ask(self.pool[chosen]).shape[0])
            self.cursor += got
            n -= got


def kmeans_groups(pool: torch.Tensor, groups: int, seed: int) -> torch.Tensor:
    """Group labels ``(N,)`` from k-means on the flattened pool (scikit-learn, seeded)."""
    from sklearn.cluster import KMeans

    k = max(1, min(groups, int(pool.shape[0])))
    model = KMeans(n_clusters=k, n_init=3, random_state=seed)
    labels = model.fit_predict(pool.flatten(1).to(torch.float64).numpy())
    return torch.as_tensor(labels, dtype=torch.long)


class _RunningRange:
    """Running minimum and maximum of one reward, to rescale it to [0, 1] as Knockoff Nets does."""

    def __init__(self) -> None:
        self.low = float("inf")
        self.high = float("-inf")

    def scale(self, values: torch.Tensor) -> torch.Tensor:
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        span = self.high - self.low
        if span <= 1e-12:
            return torch.zeros_like(values)
        return (values - self.low) / span


class KnockoffQueries(QueryStrategy):
    """Knockoff Nets' adaptive sampling: a gradient bandit over pool groups, trained online with the knockoff.

    Each step draws ``step_batch`` groups from the policy ``π = softmax(H)`` (groups already emptied
    get probability zero), sends one unqueried pool input of each, and rewards each query with the
    sum of three rewards, each rescaled to [0, 1] by its running range: *certainty* (the margin of
    the victim's top two scores), *diversity* (how far the answer exceeds the recent mean answer,
    per class) and *loss* (the online knockoff's cross-entropy on the answer, before it learns from
    it). The preferences follow the gradient-bandit update ``H_a += α(r − r̄)(1[a = z] − π_a)`` with
    ``r̄`` the running mean reward, and the online knockoff takes one Adam step on the batch.
    """

    name = "knockoff"

    def __init__(
        self,
        oracle: Oracle,
        generator: torch.Generator,
        query_batch: int,
        pool: torch.Tensor,
        groups: torch.Tensor,
        *,
        factory: Callable[[], nn.Module],
        step_batch: int,
        bandit_lr: float,
        online_lr: float,
        diversity_window: int = 4,
    ) -> None:
        super().__init__(oracle, generator, query_batch)
        self.pool = pool
        self.num_groups = int(groups.max()) + 1
        # one shuffled queue of unqueried pool indices per group
        self.queues: list[list[int]] = []
        for g in range(self.num_groups):
            members = torch.nonzero(groups == g).flatten()
            shuffled = members[torch.randperm(members.numel(), generator=generator)]
            self.queues.append([int(i) for i in shuffled])
        self.preferences = torch.zeros(self.num_groups, dtype=torch.float64)
        self.mean_reward = 0.0
        self.rewarded = 0
        self.factory = factory
        self.step_batch = step_batch
        self.bandit_lr = bandit_lr
        self.online_lr = online_lr
        self.ranges = (_RunningRange(), _RunningRange(), _RunningRange())
        self.recent: list[torch.Tensor] = []
        self.diversity_window = diversity_window
        self.online: nn.Module | None = None
        self.group_counts = torch.zeros(self.num_groups, dtype=torch.long)

    def policy(self) -> torch.Tensor:
        """The current probability of drawing each group (zero for emptied groups)."""
        alive = torch.tensor([bool(q) for q in self.queues])
        logits = self.preferences.masked_fill(~alive, float("-inf"))
        if not bool(alive.any()):
            return torch.zeros_like(self.preferences)
        return torch.softmax(logits, dim=0)

    def collect(self, n: int, surrogate: nn.Module | None) -> None:
        # the latest surrogate (trained on every answer so far) is the best knockoff to continue from
        if surrogate is not None:
            online = copy.deepcopy(surrogate)
        elif self.online is not None:
            online = self.online
        else:
            online = self.factory()
        optimiser = torch.optim.Adam(online.parameters(), lr=self.online_lr)
        classes = self.oracle.target.num_classes
        while n > 0 and not self.oracle.exhausted:
            policy = self.policy()
            if float(policy.sum()) <= 0:
                self.oracle.stop(f"all {self.pool.shape[0]} inputs of the attacker's pool are spent")
                break
            m = min(n, self.step_batch, self.oracle.remaining)
            actions: list[int] = []
            indices: list[int] = []
            for _ in range(m):
                policy = self.policy()
                if float(policy.sum()) <= 0:
                    break
                action = int(torch.multinomial(policy.to(torch.float32), 1, generator=self.generator))
                actions.append(action)
                indices.append(self.queues[action].pop())
            x = self.pool[torch.tensor(indices, dtype=torch.long)]
            answers = self.oracle.ask(x)
            got = int(answers.shape[0])
            if got == 0:
                break
            x, chosen = x[:got], torch.tensor(actions[:got], dtype=torch.long)
            self.group_counts += torch.bincount(chosen, minlength=self.num_groups)
            targets = soft_targets(answers, classes)
            online.eval()
            with torch.no_grad():
                loss = soft_cross_entropy(online(x), targets)
            rewards = self._rewards(targets, loss)
            self._update_policy(chosen, rewards)
            online.train()
            optimiser.zero_grad()
            torch.autograd.backward(soft_cross_entropy(online(x), targets).mean())
            optimiser.step()
            online.eval()
            n -= got
        self.online = online

    def _rewards(self, targets: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        top2 = targets.topk(min(2, targets.shape[1]), dim=1).values
        certainty = top2[:, 0] - top2[:, 1]
        if self.recent:
            mean_answer = torch.cat(self.recent).mean(dim=0, keepdim=True)
            diversity = (targets - mean_answer).clamp_min(0).sum(dim=1)
        else:
            diversity = torch.zeros(targets.shape[0])
        self.recent = [*self.recent, targets][-self.diversity_window :]
        parts = (certainty, diversity, loss)
        return sum((r.scale(p) for r, p in zip(self.ranges, parts, strict=True)), torch.zeros(targets.shape[0]))

    def _update_policy(self, chosen: torch.Tensor, rewards: torch.Tensor) -> None:
        for action, reward in zip(chosen.tolist(), rewards.tolist(), strict=True):
            policy = self.policy()
            advantage = reward - self.mean_reward
            step = -self.bandit_lr * advantage * policy
            step[action] += self.bandit_lr * advantage
            self.preferences += step
            self.rewarded += 1
            self.mean_reward += (reward - self.mean_reward) / self.rewarded


class JacobianQueries(QueryStrategy):
    """Papernot et al.'s Jacobian-based dataset augmentation, driven by the surrogate's gradients.

    The seed set is queried first. Each later call (one substitute-training round ρ) augments the
    labelled set: every labelled point, in a seeded random order (reservoir sampling when the budget
    allows fewer than all), yields ``clip(x + λ_ρ·sign(∂F_ŷ(x)/∂x))`` with ``λ_ρ = λ·(−1)^⌊ρ/τ⌋``. When a
    call asks for more points than are labelled, the new points are augmented in turn (without
    retraining in between), so any budget can be spent.
    """

    name = "jacobian"

    def __init__(
        self,
        oracle: Oracle,
        generator: torch.Generator,
        query_batch: int,
        seed_set: torch.Tensor,
        *,
        fit: Fit,
        step: float,
        tau: int,
    ) -> None:
        super().__init__(oracle, generator, query_batch)
        self.seed_set = seed_set[torch.randperm(seed_set.shape[0], generator=generator)]
        self.seed_cursor = 0
        self.fit = fit
        spec = oracle.target.input_spec
        self.step = step * (spec.upper - spec.lower)
        self.tau = tau
        self.round = 0

    def collect(self, n: int, surrogate: nn.Module | None) -> None:
        oracle = self.oracle
        while n > 0 and not oracle.exhausted and self.seed_cursor < self.seed_set.shape[0]:
            m = min(n, self.query_batch, oracle.remaining, self.seed_set.shape[0] - self.seed_cursor)
            got = int(oracle.ask(self.seed_set[self.seed_cursor : self.seed_cursor + m]).shape[0])
            self.seed_cursor += got
            n -= got
        if n > 0 and not oracle.exhausted:
            inputs, answers = oracle.dataset()
            if surrogate is None:
                surrogate = self.fit(inputs, answers)
            lam = self.step * (-1.0) ** (self.round // self.tau)
            frontier, labels = inputs, answer_labels(answers)
            while n > 0 and not oracle.exhausted and frontier.shape[0] > 0:
                order = torch.randperm(frontier.shape[0], generator=self.generator)
                new_inputs: list[torch.Tensor] = []
                new_labels: list[torch.Tensor] = []
                for start in range(0, order.numel(), self.query_batch):
                    if n <= 0 or oracle.exhausted:
                        break
                    chosen = order[start : start + min(self.query_batch, n)]
                    x = self._augment(surrogate, frontier[chosen], labels[chosen], lam)
                    answers = oracle.ask(x)
                    new_inputs.append(x[: answers.shape[0]])
                    new_labels.append(answer_labels(answers))
                    n -= int(answers.shape[0])
                if not new_inputs:
                    break
                frontier, labels = torch.cat(new_inputs), torch.cat(new_labels)
        self.round += 1

    def _augment(self, surrogate: nn.Module, x: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
        """``clip(x + λ·sign(∂ softmax(surrogate(x))_label / ∂x))`` for a batch."""
        spec = self.oracle.target.input_spec
        probe = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            probabilities = torch.softmax(surrogate(probe), dim=1)
            picked = probabilities.gather(1, labels.view(-1, 1)).sum()
            (gradient,) = torch.autograd.grad(picked, probe)
        return (x + lam * gradient.sign()).clamp(spec.lower, spec.upper).detach()
