"""Membership inference: was this record in the model's training set? (verb: ``infer``).

``metrics`` turns per-example scores into an ROC, AUC and the TPR at fixed low FPRs (exactly, or
"unresolvable"); ``signals`` reads loss, confidence, LiRA's φ or label-only signals through the
classifier protocol; ``reference_models`` trains shadow/reference models locally or on Ray, with
a safetensors cache. Attacks: ``LossAttack`` and ``LabelOnlyAttack`` (``base``),
``ShadowModelAttack`` (``shadow``), ``LiRA`` (``lira``) and ``RMIA`` (``rmia``). ``plots`` draws
log-log ROC curves. Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DEFAULT_FPRS": "metrics",
    "MembershipResult": "metrics",
    "Roc": "metrics",
    "TprAtFpr": "metrics",
    "membership_result": "metrics",
    "roc": "metrics",
    "tpr_at_fpr": "metrics",
    "plot_roc": "plots",
    "log_probabilities": "signals",
    "loss_signal": "signals",
    "confidence_signal": "signals",
    "logit_scaled_confidence": "signals",
    "phi_from_logits": "signals",
    "correctness_signal": "signals",
    "noisy_correctness_signal": "signals",
    "MembershipAttack": "base",
    "LossAttack": "base",
    "LabelOnlyAttack": "base",
    "ShadowModelAttack": "shadow",
    "LiRA": "lira",
    "RMIA": "rmia",
    "ModelSpec": "reference_models",
    "TrainedModel": "reference_models",
    "ReferenceModels": "reference_models",
    "ReferenceEngine": "reference_models",
    "LocalEngine": "reference_models",
    "RayEngine": "reference_models",
    "ArtifactCache": "reference_models",
    "FACTORIES": "reference_models",
    "register_factory": "reference_models",
    "balanced_memberships": "reference_models",
    "reference_specs": "reference_models",
    "train_reference_models": "reference_models",
    "default_engine": "reference_models",
    "ray_available": "reference_models",
}


def __getattr__(name: str) -> Any:
    """Import attacks, metrics and engines from their submodules on first access."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [*_LAZY]
