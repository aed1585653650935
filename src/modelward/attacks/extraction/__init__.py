"""Model extraction (verb ``extract``): train a surrogate that copies a classifier from its answers.

:class:`ModelExtraction` drives the query strategies of :mod:`.strategies` (``random``, ``natural``,
``knockoff``, ``jacobian``) through the classifier protocol only; :func:`plot_extraction` draws
fidelity and accuracy against queries.
"""

from __future__ import annotations

from modelward.attacks.extraction.extract import (
    STRATEGIES,
    ExtractionPoint,
    ExtractionResult,
    ModelExtraction,
    StrategyName,
    SurrogateFactory,
    geometric_schedule,
)
from modelward.attacks.extraction.plots import plot_extraction

__all__ = [
    "STRATEGIES",
    "ExtractionPoint",
    "ExtractionResult",
    "ModelExtraction",
    "StrategyName",
    "SurrogateFactory",
    "geometric_schedule",
    "plot_extraction",
]
