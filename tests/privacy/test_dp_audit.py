"""One-run DP audit (Steinke, Nasr, Jagielski 2023): the bound's statistics, and audits of real training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom
from torch import nn

from modelward.classifiers.models import MLP
from modelward.classifiers.sklearn_adapter import SklearnClassifier
from modelward.classifiers.training import train_classifier
from modelward.core.errors import InputError
from modelward.datasets.builtin import Split, load_breast_cancer_table
from modelward.defenses.dp import DPTrainingResult, train_dp
from modelward.privacy.dp_audit import (
    DPAuditResult,
    audit_dp,
    audit_p_value,
    canary_scores,
    epsilon_lower_bound,
    mislabeled_canaries,
    noise_canaries,
)


# --------------------------------------------------------------------------------------------
# the bound
# --------------------------------------------------------------------------------------------
def test_all_correct_pure_bound_has_the_closed_form() -> None:
    # P[Bin(r, q) >= r] = q^r = beta  =>  q = beta^(1/r), eps = log(q / (1 - q))
    for r in (10, 40, 200):
        q = 0.05 ** (1 / r)
        assert epsilon_lower_bound(1000, r, r, confidence=0.95) == pytest.approx(math.log(q / (1 - q)), abs=1e-5)


def test_p_value_is_the_binomial_tail_plus_the_delta_term() -> None:
    m, r, v, eps, delta = 500, 60, 45, 0.8, 1e-4
    q = math.exp(eps) / (1 + math.exp(eps))
    tail = binom.sf(v - 1, r, q)
    assert audit_p_value(m, r, v, eps) == pytest.approx(tail, rel=1e-12)
    alpha = max(sum(binom.pmf(v - j, r, q) for j in range(1, i + 1)) / i for i in range(1, v + 1))
    assert audit_p_value(m, r, v, eps, delta) == pytest.approx(tail + 2 * m * delta * alpha, rel=1e-9)
    at_bound = epsilon_lower_bound(m, r, v, delta=delta)
    assert audit_p_value(m, r, v, at_bound, delta) <= 0.05 <= audit_p_value(m, r, v, at_bound + 1e-3, delta)


def test_bound_orders() -> None:
    assert epsilon_lower_bound(1000, 100, 50) == 0.0  # chance level proves nothing
    assert epsilon_lower_bound(1000, 100, 0) == 0.0
    assert (
        0 < epsilon_lower_bound(1000, 100, 70) < epsilon_lower_bound(1000, 100, 80) < epsilon_lower_bound(1000, 100, 95)
    )
    assert epsilon_lower_bound(1000, 100, 80, delta=1e-5) < epsilon_lower_bound(1000, 100, 80)
    assert epsilon_lower_bound(1000, 100, 80, confidence=0.99) < epsilon_lower_bound(1000, 100, 80, confidence=0.9)
    assert epsilon_lower_bound(100, 20, 20) < epsilon_lower_bound(1000, 200, 200)  # more guesses, more evidence


def test_bound_is_valid_on_randomised_response() -> None:
    """Guesses as good as eps0-randomised response: the 95% bound may exceed eps0 in at most ~5% of trials."""
    eps0, r, trials = 1.0, 100, 400
    q = math.exp(eps0) / (1 + math.exp(eps0))
    correct = np.random.default_rng(0).binomial(r, q, size=trials)
    over = sum(epsilon_lower_bound(r, r, int(v), tolerance=1e-4) > eps0 for v in correct)
    assert over / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
    assert np.mean([epsilon_lower_bound(r, r, int(v), tolerance=1e-4) for v in correct]) > 0.2  # and not vacuous


def test_bad_counts_are_input_errors() -> None:
    with pytest.raises(InputError):
        epsilon_lower_bound(10, 20, 5)
    with pytest.raises(InputError):
        epsilon_lower_bound(100, 20, 21)
    with pytest.raises(InputError):
        epsilon_lower_bound(100, 20, 10, confidence=1.0)
    with pytest.raises(InputError):
        audit_p_value(100, 20, 10, -1.0)


# --------------------------------------------------------------------------------------------
# canaries and scores
# --------------------------------------------------------------------------------------------
def test_canaries_have_wrong_or_random_labels() -> None:
    x, y = torch.rand(50, 4), torch.randint(0, 3, (50,))
    cx, cy = mislabeled_canaries(x, y, 20, 3, seed=1)
    rows = [int(torch.nonzero((x == row).all(dim=1))[0]) for row in cx]
    assert len(set(rows)) == 20 and bool((cy != y[rows]).all())
    nx, ny = noise_canaries((1, 8, 8), 30, 10, bounds=(0.0, 1.0), seed=2)
    assert nx.shape == (30, 1, 8, 8) and float(nx.min()) >= 0 and float(nx.max()) <= 1 and int(ny.max()) < 10
    with pytest.raises(InputError):
        mislabeled_canaries(x, y, 51, 3)


def test_scores_rank_the_canary_label_by_confidence() -> None:
    module = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        module.weight.copy_(torch.eye(3, 2) * 5)
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    loss = canary_scores(module, x, y, "loss")
    margin = canary_scores(module, x, y, "margin")
    assert loss[0] > loss[1] and loss[2] > loss[1]
    assert margin[0] == pytest.approx(5.0) and margin[1] == pytest.approx(-5.0)
    with pytest.raises(InputError):
        canary_scores(module, x, y, "entropy")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# audits of real training
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def table() -> Split:
    return load_breast_cancer_table(seed=0)


@pytest.fixture(scope="module")
def canaries(table: Split) -> tuple[torch.Tensor, torch.Tensor]:
    return mislabeled_canaries(table.x_test, table.y_test, 100, 2, seed=1)


def _memorising(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    return train_classifier(MLP(30, 2, hidden=128), x, y, epochs=100, batch_size=64, lr=3e-3)


def _private(x: torch.Tensor, y: torch.Tensor) -> DPTrainingResult:
    torch.manual_seed(0)
    return train_dp(MLP(30, 2, hidden=128), x, y, target_epsilon=2.0, epochs=10, batch_size=64, lr=1e-2, seed=0)


def test_audit_detects_a_model_that_memorises_canaries(
    table: Split, canaries: tuple[torch.Tensor, torch.Tensor]
) -> None:
    result = audit_dp(_memorising, table.x_train, table.y_train, *canaries, k_plus=20, k_minus=20, seed=0)
    assert isinstance(result, DPAuditResult)
    assert result.guesses == 40 and result.canaries == 100
    assert result.precision > 0.85
    assert result.epsilon_lower_bound > 1.0
    assert result.epsilon_upper_bound_from_accountant is None and result.consistent is None and result.delta == 0.0
    assert result.epsilon_lower_bound == epsilon_lower_bound(100, 40, result.correct)
    assert 30 <= int(result.included.sum()) <= 70  # each canary in with probability 1/2


def test_audit_of_dp_training_stays_below_the_accountant(
    table: Split, canaries: tuple[torch.Tensor, torch.Tensor]
) -> None:
    result = audit_dp(_private, table.x_train, table.y_train, *canaries, k_plus=20, k_minus=20, seed=0)
    upper = result.epsilon_upper_bound_from_accountant
    assert upper is not None and 0 < upper <= 2.0
    assert result.delta > 0  # the audit is stated at the training's delta
    assert result.epsilon_lower_bound <= upper and result.consistent
    assert result.precision < 0.85  # DP stops the memorisation the plain model shows


def test_audit_counts_guesses_against_the_coin_flips(table: Split, canaries: tuple[torch.Tensor, torch.Tensor]) -> None:
    seen: dict[str, torch.Tensor] = {}

    def oracle(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
        seen["x"] = x
        return _memorising(x, y)

    result = audit_dp(oracle, table.x_train, table.y_train, *canaries, k_plus=10, k_minus=0, seed=3)
    assert seen["x"].shape[0] == table.x_train.shape[0] + int(result.included.sum())
    top = torch.argsort(result.scores, descending=True)[:10]
    assert result.correct == int(result.included[top].sum())


def test_audit_takes_a_black_box_classifier(table: Split, canaries: tuple[torch.Tensor, torch.Tensor]) -> None:
    from sklearn.tree import DecisionTreeClassifier

    def tree(x: torch.Tensor, y: torch.Tensor) -> SklearnClassifier:
        fitted = DecisionTreeClassifier(random_state=0).fit(x.numpy(), y.numpy())  # memorises everything
        return SklearnClassifier(fitted, bounds=(table.lower, table.upper))

    result = audit_dp(tree, table.x_train, table.y_train, *canaries, k_plus=20, k_minus=20, score="margin")
    assert result.precision > 0.85 and result.epsilon_lower_bound > 1.0


def test_audit_rejects_bad_arguments(table: Split, canaries: tuple[torch.Tensor, torch.Tensor]) -> None:
    cx, cy = canaries
    with pytest.raises(InputError):
        audit_dp(_memorising, table.x_train, table.y_train, cx, cy, k_plus=60, k_minus=60)
    with pytest.raises(InputError):
        audit_dp(_memorising, table.x_train, table.y_train, cx, cy, k_plus=0, k_minus=0)
    with pytest.raises(InputError):
        audit_dp(_memorising, table.x_train, table.y_train, cx[:, :5], cy, k_plus=5, k_minus=5)
    with pytest.raises(InputError):
        audit_dp(_memorising, table.x_train, table.y_train, cx, cy[:10], k_plus=5, k_minus=5)
