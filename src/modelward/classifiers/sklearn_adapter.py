"""A scikit-learn estimator as a classifier: black-box (scores when it has predict_proba, else labels)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from modelward.classifiers.base import Capability, Classifier, ClassifierError, InputSpec


class SklearnClassifier(Classifier):
    """Wraps a fitted estimator; inputs are ``(N, n_features)`` tensors within ``bounds``."""

    def __init__(
        self,
        estimator: Any,
        *,
        bounds: tuple[float, float],
        query_budget: int | None = None,
    ) -> None:
        n_features = getattr(estimator, "n_features_in_", None)
        classes = getattr(estimator, "classes_", None)
        if n_features is None or classes is None:
            raise ClassifierError("the estimator must be fitted (it has no n_features_in_ / classes_)")
        self.estimator = estimator
        self.classes = np.asarray(classes)
        capabilities = {Capability.LABELS}
        if hasattr(estimator, "predict_proba"):
            capabilities.add(Capability.SCORES)
        spec = InputSpec((int(n_features),), float(bounds[0]), float(bounds[1]))
        super().__init__(spec, len(self.classes), capabilities, query_budget)

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        proba = self.estimator.predict_proba(x.detach().cpu().numpy())
        return torch.as_tensor(np.asarray(proba), dtype=torch.float32)

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        predicted = np.asarray(self.estimator.predict(x.detach().cpu().numpy()))
        index = {label: i for i, label in enumerate(self.classes.tolist())}
        return torch.as_tensor([index[label] for label in predicted.tolist()], dtype=torch.long)
