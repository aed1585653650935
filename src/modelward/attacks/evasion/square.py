"""Square attack (Andriushchenko et al., ECCV 2020): score-based black-box random search, L∞ and L2.

Each iteration changes the current perturbation inside one random square window (per sample) and
keeps the change when the margin loss improves. The window's area is a fraction ``p`` of the image
that halves on a fixed schedule of the iteration budget (the paper's p-schedule). L∞ proposals set
the window to ``±epsilon`` per channel (vertical stripes at the start); L2 proposals move mass into
the window with a pseudo-Gaussian two-lobed pattern and out of a second window, staying on the
epsilon sphere. Only class scores are used: no gradients.

The margin is computed on log-scores (for a softmax model it equals the logit margin), so saturated
probabilities still rank proposals. Inputs of shape ``(C, H, W)`` are images; ``(H, W)`` is one
channel; ``(F,)`` is treated as a ``1 × F`` strip, so tabular models are attacked with windows of
consecutive features.

Queries per sample, exactly: ``1`` (clean prediction) for samples already adversarial, else
``2 + k`` (clean, initial point, ``k`` iterations), stopping at the first success and never
exceeding ``max_queries``.
"""

from __future__ import annotations

import bisect
import math

import torch

from modelward.attacks.evasion.base import AttackError, EvasionAttack
from modelward.classifiers.base import Capability, Classifier

# The p-schedule: p halves each time the iteration, scaled to 10,000, passes one of these marks.
_SCHEDULE_MARKS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_RESAMPLE_TRIES = 10


def p_schedule(p_init: float, iteration: int, iterations: int) -> float:
    """The fraction of the image a window covers at ``iteration`` of ``iterations`` (the paper's schedule)."""
    scaled = int(iteration / max(iterations, 1) * 10000)
    halvings: int = bisect.bisect_left(_SCHEDULE_MARKS, scaled)
    return p_init / 2.0**halvings


def image_view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """How Square sees one input: ``(channels, height, width)`` (see the module docstring)."""
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return math.prod(shape[:-2]), shape[-2], shape[-1]


def margin_loss(scores: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Per-sample margin to minimise: true minus best other (untargeted), best other minus target (targeted).

    Negative exactly when the attack has succeeded (ties aside).
    """
    label = y if targets is None else targets
    own = scores.gather(1, label.unsqueeze(1)).squeeze(1)
    others = scores.scatter(1, label.unsqueeze(1), float("-inf")).amax(dim=1)
    return own - others if targets is None else others - own


def pseudo_gaussian(rows: int, cols: int) -> torch.Tensor:
    """Concentric rectangles around the centre with weights ``sum 1/(k+1)^2``, unit L2 norm."""
    if rows == 0 or cols == 0:
        return torch.zeros(rows, cols)
    rings = max(rows // 2, cols // 2) + 1
    tail = torch.tensor([1.0 / (k + 1) ** 2 for k in range(rings)]).flip(0).cumsum(0).flip(0)
    r = (torch.arange(rows) - rows // 2).abs().view(-1, 1)
    c = (torch.arange(cols) - cols // 2).abs().view(1, -1)
    pattern = tail[torch.maximum(r, c)]
    unit: torch.Tensor = pattern / pattern.norm()
    return unit


def two_lobe_pattern(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A unit-norm window update: a positive and a negative pseudo-Gaussian lobe side by side (random axis)."""
    axes = [a for a, size in enumerate((rows, cols)) if size >= 2]
    if not axes:
        return torch.ones(rows, cols)
    axis = axes[int(torch.randint(len(axes), (1,), generator=generator))]
    if axis == 1:
        return two_lobe_pattern_on_rows(cols, rows).t().contiguous()
    return two_lobe_pattern_on_rows(rows, cols)


def two_lobe_pattern_on_rows(rows: int, cols: int) -> torch.Tensor:
    """The two-lobe pattern split along the rows: top half positive, bottom half negative."""
    half = rows // 2
    pattern = torch.cat([pseudo_gaussian(half, cols), -pseudo_gaussian(rows - half, cols)])
    unit: torch.Tensor = pattern / pattern.norm()
    return unit


class Square(EvasionAttack):
    """Square attack: needs class scores only (``scores`` capability); L∞ or L2; targeted or not.

    ``max_queries`` is the per-sample budget, counting the clean prediction. ``p_init`` is the
    initial window area fraction (default 0.8 as in AutoAttack for L∞, 0.1 for L2 as in the paper).
    """

    name = "square"
    requires = (Capability.SCORES,)

    def __init__(
        self,
        classifier: Classifier,
        *,
        norm: str = "linf",
        max_queries: int = 1000,
        p_init: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(classifier, norm=norm, seed=seed)
        if max_queries < 1:
            raise AttackError(f"max_queries must be >= 1 (the clean prediction), got {max_queries}")
        if p_init is None:
            p_init = 0.8 if self.norm == "linf" else 0.1
        if not 0 < p_init <= 1:
            raise AttackError(f"p_init must lie in (0, 1], got {p_init}")
        self.max_queries = int(max_queries)
        self.p_init = float(p_init)
        self.view = image_view(classifier.input_spec.shape)

    def __repr__(self) -> str:
        return f"Square(norm={self.norm!r}, max_queries={self.max_queries}, p_init={self.p_init}, seed={self.seed})"

    # --- the attack ------------------------------------------------------------------------
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
        n = x.shape[0]
        budget = self.max_queries - 1  # the clean prediction is already spent
        if budget < 1:
            return x.clone(), torch.zeros(n, dtype=torch.bool, device=x.device)
        shape = x.shape
        xi = x.reshape(n, *self.view)
        best = self._initial_point(xi, epsilon, generator)
        scores = self._scores(best.view(shape), queries)
        use_log = bool((scores >= 0).all())
        loss = margin_loss(_log(scores, use_log), y, targets)
        success = self._is_success(scores.argmax(dim=1), y, targets)
        iterations = max(budget - 1, 1)
        step = 0
        while True:
            idx = (~success & (queries < budget)).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            p = p_schedule(self.p_init, step, iterations)
            if self.norm == "linf":
                candidate = self._linf_proposal(xi[idx], best[idx], epsilon, p, generator)
            else:
                candidate = self._l2_proposal(xi[idx], best[idx], epsilon, p, generator)
            scores = self._scores(candidate.view(idx.numel(), *shape[1:]), queries, idx)
            new_loss = margin_loss(_log(scores, use_log), y[idx], None if targets is None else targets[idx])
            new_success = self._is_success(scores.argmax(dim=1), y[idx], None if targets is None else targets[idx])
            accept = new_success | (new_loss < loss[idx])
            chosen = idx[accept]
            best[chosen] = candidate[accept]
            loss[chosen] = new_loss[accept]
            success[chosen] = new_success[accept]
            step += 1
        return best.view(shape), success

    def _initial_point(self, x: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
        """Vertical ±epsilon stripes (L∞) or a tiling of random-sign two-lobe blocks scaled to epsilon (L2)."""
        n, c, h, w = x.shape
        if self.norm == "linf":
            stripes = _random_signs((n, c, 1, w), generator, x) * epsilon
            return self._clip(x + stripes)
        bh, bw = max(h // 5, 1), max(w // 5, 1)
        delta = torch.zeros_like(x)
        for top in range(0, h, bh):
            for left in range(0, w, bw):
                rows, cols = min(bh, h - top), min(bw, w - left)
                block = two_lobe_pattern(rows, cols, generator).to(x)
                signs = _random_signs((n, c, 1, 1), generator, x)
                delta[:, :, top : top + rows, left : left + cols] = block * signs
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return self._clip(x + delta * (epsilon / norms))

    def _window_size(self, p: float, minimum: int, odd: bool) -> tuple[int, int]:
        """Window height and width covering about ``p`` of a channel (at least ``minimum`` wide, within the image)."""
        _, h, w = self.view
        area = p * h * w
        if h > 1 and w > 1:
            side = max(round(math.sqrt(area)), minimum)
            if odd and side % 2 == 0:
                side += 1
            cap = min(h, w) - 1 if self.norm == "linf" else min(h, w)
            side = max(min(side, cap), 1)
            return side, side
        length = max(h, w)
        side = max(round(area), minimum)
        if odd and side % 2 == 0:
            side += 1
        side = max(min(side, length - 1 if self.norm == "linf" else length), 1)
        return (1, side) if h == 1 else (side, 1)

    def _linf_proposal(
        self, x: torch.Tensor, best: torch.Tensor, epsilon: float, p: float, generator: torch.Generator
    ) -> torch.Tensor:
        """Set one random window per sample to ``±epsilon`` per channel, resampling signs that change nothing."""
        m, c, _, _ = x.shape
        sh, sw = self._window_size(p, 1, odd=False)
        window = self._random_window_mask(m, sh, sw, generator, x.device)
        spec = self.classifier.input_spec
        tolerance = 1e-7 * max(1.0, abs(spec.lower), abs(spec.upper))
        signs = _random_signs((m, c, 1, 1), generator, x)
        for _ in range(_RESAMPLE_TRIES):
            candidate = torch.where(window, self._clip(x + signs * epsilon), best)
            unchanged = ((candidate - best).abs() <= tolerance).flatten(1).all(dim=1)
            if not bool(unchanged.any()):
                break
            signs[unchanged] = _random_signs((int(unchanged.sum()), c, 1, 1), generator, x)
        return candidate

    def _l2_proposal(
        self, x: torch.Tensor, best: torch.Tensor, epsilon: float, p: float, generator: torch.Generator
    ) -> torch.Tensor:
        """Move perturbation mass into one window (two-lobe pattern) and out of another, on the epsilon sphere."""
        m, c, _, _ = x.shape
        sh, sw = self._window_size(p, 3, odd=True)
        delta = best - x
        first, where1 = self._random_window(m, sh, sw, generator, x.device)
        second, _ = self._random_window(m, sh, sw, generator, x.device)
        both = first | second
        norm_first = (delta * first).pow(2).sum(dim=(2, 3)).sqrt().view(m, c, 1, 1)
        norm_both = (delta * both).pow(2).sum(dim=(2, 3)).sqrt().view(m, c, 1, 1)
        norm_image = delta.flatten(1).norm(dim=1).view(m, 1, 1, 1)
        pattern = two_lobe_pattern(sh, sw, generator).to(x)
        update = pattern * _random_signs((m, c, 1, 1), generator, x)
        update = update + _get_window(delta, where1, sh, sw) / (1e-10 + norm_first)
        room = ((epsilon**2 - norm_image.pow(2)).clamp_min(0) / c + norm_both.pow(2)).sqrt()
        update = update / update.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12) * room
        delta = delta.masked_fill(second, 0.0)
        _set_window(delta, where1, update)
        total = delta.flatten(1).norm(dim=1).view(m, 1, 1, 1)
        scaled = torch.where(total > 0, delta * (epsilon / total.clamp_min(1e-12)), delta)
        return self._clip(x + scaled)

    def _random_window(
        self, m: int, sh: int, sw: int, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """A random window per sample: its mask ``(m, 1, H, W)`` and its top-left corners."""
        _, h, w = self.view
        top = torch.randint(0, h - sh + 1, (m,), generator=generator).to(device)
        left = torch.randint(0, w - sw + 1, (m,), generator=generator).to(device)
        rows = torch.arange(h, device=device).view(1, 1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, 1, w)
        t, lft = top.view(-1, 1, 1, 1), left.view(-1, 1, 1, 1)
        mask = (rows >= t) & (rows < t + sh) & (cols >= lft) & (cols < lft + sw)
        return mask, (top, left)

    def _random_window_mask(
        self, m: int, sh: int, sw: int, generator: torch.Generator, device: torch.device
    ) -> torch.Tensor:
        """Only the mask of :meth:`_random_window`."""
        return self._random_window(m, sh, sw, generator, device)[0]


def _log(scores: torch.Tensor, use_log: bool) -> torch.Tensor:
    """Log-scores for probabilities (clamped away from zero); raw scores when the model returns other values."""
    return scores.clamp_min(1e-30).log() if use_log else scores


def _random_signs(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Uniform ±1 values of ``shape``, on ``like``'s device and dtype."""
    bits = torch.randint(0, 2, shape, generator=generator)
    return (bits * 2 - 1).to(like)


def _window_index(
    corners: tuple[torch.Tensor, torch.Tensor], sh: int, sw: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advanced-indexing tensors selecting each sample's ``sh × sw`` window (all channels)."""
    top, left = corners
    m = top.shape[0]
    batch = torch.arange(m, device=top.device).view(m, 1, 1)
    rows = (top.view(m, 1) + torch.arange(sh, device=top.device)).view(m, sh, 1)
    cols = (left.view(m, 1) + torch.arange(sw, device=top.device)).view(m, 1, sw)
    return batch, rows, cols


def _get_window(t: torch.Tensor, corners: tuple[torch.Tensor, torch.Tensor], sh: int, sw: int) -> torch.Tensor:
    """Each sample's window of ``t`` ``(m, C, H, W)`` as ``(m, C, sh, sw)``."""
    batch, rows, cols = _window_index(corners, sh, sw)
    return t[batch, :, rows, cols].permute(0, 3, 1, 2)


def _set_window(t: torch.Tensor, corners: tuple[torch.Tensor, torch.Tensor], values: torch.Tensor) -> None:
    """Write ``values`` ``(m, C, sh, sw)`` into each sample's window of ``t`` in place."""
    batch, rows, cols = _window_index(corners, values.shape[2], values.shape[3])
    t[batch, :, rows, cols] = values.permute(0, 2, 3, 1)
