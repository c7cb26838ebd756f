"""The `sconet` command line: a thin layer over the Python API.

Each command parses its options, calls one API function and prints the result. Commands are
grouped by stage in the modules of this package and registered on :data:`app` here.
"""

from __future__ import annotations

import typer
import typer.core

from sconet.cli._common import normalise_json_args


class _SconetGroup(typer.core.TyperGroup):
    """The root command group; ``--json`` without a file name means ``--json -`` (stdout)."""

    def parse_args(self, ctx: typer.core._click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, normalise_json_args(args))


app = typer.Typer(
    cls=_SconetGroup,
    name="sconet",
    help="Scoliosis screening from gait: synthetic data, skeleton-map caches, training, evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Scoliosis screening from gait: synthetic data, skeleton-map caches, training, evaluation."""


@app.command("version")
def version_cmd() -> None:
    """Print the sconet and renderer versions."""
    from sconet import __version__
    from sconet._skelmap import RENDERER_VERSION

    typer.echo(f"sconet {__version__} (renderer {RENDERER_VERSION})")


def _register() -> None:
    # Stage modules add their commands to `app` on import.
    import importlib

    for name in ("data", "migrate", "training", "runs", "experiment", "video"):
        try:
            importlib.import_module(f"sconet.cli.{name}")
        except ModuleNotFoundError as exc:  # pragma: no cover - only while a stage is missing
            if exc.name != f"sconet.cli.{name}":
                raise


_register()


def main() -> None:
    """Entry point of the `sconet` console script."""
    app()
