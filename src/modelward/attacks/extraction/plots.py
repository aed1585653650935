"""Plots of extraction runs: fidelity and surrogate accuracy against the number of target queries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelward.attacks.extraction.extract import ExtractionResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_extraction(results: Sequence[ExtractionResult], path: Path, *, title: str | None = None) -> Path:
    """Two panels (fidelity, accuracy) against queries on a log axis, one line per run; PNG at ``path``.

    The accuracy panel marks each target's own test accuracy as a dashed line: the ceiling a
    faithful copy reaches.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120, sharex=True)
    ceilings: set[float] = set()
    for result in results:
        label = f"{result.strategy} ({result.output})"
        queries = [p.queries for p in result.curve]
        axes[0].plot(queries, [p.fidelity for p in result.curve], marker="o", label=label)
        axes[1].plot(queries, [p.accuracy for p in result.curve], marker="o", label=label)
        ceilings.add(round(result.target_accuracy, 4))
    for ceiling in sorted(ceilings):
        axes[1].axhline(ceiling, linestyle="--", color="grey", linewidth=1)
    for axis, name in zip(axes, ("fidelity (agreement with target)", "surrogate accuracy"), strict=True):
        axis.set_xscale("log")
        axis.set_xlabel("target queries")
        axis.set_ylabel(name)
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    figure.suptitle(title or "Model extraction: fidelity and accuracy vs queries", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
