"""What every command shares: expected failures become one ``error: ...`` line and exit status 2;
one meaning of ``--json`` (``--json FILE.json`` writes the document to a file, ``--json -`` or a
bare ``--json`` prints it on stdout)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Progress bar (default: on a terminal; plain lines otherwise)."
    ),
]

EXIT_ERROR = 2
"""Exit status of a command that failed with an expected, explained error."""


JSON_HELP = "Also write the result as JSON to FILE.json; a bare --json or '--json -' prints only the JSON."
JSON_METAVAR = "FILE.json|-"


def normalise_json_args(args: Sequence[str]) -> list[str]:
    """``--json`` not followed by ``-`` or a ``*.json`` name becomes ``--json -`` (stdout), so the
    older flag form (``sconet predict pose.pkl --json``) keeps working beside ``--json out.json``."""
    out: list[str] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--json":
            following = args[i + 1] if i + 1 < len(args) else None
            if following is None or not (following == "-" or following.lower().endswith(".json")):
                out.append("-")
    return out


def emit_json(doc: Any, target: str | Path) -> Path | None:
    """Write ``doc`` as JSON to ``target`` (atomically, with the umask's mode), or to stdout for
    ``-``; returns the file written (``None`` for stdout)."""
    from sconet._io import atomic_write_text

    text = json.dumps(doc, indent=1, default=str) + "\n"
    if str(target) == "-":
        sys.stdout.write(text)
        return None
    path = Path(target).expanduser()
    if path.is_dir():
        raise ValueError(f"{path}: --json names a folder; give a file name such as {path / 'result.json'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with :data:`EXIT_ERROR`."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=EXIT_ERROR)


@contextmanager
def errors(interrupted: str = "interrupted") -> Iterator[None]:
    """Expected errors -> one ``error:`` line on stderr and exit status 2 (no traceback).

    ``ValueError`` covers ConfigError, TrainError, CheckpointError, PoseError, SynthError;
    ``RuntimeError`` covers CacheError (other RuntimeErrors are prefixed with their type). Ctrl-C
    prints ``interrupted`` and exits with 130 (143 for a SIGTERM turned into an interrupt).
    """
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM where a command turns it into one
        typer.echo(interrupted, err=True)
        raise typer.Exit(code=128 + int(getattr(exc, "signum", 2))) from None
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in str(exc):
            msg = f"{exc.filename}: {exc.strerror or exc}"
        text = str(msg).strip() or type(exc).__name__
        if isinstance(exc, RuntimeError) and type(exc).__name__ != "CacheError":
            text = f"{type(exc).__name__}: {text}"
        fail("; ".join(line.strip() for line in text.splitlines() if line.strip()))
