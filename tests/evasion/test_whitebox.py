"""White-box evasion attacks (FGSM, PGD, APGD, APGD-T) and the shared evasion API of ``attacks/evasion/base``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from modelward.attacks.evasion.apgd import APGD, APGDT, checkpoints, dlr_loss, targeted_dlr_loss
from modelward.attacks.evasion.base import (
    AttackError,
    EvasionAttack,
    perturbation_norms,
    project,
    random_in_ball,
)
from modelward.attacks.evasion.fgsm import FGSM
from modelward.attacks.evasion.pgd import PGD
from modelward.classifiers.base import (
    Capability,
    Classifier,
    ClassifierError,
    InputSpec,
    MissingCapabilityError,
    QueryBudgetExceeded,
)
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import accuracy, train_classifier
from modelward.datasets.builtin import load_digits_images

CENTRES = torch.tensor([[0.2, 0.2], [0.2, 0.8], [0.8, 0.2], [0.8, 0.8]])


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Small models run fastest on one thread, and the suite runs on two workers: don't oversubscribe."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits(one_thread: None) -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    """The known-vulnerable model: a SmallCNN trained on digits (≥ 95% clean), and 200 test digits."""
    split = load_digits_images(seed=0)
    torch.manual_seed(0)  # the initial weights come from the global generator: fix them
    module = train_classifier(SmallCNN(), split.x_train, split.y_train, epochs=10, seed=0)
    assert accuracy(module, split.x_test, split.y_test) >= 0.95
    return TorchClassifier(module, split.input_shape), split.x_test[:200], split.y_test[:200]


class NearestCentre(nn.Module):
    """Linear nearest-centre classifier: logit_k = 2·c_k·x − |c_k|² (boundaries at x1 = 0.5 and x2 = 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 4)
        with torch.no_grad():
            self.linear.weight.copy_(2 * CENTRES)
            self.linear.bias.copy_(-(CENTRES**2).sum(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@pytest.fixture(scope="module")
def toy() -> tuple[TorchClassifier, torch.Tensor, torch.Tensor]:
    """A robust toy problem: 4 clusters within 0.05 of their centres, every point ≥ 0.25 (L∞ and L2) from a boundary."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat(25)
    x = CENTRES[y] + (torch.rand(100, 2, generator=generator) - 0.5) * 0.1
    return TorchClassifier(NearestCentre(), (2,)), x, y


class LabelOnly(Classifier):
    """A decision-only classifier (labels, no scores or gradients) around a torch module."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...], classes: int) -> None:
        super().__init__(InputSpec(shape), classes, {Capability.LABELS})
        self.module = module

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).argmax(dim=1)


def all_attacks(classifier: Classifier, norm: str, steps: int = 10) -> list[EvasionAttack]:
    """Every white-box attack of this module with few steps."""
    return [
        FGSM(classifier, norm=norm),
        PGD(classifier, norm=norm, steps=steps, restarts=2),
        APGD(classifier, norm=norm, loss="ce", steps=steps),
        APGD(classifier, norm=norm, loss="dlr", steps=steps),
        APGDT(classifier, norm=norm, steps=steps, target_classes=2),
    ]


# --------------------------------------------------------------------------------------------
# attacks work where they should and fail where they must
# --------------------------------------------------------------------------------------------
def test_attacks_break_the_vulnerable_cnn(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = digits
    pgd = PGD(classifier, steps=10).perturb(x, y, 0.3)
    clean = float(pgd.clean_correct.float().mean())  # type: ignore[union-attr]
    assert clean >= 0.95
    assert pgd.robust_accuracy <= 0.02
    assert FGSM(classifier).perturb(x, y, 0.3).robust_accuracy <= clean - 0.5
    assert APGD(classifier, steps=10).perturb(x, y, 0.3).robust_accuracy <= 0.02
    assert PGD(classifier, norm="l2", steps=10).perturb(x, y, 2.0).robust_accuracy <= 0.05


def test_success_masks_match_an_independent_prediction(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    classifier, x, y = digits
    for attack in all_attacks(classifier, "linf"):
        result = attack.perturb(x, y, 0.1)
        predicted = classifier.predict(result.adversarial)
        assert torch.equal(result.success, predicted != y), attack.name
        assert 0 < result.success_rate < 1, attack.name


@pytest.mark.parametrize("norm,epsilon", [("linf", 0.2), ("l2", 0.2)])
def test_attacks_fail_on_the_robust_toy_problem(
    toy: tuple[TorchClassifier, torch.Tensor, torch.Tensor], norm: str, epsilon: float
) -> None:
    classifier, x, y = toy
    for attack in all_attacks(classifier, norm):
        result = attack.perturb(x, y, epsilon)
        assert result.robust_accuracy == 1.0, attack.name
        assert not result.success.any(), attack.name
    # beyond the margin the same attacks do succeed (the toy is not robust by accident)
    assert PGD(classifier, norm=norm, steps=10).perturb(x, y, 0.45 if norm == "linf" else 0.6).robust_accuracy == 0.0


def test_robust_accuracy_never_rises_with_epsilon(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = digits
    sweep = PGD(classifier, steps=5, random_start=True).sweep(x, y, [0.3, 0.0, 0.05, 0.1, 0.15, 0.2])
    assert sweep.epsilons == [0.0, 0.05, 0.1, 0.15, 0.2, 0.3]
    curve = sweep.robust_accuracy
    assert all(later <= earlier for earlier, later in itertools.pairwise(curve))
    assert curve[0] == pytest.approx(sweep.clean_accuracy)
    assert curve[-1] < curve[0] - 0.5
    assert len(sweep.raw_robust_accuracy) == len(curve)
    assert all(carried <= raw for carried, raw in zip(curve, sweep.raw_robust_accuracy, strict=True))
    # carried-over samples stay adversarial and within the larger ball
    last = sweep.per_epsilon[-1]
    assert torch.equal(classifier.predict(last.adversarial) != y, last.success)


# --------------------------------------------------------------------------------------------
# bounds, norms, queries
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm,epsilon", [("linf", 0.15), ("l2", 1.0)])
def test_bounds_and_norms_are_respected(
    digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor], norm: str, epsilon: float
) -> None:
    classifier, x, y = digits
    x, y = x[:64], y[:64]
    for attack in all_attacks(classifier, norm, steps=5):
        adv = attack.perturb(x, y, epsilon).adversarial
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0, attack.name
        norms = perturbation_norms(adv - x, norm)  # type: ignore[arg-type]
        assert float(norms.max()) <= epsilon * (1 + 1e-6), attack.name
        assert float(norms.max()) >= epsilon * 0.5, attack.name  # the ball is actually used


def test_bounds_other_than_the_unit_interval() -> None:
    generator = torch.Generator().manual_seed(1)
    module = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 5))
    classifier = TorchClassifier(module, (6,), bounds=(-2.0, 3.0))
    x = torch.rand(40, 6, generator=generator) * 5 - 2
    x[:, 0] = 3.0  # on the upper bound
    x[:, 1] = -2.0  # on the lower bound
    y = classifier.predict(x)
    for norm, epsilon in (("linf", 0.8), ("l2", 2.5)):
        for attack in all_attacks(classifier, norm, steps=5):
            adv = attack.perturb(x, y, epsilon).adversarial
            assert float(adv.min()) >= -2.0 and float(adv.max()) <= 3.0, attack.name
            assert float(perturbation_norms(adv - x, norm).max()) <= epsilon * (1 + 1e-6)  # type: ignore[arg-type]


def test_pgd_query_counts_are_exact(toy: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = toy
    steps, restarts = 5, 3
    attack = PGD(classifier, steps=steps, restarts=restarts)
    before = classifier.queries
    result = attack.perturb(x, y, 0.2, batch_size=30)  # robust: every sample takes every restart
    assert torch.equal(result.queries, torch.full((100,), 1 + restarts * (steps + 1)))
    assert attack.queries_per_sample() == 1 + restarts * (steps + 1)
    assert classifier.queries - before == int(result.queries.sum()) == 100 * (1 + restarts * (steps + 1))


def test_query_counts_on_the_cnn(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = digits
    steps, restarts = 4, 3
    before = classifier.queries
    result = PGD(classifier, steps=steps, restarts=restarts).perturb(x, y, 0.08)
    assert classifier.queries - before == int(result.queries.sum())
    clean_wrong = ~result.clean_correct  # type: ignore[operator]
    assert torch.all(result.queries[clean_wrong] == 1)
    taken = (result.queries[~clean_wrong] - 1) / (steps + 1)
    assert torch.all(taken == taken.round()) and taken.min() >= 1 and taken.max() == restarts
    # a sample stops restarting only once broken
    assert torch.all(result.success[~clean_wrong][taken < restarts])
    assert bool((taken < restarts).any())
    fgsm = FGSM(classifier).perturb(x, y, 0.1)
    assert torch.equal(fgsm.queries, torch.where(clean_wrong, 1, 3))
    apgd = APGD(classifier, steps=steps, restarts=2).perturb(x, y, 0.08)
    assert set(apgd.queries[~clean_wrong].tolist()) <= {1 + steps + 1, 1 + 2 * (steps + 1)}
    apgdt = APGDT(classifier, steps=steps, target_classes=3).perturb(x, y, 0.08)
    targets_tried = (apgdt.queries[~clean_wrong] - 2) / (steps + 1)
    assert set(targets_tried.tolist()) <= {1.0, 2.0, 3.0}


def test_a_spent_budget_stops_the_attack(toy: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    _, x, y = toy
    limited = TorchClassifier(NearestCentre(), (2,), query_budget=100 * 5)
    with pytest.raises(QueryBudgetExceeded):
        PGD(limited, steps=10).perturb(x, y, 0.1)


def test_epsilon_zero_returns_the_inputs(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = digits
    result = PGD(classifier, steps=3).perturb(x, y, 0.0)
    assert torch.equal(result.adversarial, x)
    assert torch.equal(result.queries, torch.ones(200, dtype=torch.long))
    assert result.robust_accuracy == pytest.approx(float(result.clean_correct.float().mean()))  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# targeted attacks, capabilities, determinism, misuse
# --------------------------------------------------------------------------------------------
def test_targeted_attacks_hit_their_targets(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = digits
    x, y = x[:100], y[:100]
    targets = (y + 3) % 10
    for attack in (
        PGD(classifier, steps=20),
        APGD(classifier, loss="ce", steps=20),
        APGD(classifier, loss="dlr", steps=20),
        APGDT(classifier, steps=20),
    ):
        result = attack.perturb(x, y, 0.4, targets=targets)  # at 0.3 some targets are out of reach
        assert result.targeted
        predicted = classifier.predict(result.adversarial)
        assert torch.equal(result.success, predicted == targets), attack.name
        assert result.success_rate >= 0.9, attack.name
    # success means the target, not any misclassification
    weak = PGD(classifier, steps=3).perturb(x, y, 0.1, targets=targets)
    assert weak.success_rate < float((classifier.predict(weak.adversarial) != y).float().mean())


def test_label_only_classifier_is_refused_at_construction() -> None:
    classifier = LabelOnly(NearestCentre(), (2,), 4)
    for attack_class in (FGSM, PGD, APGD, APGDT):
        with pytest.raises(MissingCapabilityError, match="gradients"):
            attack_class(classifier)


def test_attacks_are_deterministic_under_a_seed(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = digits
    for make in (
        lambda seed: PGD(classifier, steps=3, restarts=2, seed=seed),
        lambda seed: APGD(classifier, steps=3, seed=seed),
    ):
        first = make(7).perturb(x, y, 0.1, batch_size=64)
        again = make(7).perturb(x, y, 0.1, batch_size=64)
        other = make(8).perturb(x, y, 0.1, batch_size=64)
        assert torch.equal(first.adversarial, again.adversarial)
        assert torch.equal(first.queries, again.queries)
        assert not torch.equal(first.adversarial, other.adversarial)
    attack = PGD(classifier, steps=3, seed=3)
    single = attack.perturb(x, y, 0.1)
    assert torch.equal(attack.sweep(x, y, [0.1]).per_epsilon[0].adversarial, single.adversarial)
    assert torch.equal(attack.perturb(x, y, 0.1).adversarial, single.adversarial)  # a call is reproducible alone


def test_misuse_is_refused(digits: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    classifier, x, y = digits
    with pytest.raises(AttackError, match="epsilon"):
        PGD(classifier).perturb(x, y, -0.1)
    with pytest.raises(AttackError, match="target"):
        PGD(classifier).perturb(x, y, 0.1, targets=y)
    with pytest.raises(AttackError, match="norm"):
        PGD(classifier, norm="l1")
    with pytest.raises(AttackError, match="steps"):
        PGD(classifier, steps=0)
    with pytest.raises(AttackError, match="random_start"):
        PGD(classifier, restarts=3, random_start=False)
    with pytest.raises(AttackError, match="labels"):
        PGD(classifier).perturb(x, y[:10], 0.1)
    with pytest.raises(ClassifierError, match="bounds"):
        PGD(classifier).perturb(x * 2, y, 0.1)
    binary = TorchClassifier(nn.Linear(2, 2), (2,))
    with pytest.raises(AttackError, match="3 classes"):
        APGD(binary, loss="dlr")
    with pytest.raises(AttackError, match="4 classes"):
        APGDT(binary)


class _Broken(EvasionAttack):
    """An attack that breaks the contract in a chosen way, to test the base class's guards."""

    name = "broken"
    requires = (Capability.GRADIENTS,)

    def __init__(self, classifier: Classifier, fault: str) -> None:
        super().__init__(classifier)
        self.fault = fault

    def _attack(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epsilon: float,
        *,
        targets: torch.Tensor | None,
        queries: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        success = torch.zeros(x.shape[0], dtype=torch.bool)
        if self.fault == "uncounted":
            self.classifier.predict(x)
            return x.clone(), success
        if self.fault == "bounds":
            return x + 2.0, success
        return self._clip(x + 2 * epsilon), success


@pytest.mark.parametrize("fault,message", [("uncounted", "query accounting"), ("bounds", "bounds"), ("ball", "norm")])
def test_the_base_class_refuses_broken_attacks(
    toy: tuple[TorchClassifier, torch.Tensor, torch.Tensor], fault: str, message: str
) -> None:
    classifier, x, y = toy
    with pytest.raises(AttackError, match=message):
        _Broken(classifier, fault).perturb(x, y, 0.1)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def test_norm_helpers() -> None:
    generator = torch.Generator().manual_seed(0)
    delta = torch.randn(50, 3, 4, 4, generator=generator)
    for norm, eps in (("linf", 0.3), ("l2", 1.5)):
        projected = project(delta, eps, norm)  # type: ignore[arg-type]
        assert float(perturbation_norms(projected, norm).max()) <= eps * (1 + 1e-6)  # type: ignore[arg-type]
        inside = random_in_ball(delta, eps, norm, generator)  # type: ignore[arg-type]
        assert float(perturbation_norms(inside, norm).max()) <= eps * (1 + 1e-6)  # type: ignore[arg-type]
        small = delta * 1e-3
        assert torch.equal(project(small, eps, norm), small)  # type: ignore[arg-type]
    per_sample = project(delta, torch.linspace(0.1, 1.0, 50), "l2")
    assert torch.allclose(perturbation_norms(per_sample, "l2"), torch.linspace(0.1, 1.0, 50))


def test_apgd_schedule_and_dlr_losses() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    logits = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.0, 2.0, 1.0, 0.5]])
    y = torch.tensor([0, 0])
    assert torch.allclose(dlr_loss(10 * logits, y), dlr_loss(logits, y))  # scale invariant
    assert torch.allclose(dlr_loss(logits, y), torch.tensor([-(3.0 - 1.0) / (3.0 - 0.5), -(0.0 - 2.0) / (2.0 - 0.5)]))
    targets = torch.tensor([1, 2])
    expected = torch.tensor([-(3.0 - 1.0) / (3.0 - 0.5 * (0.5 - 1.0)), -(0.0 - 1.0) / (2.0 - 0.5 * (0.5 + 0.0))])
    assert torch.allclose(targeted_dlr_loss(logits, y, targets), expected)
    # strict: the rival is the best non-target class (class 1 in the second row), not the true class
    strict = targeted_dlr_loss(logits, y, torch.tensor([1, 3]), strict=True)
    assert torch.allclose(strict[1], torch.tensor(-(2.0 - 0.5) / (2.0 - 0.5 * (0.5 + 0.0))))
