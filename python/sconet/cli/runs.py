"""Ledger and decision commands: ``sconet runs`` (+ ``runs show``), ``sconet promote``, ``sconet predict``.

Thin: options -> :mod:`sconet.experiments` / :func:`sconet.experiments.promote` /
:class:`sconet.predict.Screener` -> printed summary or ``--json``. Expected failures print one
``error: ...`` line to stderr and exit with status 2; a refused promotion exits with status 1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from sconet.cli import app
from sconet.cli._common import JSON_HELP, JSON_METAVAR, emit_json
from sconet.cli._common import errors as _errors
from sconet.cli._common import fail as _fail
from sconet.cli._render import (
    AlignmentOpt,
    GeometryOpt,
    HeadOpt,
    ImputeOpt,
    PresetOpt,
    RepresentationOpt,
    SigmaJointOpt,
    SigmaLimbOpt,
    render_spec,
)
from sconet.cli.video import (
    BackendOpt,
    BackendOptionOpt,
    FrameStepOpt,
    MinRateOpt,
    ModelOpt,
    RoiOpt,
    extract_config,
)

EXIT_REFUSED = 1

LedgerOpt = Annotated[
    str | None,
    typer.Option("--ledger", help="Ledger file (default $SCONET_LEDGER or runs/ledger.sqlite)."),
]

runs_app = typer.Typer(
    name="runs",
    help="List the runs recorded in the ledger; `sconet runs show ID` for one run.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(runs_app, name="runs")


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}"


def _table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def _open(ledger: str | None):
    from sconet.experiments import open_ledger

    db = open_ledger(ledger, must_exist=True)
    if db is None:
        _fail("the ledger is disabled (--ledger none / $SCONET_LEDGER=none)")
    return db


@runs_app.callback()
def runs_cmd(
    ctx: typer.Context,
    ledger: LedgerOpt = None,
    last: Annotated[int | None, typer.Option("--last", min=1, help="Only the last N runs.")] = None,
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
) -> None:
    """Table of the recorded runs: best test F1 / accuracy and validation-selected test metrics.

    'best' values are picked on the test set itself (optimistic); 'val-selected' gives the test
    metrics at the evaluation where val_f1 was best (runs with --val-fraction).
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"ledger": ledger, "json": json_out}
        return
    with _errors():
        from sconet.experiments.groups import group_summaries

        db = _open(ledger)
        runs = db.runs(limit=last)
        groups = group_summaries(db, runs)
        doc = {
            "ledger": str(db.path),
            "runs": [r.to_dict() for r in runs],
            "groups": [g.to_dict() for g in groups],
        }
        if json_out == "-":
            emit_json(doc, "-")
            return
        if json_out is not None:
            typer.echo(f"wrote {emit_json(doc, json_out)}", err=True)
        if not runs:
            typer.echo(f"no runs recorded in {db.path}")
            return
        rows = []
        for r in runs:
            vs = r.val_selected
            rows.append(
                [
                    str(r.id),
                    r.status,
                    r.recipe or "?",
                    r.representation or "?",
                    r.split or "?",
                    f"{r.iteration if r.iteration is not None else '?'}/{r.iters or '?'}",
                    _pct(r.best_test_f1),
                    _pct(r.best_test_accuracy),
                    f"{_pct(vs['test_f1'])} / {_pct(vs['test_accuracy'])} @{vs['iteration']}" if vs else "-",
                    (r.started_at or "")[:16].replace("T", " "),
                ]
            )
        typer.echo(f"ledger: {db.path}")
        typer.echo(
            _table(
                [
                    "id",
                    "status",
                    "recipe",
                    "representation",
                    "split",
                    "iter",
                    "best F1",
                    "best acc",
                    "val-selected F1 / acc",
                    "started (UTC)",
                ],
                rows,
                right={0, 5, 6, 7},
            )
        )
        for r in runs:
            if r.status_note or r.stop_reason:
                typer.echo(f"  #{r.id} {r.status}: {r.status_note or r.stop_reason}")
        if groups:
            typer.echo("\nseed groups (final in-run test metrics)")
            for g in groups:
                typer.echo(f"  {g.line()}")
        typer.echo(
            "\nbest F1 / acc: best in-run test values (chosen on the test set); val-selected: test metrics "
            "at the best val_f1; lost: recorded as running, but its process or heartbeat is gone. "
            "Details: sconet runs show ID; sconet runs diff A B; sconet runs follow ID"
        )


@runs_app.command("show")
def runs_show_cmd(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(help="Run id (first column of `sconet runs`).")],
    ledger: LedgerOpt = None,
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
) -> None:
    """One run: settings, in-run evaluations, checkpoints, standalone evaluations, promotions."""
    parent = ctx.obj or {}
    ledger = ledger or parent.get("ledger")
    json_out = json_out or parent.get("json")
    with _errors():
        db = _open(ledger)
        row = db.run_row(run_id)
        if row is None:
            _fail(f"{db.path}: no run with id {run_id}")
        summary = next(s for s in db.runs() if s.id == run_id)
        ckpts = db.checkpoints(run_id)
        evals = db.run_evals(run_id)
        standalone = db.evaluations(c.sha256 for c in ckpts)
        promotions = db.promotions(run_id)
        doc = {
            "run": {**row, "status": summary.status},
            "summary": summary.to_dict(),
            "evals": evals,
            "checkpoints": [c.to_dict() for c in ckpts],
            "evaluations": [e.to_dict() for e in standalone],
            "promotions": promotions,
        }
        if json_out == "-":
            emit_json(doc, "-")
            return
        if json_out is not None:
            typer.echo(f"wrote {emit_json(doc, json_out)}", err=True)
        typer.echo(
            f"run #{row['id']}: {summary.status}  {row['recipe']}  ({row['representation']}, {row['arch']})"
        )
        for key in (
            "out",
            "split",
            "split_key",
            "seed",
            "iters",
            "start_iteration",
            "iteration",
            "resumed_from",
            "cache_path",
            "cache_fingerprint",
            "git_commit",
            "sconet_version",
            "device",
            "host",
            "pid",
            "started_at",
            "ended_at",
            "error",
            "group_name",
            "init_sha256",
            "launcher",
        ):
            if row.get(key) is not None:
                typer.echo(f"  {key}: {row[key]}")
        if summary.status_note:
            typer.echo(f"  {summary.status}: {summary.status_note}")
        stop = row.get("stop_evidence")
        if stop:
            typer.echo(f"  stopped by rule: {stop.get('reason')}")
        typer.echo(f"  overrides: {', '.join(row['overrides']) if row.get('overrides') else 'none'}")
        if evals:
            typer.echo("\nin-run evaluations")
            keys = [
                k
                for k in ("test_accuracy", "test_f1", "val_accuracy", "val_f1")
                if any(k in e for e in evals)
            ]
            ci = any("test_f1_high" in e for e in evals)

            def interval(e: dict[str, Any]) -> str:
                return (
                    f"[{_pct(e.get('test_f1_low'))}, {_pct(e.get('test_f1_high'))}]"
                    if "test_f1_high" in e
                    else "-"
                )

            typer.echo(
                _table(
                    ["iter", *keys, *(["test F1 95 %"] if ci else [])],
                    [
                        [str(e["iteration"]), *(_pct(e.get(k)) for k in keys), *([interval(e)] if ci else [])]
                        for e in evals
                    ],  # fmt: skip
                    right=set(range(len(keys) + 1)),
                )
            )
        typer.echo("\ncheckpoints" if ckpts else "\nno checkpoints recorded")
        if ckpts:
            rows = []
            for c in ckpts:
                m = c.metrics or {}
                at = (
                    ""
                    if c.metrics_iteration in (None, c.iteration)
                    else f" (metrics of iter {c.metrics_iteration})"
                )
                rows.append(
                    [
                        str(c.iteration),
                        c.role + (f":{c.metric}" if c.metric else ""),
                        c.sha256[:12],
                        _pct(m.get("test_f1")) + at,
                        "yes" if Path(c.path).is_file() else "gone",
                        c.path,
                    ]
                )
            typer.echo(_table(["iter", "role", "sha256", "in-run test F1", "file", "path"], rows, right={0}))
        if standalone:
            typer.echo("\nstandalone evaluations")
            typer.echo(
                _table(
                    ["at", "purpose", "sha256", "set", "frames", "acc", "F1"],
                    [
                        [
                            e.at,
                            e.purpose or "",
                            (e.sha256 or "")[:12],
                            e.subset or "",
                            str(e.max_frames),
                            _pct(e.metrics.get("accuracy")),
                            _pct(e.metrics.get("f1")),
                        ]
                        for e in standalone
                    ],
                )
            )
        if promotions:
            typer.echo("\npromotion decisions")
            for p in promotions:
                failed = [r["name"] for r in (p["evidence"] or []) if r.get("passed") is False]
                verdict = "promoted" if p["accepted"] else f"refused (rule {', '.join(failed)})"
                typer.echo(f"  {p['at']}  {p['sha256'][:12]}  {verdict}  {p['artifact_path'] or ''}")


@app.command("promote")
def promote_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint file saved by a recorded run.")],
    ledger: LedgerOpt = None,
    artifact_dir: Annotated[
        Path, typer.Option("--artifact-dir", help="Where promoted checkpoints go.")
    ] = Path("artifact"),
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0.0, help="Rule (b): largest |standalone - in-run| per metric."),
    ] = 1e-3,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Cache store (default: the one matching the checkpoint).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the rules; copy nothing.")] = False,
    require_significant: Annotated[
        bool,
        typer.Option(
            "--require-significant",
            help="Rule (a) also needs the paired interval of the F1 gain over the promoted one to exclude 0.",
        ),
    ] = False,
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
) -> None:
    """Promote a checkpoint to the artifact folder only if it passes the decision rules.

    (a) it beats the promoted checkpoint of its split on full-test macro-F1 (shown with the paired-
    bootstrap interval of the gain and McNemar's test; with --require-significant the interval must
    lie above 0); (b) a standalone re-evaluation reproduces the in-run metrics the ledger recorded
    for it; (c) its sha256 is the one the run saved. The record keeps the comparison.

    Exit status 0 when promoted, 1 when refused (the failed rules are printed), 2 on errors.
    """
    with _errors():
        from sconet.experiments import promote

        result = promote(
            checkpoint,
            ledger=ledger,
            artifact_dir=artifact_dir,
            tolerance=tolerance,
            device=device,
            cache=cache,
            dry_run=dry_run,
            require_significant=require_significant,
            log=lambda m: typer.echo(m, err=True),
        )
        if json_out == "-":
            emit_json(result.to_dict(), "-")
        else:
            typer.echo(result.format())
            if json_out is not None:
                typer.echo(f"wrote {emit_json(result.to_dict(), json_out)}")
        if result.failed:
            raise typer.Exit(code=EXIT_REFUSED)


@app.command("predict")
def predict_cmd(
    pose: Annotated[
        Path,
        typer.Argument(
            help="One pose sequence (.pkl, .npy or .npz float [T, 17, 3]) or a video of the subject walking "
            "(.mp4, .avi, .mov, ...: poses extracted first, see sconet pose)."
        ),
    ],
    ckpt: Annotated[
        Path,
        typer.Option(
            "--ckpt", help="A sconet checkpoint (best.pt, last.pt, a promoted file) or an OpenGait one."
        ),
    ],
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a PNG report (skeleton maps and numbers).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu (default) | auto | cuda | cuda:N.")] = "cpu",
    max_frames: Annotated[
        int | None,
        typer.Option("--max-frames", min=1, help="Frames used (default: as evaluated in training)."),
    ] = None,
    class_order: Annotated[
        str | None,
        typer.Option(
            "--class-order", help="Class order of an OpenGait checkpoint (2024 or 2025, the default)."
        ),
    ] = None,
    preset: PresetOpt = None,
    representation: RepresentationOpt = None,
    sigma_limb: SigmaLimbOpt = None,
    sigma_joint: SigmaJointOpt = None,
    geometry: GeometryOpt = None,
    alignment: AlignmentOpt = None,
    impute: ImputeOpt = None,
    head: HeadOpt = None,
    backend: BackendOpt = "blazepose",
    model: ModelOpt = None,
    backend_option: BackendOptionOpt = None,
    roi: RoiOpt = None,
    min_detection_rate: MinRateOpt = 0.5,
    frame_step: FrameStepOpt = 1,
    save_poses: Annotated[
        Path | None,
        typer.Option("--save-poses", help="Video input: also write its poses (.pkl or .npy + sidecar)."),
    ] = None,
) -> None:
    """Screen one subject: class probabilities, predicted class, postural asymmetry read-out.

    An OpenGait checkpoint records no render settings: state how its training maps were made
    with --preset or the render flags (the subject's maps are rendered the same way).

    From a video, the report also shows video frames with the detected skeleton and states the
    pose source; the output warns when the checkpoint was trained on another pose source.
    """
    # one forward pass: OpenMP threads that spin-wait between layers only steal the CPU from each
    # other on a busy machine (3-4x slower there); set before torch loads, the user's value wins
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with _errors():
        from sconet.video import is_video

        video_only = {
            "--model": model,
            "--backend-option": backend_option,
            "--roi": roi,
            "--save-poses": save_poses,
        }
        if not is_video(pose) and any(v is not None for v in video_only.values()):
            given = ", ".join(k for k, v in video_only.items() if v is not None)
            _fail(f"{given}: only for a video input ({pose} is read as a pose file)")
        config = (
            extract_config(backend, model, backend_option, roi, min_detection_rate, frame_step=frame_step)
            if is_video(pose)
            else None
        )
        stated = render_spec(
            preset, representation, sigma_limb, sigma_joint, geometry, alignment, impute, head
        )
        from sconet.predict import Screener, write_report

        screener = Screener(
            ckpt, device=device, max_frames=max_frames, render=stated, class_order=class_order
        )
        if is_video(pose):
            result = _screen_video(pose, screener, config, report, save_poses)
        else:
            result = screener.screen(pose, keep_maps=report is not None)
            if report is not None:
                write_report(result, report)
        doc = result.to_dict()
        if report is not None:
            doc["report"] = str(report)
        if json_out == "-":
            emit_json(doc, "-")
            return
        typer.echo(result.format())
        if report is not None:
            typer.echo(f"report: {report}")
        if json_out is not None:
            typer.echo(f"json: {emit_json(doc, json_out)}")


def _screen_video(
    video: Path, screener: Any, config: Any, report: Path | None, save_poses: Path | None
) -> Any:
    """Poses (with a progress bar) -> screening -> report; the warnings also go to stderr."""
    from sconet.cli.data import _progress_bar
    from sconet.video import save_poses as _save
    from sconet.video.screen import screen_video, write_video_report

    bar, update = _progress_bar("pose", "frames", None)
    with bar:
        done = screen_video(video, screener, config, progress=update, keep_maps=report is not None)
    if save_poses is not None:
        _save(done.extraction, save_poses)
    if report is not None:
        write_video_report(done, report)
    for warning in done.result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return done.result
