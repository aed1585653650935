"""Attribute inference on the breast-cancer table: the attack is always reported beside a no-model baseline."""

from __future__ import annotations

import pytest
import torch
from extraction_helpers import trained_cancer_model
from torch import nn

from modelward.attacks.inversion import AttributeInference
from modelward.classifiers.base import Capability, Classifier, InputSpec, MissingCapabilityError
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.core.errors import InputError
from modelward.datasets.builtin import Split

Cancer = tuple[Split, nn.Module]
WORST_AREA = 23
PARTIAL = [1, 4, 8, 9]  # texture, smoothness, symmetry, fractal dimension: what the attacker knows


@pytest.fixture(scope="module")
def cancer() -> Cancer:
    return trained_cancer_model()


class TableLabels(Classifier):
    """The tabular model seen through labels only."""

    def __init__(self, module: nn.Module, split: Split) -> None:
        super().__init__(InputSpec((30,), split.lower, split.upper), 2, {Capability.LABELS})
        self.module = module

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.module(x)
        return logits.argmax(dim=1)


def target_of(cancer: Cancer) -> TorchClassifier:
    split, module = cancer
    return TorchClassifier(module, (30,), bounds=(split.lower, split.upper))


def run(cancer: Cancer, target: Classifier, **options: object) -> object:
    split, _ = cancer
    return AttributeInference(WORST_AREA, **options).infer(  # type: ignore[arg-type]
        target, split.x_test, split.y_test, split.x_train, split.y_train
    )


def test_scores_attack_reports_attack_and_baseline(cancer: Cancer) -> None:
    split, _ = cancer
    target = target_of(cancer)
    result = AttributeInference(WORST_AREA).infer(target, split.x_test, split.y_test, split.x_train, split.y_train)
    assert result.method == "scores" and result.output == "scores"
    assert result.victims == split.x_train.shape[0] and result.attacker_records == split.x_test.shape[0]
    assert result.queries == target.queries == split.x_train.shape[0] + split.x_test.shape[0]
    for value in (result.attack_accuracy, result.attack_auc, result.baseline_accuracy, result.baseline_auc):
        assert 0.5 < value <= 1.0
    assert result.advantage == pytest.approx(result.attack_accuracy - result.baseline_accuracy)
    assert result.auc_advantage == pytest.approx(result.attack_auc - result.baseline_auc)
    # the median split of the attacker's data is balanced; the other columns predict it well
    assert 0.3 < result.positive_rate < 0.7 and result.baseline_accuracy > result.majority_accuracy + 0.2
    assert result.known_columns == [c for c in range(30) if c != WORST_AREA]
    summary = result.summary()
    assert summary["advantage"] == result.advantage and summary["baseline_auc"] == result.baseline_auc


def test_the_models_output_helps_an_attacker_who_knows_few_columns(cancer: Cancer) -> None:
    split, _ = cancer
    result = AttributeInference(WORST_AREA, known_columns=PARTIAL).infer(
        target_of(cancer), split.x_test, split.y_test, split.x_train, split.y_train
    )
    assert result.known_columns == PARTIAL
    assert result.attack_auc > result.baseline_auc + 0.02
    assert result.attack_accuracy > result.baseline_accuracy


def test_grid_attack_queries_every_candidate_and_never_the_true_value(cancer: Cancer) -> None:
    split, module = cancer
    sent: list[torch.Tensor] = []

    class Recording(TorchClassifier):
        def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
            sent.append(x.clone())
            return super()._probabilities(x)

    target = Recording(module, (30,), bounds=(split.lower, split.upper))
    result = AttributeInference(WORST_AREA, method="grid", grid_size=8).infer(
        target, split.x_test, split.y_test, split.x_train, split.y_train
    )
    assert result.queries == target.queries == 8 * split.x_train.shape[0]
    probes = torch.cat(sent)
    assert len(set(probes[:, WORST_AREA].tolist())) <= 8
    assert torch.equal(probes[:8, :WORST_AREA], split.x_train[:1, :WORST_AREA].expand(8, -1))
    assert result.attack_accuracy >= result.majority_accuracy


def test_label_only_targets(cancer: Cancer) -> None:
    split, module = cancer
    target = TableLabels(module, split)
    scores = run(cancer, target, known_columns=PARTIAL)
    grid = run(cancer, target, method="grid", grid_size=4)
    assert scores.output == "labels" and grid.output == "labels"  # type: ignore[attr-defined]
    assert 0.5 < scores.attack_accuracy <= 1.0  # type: ignore[attr-defined]
    with pytest.raises(MissingCapabilityError, match="scores"):
        run(cancer, target, output="scores")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"column": -1}, "column"),
        ({"method": "oracle"}, "method"),
        ({"grid_size": 1}, "grid_size"),
        ({"threshold": float("inf")}, "threshold"),
        ({"known_columns": [WORST_AREA]}, "known_columns"),
        ({"known_columns": [1, 2], "method": "grid"}, "every other column"),
        ({"regularisation": 0}, "regularisation"),
    ],
)
def test_bad_parameters_are_input_errors(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"column": WORST_AREA, **options}
    with pytest.raises(InputError, match=message):
        AttributeInference(**arguments)  # type: ignore[arg-type]


def test_bad_records_are_input_errors(cancer: Cancer) -> None:
    split, _ = cancer
    target = target_of(cancer)
    with pytest.raises(InputError, match="column indices"):
        AttributeInference(40).infer(target, split.x_test, split.y_test, split.x_train, split.y_train)
    with pytest.raises(InputError, match="shape"):
        AttributeInference(3).infer(target, split.x_test[:, :10], split.y_test, split.x_train, split.y_train)
    with pytest.raises(InputError, match="labels"):
        AttributeInference(3).infer(target, split.x_test, split.y_test[:-1], split.x_train, split.y_train)
    with pytest.raises(InputError, match="one side"):
        AttributeInference(3, threshold=1e9).infer(target, split.x_test, split.y_test, split.x_train, split.y_train)
    assert target.queries == 0
