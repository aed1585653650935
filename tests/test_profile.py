"""The suite runs under the reproducible hypothesis profile (loaded by pyproject's ``-p hypothesis_profile``)."""

from __future__ import annotations

from hypothesis import settings


def test_property_tests_are_derandomised_without_deadlines() -> None:
    assert settings.default.derandomize is True
    assert settings.default.deadline is None
