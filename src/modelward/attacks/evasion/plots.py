"""Plots of evasion results: robust accuracy against epsilon, and originals beside adversarial inputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(
    points: Sequence[tuple[float, float]],
    norm: str,
    path: Path,
    *,
    marker: float | None = None,
    ylabel: str = "robust accuracy",
) -> Path:
    """Accuracy against epsilon (or radius) as a PNG; ``marker`` draws the required epsilon."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.2), dpi=120)
    axis.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    if marker is not None:
        axis.axvline(marker, linestyle="--", color="grey", linewidth=1)
    axis.set_xlabel(f"ε ({norm})" if norm in ("linf", "l2") else norm)
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 1.02)
    axis.set_title(f"{ylabel.capitalize()} vs {'ε' if norm in ('linf', 'l2') else norm}")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_examples(originals: torch.Tensor, adversarials: torch.Tensor, path: Path, *, limit: int = 8) -> Path | None:
    """A two-row grid (originals above, adversarial inputs below) for image inputs; None for other data."""
    if originals.dim() != 4 or originals.shape[0] == 0:
        return None
    count = min(limit, int(originals.shape[0]))
    plt = _pyplot()
    figure, axes = plt.subplots(2, count, figsize=(1.2 * count, 2.6), dpi=120, squeeze=False)
    for column in range(count):
        for row, batch in enumerate((originals, adversarials)):
            image = batch[column].detach()
            shown = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
            axes[row][column].imshow(shown.numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row][column].axis("off")
    axes[0][0].set_title("original", fontsize=7, loc="left")
    axes[1][0].set_title("adversarial", fontsize=7, loc="left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
