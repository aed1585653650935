"""Progress reporting for long work, without a display dependency: a callback told how much is done.

Capabilities accept an optional :data:`Progress` and call it with ``(done, total)`` in work units
they choose (samples attacked, epochs trained, noisy samples drawn); front doors turn it into a bar.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]


def report(progress: Progress | None, done: int, total: int) -> None:
    """Tell ``progress`` (when given) that ``done`` of ``total`` units are finished."""
    if progress is not None:
        progress(done, total)


def scaled(progress: Progress | None, offset: int, total: int) -> Progress | None:
    """A callback for one part of a larger job: its ``(done, _)`` lands at ``offset + done`` of ``total``."""
    if progress is None:
        return None
    outer = progress

    def inner(done: int, _part_total: int) -> None:
        outer(offset + done, total)

    return inner
