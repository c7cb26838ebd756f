"""Comparison and experiment commands: ``sconet compare A B``, ``sconet experiment run|check PLAN``,
``sconet runs diff A B`` and ``sconet runs follow ID``.

Thin: options -> :mod:`sconet.experiments.sources` / :func:`sconet.experiments.compare.compare_sets`
/ :func:`sconet.experiments.runner.run_plan` -> printed summary or ``--json``. Expected failures
print one ``error: ...`` line to stderr and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sconet.cli import app
from sconet.cli._common import JSON_HELP, JSON_METAVAR, ProgressOpt, emit_json
from sconet.cli._common import errors as _errors
from sconet.cli.runs import runs_app

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
    device: Annotated[
        str, typer.Option("--device", help="auto | cpu | cuda | cuda:N (checkpoints evaluated now).")
    ] = "auto",
    reevaluate: Annotated[
        bool,
        typer.Option(
            "--reevaluate", help="Evaluate checkpoints again instead of reusing their ledger evaluation."
        ),
    ] = False,
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
    progress: ProgressOpt = None,
) -> None:
    """Compare two models on the same test ids: paired-bootstrap intervals of the differences, McNemar.

    Differences are A - B for accuracy, macro P/R/F1, sensitivity and specificity, with intervals
    from resampling the common sequences (within each class) once for both models; McNemar's test
    compares per-sequence correctness.

    A checkpoint is evaluated on its full test set unless the ledger already holds such an
    evaluation of the same file (same sha256, set and frames). Different splits are refused.
    """
    with _errors():
        from sconet.experiments.compare import compare_sets
        from sconet.experiments.sources import load_prediction_set

        log = lambda m: typer.echo(m, err=True)  # noqa: E731
        sa = load_prediction_set(
            a, ledger=ledger, device=device, reevaluate=reevaluate, log=log, progress=progress
        )
        sb = load_prediction_set(
            b, ledger=ledger, device=device, reevaluate=reevaluate, log=log, progress=progress
        )
        result = compare_sets(sa, sb, n_resamples=resamples, level=level, seed=seed)
        if json_out == "-":
            emit_json(result.to_dict(), "-")
            return
        typer.echo(result.format())
        if json_out is not None:
            typer.echo(f"wrote {emit_json(result.to_dict(), json_out)}", err=True)


@experiment_app.command("run")
def experiment_run_cmd(
    plan: Annotated[Path, typer.Argument(help="Plan TOML (e.g. experiments/next-experiments.toml).")],
    device: Annotated[str | None, typer.Option("--device", help="Override the plan's device.")] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Start afresh in run folders that hold an earlier run of this plan."
        ),
    ] = False,
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
    progress: ProgressOpt = None,
) -> None:
    """Run a plan: the baseline, each candidate under the stop rule, the report, the winner promoted."""
    with _errors(
        "interrupted (finished steps are in the ledger; run again with --overwrite to redo the plan)"
    ):
        from sconet.experiments.runner import run_plan

        result = run_plan(
            plan, device=device, progress=progress, overwrite=overwrite, log=lambda m: typer.echo(m, err=True)
        )
        if json_out == "-":
            emit_json(result.to_dict(), "-")
            return
        if json_out is not None:
            typer.echo(f"wrote {emit_json(result.to_dict(), json_out)}", err=True)
        typer.echo(f"report: {result.report}")
        typer.echo(f"curves: {result.curves}")
        for s in result.steps:
            typer.echo(f"  {s.name}: {s.status}{': ' + s.reason if s.reason else ''}")
        typer.echo(f"winner: {result.winner} ({result.winner_checkpoint})")
        if result.promotion is not None:
            typer.echo(
                "promoted: "
                + (
                    str(result.promotion.get("artifact"))
                    if result.promotion.get("promoted")
                    else "no (refused by the promotion rules; see the report)"
                )
            )


@experiment_app.command("check")
def experiment_check_cmd(
    plan: Annotated[Path, typer.Argument(help="Plan TOML.")],
) -> None:
    """Check a plan: every candidate changes one factor group (unless allow_multi); nothing runs."""
    with _errors():
        from sconet.experiments.plan import load_plan
        from sconet.experiments.runner import check_plan

        p = load_plan(plan)
        for step, groups in check_plan(p):
            where = (
                ", ".join(f"{g} ({', '.join(keys)})" for g, keys in groups.items()) or "no factor (a repeat)"
            )
            typer.echo(f"step {step.name!r}: {'disabled; ' if not step.enabled else ''}changes {where}")
        typer.echo(f"ok: {plan} ({len(p.steps)} steps)")


# sconet runs diff / follow ---------------------------------------------------------------------


def _run_row(db: Any, ref: str) -> dict[str, Any] | None:
    """A ledger run by id, or the latest run recorded for a run folder."""
    if ref.isdigit() and not Path(ref).is_dir():
        return db.run_row(int(ref))
    run_id = db.run_id_for(Path(ref))
    return db.run_row(run_id) if run_id is not None else None


@runs_app.command("diff")
def runs_diff_cmd(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Run id or run folder.")],
    b: Annotated[str, typer.Argument(help="Run id or run folder.")],
    ledger: LedgerOpt = None,
    show_out: Annotated[bool, typer.Option("--show-out", help="Also list run.out / run.ledger.")] = False,
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
) -> None:
    """The effective settings two runs differ in: render settings, recipe keys (after inheritance
    and --set), warm-start checkpoint, seed, split, sconet and renderer versions."""
    parent = ctx.obj or {}
    with _errors():
        from sconet.experiments import open_ledger
        from sconet.experiments.rundiff import diff_runs

        db = open_ledger(ledger or parent.get("ledger"), must_exist=True)
        if db is None:
            raise ValueError("the ledger is disabled (--ledger none / $SCONET_LEDGER=none)")
        rows = []
        for ref in (a, b):
            row = _run_row(db, ref)
            if row is None:
                raise ValueError(f"{db.path}: no run {ref!r} (a run id or a recorded run folder)")
            rows.append(row)
        result = diff_runs(rows[0], rows[1], include_out=show_out)
        json_out = json_out or parent.get("json")
        if json_out == "-":
            emit_json(result.to_dict(), "-")
            return
        typer.echo(result.format())
        if json_out is not None:
            typer.echo(f"wrote {emit_json(result.to_dict(), json_out)}", err=True)


@runs_app.command("follow")
def runs_follow_cmd(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run id or run folder (e.g. one started with --detach).")],
    ledger: LedgerOpt = None,
    interval: Annotated[float, typer.Option("--interval", min=0.05, help="Seconds between looks.")] = 1.0,
    wait_start: Annotated[
        float, typer.Option("--wait-start", min=0.0, help="Seconds to wait for a new run's first heartbeat.")
    ] = 120.0,
) -> None:
    """Print a run's log (or its metrics) as it grows, until it finishes, fails, stops or is lost.

    Exit status 0 when the run finished (or was stopped by a rule), 1 when it failed or was lost.
    """
    import time

    parent = ctx.obj or {}
    with _errors():
        from sconet.experiments import open_ledger
        from sconet.experiments.background import follow, liveness, read_heartbeat

        db = open_ledger(ledger or parent.get("ledger"))

        def lookup(ref: str) -> dict[str, Any] | None:
            # the ledger of a run started a moment ago may not exist yet: readers never create it
            return _run_row(db, ref) if db is not None and db.path.is_file() else None

        row = lookup(run)
        if row is None and not Path(run).is_dir():
            raise ValueError(f"{run}: no such run folder, and no recorded run with this id")
        out = Path(row["out"]) if row is not None else Path(run)
        t0 = time.monotonic()

        def status() -> tuple[str, str]:
            current = lookup(str(row["id"]) if row is not None else str(out))
            if current is not None:
                state, why = liveness(
                    current["status"], current["out"], pid=current["pid"], host=current["host"]
                )
                if state != "running" and current["status"] == "running":  # ended between the two reads
                    again = lookup(str(current["id"]))
                    if again is not None and again["status"] != "running":
                        return again["status"], ""
                return state, why
            if read_heartbeat(out) is not None:
                return liveness("running", str(out))
            if time.monotonic() - t0 > wait_start:
                return "not started", f"no heartbeat after {wait_start:.0f} s; see {out}/train.log"
            return "running", ""

        final = follow(out, status=status, write=typer.echo, poll_s=interval)
        if final not in ("finished", "stopped"):
            raise typer.Exit(code=1)
