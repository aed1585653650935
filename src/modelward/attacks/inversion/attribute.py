"""Attribute inference on tabular models: does the model's output give away a record's sensitive column?

The attacker knows a victim's record except one sensitive column, knows the record's label, and
can see the target model's output. The question that matters is not whether the column can be
guessed (other columns often imply it) but whether the *model* helps guess it. So every result
sets the attack beside a baseline trained on the same attacker data without the model: imputation
from the known columns and the label (Jayaraman and Evans, 2022, show attacks that skip this
baseline mostly measure imputation). The sensitive value is binarised at ``threshold`` (by default
the median of the attacker's data), and both are scored by accuracy and ROC AUC on the victims.

Two attacks:

- ``"scores"``: an attack model (logistic regression) learns the binarised column from the known
  columns, the label and the target's output on the record, trained on the attacker's own records
  (whose outputs it queries). With labels only, the output is the predicted label and whether it
  matches the true one.
- ``"grid"``: model-inversion attribute inference (Fredrikson et al., 2014; Mehnaz et al., 2022):
  for each victim the sensitive value is replaced by ``grid_size`` candidates (quantiles of the
  attacker's data, equally likely a priori), and the target's probability of the known label (with
  labels only: whether the label is reproduced) is the likelihood. The posterior combines it with
  the baseline's imputation as prior, so the model's evidence is added to, not substituted for,
  what the other columns tell.

Queries are counted by the target: ``attacker records + victims`` for ``scores``, ``victims ×
grid_size`` for ``grid``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from modelward.classifiers.base import Capability, Classifier
from modelward.core.errors import InputError

Method = Literal["scores", "grid"]


@dataclass(frozen=True)
class AttributeInferenceResult:
    """Accuracy and AUC of inferring the binarised sensitive column, with the model and without it.

    ``majority_accuracy`` is the accuracy of always guessing the attacker data's majority value;
    ``positive_rate`` the share of victims whose value lies above ``threshold``.
    """

    column: int
    known_columns: list[int]
    method: str
    output: str
    threshold: float
    victims: int
    attacker_records: int
    positive_rate: float
    attack_accuracy: float
    attack_auc: float
    baseline_accuracy: float
    baseline_auc: float
    majority_accuracy: float
    queries: int
    seconds: float

    @property
    def advantage(self) -> float:
        """Accuracy the model adds over the baseline (attack minus baseline)."""
        return self.attack_accuracy - self.baseline_accuracy

    @property
    def auc_advantage(self) -> float:
        """ROC AUC the model adds over the baseline."""
        return self.attack_auc - self.baseline_auc

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "column": self.column,
            "known_columns": self.known_columns,
            "method": self.method,
            "output": self.output,
            "threshold": self.threshold,
            "victims": self.victims,
            "attacker_records": self.attacker_records,
            "positive_rate": self.positive_rate,
            "attack_accuracy": self.attack_accuracy,
            "attack_auc": self.attack_auc,
            "baseline_accuracy": self.baseline_accuracy,
            "baseline_auc": self.baseline_auc,
            "majority_accuracy": self.majority_accuracy,
            "advantage": self.advantage,
            "auc_advantage": self.auc_advantage,
            "queries": self.queries,
            "seconds": self.seconds,
        }


class AttributeInference:
    """Infer one sensitive column of tabular records from a target model's outputs (see the module docstring).

    ``column`` indexes the feature axis of ``(N, D)`` records; ``known_columns`` are the other
    columns the attacker knows (default: all of them; a partial view suits the ``scores`` method,
    where the target's output on the full record is observed); ``output`` chooses scores or labels
    (``"auto"``: scores when offered); ``regularisation`` is the inverse strength ``C`` of the
    logistic regressions (attack model and baseline alike).
    """

    def __init__(
        self,
        column: int,
        *,
        method: Method = "scores",
        threshold: float | None = None,
        grid_size: int = 16,
        known_columns: Sequence[int] | None = None,
        output: Literal["auto", "scores", "labels"] = "auto",
        regularisation: float = 1.0,
        seed: int = 0,
    ) -> None:
        if not isinstance(column, int) or isinstance(column, bool) or column < 0:
            raise InputError(f"column must be a non-negative integer, got {column!r}")
        if method not in ("scores", "grid"):
            raise InputError(f"method must be 'scores' or 'grid', got {method!r}")
        if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
            raise InputError(f"threshold must be a finite number, got {threshold!r}")
        if not isinstance(grid_size, int) or isinstance(grid_size, bool) or grid_size < 2:
            raise InputError(f"grid_size must be an integer of at least 2, got {grid_size!r}")
        if output not in ("auto", "scores", "labels"):
            raise InputError(f"output must be 'auto', 'scores' or 'labels', got {output!r}")
        if not (isinstance(regularisation, (int, float)) and math.isfinite(regularisation) and regularisation > 0):
            raise InputError(f"regularisation must be a positive number, got {regularisation!r}")
        known = None if known_columns is None else sorted({int(c) for c in known_columns})
        if known is not None:
            if column in known or any(c < 0 for c in known):
                raise InputError("known_columns must be non-negative column indices other than the sensitive column")
            if method == "grid":
                raise InputError("the grid method queries complete records: it needs every other column known")
        self.column = column
        self.known_columns = known
        self.method: Method = method
        self.threshold = None if threshold is None else float(threshold)
        self.grid_size = grid_size
        self.output = output
        self.regularisation = float(regularisation)
        self.seed = seed

    def infer(
        self,
        target: Classifier,
        attacker_x: torch.Tensor,
        attacker_y: torch.Tensor,
        victim_x: torch.Tensor,
        victim_y: torch.Tensor,
    ) -> AttributeInferenceResult:
        """Infer the binarised sensitive column of every victim, and score it against the baseline.

        ``attacker_x``/``attacker_y`` are records the attacker holds in full (same population, not
        the victims). ``victim_x`` holds the victims' full records: its sensitive column is used
        only as ground truth, and by the ``scores`` attack only through the target's output on the
        real record (the output the attacker is assumed to observe); the ``grid`` attack never
        sends it. ``victim_y`` are the victims' labels, which the attacker knows.
        """
        started = time.perf_counter()
        output = self._resolve_output(target)
        attacker_x, attacker_y = self._check_records(attacker_x, attacker_y, target, "attacker")
        victim_x, victim_y = self._check_records(victim_x, victim_y, target, "victim")
        column = attacker_x[:, self.column]
        threshold = float(column.median()) if self.threshold is None else self.threshold
        attacker_a = (column > threshold).numpy().astype(np.int64)
        victim_a = (victim_x[:, self.column] > threshold).numpy().astype(np.int64)
        if len(np.unique(attacker_a)) < 2:
            raise InputError(f"the attacker's records all fall on one side of the threshold {threshold:.4g}")
        before = target.queries
        known_attacker = self._known(attacker_x, attacker_y, target.num_classes)
        known_victim = self._known(victim_x, victim_y, target.num_classes)
        baseline = self._logistic().fit(known_attacker, attacker_a)
        baseline_p = baseline.predict_proba(known_victim)[:, 1]
        if self.method == "scores":
            attack_features = np.hstack([known_attacker, self._output_features(target, attacker_x, attacker_y, output)])
            victim_features = np.hstack([known_victim, self._output_features(target, victim_x, victim_y, output)])
            attack_p = self._logistic().fit(attack_features, attacker_a).predict_proba(victim_features)[:, 1]
        else:
            attack_p = self._grid_posterior(target, attacker_x, victim_x, victim_y, threshold, baseline_p, output)
        majority = int(attacker_a.mean() >= 0.5)
        return AttributeInferenceResult(
            column=self.column,
            known_columns=self._known_columns(victim_x.shape[1]),
            method=self.method,
            output=output,
            threshold=threshold,
            victims=int(victim_x.shape[0]),
            attacker_records=int(attacker_x.shape[0]),
            positive_rate=float(victim_a.mean()),
            attack_accuracy=float(((attack_p >= 0.5) == victim_a).mean()),
            attack_auc=_auc(victim_a, attack_p),
            baseline_accuracy=float(((baseline_p >= 0.5) == victim_a).mean()),
            baseline_auc=_auc(victim_a, baseline_p),
            majority_accuracy=float((victim_a == majority).mean()),
            queries=target.queries - before,
            seconds=time.perf_counter() - started,
        )

    # ----------------------------------------------------------------------------------------
    def _resolve_output(self, target: Classifier) -> Literal["scores", "labels"]:
        if self.output == "scores":
            target.require(Capability.SCORES, by="score-based attribute inference")
            return "scores"
        if self.output == "labels":
            return "labels"
        return "scores" if Capability.SCORES in target.capabilities else "labels"

    def _check_records(
        self, x: torch.Tensor, y: torch.Tensor, target: Classifier, who: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        spec = target.input_spec
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or (x.shape[1],) != spec.shape:
            raise InputError(f"{who} records must be a tensor of shape (N, {spec.shape[0]}) for this target")
        if x.shape[0] < 2:
            raise InputError(f"{who} records must hold at least 2 rows")
        if max(self.column, *(self.known_columns or [0])) >= x.shape[1]:
            raise InputError(f"column indices must be below the records' {x.shape[1]} columns")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise InputError(f"{who} labels must be a vector of {x.shape[0]} class indices")
        y = y.to(torch.long)
        if bool((y < 0).any()) or bool((y >= target.num_classes).any()):
            raise InputError(f"{who} labels must be class indices in [0, {target.num_classes})")
        x = x.detach().to(torch.float32)
        if not bool(torch.isfinite(x).all()):
            raise InputError(f"{who} records contain NaN or infinite values")
        return x, y

    def _known_columns(self, width: int) -> list[int]:
        if self.known_columns is not None:
            return list(self.known_columns)
        return [i for i in range(width) if i != self.column]

    def _known(self, x: torch.Tensor, y: torch.Tensor, classes: int) -> np.ndarray:
        """What the attacker knows without the model: the known columns and the one-hot label."""
        keep = self._known_columns(x.shape[1])
        return np.hstack([x[:, keep].numpy(), F.one_hot(y, classes).numpy()]).astype(np.float64)

    def _output_features(
        self, target: Classifier, x: torch.Tensor, y: torch.Tensor, output: Literal["scores", "labels"]
    ) -> np.ndarray:
        """The target's output on the records as attack features: log-scores and the log-score of the true label."""
        if output == "scores":
            log_p = target.probabilities(x).clamp_min(1e-6).log()
            confidence = log_p.gather(1, y.view(-1, 1))
            return torch.cat([log_p, confidence], dim=1).numpy().astype(np.float64)
        predicted = target.predict(x)
        agree = (predicted == y).to(torch.float32).view(-1, 1)
        return torch.cat([F.one_hot(predicted, target.num_classes).to(torch.float32), agree], dim=1).numpy()

    def _grid_posterior(
        self,
        target: Classifier,
        attacker_x: torch.Tensor,
        victim_x: torch.Tensor,
        victim_y: torch.Tensor,
        threshold: float,
        prior: np.ndarray,
        output: Literal["scores", "labels"],
    ) -> np.ndarray:
        """``P(value > threshold | known columns, label, model)`` from candidate values and the imputation prior."""
        spec = target.input_spec
        levels = (torch.arange(self.grid_size, dtype=torch.float64) + 0.5) / self.grid_size
        candidates = torch.quantile(attacker_x[:, self.column].to(torch.float64), levels).to(torch.float32)
        candidates = candidates.clamp(spec.lower, spec.upper)
        above = candidates > threshold
        if bool(above.all()) or not bool(above.any()):
            raise InputError("the candidate grid does not straddle the threshold; choose another threshold")
        n, g = victim_x.shape[0], self.grid_size
        probes = victim_x.repeat_interleave(g, dim=0)
        probes[:, self.column] = candidates.repeat(n)
        labels = victim_y.repeat_interleave(g)
        if output == "scores":
            likelihood = target.probabilities(probes).gather(1, labels.view(-1, 1)).flatten()
        else:
            likelihood = (target.predict(probes) == labels).to(torch.float32)
        smoothed = (likelihood.view(n, g).to(torch.float64) + 1e-3).numpy()  # no zero likelihood
        mask = above.numpy()
        high, low = smoothed[:, mask].mean(axis=1), smoothed[:, ~mask].mean(axis=1)
        prior = np.clip(prior, 1e-6, 1 - 1e-6)
        return np.asarray(prior * high / (prior * high + (1 - prior) * low))

    def _logistic(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            StandardScaler(), LogisticRegression(C=self.regularisation, max_iter=2000, random_state=self.seed)
        )


def _auc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC with scikit-learn; NaN when the victims hold only one value."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(truth)) < 2:
        return float("nan")
    return float(roc_auc_score(truth, scores))
