"""Turns every failure into one line on stderr and an exit code: never a traceback for a user."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from modelward.core.errors import EXIT_USAGE, ModelwardError

EXIT_INTERNAL = 3


def run_guarded(command: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a click command; user errors exit 2 with one line, internal errors exit 3 with a hint."""
    try:
        return command(*args, standalone_mode=False, **kwargs)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except ModelwardError as exc:
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        sys.exit(exc.exit_code or EXIT_USAGE)
    except BrokenPipeError:
        sys.exit(0)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"error: {where}{exc.strerror or exc}", err=True)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("MODELWARD_DEBUG"):
            traceback.print_exc()
        message = str(exc).splitlines()[0] if str(exc) else ""
        click.echo(
            f"internal error: {type(exc).__name__}: {message} (set MODELWARD_DEBUG=1 for details; please report it)",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
