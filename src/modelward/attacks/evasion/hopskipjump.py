"""HopSkipJump (Chen, Jordan and Wainwright, IEEE S&P 2020): decision-based, labels only, L2 and L∞.

A minimum-norm attack: it starts from any adversarial input (random noise, or for a targeted attack
another input of the batch with the target label), walks to the decision boundary by binary search,
then repeats three steps: estimate the boundary's normal from the signs of ``k`` random probes
(``k = init_evals·√t``), step along it with a geometrically shrinking step size until the point is
adversarial again, and binary-search back to the boundary. Each sample keeps the smallest
perturbation it has found, so its norm never grows as queries are spent.

Success at an epsilon means an adversarial input with a perturbation norm ≤ epsilon. ``perturb``
stops a sample as soon as that holds; :meth:`HopSkipJump.sweep` runs once, stopping at the
smallest epsilon, and reads every epsilon off that run (its per-epsilon query counts are the same
run's queries, so add them up over epsilons only once). :meth:`HopSkipJump.minimum_norm` returns
the final perturbation norm per sample.

Queries per sample, exactly: ``1`` (clean prediction) plus the search's queries, never more than
``max_queries`` in all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from modelward.attacks.evasion.base import (
    AttackError,
    EpsilonResult,
    EvasionAttack,
    SweepResult,
    perturbation_norms,
)
from modelward.classifiers.base import Capability, Classifier
from modelward.core.progress import Progress

_MAX_HALVINGS = 25  # geometric step-size search: give up on a step after this many halvings
_MIN_PROBES = 10  # fewer gradient probes than this are not worth an iteration
_PROBE_ELEMENTS = 1 << 24  # cap on probes × features held in memory at once


@dataclass
class MinimumNormResult:
    """The smallest adversarial perturbation found per sample.

    ``success`` is True where an adversarial input was found (samples adversarial on their clean
    input count, with norm 0); ``norms`` is its perturbation norm (``inf`` where none was found,
    and ``adversarial`` is then the clean input). ``queries`` is exact per sample.
    """

    original: torch.Tensor
    adversarial: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    queries: torch.Tensor
    clean_correct: torch.Tensor
    targeted: bool = False

    def at(self, epsilon: float) -> EpsilonResult:
        """The result at one epsilon: success where adversarial with norm ≤ epsilon, else the clean input."""
        success = self.success & (self.norms <= epsilon)
        view = success.view(-1, *([1] * (self.adversarial.dim() - 1)))
        return EpsilonResult(
            epsilon=float(epsilon),
            adversarial=torch.where(view, self.adversarial, self.original),
            success=success,
            norms=torch.where(success, self.norms, torch.zeros_like(self.norms)),
            queries=self.queries,
            clean_correct=self.clean_correct,
            targeted=self.targeted,
        )


class HopSkipJump(EvasionAttack):
    """HopSkipJump on predicted labels only (any classifier); L2 (default) or L∞; targeted or not.

    ``max_queries`` is the per-sample budget, counting the clean prediction. ``init_evals`` and
    ``max_evals`` bound the gradient probes per iteration, ``gamma`` sets the binary-search
    tolerance (θ = γ/d^1.5 for L2, γ/d² for L∞, d features), and ``init_tries`` bounds the random
    draws spent looking for a first adversarial input.
    """

    name = "hopskipjump"
    requires = (Capability.LABELS,)

    def __init__(
        self,
        classifier: Classifier,
        *,
        norm: str = "l2",
        max_queries: int = 1000,
        init_evals: int = 100,
        max_evals: int = 10_000,
        gamma: float = 1.0,
        init_tries: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(classifier, norm=norm, seed=seed)
        if max_queries < 1:
            raise AttackError(f"max_queries must be >= 1 (the clean prediction), got {max_queries}")
        if init_evals < 1 or max_evals < init_evals:
            raise AttackError(f"need 1 <= init_evals <= max_evals, got {init_evals} and {max_evals}")
        if not (math.isfinite(gamma) and gamma > 0):
            raise AttackError(f"gamma must be positive, got {gamma}")
        if init_tries < 1:
            raise AttackError(f"init_tries must be >= 1, got {init_tries}")
        self.max_queries = int(max_queries)
        self.init_evals = int(init_evals)
        self.max_evals = int(max_evals)
        self.gamma = float(gamma)
        self.init_tries = int(init_tries)
        spec = classifier.input_spec
        self._features = math.prod(spec.shape)
        self._span = spec.upper - spec.lower
        exponent = 1.5 if self.norm == "l2" else 2.0
        self._theta = self.gamma / self._features**exponent
        self._stop_at: float | None = None

    def __repr__(self) -> str:
        return f"HopSkipJump(norm={self.norm!r}, max_queries={self.max_queries}, seed={self.seed})"

    # --- public verbs ------------------------------------------------------------------------
    def minimum_norm(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        targets: torch.Tensor | None = None,
        batch_size: int = 500,
        stop_at: float = 0.0,
        progress: Progress | None = None,
    ) -> MinimumNormResult:
        """Search each sample's smallest adversarial perturbation within the budget.

        A sample stops early once its norm is ≤ ``stop_at`` (0: spend the whole budget).
        """
        stop = self._check_epsilon(stop_at)
        diameter = self._span * (math.sqrt(self._features) if self.norm == "l2" else 1.0)
        self._stop_at = stop
        try:
            # Every adversarial input lies within the input box's diameter, so at that epsilon the
            # base class returns each sample's best adversarial input and its true norm.
            run = self.perturb(x, y, diameter, targets=targets, batch_size=batch_size, progress=progress)
        finally:
            self._stop_at = None
        norms = torch.where(run.success, run.norms, torch.full_like(run.norms, math.inf))
        return MinimumNormResult(
            original=x,
            adversarial=run.adversarial,
            success=run.success,
            norms=norms,
            queries=run.queries,
            clean_correct=run.clean_correct if run.clean_correct is not None else torch.ones_like(run.success),
            targeted=targets is not None,
        )

    def sweep(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilons: Sequence[float],
        *,
        targets: torch.Tensor | None = None,
        batch_size: int = 500,
        monotone: bool = True,
        progress: Progress | None = None,
    ) -> SweepResult:
        """All epsilons from one minimum-norm run (monotone by construction; ``monotone`` is accepted for parity)."""
        if len(epsilons) == 0:
            raise AttackError("sweep needs at least one epsilon")
        ordered = sorted(self._check_epsilon(e) for e in epsilons)
        started = time.perf_counter()
        run = self.minimum_norm(x, y, targets=targets, batch_size=batch_size, stop_at=ordered[0], progress=progress)
        results = [run.at(eps) for eps in ordered]
        clean = run.clean_correct
        return SweepResult(
            attack=self.name,
            norm=self.norm,
            per_epsilon=results,
            clean_accuracy=float(clean.float().mean()) if clean.numel() else float("nan"),
            seconds=time.perf_counter() - started,
            targeted=targets is not None,
            raw_robust_accuracy=[r.robust_accuracy for r in results],
        )

    # --- the attack ------------------------------------------------------------------------------
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
        stop = epsilon if self._stop_at is None else self._stop_at
        search = _Search(self, x, y, targets, queries, generator)
        best, found, norms = search.run(stop)
        success = found & (norms <= epsilon)
        adversarial = torch.where(success.view(-1, *([1] * (x.dim() - 1))), best.view(x.shape), x)
        return adversarial, success


class _Search:
    """The state of one HopSkipJump run on a batch (flattened inputs ``(n, d)``), with per-sample budgets."""

    def __init__(
        self,
        attack: HopSkipJump,
        x: torch.Tensor,
        y: torch.Tensor,
        targets: torch.Tensor | None,
        queries: torch.Tensor,
        generator: torch.Generator,
    ) -> None:
        self.attack = attack
        self.shape = tuple(x.shape[1:])
        self.x0 = x.reshape(x.shape[0], -1)
        self.y = y
        self.targets = targets
        self.queries = queries
        self.generator = generator
        self.budget = attack.max_queries - 1  # the clean prediction is already spent
        spec = attack.classifier.input_spec
        self.lower, self.upper = spec.lower, spec.upper
        reach = attack._span if attack.norm == "linf" else 1.0
        self.search_steps = math.ceil(math.log2(max(reach, 1.0) / attack._theta)) + 1

    # --- model access --------------------------------------------------------------------------
    def decide(self, points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Adversarial mask of ``points`` ``(m, d)`` belonging to samples ``index``; one query each."""
        labels = self.attack._labels(points.view(-1, *self.shape), self.queries, index)
        return self.attack._is_success(labels, self.y[index], None if self.targets is None else self.targets[index])

    def remaining(self, index: torch.Tensor) -> torch.Tensor:
        """Queries each sample at ``index`` may still spend."""
        return self.budget - self.queries[index]

    def clip(self, t: torch.Tensor) -> torch.Tensor:
        """Clamp into the classifier's bounds."""
        return t.clamp(self.lower, self.upper)

    def distance(self, points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Perturbation norms of ``points`` from the clean inputs of samples ``index``."""
        return perturbation_norms(points - self.x0[index], self.attack.norm)

    # --- the algorithm -------------------------------------------------------------------------
    def run(self, stop: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the best adversarial points ``(n, d)``, whether one was found, and their norms."""
        n = self.x0.shape[0]
        every = torch.arange(n, device=self.x0.device)
        current, found = self.initialise()
        best = self.x0.clone()
        best_norm = torch.full((n,), math.inf, device=self.x0.device)
        before = torch.full((n,), math.inf, device=self.x0.device)  # distance fed to the last binary search
        start = every[found]
        if start.numel():
            before[start] = self.distance(current[start], start)
            current[start] = self.binary_search(current[start], start)
            self.keep_best(current, best, best_norm, start)
        iteration = 0
        while True:
            iteration += 1
            probes = min(int(self.attack.init_evals * math.sqrt(iteration)), self.attack.max_evals)
            room = self.remaining(every) - self.search_steps - 1
            active = every[found & (best_norm > stop) & (room >= _MIN_PROBES)]
            if active.numel() == 0:
                break
            counts = room[active].clamp(max=probes)
            delta = self.probe_radius(iteration, before[active])
            grad = self.estimate_gradient(current[active], active, counts, delta)
            update = grad.sign() if self.attack.norm == "linf" else grad
            dist = self.distance(current[active], active)
            moved, stepped = self.step(current[active], active, update, dist / math.sqrt(iteration))
            go = active[moved]
            if go.numel():
                before[go] = self.distance(stepped[moved], go)
                current[go] = self.binary_search(stepped[moved], go)
                self.keep_best(current, best, best_norm, go)
        return best, found, best_norm

    def keep_best(self, current: torch.Tensor, best: torch.Tensor, best_norm: torch.Tensor, idx: torch.Tensor) -> None:
        """Record the current points of samples ``idx`` where they beat the best so far."""
        norms = self.distance(current[idx], idx)
        better = norms < best_norm[idx]
        chosen = idx[better]
        best[chosen] = current[chosen]
        best_norm[chosen] = norms[better]

    def initialise(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A first adversarial point per sample: another batch input of the target class, else uniform noise."""
        n, d = self.x0.shape
        points = self.x0.clone()
        found = torch.zeros(n, dtype=torch.bool, device=self.x0.device)
        if self.targets is not None:
            donors = self.donors(self.targets)
            idx = (donors >= 0).nonzero().squeeze(1)
            idx = idx[self.remaining(idx) > 0]
            if idx.numel():
                candidates = self.x0[donors[idx]]
                hit = self.decide(candidates, idx)
                points[idx[hit]] = candidates[hit]
                found[idx[hit]] = True
        for _ in range(self.attack.init_tries):
            idx = (~found).nonzero().squeeze(1)
            idx = idx[self.remaining(idx) > 0]
            if idx.numel() == 0:
                break
            noise = torch.rand((idx.numel(), d), generator=self.generator).to(self.x0)
            noise = noise * (self.upper - self.lower) + self.lower
            hit = self.decide(noise, idx)
            points[idx[hit]] = noise[hit]
            found[idx[hit]] = True
        return points, found

    def donors(self, targets: torch.Tensor) -> torch.Tensor:
        """For each sample, a random other sample of the batch whose label is its target (-1 if none)."""
        donors = torch.full_like(targets, -1)
        for cls in torch.unique(targets).tolist():
            pool = (self.y == cls).nonzero().squeeze(1)
            if pool.numel() == 0:
                continue
            wanting = (targets == cls).nonzero().squeeze(1)
            pick = torch.randint(pool.numel(), (wanting.numel(),), generator=self.generator).to(pool.device)
            donors[wanting] = pool[pick]
        return donors

    def project(self, x0: torch.Tensor, points: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The point at ``alpha`` between clean and adversarial: a blend (L2) or a box of radius ``alpha`` (L∞)."""
        a = alpha.view(-1, 1)
        if self.attack.norm == "l2":
            return self.clip((1 - a) * x0 + a * points)
        return self.clip(torch.minimum(torch.maximum(points, x0 - a), x0 + a))

    def binary_search(self, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Move adversarial ``points`` of samples ``idx`` toward the boundary; returns verified adversarial points."""
        x0 = self.x0[idx]
        theta = self.attack._theta
        if self.attack.norm == "l2":
            high = torch.ones(idx.numel(), device=points.device, dtype=points.dtype)
            tolerance = torch.full_like(high, theta)
        else:
            high = perturbation_norms(points - x0, "linf")
            tolerance = (high * theta).clamp(max=theta)
        low = torch.zeros_like(high)
        result = points.clone()
        while True:
            pending = ((high - low > tolerance) & (self.remaining(idx) > 0)).nonzero().squeeze(1)
            if pending.numel() == 0:
                return result
            mid = (high[pending] + low[pending]) / 2
            trial = self.project(x0[pending], points[pending], mid)
            hit = self.decide(trial, idx[pending])
            high[pending] = torch.where(hit, mid, high[pending])
            low[pending] = torch.where(hit, low[pending], mid)
            result[pending[hit]] = trial[hit]

    def probe_radius(self, iteration: int, distance: torch.Tensor) -> torch.Tensor:
        """The probe radius δ: a tenth of the input range at first, then tied to the distance and θ."""
        if iteration == 1:
            return torch.full_like(distance, 0.1 * self.attack._span)
        d = self.attack._features
        scale = math.sqrt(d) if self.attack.norm == "l2" else float(d)
        radius: torch.Tensor = (scale * self.attack._theta * distance).clamp_min(1e-12)
        return radius

    def estimate_gradient(
        self, points: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor, delta: torch.Tensor
    ) -> torch.Tensor:
        """Unit estimate of the boundary normal at ``points`` from ``counts[i]`` random probes each (Monte Carlo)."""
        m, d = points.shape
        widest = int(counts.max())
        chunk = max(1, _PROBE_ELEMENTS // max(1, widest * d))
        parts = [
            self.estimate_chunk(points[s : s + chunk], idx[s : s + chunk], counts[s : s + chunk], delta[s : s + chunk])
            for s in range(0, m, chunk)
        ]
        return torch.cat(parts)

    def estimate_chunk(
        self, points: torch.Tensor, idx: torch.Tensor, counts: torch.Tensor, delta: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`estimate_gradient` on a chunk small enough to hold all its probes at once."""
        m, d = points.shape
        widest = int(counts.max())
        if self.attack.norm == "l2":
            directions = torch.randn((m, widest, d), generator=self.generator)
        else:
            directions = torch.rand((m, widest, d), generator=self.generator) * 2 - 1
        directions = directions.to(points)
        directions = directions / directions.norm(dim=2, keepdim=True).clamp_min(1e-12)
        radius = delta.view(m, 1, 1)
        probes = self.clip(points.unsqueeze(1) + radius * directions)
        directions = (probes - points.unsqueeze(1)) / radius
        valid = torch.arange(widest, device=points.device).view(1, -1) < counts.view(-1, 1)
        hit = self.decide(probes[valid], idx.repeat_interleave(counts))
        signs = torch.zeros((m, widest), dtype=points.dtype, device=points.device)
        signs[valid] = hit.to(points.dtype) * 2 - 1
        mean = signs.sum(dim=1, keepdim=True) / counts.view(-1, 1).to(points.dtype)
        # Subtract the mean as a baseline, unless every probe agreed (then the plain mean direction).
        coefficient = torch.where(mean.abs() == 1, signs, (signs - mean) * valid)
        grad = (coefficient.unsqueeze(2) * directions).sum(dim=1)
        unit: torch.Tensor = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return unit

    def step(
        self, points: torch.Tensor, idx: torch.Tensor, update: torch.Tensor, size: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Geometric step search: halve each step until the stepped point is adversarial.

        Returns which samples found an adversarial step and the stepped points (their old points where not).
        """
        moved = torch.zeros(idx.numel(), dtype=torch.bool, device=points.device)
        stepped = points.clone()
        size = size.clone()
        for _ in range(_MAX_HALVINGS):
            pending = (~moved & (self.remaining(idx) > self.search_steps)).nonzero().squeeze(1)
            if pending.numel() == 0:
                break
            trial = self.clip(points[pending] + size[pending].view(-1, 1) * update[pending])
            hit = self.decide(trial, idx[pending])
            stepped[pending[hit]] = trial[hit]
            moved[pending[hit]] = True
            size[pending[~hit]] /= 2
        return moved, stepped
