"""Pytest plugin (loaded with -p): reproducible property tests, and one torch thread per test process.

Hypothesis runs derandomised without deadlines, so CI never flakes on timing. Torch gets one
thread per process: pytest-xdist already runs one process per core, and torch's own threads on
top oversubscribe the machine (a 6 s training fixture took 112 s that way).
"""

from __future__ import annotations

import importlib.util

from hypothesis import settings

settings.register_profile("modelward", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("modelward")

if importlib.util.find_spec("torch") is not None:
    import torch

    torch.set_num_threads(1)
