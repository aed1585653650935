"""Plain supervised training for the small models (seeded, CPU, minibatch Adam)."""

from __future__ import annotations

import torch
from torch import nn


def train_classifier(
    module: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> nn.Module:
    """Train ``module`` (raw inputs, no normalisation) with cross-entropy; returns it in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=generator)
        for start in range(0, x.shape[0], batch_size):
            batch = order[start : start + batch_size]
            optimiser.zero_grad()
            loss = loss_fn(module(x[batch]), y[batch])
            loss.backward()
            optimiser.step()
    return module.eval()


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of a module on raw inputs."""
    with torch.no_grad():
        return float((module(x).argmax(dim=1) == y).float().mean())
