"""Data that ships with scikit-learn, as torch tensors with seeded, stratified splits.

The 8×8 digit images stand in for uploaded images (scaled to [0, 1], shape ``(N, 1, 8, 8)``);
the breast-cancer table stands in for sensitive records (standardised on the training split,
then bounded by the training range so classifiers can declare honest bounds). Nothing is
downloaded: both sets are inside the scikit-learn wheel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """A train/test split of one dataset, with the bounds its values live in."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    lower: float
    upper: float

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


def load_digits_images(seed: int = 0, test_fraction: float = 0.3) -> Split:
    """The 1,797 handwritten digits as ``(N, 1, 8, 8)`` images in [0, 1], ten classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = _split_indices(labels, test_fraction, seed)
    x = torch.from_numpy(images).unsqueeze(1)
    y = torch.from_numpy(labels)
    return Split("digits", x[train], y[train], x[test], y[test], 10, 0.0, 1.0)


def load_breast_cancer_table(seed: int = 0, test_fraction: float = 0.3) -> Split:
    """The 569 breast-cancer records, standardised with the training split's statistics, two classes.

    Values are clipped to the training split's range widened by one standard deviation, and those
    bounds are the split's declared bounds: test records outside them are brought inside, never
    rejected later by a classifier's bound check.
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    data = np.asarray(bunch.data, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train, test = _split_indices(labels, test_fraction, seed)
    mean, std = data[train].mean(axis=0), data[train].std(axis=0)
    standard = (data - mean) / np.where(std > 0, std, 1.0)
    lower, upper = float(standard[train].min()) - 1.0, float(standard[train].max()) + 1.0
    standard = np.clip(standard, lower, upper).astype(np.float32)
    x = torch.from_numpy(standard)
    y = torch.from_numpy(labels)
    return Split("breast-cancer", x[train], y[train], x[test], y[test], 2, lower, upper)
