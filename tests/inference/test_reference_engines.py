"""Reference-model training: bit-identical across engines, cached on disk, specs as plain data."""

from __future__ import annotations

import importlib.util
import pickle  # nosec B403 - round-trips our own spec to prove it is plain data
import sys
import time
from pathlib import Path

import pytest
import torch

import modelward.attacks.inference.reference_models as rm
from modelward.attacks.inference.reference_models import (
    LocalEngine,
    ModelSpec,
    RayEngine,
    TrainedModel,
    balanced_memberships,
    reference_specs,
    train_reference_models,
)
from modelward.core.errors import InputError
from modelward.datasets.synthetic import Population, make_tabular_population

PARAMS = {"in_features": 20, "num_classes": 10, "hidden": 16}


@pytest.fixture(scope="module")
def population() -> Population:
    return make_tabular_population(300, seed=5)


@pytest.fixture(scope="module")
def specs(population: Population) -> list[ModelSpec]:
    return reference_specs(len(population), 4, "mlp", PARAMS, seed=9, epochs=3)


@pytest.fixture(scope="module")
def sequential(population: Population, specs: list[ModelSpec]) -> list[TrainedModel]:
    return LocalEngine(1).train(specs, population.x, population.y)


def _identical(first: list[TrainedModel], second: list[TrainedModel]) -> None:
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.key == b.key
        assert a.state.keys() == b.state.keys()
        for name in a.state:
            assert torch.equal(a.state[name], b.state[name]), name


def test_specs_are_balanced_plain_data(population: Population, specs: list[ModelSpec]) -> None:
    masks = balanced_memberships(len(population), 4, seed=9)
    assert masks.sum(dim=0).eq(2).all()  # every record IN exactly half of the models
    assert [set(s.indices) for s in specs] == [set(m.nonzero().squeeze(1).tolist()) for m in masks]
    assert len({s.seed for s in specs}) == 4
    assert pickle.loads(pickle.dumps(specs[0])) == specs[0]  # noqa: S301  # nosec B301 - our own bytes


def test_local_process_pool_is_bit_identical_to_sequential(
    population: Population, specs: list[ModelSpec], sequential: list[TrainedModel]
) -> None:
    heard: list[tuple[int, int]] = []
    pooled = LocalEngine(2).train(specs, population.x, population.y, progress=lambda d, t: heard.append((d, t)))
    _identical(sequential, pooled)
    assert [done for done, _ in heard] == [0, 1, 2, 3, 4]  # every finished model, in count order
    assert {total for _, total in heard} == {4}


def test_progress_counts_cached_models_at_once(population: Population, specs: list[ModelSpec], tmp_path: Path) -> None:
    LocalEngine(1, cache_dir=tmp_path).train(specs[:2], population.x, population.y)
    heard: list[tuple[int, int]] = []
    LocalEngine(1, cache_dir=tmp_path).train(
        specs, population.x, population.y, progress=lambda d, t: heard.append((d, t))
    )
    assert heard == [(2, 4), (3, 4), (4, 4)]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_engine_is_bit_identical_to_sequential(
    population: Population, specs: list[ModelSpec], sequential: list[TrainedModel]
) -> None:
    with RayEngine(2) as engine:
        trained = engine.train(specs, population.x, population.y)
    _identical(sequential, trained)


def test_missing_ray_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match="pip install"):
        RayEngine(2)


def test_a_different_seed_gives_different_weights(population: Population, sequential: list[TrainedModel]) -> None:
    spec = sequential[0].spec
    other = ModelSpec(spec.factory, spec.params, spec.indices, seed=spec.seed + 1, epochs=spec.epochs)
    retrained = LocalEngine(1).train([other], population.x, population.y)[0]
    assert retrained.key != sequential[0].key
    assert not torch.equal(retrained.state["net.0.weight"], sequential[0].state["net.0.weight"])


def test_cache_makes_the_second_run_instant(
    population: Population,
    specs: list[ModelSpec],
    sequential: list[TrainedModel],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = train_reference_models(population, specs, engine=LocalEngine(1, cache_dir=tmp_path))
    assert not any(m.cached for m in first.models)
    signals = first.log_probabilities()
    assert signals.shape == (4, len(population), 10)
    assert len(list((tmp_path / "models").glob("*.safetensors"))) == 4
    assert len(list((tmp_path / "signals").glob("*.safetensors"))) == 4

    def no_training(*args: object) -> object:
        raise AssertionError("trained again despite the cache")

    def no_queries(*args: object, **kwargs: object) -> object:
        raise AssertionError("queried again despite the cache")

    monkeypatch.setattr(rm, "_train_to_bytes", no_training)
    monkeypatch.setattr(rm, "log_probabilities", no_queries)
    started = time.perf_counter()
    second = train_reference_models(population, specs, engine=LocalEngine(2, cache_dir=tmp_path))
    again = second.log_probabilities()
    assert time.perf_counter() - started < 2.0
    assert all(m.cached for m in second.models)
    _identical(sequential, second.models)
    assert torch.equal(signals, again)


def test_a_corrupt_cache_file_is_a_miss(population: Population, specs: list[ModelSpec], tmp_path: Path) -> None:
    engine = LocalEngine(1, cache_dir=tmp_path)
    first = engine.train(specs[:1], population.x, population.y)[0]
    (tmp_path / "models" / f"{first.key}.safetensors").write_bytes(b"not safetensors")
    again = engine.train(specs[:1], population.x, population.y)[0]
    assert not again.cached
    assert torch.equal(first.state["net.0.weight"], again.state["net.0.weight"])


@pytest.mark.parametrize(
    "build",
    [
        lambda: ModelSpec("resnet-1000", {}, (0, 1), seed=0),
        lambda: ModelSpec("mlp", PARAMS, (), seed=0),
        lambda: ModelSpec("mlp", PARAMS, (0, 1), seed=0, epochs=0),
        lambda: ModelSpec("mlp", {"in_features": [20]}, (0, 1), seed=0),  # type: ignore[dict-item]
        lambda: LocalEngine(0),
        lambda: balanced_memberships(10, 3, seed=0),
    ],
)
def test_bad_specs_and_engines_are_input_errors(build: object) -> None:
    with pytest.raises(InputError):
        build()  # type: ignore[operator]


def test_indices_outside_the_population_are_refused(population: Population) -> None:
    spec = ModelSpec("mlp", PARAMS, (0, len(population)), seed=0)
    with pytest.raises(InputError, match="indices"):
        LocalEngine(1).train([spec], population.x, population.y)
    spec = ModelSpec("mlp", {"in_features": 20, "width": 3}, (0, 1), seed=0)
    with pytest.raises(InputError, match="rejected its parameters"):
        LocalEngine(1).train([spec], population.x, population.y)
