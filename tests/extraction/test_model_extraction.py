"""Model extraction: fidelity grows with queries, query accounting is exact, budgets stop runs cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
import torch
from extraction_helpers import DigitsTarget, HiddenBudget, LabelsOnly, ScoresOnly, trained_digits_target
from torch import nn

from modelward.attacks.extraction import STRATEGIES, ModelExtraction, geometric_schedule
from modelward.classifiers.base import MissingCapabilityError, QueryBudgetExceeded
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.remote import RemoteClassifier
from modelward.classifiers.serve_local import LocalServer
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.core.errors import InputError

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits_target() -> DigitsTarget:
    return trained_digits_target()


def surrogate() -> nn.Module:
    return SmallCNN(width=8)


def attack(strategy: str, checkpoints: list[int], **options: object) -> ModelExtraction:
    """The attack with short training (tests check behaviour, not peak fidelity)."""
    settings: dict[str, object] = {"epochs": 10, "min_steps": 100, **options}
    return ModelExtraction(strategy, surrogate, checkpoints[-1], seed=0, checkpoints=checkpoints, **settings)  # type: ignore[arg-type]


def seed_for(strategy: str, target: DigitsTarget) -> torch.Tensor | None:
    """The attacker's data per strategy: none for random, a 40-digit seed for jacobian, the pool otherwise."""
    if strategy == "random":
        return None
    if strategy == "jacobian":
        return target.pool[:40]
    return target.pool


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fidelity_rises_with_the_query_budget(digits_target: DigitsTarget, strategy: str) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    # Jacobian augmentation is Papernot et al.'s label-only attack: it doubles its set, retraining in
    # between; uniform noise teaches less per query than digits do, so it gets a larger budget
    checkpoints = {"random": [50, 1000], "jacobian": [40, 80, 160, 320, 640]}.get(strategy, [40, 400])
    output = "labels" if strategy == "jacobian" else "scores"
    result = attack(strategy, checkpoints, epochs=20, min_steps=300, output=output).extract(
        target, seed_for(strategy, digits_target), digits_target.test_x, digits_target.test_y
    )
    assert [p.queries for p in result.curve] == checkpoints
    low, high = result.curve[0], result.curve[-1]
    assert high.fidelity > low.fidelity + 0.03, result.curve
    assert result.fidelity == high.fidelity and result.accuracy == high.accuracy
    assert result.stop_reason is None and result.queries == checkpoints[-1]
    # every query is accounted: attack queries plus one evaluation pass over the test inputs
    assert result.evaluation_queries == digits_target.test_x.shape[0]
    assert target.queries == result.queries + result.evaluation_queries
    assert result.output == output and result.inputs.shape == (checkpoints[-1], *SHAPE)
    assert result.answers.shape == ((checkpoints[-1], 10) if output == "scores" else (checkpoints[-1],))
    assert float(result.inputs.min()) >= 0.0 and float(result.inputs.max()) <= 1.0
    if strategy in ("natural", "knockoff"):
        assert result.fidelity >= 0.9
    # fidelity is measured against the target's own labels
    with torch.no_grad():
        agree = result.surrogate(digits_target.test_x).argmax(1) == digits_target.module(digits_target.test_x).argmax(1)
    assert float(agree.float().mean()) == pytest.approx(result.fidelity)


def test_label_only_target_trains_on_hard_labels(digits_target: DigitsTarget) -> None:
    target = LabelsOnly(digits_target.module, SHAPE)
    result = attack("natural", [100, 300]).extract(
        target, digits_target.pool, digits_target.test_x, digits_target.test_y
    )
    assert result.output == "labels"
    assert result.answers.dtype == torch.long and result.answers.shape == (300,)
    assert result.fidelity >= 0.85
    assert target.queries == 300 + result.evaluation_queries
    with pytest.raises(MissingCapabilityError, match="scores"):
        attack("natural", [100], output="scores").extract(
            target, digits_target.pool, digits_target.test_x, digits_target.test_y
        )


def test_scores_can_be_ignored_for_a_label_only_attack(digits_target: DigitsTarget) -> None:
    target = ScoresOnly(digits_target.module, SHAPE)
    result = attack("random", [50], output="labels").extract(target, None, digits_target.test_x, digits_target.test_y)
    assert result.output == "labels" and result.answers.dtype == torch.long


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_target_budget_stops_the_run_cleanly_and_is_never_exceeded(digits_target: DigitsTarget, strategy: str) -> None:
    target = TorchClassifier(digits_target.module, SHAPE, query_budget=330)
    labels = digits_target.module(digits_target.test_x).argmax(1)
    result = attack(strategy, [100, 1000]).extract(
        target, seed_for(strategy, digits_target), digits_target.test_x, digits_target.test_y, target_test_labels=labels
    )
    assert result.evaluation_queries == 0
    assert result.queries == target.queries == 330
    assert result.stopped_early and "330" in (result.stop_reason or "")
    assert [p.queries for p in result.curve] == [100, 330]
    assert result.inputs.shape[0] == 330


def test_a_refusal_from_the_target_is_reported_not_swallowed(digits_target: DigitsTarget) -> None:
    target = HiddenBudget(digits_target.module, SHAPE, limit=150)
    labels = digits_target.module(digits_target.test_x).argmax(1)
    result = attack("natural", [100, 400], query_batch=64).extract(
        target, digits_target.pool, digits_target.test_x, digits_target.test_y, target_test_labels=labels
    )
    assert result.stop_reason is not None and "refused" in result.stop_reason
    assert result.queries == target.queries < 400
    assert result.curve[-1].queries == result.queries


def test_a_spent_target_raises_instead_of_returning_an_empty_copy(digits_target: DigitsTarget) -> None:
    target = TorchClassifier(digits_target.module, SHAPE, query_budget=10)
    target.predict(digits_target.test_x[:10])
    labels = digits_target.module(digits_target.test_x).argmax(1)
    with pytest.raises(QueryBudgetExceeded):
        attack("random", [50]).extract(
            target, None, digits_target.test_x, digits_target.test_y, target_test_labels=labels
        )


def test_a_small_pool_ends_the_run_and_says_so(digits_target: DigitsTarget) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    result = attack("natural", [50, 200]).extract(
        target, digits_target.pool[:120], digits_target.test_x, digits_target.test_y
    )
    assert result.queries == 120 and [p.queries for p in result.curve] == [50, 120]
    assert "pool" in (result.stop_reason or "")


@pytest.mark.parametrize("output", ["scores", "labels"])
def test_extraction_through_a_real_http_endpoint(
    digits_target: DigitsTarget, output: Literal["scores", "labels"]
) -> None:
    local = TorchClassifier(digits_target.module, SHAPE)
    labels = digits_target.module(digits_target.test_x).argmax(1)
    with LocalServer(local, output=output) as server:
        remote = RemoteClassifier(
            server.url,
            output=output,
            input_shape=SHAPE,
            bounds=(0.0, 1.0),
            num_classes=10,
            batch_size=64,
        )
        result = attack("knockoff", [60, 180]).extract(
            remote, digits_target.pool, digits_target.test_x, digits_target.test_y, target_test_labels=labels
        )
    assert result.output == output
    assert result.queries == remote.queries == server.inputs == local.queries == 180
    assert result.fidelity >= 0.75


def test_knockoff_bandit_learns_to_avoid_an_uninformative_group(digits_target: DigitsTarget) -> None:
    blanks = torch.zeros(500, *SHAPE)
    pool = torch.cat([blanks, digits_target.pool])
    groups = torch.cat([torch.zeros(500, dtype=torch.long), 1 + torch.arange(digits_target.pool.shape[0]) % 4])
    target = TorchClassifier(digits_target.module, SHAPE)
    result = attack("knockoff", [100, 300]).extract(
        target, pool, digits_target.test_x, digits_target.test_y, pool_groups=groups
    )
    counts = result.details["knockoff_group_queries"]
    assert sum(counts) == 300
    # uniform sampling over the pool would spend half the budget on blanks, uniform over groups a fifth
    assert counts[0] < 0.5 * 300 / 5, counts
    assert result.details["knockoff_policy"][0] < 0.2


def test_jacobian_augmentation_steps_lambda_from_labelled_points(digits_target: DigitsTarget) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    seed = digits_target.pool[:30]
    result = attack("jacobian", [30, 60, 120], jacobian_step=0.1).extract(
        target, seed, digits_target.test_x, digits_target.test_y
    )
    inputs = result.inputs.flatten(1)
    assert torch.equal(inputs[:30].sort(0).values, seed.flatten(1).sort(0).values)
    for i in range(30, 120):
        # every new point is one signed step of λ (clipped to bounds) away from an earlier point
        distance = (inputs[:i] - inputs[i]).abs().amax(dim=1).min()
        assert float(distance) <= 0.1 + 1e-6
    assert float(result.inputs.min()) >= 0.0 and float(result.inputs.max()) <= 1.0
    assert not torch.equal(inputs[30:60], inputs[:30])


def test_plot_and_summary(digits_target: DigitsTarget, tmp_path: Path) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    result = attack("natural", [30, 60]).extract(target, digits_target.pool, digits_target.test_x, digits_target.test_y)
    path = result.plot(tmp_path / "extraction.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = result.summary()
    assert summary["queries"] == 60 and len(summary["curve"]) == 2


def test_geometric_schedule_doubles_up_to_the_budget() -> None:
    assert geometric_schedule(3000, 4) == [375, 750, 1500, 3000]
    assert geometric_schedule(5, 4) == [1, 2, 3, 5]
    assert geometric_schedule(100, 1) == [100]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strategy": "copycat"}, "unknown extraction strategy"),
        ({"budget": 0}, "budget"),
        ({"rounds": 0}, "rounds"),
        ({"checkpoints": [100, 50, 200]}, "increasing"),
        ({"checkpoints": [50, 100]}, "last checkpoint"),
        ({"lr": -1.0}, "lr"),
        ({"output": "logits"}, "output"),
        ({"surrogate_factory": 3}, "surrogate_factory"),
    ],
)
def test_bad_parameters_are_input_errors(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"strategy": "natural", "surrogate_factory": surrogate, "budget": 200}
    arguments.update(options)
    with pytest.raises(InputError, match=message):
        ModelExtraction(**arguments)  # type: ignore[arg-type]


def test_bad_data_are_input_errors(digits_target: DigitsTarget) -> None:
    target = TorchClassifier(digits_target.module, SHAPE)
    x, y = digits_target.test_x, digits_target.test_y
    natural = attack("natural", [50])
    with pytest.raises(InputError, match="needs seed_data"):
        natural.extract(target, None, x, y)
    with pytest.raises(InputError, match="shape"):
        natural.extract(target, torch.rand(10, 64), x, y)
    with pytest.raises(InputError, match="bounds"):
        natural.extract(target, torch.full((10, *SHAPE), 2.0), x, y)
    with pytest.raises(InputError, match="test_y"):
        natural.extract(target, digits_target.pool, x, y[:-1])
    with pytest.raises(InputError, match="pool_groups"):
        attack("knockoff", [50]).extract(target, digits_target.pool, x, y, pool_groups=torch.zeros(3, dtype=torch.long))
    wrong = ModelExtraction("random", lambda: SmallCNN(width=8, num_classes=3), 20, checkpoints=[20])
    with pytest.raises(InputError, match="logits of shape"):
        wrong.extract(target, None, x, y)
    assert target.queries <= 2 * x.shape[0] + 20  # nothing beyond the evaluation pass and one stage was sent
