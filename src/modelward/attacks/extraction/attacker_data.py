"""The extraction attacker's own data for the built-in image sets: disjoint from what fidelity is scored on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modelward.datasets.builtin import Split

#: The seed that halves a split's held-out data into attacker data and evaluation data.
ATTACKER_SPLIT_SEED = 0


def pixel_shifts(x: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` and their eight one-pixel shifts (zero fill): nine times the data, same distribution.

    Other shapes (tables) come back unchanged.
    """
    if x.dim() != 4:
        return x
    side_h, side_w = int(x.shape[-2]), int(x.shape[-1])
    padded = F.pad(x, (1, 1, 1, 1))
    copies = [padded[..., 1 + dy : 1 + dy + side_h, 1 + dx : 1 + dx + side_w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return torch.cat(copies)


def attacker_split(split: Split, seed: int = ATTACKER_SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(attacker inputs, evaluation inputs, evaluation labels)``: random halves of ``x_test``, never ``x_train``."""
    order = torch.randperm(split.x_test.shape[0], generator=torch.Generator().manual_seed(seed))
    half = split.x_test.shape[0] // 2
    attacker, evaluation = order[:half], order[half:]
    return split.x_test[attacker], split.x_test[evaluation], split.y_test[evaluation]
