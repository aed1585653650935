"""Evasion attacks: inputs perturbed within an epsilon ball so the model misclassifies them.

``base`` holds the shared API (results, :class:`EvasionAttack`, norm helpers); white-box attacks
are ``fgsm``, ``pgd`` and ``apgd``, black-box ones ``square`` (scores) and ``hopskipjump``
(labels); ``evaluate`` measures robust accuracy against an ensemble.
Submodules are imported on first use, so importing the shared API stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from modelward.attacks.evasion.base import (
    NORMS,
    AttackError,
    EpsilonResult,
    EvasionAttack,
    NormName,
    SweepResult,
    perturbation_norms,
    project,
    random_in_ball,
    steepest_direction,
)

_LAZY = {
    "FGSM": "fgsm",
    "PGD": "pgd",
    "APGD": "apgd",
    "APGDT": "apgd",
    "Square": "square",
    "HopSkipJump": "hopskipjump",
    "EnsembleResult": "evaluate",
    "RobustnessCurve": "evaluate",
    "MaskingWarning": "evaluate",
    "default_ensemble": "evaluate",
    "evaluate_robustness": "evaluate",
    "robustness_curve": "evaluate",
    "gradient_masking_warnings": "evaluate",
}


def __getattr__(name: str) -> Any:
    """Import attack classes and evaluation helpers from their submodules on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "NORMS",
    "AttackError",
    "EpsilonResult",
    "EvasionAttack",
    "NormName",
    "SweepResult",
    "perturbation_norms",
    "project",
    "random_in_ball",
    "steepest_direction",
    *_LAZY,
]
