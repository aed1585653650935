"""A torch module as a classifier: white-box, with the module's normalisation owned by the adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from modelward.classifiers.base import Capability, Classifier, ClassifierError, InputSpec


class TorchClassifier(Classifier):
    """Wraps an ``nn.Module`` that maps normalised inputs to logits ``(N, C)``.

    ``mean``/``std`` (per channel, or scalars) normalise raw inputs inside the classifier, so
    attacks work in raw units and bounds. The number of classes is inferred from one forward
    pass when not given. The module is put in evaluation mode; no copy of the input is made.
    """

    def __init__(
        self,
        module: nn.Module,
        input_shape: Sequence[int],
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        num_classes: int | None = None,
        query_budget: int | None = None,
    ) -> None:
        self.module = module.eval()
        spec = InputSpec(tuple(int(d) for d in input_shape), float(bounds[0]), float(bounds[1]))
        self._mean = _per_channel(mean, spec.shape, "mean")
        self._std = _per_channel(std, spec.shape, "std")
        if self._std is not None and bool((self._std <= 0).any()):
            raise ClassifierError("std must be positive")
        if num_classes is None:
            with torch.no_grad():
                probe = torch.full((1, *spec.shape), (spec.lower + spec.upper) / 2)
                out = self.module(self._normalise(probe))
            if out.dim() != 2:
                raise ClassifierError(f"the module must return logits of shape (N, C), got {tuple(out.shape)}")
            num_classes = int(out.shape[1])
        super().__init__(spec, num_classes, {Capability.GRADIENTS, Capability.SCORES, Capability.LABELS}, query_budget)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self._mean is not None:
            x = x - self._mean
        if self._std is not None:
            x = x / self._std
        return x

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.module(self._normalise(x)))

    def _labels(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(x).argmax(dim=1)


def _per_channel(value: float | Sequence[float] | None, shape: tuple[int, ...], name: str) -> torch.Tensor | None:
    """A tensor broadcastable over ``(N, *shape)``: scalars as is, sequences along the channel axis."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return torch.tensor(float(value))
    values = torch.tensor([float(v) for v in value])
    if len(shape) >= 2 and values.numel() == shape[0]:
        return values.view(-1, *([1] * (len(shape) - 1)))
    if values.numel() == shape[-1]:
        return values
    raise ClassifierError(f"{name} has {values.numel()} values, which matches neither channels nor features of {shape}")
