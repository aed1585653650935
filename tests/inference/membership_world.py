"""A small membership-inference world shared by the tests in this folder (built once per process).

A generated 2,000-record tabular population; a deliberately overfit MLP target trained on a random
half (1,000 members, 1,000 non-members, enough to resolve 0.1% FPR); eight reference models on
balanced random halves. Built with ``functools.cache`` so every test module reuses it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from modelward.attacks.inference.reference_models import (
    LocalEngine,
    ModelSpec,
    ReferenceModels,
    reference_specs,
    train_reference_models,
)
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.datasets.synthetic import Population, make_tabular_population

PARAMS = {"in_features": 20, "num_classes": 10, "hidden": 128}
EPOCHS = 60


@dataclass
class World:
    population: Population
    members: torch.Tensor  # boolean mask: the target's training records
    target_module: torch.nn.Module
    references: ReferenceModels

    def target(self, query_budget: int | None = None) -> TorchClassifier:
        """A fresh white-box classifier over the target (its own query counter)."""
        return TorchClassifier(
            self.target_module, self.population.input_shape, bounds=self.population.bounds, query_budget=query_budget
        )


@functools.cache
def world() -> World:
    population = make_tabular_population(2000, seed=0)
    members = population.random_half(seed=1)
    engine = LocalEngine(1)
    spec = ModelSpec("mlp", PARAMS, tuple(members.nonzero().squeeze(1).tolist()), seed=2, epochs=EPOCHS)
    target = engine.train([spec], population.x, population.y)[0].module()
    references = train_reference_models(
        population, reference_specs(len(population), 8, "mlp", PARAMS, seed=3, epochs=EPOCHS), engine=engine
    )
    return World(population, members, target, references)
