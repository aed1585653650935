"""The extraction attacker's data: disjoint from the evaluation data, shifts that keep the images."""

from __future__ import annotations

import torch

from modelward.attacks.extraction.attacker_data import attacker_split, pixel_shifts
from modelward.datasets.builtin import load_digits_images


def test_attacker_and_evaluation_halves_are_disjoint_held_out_data() -> None:
    split = load_digits_images(seed=0)
    attacker, evaluation, labels = attacker_split(split)
    assert attacker.shape[0] + evaluation.shape[0] == split.x_test.shape[0]
    assert labels.shape[0] == evaluation.shape[0]
    flat_attacker = {tuple(row.tolist()) for row in attacker.flatten(1)}
    assert not any(tuple(row.tolist()) in flat_attacker for row in evaluation.flatten(1))
    train_rows = {tuple(row.tolist()) for row in split.x_train.flatten(1)}
    assert sum(tuple(row.tolist()) in train_rows for row in attacker.flatten(1)) <= 2  # duplicates in the data only
    again = attacker_split(split)
    assert torch.equal(again[0], attacker)  # seeded


def test_pixel_shifts_are_nine_shifted_copies_in_bounds() -> None:
    x = torch.rand(3, 1, 8, 8)
    shifted = pixel_shifts(x)
    assert shifted.shape == (27, 1, 8, 8)
    assert torch.equal(shifted[4 * 3 : 5 * 3], x)  # the unshifted copy sits in the middle
    assert torch.equal(shifted[5 * 3 : 6 * 3, ..., :7], x[..., 1:])  # shifted one pixel left, zero fill
    assert float(shifted.min()) >= 0.0 and float(shifted.max()) <= 1.0
    table = torch.rand(4, 5)
    assert pixel_shifts(table) is table
