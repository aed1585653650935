"""Plots of model inversion: reconstructions in a row, the real class means beneath for comparison."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from modelward.attacks.inversion.mi_face import InversionResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(image: torch.Tensor) -> Any:
    image = image.detach().to(torch.float32)
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def plot_inversion(
    result: InversionResult,
    path: Path,
    *,
    class_means: torch.Tensor | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> Path | None:
    """An image grid PNG (one column per class); None when the inputs are not images ``(C, H, W)``."""
    images = result.reconstructions
    if images.dim() != 4 or images.shape[0] == 0 or images.shape[1] not in (1, 3):
        return None
    rows = [("reconstruction", images)]
    if class_means is not None:
        rows.append(("real class mean", class_means))
    count = int(images.shape[0])
    plt = _pyplot()
    figure, axes = plt.subplots(len(rows), count, figsize=(1.1 * count, 1.25 * len(rows) + 0.4), dpi=120, squeeze=False)
    for r, (name, batch) in enumerate(rows):
        for column in range(count):
            axis = axes[r][column]
            axis.imshow(_show(batch[column]), cmap="gray", vmin=bounds[0], vmax=bounds[1])
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(f"class {result.classes[column]}", fontsize=7)
        axes[r][0].set_ylabel(name, fontsize=7)
    similarity = result.similarity
    if similarity is not None:
        figure.suptitle(
            f"mean correlation with class mean {similarity.mean:.2f} (random images {similarity.random:.2f}); "
            f"class identified {similarity.match_rate:.0%} (chance {similarity.chance:.0%})",
            fontsize=7,
        )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
