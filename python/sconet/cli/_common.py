"""What every command shares: expected failures become one ``error: ...`` line and exit status 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

EXIT_ERROR = 2
"""Exit status of a command that failed with an expected, explained error."""


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with :data:`EXIT_ERROR`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=EXIT_ERROR)


@contextmanager
def errors(interrupted: str = "interrupted") -> Iterator[None]:
    """Expected errors -> one ``error:`` line on stderr and exit status 2 (no traceback).

    ``ValueError`` covers ConfigError, TrainError, CheckpointError, PoseError, SynthError;
    ``RuntimeError`` covers CacheError (other RuntimeErrors are prefixed with their type). Ctrl-C
    prints ``interrupted`` and exits with 130.
    """
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo(interrupted, err=True)
        raise typer.Exit(code=130) from None
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in str(exc):
            msg = f"{exc.filename}: {exc.strerror or exc}"
        text = str(msg).strip() or type(exc).__name__
        if isinstance(exc, RuntimeError) and type(exc).__name__ != "CacheError":
            text = f"{type(exc).__name__}: {text}"
        fail("; ".join(line.strip() for line in text.splitlines() if line.strip()))
