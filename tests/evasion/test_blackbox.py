"""Black-box evasion attacks: Square (scores only) and HopSkipJump (labels only)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from modelward.attacks.evasion.base import AttackError, perturbation_norms
from modelward.attacks.evasion.hopskipjump import HopSkipJump
from modelward.attacks.evasion.square import Square, image_view, margin_loss, p_schedule, pseudo_gaussian
from modelward.classifiers.base import Capability, Classifier, InputSpec, MissingCapabilityError
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.training import accuracy, train_classifier
from modelward.datasets.builtin import load_breast_cancer_table, load_digits_images


class ScoresOnly(Classifier):
    """A torch model seen through its class probabilities and labels only: a score-based black box."""

    def __init__(self, module: nn.Module, input_shape: tuple[int, ...]) -> None:
        super().__init__(InputSpec(input_shape), 10, {Capability.SCORES, Capability.LABELS})
        self.module = module

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.module(x), dim=1)

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).argmax(dim=1)


class LabelsOnly(ScoresOnly):
    """The same model seen through its predicted labels only: a decision-based black box."""

    def __init__(self, module: nn.Module, input_shape: tuple[int, ...]) -> None:
        super().__init__(module, input_shape)
        self.capabilities = frozenset({Capability.LABELS})


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models run fastest on one thread, and the suite runs on two workers."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cnn(one_thread: None) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A SmallCNN trained on digits (≥ 95% clean) and 40 correctly classified test digits."""
    split = load_digits_images(seed=0)
    module = train_classifier(SmallCNN(width=16), split.x_train, split.y_train, epochs=15, seed=0)
    assert accuracy(module, split.x_test, split.y_test) >= 0.95
    with torch.no_grad():
        correct = module(split.x_test).argmax(dim=1) == split.y_test
    return module, split.x_test[correct][:40], split.y_test[correct][:40]


def predicted(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Labels straight from the module (outside any query counting)."""
    with torch.no_grad():
        return module(x).argmax(dim=1)


# --------------------------------------------------------------------------------------------
# Square
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("norm", "epsilon"), [("linf", 0.15), ("l2", 1.0)])
def test_square_breaks_the_cnn_with_exact_query_counts(
    cnn: tuple[nn.Module, torch.Tensor, torch.Tensor], norm: str, epsilon: float
) -> None:
    module, x, y = cnn
    clf = ScoresOnly(module, (1, 8, 8))
    budget = 300
    result = Square(clf, norm=norm, max_queries=budget, seed=0).perturb(x, y, epsilon)

    assert result.success_rate >= 0.75
    assert result.robust_accuracy <= 0.25
    # success is what the model says at the returned inputs; bounds and the epsilon ball hold
    assert torch.equal(result.success, predicted(module, result.adversarial) != y)
    assert float(result.adversarial.min()) >= 0.0 and float(result.adversarial.max()) <= 1.0
    norms = perturbation_norms(result.adversarial - x, norm)  # type: ignore[arg-type]
    assert float(norms.max()) <= epsilon * (1 + 1e-5)
    # exact accounting: every query is counted once, per sample, within the budget
    assert int(result.queries.sum()) == clf.queries
    assert int(result.queries.max()) <= budget
    assert bool((result.queries >= 2).all())  # clean prediction + initial point (all clean inputs are correct)
    # a sample that was not broken spent its whole budget; a broken one stopped early
    assert bool((~result.success).any())  # this epsilon leaves survivors, so the next line is tested
    assert bool((result.queries[~result.success] == budget).all())
    assert float(result.queries[result.success].float().mean()) < budget / 2


def test_square_stops_at_the_budget_and_is_seeded(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    clf = ScoresOnly(module, (1, 8, 8))
    first = Square(clf, max_queries=40, seed=3).perturb(x[:20], y[:20], 0.08)
    again = Square(clf, max_queries=40, seed=3).perturb(x[:20], y[:20], 0.08)
    other = Square(clf, max_queries=40, seed=4).perturb(x[:20], y[:20], 0.08)
    assert torch.equal(first.adversarial, again.adversarial) and torch.equal(first.queries, again.queries)
    assert not torch.equal(first.adversarial, other.adversarial)
    assert int(first.queries.max()) == 40  # some sample survives this small budget and spends it all
    assert bool((first.queries <= 40).all())


def test_square_targeted(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    clf = ScoresOnly(module, (1, 8, 8))
    targets = (y[:20] + 1) % 10
    result = Square(clf, max_queries=400, seed=0).perturb(x[:20], y[:20], 0.3, targets=targets)
    assert result.success_rate >= 0.7
    assert torch.equal(result.success, predicted(module, result.adversarial) == targets)


def test_square_on_a_scikit_learn_table_model() -> None:
    """Flat inputs (F,) are attacked as a 1 × F strip; the model is an sklearn pipeline with scores only."""
    from sklearn.linear_model import LogisticRegression

    from modelward.classifiers.sklearn_adapter import SklearnClassifier

    split = load_breast_cancer_table(seed=0)
    model = LogisticRegression(max_iter=2000).fit(split.x_train.numpy(), split.y_train.numpy())
    clf = SklearnClassifier(model, bounds=(split.lower, split.upper))
    x, y = split.x_test[:60], split.y_test[:60]
    for norm, epsilon in (("linf", 0.5), ("l2", 2.0)):
        result = Square(clf, norm=norm, max_queries=200, seed=0).perturb(x, y, epsilon)
        clean = float(result.clean_correct.float().mean())  # type: ignore[union-attr]
        assert result.robust_accuracy < clean - 0.2
        assert float(perturbation_norms(result.adversarial - x, norm).max()) <= epsilon * (1 + 1e-5)  # type: ignore[arg-type]


def test_square_needs_scores_and_checks_its_parameters(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, _, _ = cnn
    with pytest.raises(MissingCapabilityError, match=r"square needs capability scores; this classifier offers labels"):
        Square(LabelsOnly(module, (1, 8, 8)))
    with pytest.raises(AttackError, match="max_queries"):
        Square(ScoresOnly(module, (1, 8, 8)), max_queries=0)
    with pytest.raises(AttackError, match="p_init"):
        Square(ScoresOnly(module, (1, 8, 8)), p_init=1.5)


def test_square_building_blocks() -> None:
    schedule = [p_schedule(0.8, i, 1000) for i in range(1000)]
    assert schedule[0] == 0.8 and schedule[-1] == pytest.approx(0.8 / 512)
    assert all(a >= b for a, b in itertools.pairwise(schedule))
    assert image_view((30,)) == (1, 1, 30) and image_view((8, 8)) == (1, 8, 8) and image_view((3, 4, 5)) == (3, 4, 5)
    pattern = pseudo_gaussian(5, 5)
    assert float(pattern.norm()) == pytest.approx(1.0)
    assert int(pattern.argmax()) == 12  # peak in the centre
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    assert torch.allclose(margin_loss(scores, torch.tensor([0, 0]), None), torch.tensor([0.5, -0.5]))
    assert torch.allclose(margin_loss(scores, torch.tensor([0, 0]), torch.tensor([2, 2])), torch.tensor([0.6, -0.3]))


# --------------------------------------------------------------------------------------------
# HopSkipJump
# --------------------------------------------------------------------------------------------
def test_hopskipjump_norms_shrink_as_queries_grow(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    x, y = x[:20], y[:20]
    clf = LabelsOnly(module, (1, 8, 8))
    medians = []
    for budget in (120, 400, 1200):
        clf.reset_queries()
        run = HopSkipJump(clf, norm="l2", max_queries=budget, seed=0).minimum_norm(x, y)
        assert bool(run.success.all())  # an adversarial input is found for every digit
        assert torch.equal(predicted(module, run.adversarial) != y, run.success)
        assert torch.allclose(run.norms, perturbation_norms(run.adversarial - x, "l2"))
        assert int(run.queries.sum()) == clf.queries and int(run.queries.max()) <= budget
        medians.append(float(run.norms.median()))
    assert medians[0] > medians[1] > medians[2]
    assert medians[2] < 0.8 * medians[0]


def test_hopskipjump_sweep_reads_every_epsilon_from_one_run(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    clf = LabelsOnly(module, (1, 8, 8))
    attack = HopSkipJump(clf, norm="linf", max_queries=300, seed=1)
    sweep = attack.sweep(x[:20], y[:20], [0.3, 0.05, 0.15])
    assert sweep.epsilons == [0.05, 0.15, 0.3]
    assert sweep.robust_accuracy == sorted(sweep.robust_accuracy, reverse=True)
    assert sweep.robust_accuracy[-1] < sweep.robust_accuracy[0]
    assert clf.queries == int(sweep.per_epsilon[0].queries.sum())  # one run, not three
    for result in sweep.per_epsilon:
        norms = perturbation_norms(result.adversarial - x[:20], "linf")
        assert float(norms.max()) <= result.epsilon
        assert torch.equal(result.success, predicted(module, result.adversarial) != y[:20])


def test_hopskipjump_perturb_and_targeted(cnn: tuple[nn.Module, torch.Tensor, torch.Tensor]) -> None:
    module, x, y = cnn
    x, y = x[:20], y[:20]
    clf = LabelsOnly(module, (1, 8, 8))
    result = HopSkipJump(clf, max_queries=300, seed=0).perturb(x, y, 1.5)
    assert result.success_rate >= 0.5
    assert float(result.norms.max()) <= 1.5
    assert torch.equal(result.success, predicted(module, result.adversarial) != y)
    # a broken sample stops as soon as its norm is within epsilon: it spends fewer queries than a survivor
    if bool((~result.success).any()):
        assert float(result.queries[result.success].float().mean()) < float(result.queries[~result.success].min())

    targets = (y + 3) % 10  # every target class is present in the batch, so starting points come from it
    run = HopSkipJump(clf, max_queries=400, seed=0).minimum_norm(x, y, targets=targets)
    assert bool(run.success.all())
    assert torch.equal(predicted(module, run.adversarial), targets)
    assert bool((run.queries <= 400).all())


def test_hopskipjump_parameters() -> None:
    module = SmallCNN(width=4)
    clf = LabelsOnly(module, (1, 8, 8))
    assert HopSkipJump(clf).norm == "l2"
    with pytest.raises(AttackError, match="max_queries"):
        HopSkipJump(clf, max_queries=0)
    with pytest.raises(AttackError, match="init_evals"):
        HopSkipJump(clf, init_evals=0)
    with pytest.raises(AttackError, match="gamma"):
        HopSkipJump(clf, gamma=0.0)
