"""Model inversion and attribute inference: what a model's answers reveal about its training data.

Two families, one verb each: :class:`ModelInversion` (``invert``) reconstructs a representative
input per class in the MI-Face style; :class:`AttributeInference` (``infer``) infers a sensitive
column of tabular records from the model's outputs, always beside a baseline that uses no model.
"""

from __future__ import annotations

from modelward.attacks.inversion.attribute import AttributeInference, AttributeInferenceResult
from modelward.attacks.inversion.mi_face import (
    InversionResult,
    InversionSimilarity,
    ModelInversion,
    class_means,
    global_ssim,
    reconstruction_similarity,
    total_variation,
)
from modelward.attacks.inversion.plots import plot_inversion

__all__ = [
    "AttributeInference",
    "AttributeInferenceResult",
    "InversionResult",
    "InversionSimilarity",
    "ModelInversion",
    "class_means",
    "global_ssim",
    "plot_inversion",
    "reconstruction_similarity",
    "total_variation",
]
