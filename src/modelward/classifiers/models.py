"""Small model architectures the scenario and the tests train on CPU in seconds."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two convolutions and a linear head: ≥ 97% on 8×8 digits, trained in seconds on a CPU."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, side: int = 8) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "width": width, "side": side}
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * (side // 2) ** 2, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.head(self.features(x)))


class MLP(nn.Module):
    """A two-layer perceptron for tabular data."""

    def __init__(self, in_features: int, num_classes: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.config = {"in_features": in_features, "num_classes": num_classes, "hidden": hidden}
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.net(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {"SmallCNN": SmallCNN, "MLP": MLP}
