"""DP-SGD through Opacus: the ε we report is Opacus' own, targets are met, models are fixed, runs reproduce."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from opacus.accountants import GaussianAccountant, PRVAccountant, RDPAccountant  # type: ignore[import-untyped]
from opacus.accountants.utils import get_noise_multiplier  # type: ignore[import-untyped]
from torch import nn

from modelward.classifiers.models import MLP
from modelward.classifiers.training import accuracy
from modelward.core.errors import InputError
from modelward.datasets.builtin import Split, load_breast_cancer_table, load_digits_images
from modelward.defenses.dp import Accountant, DPTrainingResult, epsilon_for, make_compatible, noise_for, train_dp

ACCOUNTANT_CLASSES = {"prv": PRVAccountant, "rdp": RDPAccountant, "gdp": GaussianAccountant}


@pytest.fixture(scope="module")
def table() -> Split:
    return load_breast_cancer_table(seed=0)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(30, 2, hidden=32)


def _independent_epsilon(accountant: str, sigma: float, q: float, steps: int, delta: float) -> float:
    """ε from Opacus' accountant class stepped one step at a time, as an optimiser would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = ACCOUNTANT_CLASSES[accountant]()
        for _ in range(steps):
            engine.step(noise_multiplier=sigma, sample_rate=q)
        return float(engine.get_epsilon(delta=delta))


@pytest.fixture(scope="module")
def noisy_run(table: Split) -> DPTrainingResult:
    return train_dp(
        _mlp(), table.x_train, table.y_train, noise_multiplier=1.1, epochs=3, batch_size=64, lr=1e-2, seed=3
    )


# --------------------------------------------------------------------------------------------
# accounting
# --------------------------------------------------------------------------------------------
def test_reported_epsilon_is_opacus_accountants(noisy_run: DPTrainingResult, table: Split) -> None:
    n = table.x_train.shape[0]
    batches = math.ceil(n / 64)
    assert noisy_run.sample_rate == pytest.approx(1 / batches)
    assert noisy_run.steps == 3 * batches
    assert noisy_run.delta == pytest.approx(1 / (10 * n))
    assert noisy_run.accountant == "prv" and noisy_run.poisson_sampling and noisy_run.guarantee
    expected = _independent_epsilon("prv", 1.1, 1 / batches, noisy_run.steps, noisy_run.delta)
    assert noisy_run.epsilon == pytest.approx(expected, rel=1e-9)
    assert 0 < noisy_run.epsilon < 20
    assert noisy_run.seconds_per_step > 0 and len(noisy_run.losses) == 3


@pytest.mark.parametrize("accountant", ["prv", "rdp", "gdp"])
@pytest.mark.parametrize("sigma", [0.6, 1.5])
def test_epsilon_for_matches_the_accountant_stepped_by_hand(accountant: str, sigma: float) -> None:
    ours = epsilon_for(sigma, 0.02, 150, 1e-5, accountant)  # type: ignore[arg-type]
    assert ours == pytest.approx(_independent_epsilon(accountant, sigma, 0.02, 150, 1e-5), rel=1e-9)


def test_epsilon_grows_with_steps_and_shrinks_with_noise() -> None:
    assert epsilon_for(1.0, 0.05, 200, 1e-5) > epsilon_for(1.0, 0.05, 100, 1e-5) > 0
    assert epsilon_for(2.0, 0.05, 200, 1e-5) < epsilon_for(1.0, 0.05, 200, 1e-5)
    assert epsilon_for(0.0, 0.05, 10, 1e-5) == math.inf
    assert epsilon_for(1.0, 0.05, 0, 1e-5) == 0.0


def test_other_accountant_is_used_in_training(table: Split) -> None:
    result = train_dp(_mlp(), table.x_train, table.y_train, noise_multiplier=1.1, epochs=1, accountant="rdp")
    expected = _independent_epsilon("rdp", 1.1, result.sample_rate, result.steps, result.delta)
    assert result.accountant == "rdp" and result.epsilon == pytest.approx(expected, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
@pytest.mark.parametrize(("target", "accountant"), [(1.0, "prv"), (4.0, "rdp")])
def test_target_epsilon_is_met_from_below(table: Split, target: float, accountant: Accountant) -> None:
    result = train_dp(
        _mlp(), table.x_train, table.y_train, target_epsilon=target, epochs=3, lr=1e-2, accountant=accountant
    )
    assert result.target_epsilon == target and result.accountant == accountant
    assert result.epsilon <= target
    assert result.epsilon > target - 0.05  # calibrated, not wildly over-noised
    sigma = get_noise_multiplier(
        target_epsilon=target,
        target_delta=result.delta,
        sample_rate=result.sample_rate,
        steps=result.steps,
        accountant=accountant,
    )
    assert result.noise_multiplier == sigma


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_target_epsilon_counts_every_step_where_opacus_rounds_one_off() -> None:
    # 75 batches of 1 over 3 epochs: int(3 / (1/75)) == 224, but the loader runs 225 steps
    x, y = torch.rand(75, 30) * 2 - 1, torch.randint(0, 2, (75,))
    assert int(3 / (1 / 75)) == 224
    result = train_dp(_mlp(), x, y, target_epsilon=2.0, epochs=3, batch_size=1, lr=1e-2, delta=1e-3, accountant="rdp")
    assert result.steps == 225
    assert result.epsilon <= 2.0
    assert result.epsilon == pytest.approx(_independent_epsilon("rdp", result.noise_multiplier, 1 / 75, 225, 1e-3))


# --------------------------------------------------------------------------------------------
# models Opacus cannot take as they are
# --------------------------------------------------------------------------------------------
class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out


def test_batchnorm_and_inplace_model_is_fixed_and_trains() -> None:
    digits = load_digits_images(seed=0)
    torch.manual_seed(0)
    original = BatchNormNet()
    result = train_dp(original, digits.x_train, digits.y_train, noise_multiplier=0.8, epochs=4, batch_size=128, lr=1e-2)
    kinds = {type(m).__name__ for m in result.module.modules()}
    assert "BatchNorm2d" not in kinds and "GroupNorm" in kinds
    assert any("BatchNorm2d -> GroupNorm" in fix for fix in result.fixes)
    assert any("inplace" in fix for fix in result.fixes)
    assert result.module is not original  # ModuleValidator.fix works on a copy
    assert isinstance(original.features[1], nn.BatchNorm2d)
    assert not result.module.training
    assert math.isfinite(result.epsilon)
    assert accuracy(result.module, digits.x_test, digits.y_test) > 0.5  # chance is 0.1
    # no Opacus hooks or per-sample state left behind on the returned module
    assert all(not m._forward_hooks and not m._backward_hooks for m in result.module.modules())
    assert all(not hasattr(p, "grad_sample") for p in result.module.parameters())


def test_compatible_model_is_trained_in_place(table: Split) -> None:
    module = _mlp()
    first = next(module.parameters())
    before = first.detach().clone()
    result = train_dp(module, table.x_train, table.y_train, noise_multiplier=1.0, epochs=1, optimizer="sgd", lr=0.5)
    assert result.module is module and result.fixes == ()
    assert not torch.equal(before, first)


def test_make_compatible_leaves_a_valid_module_alone() -> None:
    module = _mlp()
    fixed, fixes = make_compatible(module)
    assert fixed is module and fixes == ()


# --------------------------------------------------------------------------------------------
# reproducibility, sampling, errors
# --------------------------------------------------------------------------------------------
def test_same_seed_same_model_other_seed_other_model(table: Split) -> None:
    def run(seed: int) -> torch.Tensor:
        result = train_dp(_mlp(), table.x_train, table.y_train, noise_multiplier=1.0, epochs=2, lr=1e-2, seed=seed)
        return torch.cat([p.detach().flatten() for p in result.module.parameters()])

    first, again, other = run(5), run(5), run(6)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_noise_actually_reaches_the_weights(table: Split) -> None:
    def weights(sigma: float) -> torch.Tensor:
        result = train_dp(_mlp(), table.x_train, table.y_train, noise_multiplier=sigma, epochs=1, lr=1e-2, seed=1)
        return torch.cat([p.detach().flatten() for p in result.module.parameters()])

    clip_only, noisy = weights(0.0), weights(5.0)
    assert not torch.allclose(clip_only, noisy)


def test_clipping_only_reports_infinite_epsilon(table: Split) -> None:
    result = train_dp(_mlp(), table.x_train, table.y_train, noise_multiplier=0.0, epochs=1)
    assert result.epsilon == math.inf and not result.guarantee


def test_disabling_poisson_sampling_warns(table: Split) -> None:
    with pytest.warns(UserWarning, match="not a guarantee"):
        result = train_dp(_mlp(), table.x_train, table.y_train, noise_multiplier=1.0, epochs=1, poisson_sampling=False)
    assert not result.poisson_sampling and not result.guarantee


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"target_epsilon": 1.0, "noise_multiplier": 1.0}, "exactly one"),
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"target_epsilon": -1.0}, "target_epsilon"),
        ({"target_epsilon": math.inf}, "target_epsilon"),
        ({"noise_multiplier": -0.5}, "noise_multiplier"),
        ({"noise_multiplier": 1.0, "delta": 0.0}, "delta"),
        ({"noise_multiplier": 1.0, "delta": 1 / 398}, "delta"),
        ({"noise_multiplier": 1.0, "delta": 0.5}, "delta"),
        ({"noise_multiplier": 1.0, "max_grad_norm": 0.0}, "max_grad_norm"),
        ({"noise_multiplier": 1.0, "epochs": 0}, "epochs"),
        ({"noise_multiplier": 1.0, "batch_size": 0}, "batch_size"),
        ({"noise_multiplier": 1.0, "batch_size": 1000}, "batch_size"),
        ({"noise_multiplier": 1.0, "lr": 0.0}, "lr"),
        ({"noise_multiplier": 1.0, "accountant": "moments"}, "accountant"),
        ({"noise_multiplier": 1.0, "optimizer": "lbfgs"}, "optimizer"),
    ],
)
def test_bad_parameters_are_input_errors(table: Split, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        train_dp(_mlp(), table.x_train, table.y_train, **kwargs)  # type: ignore[arg-type]


def test_bad_data_and_bad_accounting_arguments_are_input_errors(table: Split) -> None:
    with pytest.raises(InputError, match="labels"):
        train_dp(_mlp(), table.x_train, table.y_train[:10], noise_multiplier=1.0)
    with pytest.raises(InputError, match="integer"):
        train_dp(_mlp(), table.x_train, table.y_train.float(), noise_multiplier=1.0)
    with pytest.raises(InputError, match="sample_rate"):
        epsilon_for(1.0, 0.0, 10, 1e-5)
    with pytest.raises(InputError, match="delta"):
        epsilon_for(1.0, 0.1, 10, 1.5)
    with pytest.raises(InputError, match="accountant"):
        epsilon_for(1.0, 0.1, 10, 1e-5, "moments")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="steps"):
        noise_for(1.0, 0.1, 0, 1e-5)
