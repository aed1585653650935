"""Pytest plugin (loaded with -p): property tests are reproducible (derandomised) and free of timing flakes."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("modelward", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("modelward")
