"""Shadow-model membership inference (Shokri et al., "Membership Inference Attacks against Machine Learning
Models", IEEE S&P 2017).

The attacker trains shadow models on data it owns, where it knows who is in and who is out, and
learns from their outputs an attack classifier "member or not". As in the paper there is one attack
model per class; each sees the log-probability of the true class and the sorted log-probability
vector (sorting makes the features label-agnostic; the true-class term keeps what sorting loses).
Attack models are scikit-learn's histogram gradient boosting (default) or a scaled logistic
regression. The score is the attack model's log-odds (no saturation at 1.0, so low-FPR thresholds
stay resolvable). One target query per example.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from modelward.attacks.inference.base import ReferenceAttack
from modelward.attacks.inference.reference_models import ReferenceModels
from modelward.attacks.inference.signals import log_probabilities, signal_from_log_probabilities
from modelward.classifiers.base import Classifier
from modelward.core.errors import InputError

AttackModel = Literal["gbm", "logreg"]

_FLOOR = -30.0  # log-probabilities below e^-30 carry no extra information for the attack model


def attack_features(log_probs: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Features ``(..., N, 1 + C)``: true-class log-probability, then the log-probabilities sorted descending."""
    clipped = log_probs.clamp_min(_FLOOR)
    true = signal_from_log_probabilities(clipped, y, "loss").neg().unsqueeze(-1)
    ordered = torch.sort(clipped, dim=-1, descending=True).values
    return np.asarray(torch.cat([true, ordered], dim=-1).numpy(), dtype=np.float64)


def _new_model(kind: AttackModel, seed: int) -> Any:
    if kind == "gbm":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


class ShadowModelAttack(ReferenceAttack):
    """Per-class attack models trained on shadow models' outputs for their own members and non-members.

    The shadows are a :class:`ReferenceModels` set (trained on the attacker's population); the
    attack models are fitted at construction (no target queries). Classes with too few shadow
    rows of either kind use a model fitted on all classes.
    """

    name = "shadow models"

    def __init__(
        self,
        target: Classifier,
        shadows: ReferenceModels,
        *,
        attack_model: AttackModel = "gbm",
        per_class: bool = True,
        min_rows: int = 20,
        seed: int = 0,
        batch_size: int = 1024,
    ) -> None:
        super().__init__(target, shadows, batch_size=batch_size)
        if attack_model not in ("gbm", "logreg"):
            raise InputError(f"attack_model must be 'gbm' or 'logreg', got {attack_model!r}")
        self.attack_model: AttackModel = attack_model
        self.per_class = bool(per_class)
        self.seed = int(seed)
        population = shadows.population
        features = attack_features(shadows.log_probabilities(batch_size=batch_size), population.y)
        inside = shadows.membership.numpy()
        labels = np.broadcast_to(population.y.numpy(), inside.shape)
        rows, targets, classes = features.reshape(-1, features.shape[-1]), inside.reshape(-1), labels.reshape(-1)
        self.overall = _new_model(attack_model, self.seed).fit(rows, targets)
        self.models: dict[int, Any] = {}
        if self.per_class:
            for c in range(population.num_classes):
                chosen = classes == c
                n_in = int(targets[chosen].sum())
                if n_in >= min_rows and int(chosen.sum()) - n_in >= min_rows:
                    self.models[c] = _new_model(attack_model, self.seed).fit(rows[chosen], targets[chosen])

    @property
    def label(self) -> str:
        return f"shadow models ({self.attack_model}{', per class' if self.per_class else ''})"

    def details(self) -> dict[str, object]:
        return {
            "shadow_models": len(self.references),
            "attack_model": self.attack_model,
            "per_class_models": len(self.models),
        }

    def _infer(self, x: torch.Tensor, y: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        features = attack_features(log_probabilities(self.target, x, batch_size=self.batch_size), y)
        scores = np.zeros(x.shape[0], dtype=np.float64)
        labels = y.numpy()
        assigned = np.zeros(x.shape[0], dtype=bool)
        for c, model in self.models.items():
            chosen = labels == c
            if chosen.any():
                scores[chosen] = model.decision_function(features[chosen])
                assigned |= chosen
        if not assigned.all():
            scores[~assigned] = self.overall.decision_function(features[~assigned])
        return torch.from_numpy(scores)
