"""Progress bars for long commands: a rich bar on a terminal's stderr, nothing when output is piped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from modelward.core.progress import Progress


@contextmanager
def progress_bar(description: str, *, stream: TextIO | None = None, force: bool = False) -> Iterator[Progress | None]:
    """Yield a :data:`Progress` callback drawing a bar on ``stream`` (stderr), or None when it is not a terminal.

    ``force`` draws even when ``stream`` is not a terminal (tests). The bar disappears when the
    work is done, so tables and JSON that follow stay clean.
    """
    target = sys.stderr if stream is None else stream
    if not (force or target.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    console = Console(file=target, force_terminal=force or None)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with RichProgress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance
