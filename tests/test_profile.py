"""The suite runs under its settings plugin (loaded by pyproject's ``-p suite_settings``)."""

from __future__ import annotations

from hypothesis import settings


def test_property_tests_are_derandomised_without_deadlines() -> None:
    assert settings.default.derandomize is True
    assert settings.default.deadline is None


def test_torch_uses_one_thread_per_test_process() -> None:
    import torch

    assert torch.get_num_threads() == 1
