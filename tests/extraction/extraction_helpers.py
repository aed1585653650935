"""Shared helpers of the extraction tests: trained targets (fixtures) and black-box views of a module.

Test modules wrap the cached trainers in their own fixtures (no conftest.py here: other test folders
import their own ``conftest`` module by that name, which a second one would shadow).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from modelward.classifiers.base import Capability, Classifier, InputSpec, QueryBudgetExceeded
from modelward.classifiers.models import MLP, SmallCNN
from modelward.classifiers.training import accuracy, train_classifier
from modelward.datasets.builtin import Split, load_breast_cancer_table, load_digits_images


@dataclass(frozen=True)
class DigitsTarget:
    """A digits SmallCNN trained on part of the training split; the rest is the attacker's pool."""

    module: nn.Module
    pool: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    train_x: torch.Tensor
    train_y: torch.Tensor


class ScoresOnly(Classifier):
    """A torch module seen through probabilities and labels only (a score-based black box)."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...], *, query_budget: int | None = None) -> None:
        super().__init__(InputSpec(shape), 10, {Capability.SCORES, Capability.LABELS}, query_budget)
        self.module = module

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.module(x)
        return torch.softmax(logits, dim=1)

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.module(x)
        return logits.argmax(dim=1)


class LabelsOnly(ScoresOnly):
    """The same module seen through its predicted labels only (a decision-based black box)."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...], *, query_budget: int | None = None) -> None:
        super().__init__(module, shape, query_budget=query_budget)
        self.capabilities = frozenset({Capability.LABELS})


class HiddenBudget(ScoresOnly):
    """Declares no query budget but refuses queries past ``limit``, as a wrapped or remote model might."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...], limit: int) -> None:
        super().__init__(module, shape)
        self.limit = limit

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        if self.queries > self.limit:
            self.queries -= x.shape[0]  # the refused batch was never answered
            raise QueryBudgetExceeded(f"hidden limit of {self.limit} queries reached")
        return super()._probabilities(x)


@functools.cache
def trained_digits_target() -> DigitsTarget:
    """SmallCNN(width=16) on 750 training digits (≥ 93% test accuracy); the other 507 are the attacker's.

    Cached: test modules in one process share it.
    """
    torch.set_num_threads(1)
    split = load_digits_images(seed=0)
    order = torch.randperm(split.x_train.shape[0], generator=torch.Generator().manual_seed(0))
    own, pool = order[:750], order[750:]
    torch.manual_seed(0)  # the initial weights, so the target is the same in every process
    module = train_classifier(SmallCNN(width=16), split.x_train[own], split.y_train[own], epochs=15, seed=0)
    if accuracy(module, split.x_test, split.y_test) < 0.93:
        raise RuntimeError("the digits target trained badly")
    return DigitsTarget(module, split.x_train[pool], split.x_test, split.y_test, split.x_train[own], split.y_train[own])


@functools.cache
def trained_cancer_model() -> tuple[Split, nn.Module]:
    """The breast-cancer table and an MLP trained on its training split (the victims); cached."""
    torch.set_num_threads(1)
    split = load_breast_cancer_table(seed=0)
    torch.manual_seed(0)
    module = train_classifier(MLP(30, 2, hidden=64), split.x_train, split.y_train, epochs=100, seed=0)
    if accuracy(module, split.x_test, split.y_test) < 0.93:
        raise RuntimeError("the breast-cancer model trained badly")
    return split, module
