"""The generated population membership experiments draw from: seeded, bounded, split into exact halves."""

from __future__ import annotations

import pytest
import torch

import modelward.attacks.inference as inference
from modelward.core.errors import InputError
from modelward.datasets.builtin import load_digits_images
from modelward.datasets.synthetic import make_tabular_population, population_from_split


def test_population_is_seeded_standardised_and_inside_its_bounds() -> None:
    first = make_tabular_population(3000, seed=4)
    again = make_tabular_population(3000, seed=4)
    other = make_tabular_population(3000, seed=5)
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()
    assert first.x.shape == (3000, 20) and first.x.dtype == torch.float32
    assert set(first.y.unique().tolist()) == set(range(10))
    assert float(first.x.min()) >= first.lower + 0.5 and float(first.x.max()) <= first.upper - 0.5
    assert torch.allclose(first.x.mean(dim=0), torch.zeros(20), atol=1e-4)
    assert torch.allclose(first.x.std(dim=0), torch.ones(20), atol=1e-3)


def test_halves_are_exact_seeded_and_split_cleanly() -> None:
    population = make_tabular_population(2500, seed=0)
    half = population.random_half(seed=1)
    assert int(half.sum()) == 1250 and torch.equal(half, population.random_half(seed=1))
    assert not torch.equal(half, population.random_half(seed=2))
    split = population.split(half)
    assert split.x_train.shape[0] == 1250 and split.x_test.shape[0] == 1250  # ≥ 1,000 non-members
    assert torch.equal(split.x_train, population.x[half])
    assert (split.lower, split.upper, split.num_classes) == (population.lower, population.upper, 10)


def test_digits_become_a_population() -> None:
    population = population_from_split(load_digits_images())
    assert len(population) == 1797 and population.input_shape == (1, 8, 8) and population.bounds == (0.0, 1.0)


@pytest.mark.parametrize(
    "build",
    [
        lambda: make_tabular_population(3),
        lambda: make_tabular_population(100, label_noise=1.0),
        lambda: make_tabular_population(100, n_classes=1),
        lambda: make_tabular_population(100, n_informative=2, n_classes=10),
        lambda: make_tabular_population(100).split(torch.ones(100, dtype=torch.bool)),
        lambda: make_tabular_population(100).split(torch.ones(99, dtype=torch.bool)),
        lambda: make_tabular_population(100).random_subset(100, seed=0),
    ],
)
def test_bad_population_arguments_are_input_errors(build: object) -> None:
    with pytest.raises(InputError):
        build()  # type: ignore[operator]


def test_every_lazy_export_resolves() -> None:
    for name in inference.__all__:
        assert getattr(inference, name) is not None, name
    with pytest.raises(AttributeError):
        inference.NoSuchAttack  # noqa: B018
