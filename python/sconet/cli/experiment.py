"""Comparison and experiment commands: ``sconet compare A B`` and ``sconet experiment run|check PLAN``.

Thin: options -> :mod:`sconet.experiments.sources` / :func:`sconet.experiments.compare.compare_sets`
/ :func:`sconet.experiments.runner.run_plan` -> printed summary or ``--json``. Expected failures
print one ``error: ...`` line to stderr and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from sconet.cli import app
from sconet.cli._common import errors as _errors

experiment_app = typer.Typer(
    name="experiment",
    help="Run an experiment plan: a baseline and controlled candidates, with stop rules and a report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(experiment_app, name="experiment")

LedgerOpt = Annotated[
    str | None, typer.Option("--ledger", help="Ledger file (default $SCONET_LEDGER or runs/ledger.sqlite).")
]


@app.command("compare")
def compare_cmd(
    a: Annotated[str, typer.Argument(help="Checkpoint file, or a ledger evaluation id (a number).")],
    b: Annotated[str, typer.Argument(help="Checkpoint file, or a ledger evaluation id (a number).")],
    ledger: LedgerOpt = None,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="Bootstrap resamples.")] = 2000,
    level: Annotated[float, typer.Option("--level", min=0.5, max=0.999, help="Interval level.")] = 0.95,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap resamples.")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N (checkpoints evaluated now).")] = "auto",
    reevaluate: Annotated[
        bool, typer.Option("--reevaluate", help="Evaluate checkpoints again instead of reusing their ledger evaluation.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar (default: on a terminal).")] = None,
) -> None:
    """Compare two models on the test ids both were evaluated on: metric differences with paired-
    bootstrap intervals, and McNemar's test on per-sequence correctness.

    A checkpoint is evaluated on its full test set unless the ledger already holds such an
    evaluation of the same file (same sha256, set and frames). Different splits are refused.
    """
    with _errors():
        from sconet.experiments.compare import compare_sets
        from sconet.experiments.sources import load_prediction_set

        log = lambda m: typer.echo(m, err=True)  # noqa: E731
        sa = load_prediction_set(a, ledger=ledger, device=device, reevaluate=reevaluate, log=log, progress=progress)
        sb = load_prediction_set(b, ledger=ledger, device=device, reevaluate=reevaluate, log=log, progress=progress)
        result = compare_sets(sa, sb, n_resamples=resamples, level=level, seed=seed)
        if json_out:
            sys.stdout.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
        else:
            typer.echo(result.format())


@experiment_app.command("run")
def experiment_run_cmd(
    plan: Annotated[Path, typer.Argument(help="Plan TOML (e.g. experiments/next-experiments.toml).")],
    device: Annotated[str | None, typer.Option("--device", help="Override the plan's device.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start afresh in run folders that hold an earlier run of this plan.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal).")] = None,
) -> None:
    """Run a plan: the baseline, then each candidate under the stop rule; write the report; promote the winner."""
    with _errors("interrupted (finished steps are in the ledger; run again with --overwrite to redo the plan)"):
        from sconet.experiments.runner import run_plan

        result = run_plan(plan, device=device, progress=progress, overwrite=overwrite,
                          log=lambda m: typer.echo(m, err=True))
        if json_out:
            sys.stdout.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
            return
        typer.echo(f"report: {result.report}")
        typer.echo(f"curves: {result.curves}")
        for s in result.steps:
            typer.echo(f"  {s.name}: {s.status}{': ' + s.reason if s.reason else ''}")
        typer.echo(f"winner: {result.winner} ({result.winner_checkpoint})")
        if result.promotion is not None:
            typer.echo("promoted: " + (str(result.promotion.get("artifact")) if result.promotion.get("promoted")
                                       else "no (refused by the promotion rules; see the report)"))


@experiment_app.command("check")
def experiment_check_cmd(
    plan: Annotated[Path, typer.Argument(help="Plan TOML.")],
) -> None:
    """Read a plan and check every candidate's changes (one factor group each unless allow_multi); run nothing."""
    with _errors():
        from sconet.experiments.plan import load_plan
        from sconet.experiments.runner import check_plan

        p = load_plan(plan)
        for step, groups in check_plan(p):
            where = ", ".join(f"{g} ({', '.join(keys)})" for g, keys in groups.items()) or "no factor (a repeat)"
            typer.echo(f"step {step.name!r}: {'disabled; ' if not step.enabled else ''}changes {where}")
        typer.echo(f"ok: {plan} ({len(p.steps)} steps)")
