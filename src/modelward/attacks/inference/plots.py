"""ROC curves of membership attacks on log-log axes, where the low-FPR regime that matters is visible."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelward.attacks.inference.metrics import MembershipResult
from modelward.core.errors import InputError


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(results: Sequence[MembershipResult], path: Path, *, title: str | None = None) -> Path:
    """Write one PNG with every result's ROC (log-log), the chance diagonal, and each AUC in the legend.

    The axes start at the smallest FPR the non-members can resolve (one false positive), so a
    curve never suggests a precision the data does not have.
    """
    if not results:
        raise InputError("plot_roc needs at least one result")
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.6, 4.2), dpi=120)
    floor = min(1.0 / max(r.n_nonmembers, 1) for r in results)
    for result in results:
        fpr = np.clip(result.roc.fpr, floor, 1.0)
        tpr = np.clip(result.roc.tpr, floor, 1.0)
        low = result.tpr_at.get(0.001)
        label = f"{result.attack} (AUC {result.auc:.3f}"
        if low is not None and low.tpr is not None:
            label += f", TPR@0.1% {low.tpr:.3f}"
        axis.plot(fpr, tpr, label=label + ")", linewidth=1.2)
    axis.plot([floor, 1.0], [floor, 1.0], linestyle="--", color="grey", linewidth=0.8, label="chance")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlim(floor, 1.0)
    axis.set_ylim(floor, 1.0)
    axis.set_xlabel("false-positive rate")
    axis.set_ylabel("true-positive rate")
    axis.set_title(title or "Membership inference ROC", fontsize=9)
    axis.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
