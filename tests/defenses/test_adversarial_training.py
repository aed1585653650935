"""PGD adversarial training and TRADES: they make the digits SmallCNN robust, honestly measured.

Robustness is measured with the team's PGD attack through a ``TorchClassifier`` (not with the
training-time inner loop), against a standard model trained with the same seed and epochs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from modelward.attacks.evasion.pgd import PGD
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import accuracy, train_classifier
from modelward.core.errors import InputError
from modelward.datasets.builtin import Split, load_digits_images
from modelward.defenses.adversarial_training import (
    TrainingHistory,
    adversarial_training,
    pgd_linf_examples,
    trades_training,
)

EPSILON = 0.1
EPOCHS = 6  # the same budget for all three models
STEPS = 3  # a short inner maximisation keeps the test fast; robustness still shows


@dataclass(frozen=True)
class Measured:
    """A trained model's clean and PGD-20 robust test accuracy at EPSILON."""

    module: torch.nn.Module
    clean: float
    robust: float
    history: TrainingHistory | None


def _measure(module: torch.nn.Module, split: Split, history: TrainingHistory | None = None) -> Measured:
    attack = PGD(TorchClassifier(module, split.input_shape), norm="linf", steps=20, seed=0)
    result = attack.perturb(split.x_test, split.y_test, EPSILON)
    return Measured(module, accuracy(module, split.x_test, split.y_test), result.robust_accuracy, history)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: with pytest-xdist workers on few cores, more threads only contend."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits() -> Split:
    return load_digits_images(seed=0)


@pytest.fixture(scope="module")
def standard(digits: Split) -> Measured:
    torch.manual_seed(0)
    module = train_classifier(SmallCNN(), digits.x_train, digits.y_train, epochs=EPOCHS, seed=0)
    return _measure(module, digits)


@pytest.fixture(scope="module")
def pgd_at(digits: Split) -> Measured:
    torch.manual_seed(0)
    module, history = adversarial_training(
        SmallCNN(), digits.x_train, digits.y_train, epsilon=EPSILON, steps=STEPS, epochs=EPOCHS, seed=0
    )
    return _measure(module, digits, history)


@pytest.fixture(scope="module")
def trades(digits: Split) -> Measured:
    torch.manual_seed(0)
    module, history = trades_training(
        SmallCNN(), digits.x_train, digits.y_train, epsilon=EPSILON, beta=6.0, steps=STEPS, epochs=EPOCHS, seed=0
    )
    return _measure(module, digits, history)


def test_standard_model_is_vulnerable(standard: Measured) -> None:
    assert standard.clean >= 0.95
    assert standard.robust <= 0.65  # the baseline the defenses must beat by a clear margin


@pytest.mark.parametrize("name", ["pgd_at", "trades"])
def test_robust_training_raises_robust_accuracy(name: str, standard: Measured, request: pytest.FixtureRequest) -> None:
    defended: Measured = request.getfixturevalue(name)
    assert defended.clean >= 0.93  # still a useful model
    assert defended.robust >= 0.70
    assert defended.robust >= standard.robust + 0.15


@pytest.mark.parametrize("name", ["pgd_at", "trades"])
def test_history_records_every_epoch(name: str, request: pytest.FixtureRequest) -> None:
    history = request.getfixturevalue(name).history
    assert history.method == {"pgd_at": "pgd-at", "trades": "trades"}[name]
    assert len(history.epoch_losses) == len(history.clean_accuracy) == len(history.perturbed_accuracy) == EPOCHS
    assert history.epsilons == [EPSILON] * EPOCHS
    assert all(math.isfinite(loss) for loss in history.epoch_losses)
    assert history.epoch_losses[-1] < history.epoch_losses[0]  # it learned
    assert history.perturbed_accuracy[-1] > history.perturbed_accuracy[0]
    assert history.final_clean_accuracy == history.clean_accuracy[-1]
    assert history.seconds > 0


def test_warmup_and_ramp_schedule(digits: Split) -> None:
    x, y = digits.x_train[:128], digits.y_train[:128]
    _, history = adversarial_training(
        SmallCNN(), x, y, epsilon=0.2, steps=1, epochs=5, warmup_epochs=1, ramp_epochs=2, batch_size=64
    )
    assert history.epsilons == pytest.approx([0.0, 0.1, 0.2, 0.2, 0.2])
    assert math.isnan(history.perturbed_accuracy[0])  # clean warm-up epoch
    assert all(not math.isnan(a) for a in history.perturbed_accuracy[1:])


@pytest.mark.parametrize("objective", ["ce", "kl"])
def test_inner_maximisation_stays_in_budget_and_bounds_and_raises_the_loss(
    objective: str, standard: Measured, digits: Split
) -> None:
    module = standard.module
    x, y = digits.x_test[:200], digits.y_test[:200]
    generator = torch.Generator().manual_seed(0)
    x_adv = pgd_linf_examples(
        module,
        x,
        y,
        epsilon=EPSILON,
        steps=10,
        step_size=0.025,
        objective=objective,
        generator=generator,  # type: ignore[arg-type]
    )
    assert float((x_adv - x).abs().max()) <= EPSILON + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert not module.training  # left in the mode it came in
    with torch.no_grad():
        clean_logits, adv_logits = module(x), module(x_adv)
    if objective == "ce":
        assert F.cross_entropy(adv_logits, y) > F.cross_entropy(clean_logits, y) + 0.5
    else:
        kl = F.kl_div(F.log_softmax(adv_logits, dim=1), F.softmax(clean_logits, dim=1), reduction="batchmean")
        assert kl > 0.1


def test_training_is_deterministic_and_leaves_global_rng_alone(digits: Split) -> None:
    x, y = digits.x_train[:192], digits.y_train[:192]

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(1)  # the same initial weights
        module = SmallCNN()
        before = torch.get_rng_state()
        trades_training(module, x, y, epsilon=0.1, steps=2, epochs=2, seed=seed)
        assert torch.equal(torch.get_rng_state(), before)  # nothing drawn from the caller's stream
        return [p.detach().clone() for p in module.parameters()]

    first, second, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0}, "epsilon > 0"),
        ({"epsilon": 0.1, "steps": 0}, "at least one step"),
        ({"epsilon": 0.1, "epochs": 2, "warmup_epochs": 2, "ramp_epochs": 1}, "fit in 2 epochs"),
        ({"epsilon": 0.1, "bounds": (1.0, 0.0)}, "lower < upper"),
        ({"epsilon": 0.1, "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], message: str, digits: Split) -> None:
    with pytest.raises(InputError, match=message):
        adversarial_training(SmallCNN(), digits.x_train[:8], digits.y_train[:8], **kwargs)  # type: ignore[arg-type]


def test_trades_refuses_negative_beta(digits: Split) -> None:
    with pytest.raises(InputError, match="beta"):
        trades_training(SmallCNN(), digits.x_train[:8], digits.y_train[:8], epsilon=0.1, beta=-1.0)
