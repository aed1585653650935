"""Generated data for privacy attacks: a seeded tabular population targets and references draw halves from.

Membership inference is measured on a *population*: the target model trains on a random half, and
the attack must tell that half (members) from the other (non-members). Resolving a true-positive
rate at 0.1% false positives needs at least 1,000 non-members, more than the bundled tables hold,
so :func:`make_tabular_population` generates one with scikit-learn's ``make_classification``
(seeded, standardised, with declared bounds). Label noise and several clusters per class give the
population a mix of easy and atypical records, which is what makes per-example attacks (LiRA,
RMIA) differ from a global loss threshold. :func:`population_from_split` turns any existing
:class:`~modelward.datasets.builtin.Split` (e.g. the digit images) into a population too.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from modelward.core.errors import InputError
from modelward.datasets.builtin import Split


@dataclass(frozen=True)
class Population:
    """All the records an attacker and a defender draw training sets from, with their bounds."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    lower: float
    upper: float

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise InputError(f"population has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if self.x.shape[0] < 2:
            raise InputError("a population needs at least 2 records")
        if not self.lower < self.upper:
            raise InputError(f"population bounds must satisfy lower < upper, got [{self.lower}, {self.upper}]")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one record (without the batch dimension)."""
        return tuple(self.x.shape[1:])

    @property
    def bounds(self) -> tuple[float, float]:
        """The closed interval every value lies in."""
        return (self.lower, self.upper)

    def fingerprint(self) -> str:
        """SHA-256 of the records and labels: identifies this population in cache keys."""
        return tensor_fingerprint(self.x, self.y)

    def random_half(self, seed: int) -> torch.Tensor:
        """A boolean mask selecting exactly ``len(self) // 2`` records, uniformly at random (seeded)."""
        return self.random_subset(len(self) // 2, seed)

    def random_subset(self, size: int, seed: int) -> torch.Tensor:
        """A boolean mask selecting exactly ``size`` records, uniformly at random (seeded)."""
        if not 0 < size < len(self):
            raise InputError(f"subset size must lie in [1, {len(self) - 1}], got {size}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(int(seed)))
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[order[:size]] = True
        return mask

    def split(self, members: torch.Tensor) -> Split:
        """The population as a train (the ``members`` mask) / test (everything else) :class:`Split`."""
        mask = self._mask(members)
        return Split(
            self.name,
            self.x[mask],
            self.y[mask],
            self.x[~mask],
            self.y[~mask],
            self.num_classes,
            self.lower,
            self.upper,
        )

    def _mask(self, members: torch.Tensor) -> torch.Tensor:
        mask = torch.as_tensor(members)
        if mask.dtype != torch.bool or tuple(mask.shape) != (len(self),):
            raise InputError(
                f"members must be a boolean mask of shape ({len(self)},), got {mask.dtype} {tuple(mask.shape)}"
            )
        if not bool(mask.any()) or bool(mask.all()):
            raise InputError("members must select some records and leave some out")
        return mask


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 over dtype, shape and bytes of each tensor (a content key for caches)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        array = np.ascontiguousarray(tensor.detach().cpu().numpy())
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def make_tabular_population(
    n: int = 5000,
    *,
    n_features: int = 20,
    n_classes: int = 10,
    n_informative: int = 10,
    clusters_per_class: int = 2,
    label_noise: float = 0.1,
    class_sep: float = 2.0,
    seed: int = 0,
) -> Population:
    """A generated classification table of ``n`` records, standardised, with declared bounds.

    ``make_classification`` draws clusters of records per class; ``label_noise`` flips that
    fraction of labels at random (the atypical records a model can only memorise). Features are
    standardised over the population and the bounds are its range widened by one unit, so
    perturbed queries near the data stay valid inputs. Same arguments, same population.
    """
    from sklearn.datasets import make_classification

    if n < 4:
        raise InputError(f"a population needs at least 4 records, got {n}")
    if n_classes < 2:
        raise InputError(f"a population needs at least 2 classes, got {n_classes}")
    if not 0.0 <= label_noise < 1.0:
        raise InputError(f"label_noise must lie in [0, 1), got {label_noise}")
    if n_informative > n_features or n_classes * clusters_per_class > 2**n_informative:
        raise InputError(
            f"{n_classes} classes × {clusters_per_class} clusters need more informative features than {n_informative} "
            f"(at most {n_features})"
        )
    data, labels = make_classification(
        n_samples=n,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=min(2, n_features - n_informative),
        n_classes=n_classes,
        n_clusters_per_class=clusters_per_class,
        flip_y=label_noise,
        class_sep=class_sep,
        random_state=seed,
    )
    data = np.asarray(data, dtype=np.float64)
    mean, std = data.mean(axis=0), data.std(axis=0)
    standard = ((data - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    lower = float(math.floor(float(standard.min()))) - 1.0
    upper = float(math.ceil(float(standard.max()))) + 1.0
    return Population(
        f"tabular-{n}x{n_features}-{n_classes}c-seed{seed}",
        torch.from_numpy(standard),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        n_classes,
        lower,
        upper,
    )


def population_from_split(split: Split) -> Population:
    """Every record of a split (train first, then test) as one population with the split's bounds."""
    return Population(
        split.name,
        torch.cat([split.x_train, split.x_test]),
        torch.cat([split.y_train, split.y_test]),
        split.num_classes,
        split.lower,
        split.upper,
    )
