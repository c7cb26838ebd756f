"""Training commands: ``sconet train`` and ``sconet eval``.

Thin: options -> :func:`sconet.training.train` / :func:`sconet.evaluation.evaluate_checkpoint` ->
printed summary. torch is imported inside the command functions only, so other commands start
fast. Expected failures print one ``error: ...`` line to stderr and exit with status 2.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from sconet.cli import app
from sconet.cli._common import JSON_HELP, JSON_METAVAR, ProgressOpt, emit_json, errors
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


class ClassOrder(StrEnum):
    o2024 = "2024"
    o2025 = "2025"


class ModelArch(StrEnum):
    sconet = "sconet"
    drf = "drf"


class Subset(StrEnum):
    test = "test"
    val = "val"
    train = "train"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _same_representation(cache: Path, representation: str) -> None:
    """--representation with --cache: they must agree (the cache decides what is trained on)."""
    from sconet.cache import open_cache
    from sconet.render import get_representation

    render = open_cache(cache).render_config
    if render is None:  # imported maps of unknown settings: nothing to compare with
        return
    held = render.representation.name
    wanted = get_representation(representation).name
    if held != wanted:
        _fail(
            f"{cache}: holds {held!r} skeleton maps but --representation {representation} was given; "
            "drop --representation (the cache decides) or give the cache of that representation"
        )


@app.command("train")
def train_cmd(
    recipe: Annotated[
        str | None,
        typer.Option(
            "--recipe",
            help=(
                "Recipe name (sgd, adamw-multistep, adamw-cosine, drf-warmstart, demo-cpu) or a .toml path. "
                "Default: adamw-cosine."
            ),
        ),
    ] = None,
    model: Annotated[
        ModelArch | None,
        typer.Option(
            "--model",
            help=(
                "sconet (ScoNet-MT-ske) or drf (+ PAV-guided attention; "
                "gates via --set model.pga=both|channel|part|none)."
            ),
        ),
    ] = None,
    representation: Annotated[
        str | None,
        typer.Option(
            "--representation",
            help="Representation of the maps (data.representation; overrides the preset's).",
        ),
    ] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="Render preset of the maps (data.preset, e.g. opengait, opengait-sigma15-joint8); single "
            "settings via --set data.render.KEY=VALUE. The matching cache is found or built.",
        ),
    ] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Cache store to train on (instead of finding it).")
    ] = None,
    poses: Annotated[
        Path | None,
        typer.Option("--poses", help="Dataset root the cache was built from (default: built-in synthetic)."),
    ] = None,
    split: Annotated[
        Path | None,
        typer.Option(
            "--split", help="OpenGait split JSON (default: the synthetic data's Scoliosis1K_112.json)."
        ),
    ] = None,
    init_from: Annotated[
        Path | None,
        typer.Option("--init-from", help="Warm start from a sconet or OpenGait checkpoint (weights only)."),
    ] = None,
    class_order: Annotated[
        ClassOrder | None,
        typer.Option("--class-order", help="Class order of a foreign --init-from file (2024 or 2025)."),
    ] = None,
    iters: Annotated[int | None, typer.Option("--iters", help="Total iterations (run.iters).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run folder (default runs/<recipe>-<time>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Start afresh in an --out that holds a run (deletes its run files)."
        ),
    ] = False,
    val_fraction: Annotated[
        float | None,
        typer.Option("--val-fraction", help="Carve a stratified validation set from the training ids."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (run.seed).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = None,
    no_cut: Annotated[
        bool, typer.Option("--no-cut", help="Keep the full 64-pixel width (no 64 -> 44 cut).")
    ] = False,
    num_workers: Annotated[
        int | None, typer.Option("--num-workers", help="DataLoader worker processes (data.num_workers).")
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override any recipe value: section.key=value (TOML literal), repeatable."
        ),
    ] = None,
    print_config: Annotated[
        bool, typer.Option("--print-config", help="Print the resolved recipe as TOML and exit.")
    ] = False,
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            help="Run ledger (run.ledger; default $SCONET_LEDGER or runs/ledger.sqlite; 'none' = off).",
        ),
    ] = None,
    progress: ProgressOpt = None,
    no_memory_check: Annotated[
        bool,
        typer.Option(
            "--no-memory-check",
            help="Start even when the memory estimate says the run will not fit (run.memory_check=false).",
        ),
    ] = False,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds", min=1, help="Train the same config with N seeds (run.seed, +1, ...) in <out>/seed-<s>."
        ),
    ] = 1,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Start in the background (systemd-run --user if available) and return; log <out>/train.log.",
        ),
    ] = False,
) -> None:
    """Train ScoNet-MT-ske (or DRF) on a skeleton-map cache.

    `sconet runs` shows the run (running / finished / lost, by its heartbeat); `sconet runs
    follow ID` prints its progress; with --seeds, `sconet runs` adds the group's mean, standard
    deviation and pooled interval.
    """
    with errors("interrupted (a run continues from its last.pt with --resume)"):
        import time

        from sconet.training import apply_overrides, config_from_dict, load_recipe, to_toml
        from sconet.training.runfolder import check_run_folder

        config = None
        if out is not None:
            check_run_folder(out.expanduser())
        if resume:
            if out is None:
                _fail("--resume needs --out (the run folder to continue)")
            from sconet.checkpoint import read_checkpoint

            last = out / "last.pt"
            if not last.is_file():
                _fail(f"{out}: nothing to resume (no last.pt)")
            saved = read_checkpoint(last)
            if not saved.recipe:
                _fail(f"{last}: the checkpoint records no recipe")
            try:
                config = config_from_dict(saved.recipe)
            except ValueError as exc:
                _fail(f"{last}: the recipe saved in the checkpoint is not valid ({exc})")
            if recipe is not None:
                typer.echo(
                    f"note: --resume continues with the recipe saved in {last}; --recipe {recipe} ignored",
                    err=True,
                )
        else:
            config = load_recipe(recipe or "adamw-cosine")

        if cache is not None and representation is not None:
            _same_representation(cache, representation)
        explicit: list[tuple[str, str, object]] = []
        if model is not None:
            explicit.append(("model", "arch", model.value))
        if representation is not None:
            explicit.append(("data", "representation", representation))
        if preset is not None:
            explicit.append(("data", "preset", preset))
        if cache is not None:
            explicit.append(("data", "cache", str(cache)))
        if poses is not None:
            explicit.append(("data", "poses", str(poses)))
        if split is not None:
            explicit.append(("data", "split", str(split)))
        if val_fraction is not None:
            explicit.append(("data", "val_fraction", val_fraction))
        if no_cut:
            explicit.append(("data", "cut", False))
        if num_workers is not None:
            explicit.append(("data", "num_workers", num_workers))
        if init_from is not None:
            explicit.append(("run", "init_from", str(init_from)))
        if class_order is not None:
            explicit.append(("run", "init_class_order", class_order.value))
        if iters is not None:
            explicit.append(("run", "iters", iters))
        if seed is not None:
            explicit.append(("run", "seed", seed))
        if device is not None:
            explicit.append(("run", "device", device))
        if ledger is not None:
            explicit.append(("run", "ledger", ledger))
        if no_memory_check:
            explicit.append(("run", "memory_check", False))
        config = apply_overrides(config, [*(overrides or []), *explicit])
        if config.run.init_from and not resume:  # the model shape of the warm start, unless set
            from sconet.training import adopt_init_shape, parse_override, recipe_keys

            fixed = recipe_keys(recipe or "adamw-cosine") | {
                ".".join(parse_override(o)[:2]) for o in overrides or []
            }
            fixed |= {f"{section}.{key}" for section, key, _ in explicit}
            config = adopt_init_shape(config, fixed, log=lambda msg: typer.echo(f"note: {msg}", err=True))
        if out is None and config.run.out is None:
            stem = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            if print_config:
                out = Path("runs") / stem
            elif int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
                _fail("under torchrun give --out: every rank must name the same run folder")
            else:  # claimed atomically: two runs started in the same second get -2, -3 ...
                from sconet.training.runfolder import reserve_run_folder

                out = reserve_run_folder(Path("runs"), stem)
        if out is not None:
            config = apply_overrides(config, [("run", "out", str(out))])

        if print_config:
            typer.echo(to_toml(config), nl=False)
            return

        if resume and overwrite:
            _fail("--resume and --overwrite exclude each other")
        if resume and seeds > 1:
            _fail("--resume continues one run: resume each seed's folder (<out>/seed-<s>) on its own")
        if detach:
            _detach(Path(config.run.out or "runs"), seeds)
            return
        if seeds > 1:
            _train_seeds(config, seeds, progress, overwrite)
            return
        from sconet.training import train

        result = train(config, resume=resume, progress=progress, overwrite=overwrite)
        if result.rank != 0:
            return
        typer.echo(f"run: {result.out}")
        typer.echo(
            f"iterations {result.start_iteration}..{result.iterations} in {result.seconds:.1f} s "
            f"({result.it_per_s:.2f} it/s training)"
        )
        m = result.final_metrics
        for name in ("test", "val"):
            if f"{name}_f1" in m:
                typer.echo(
                    f"{name}: accuracy {_pct(m[f'{name}_accuracy'])}  "
                    f"macro P/R/F1 {_pct(m[f'{name}_precision'])} / "
                    f"{_pct(m[f'{name}_recall'])} / {_pct(m[f'{name}_f1'])}"
                )
        for metric, entries in result.best.items():
            if entries:
                typer.echo(f"best {metric}: {Path(entries[0]['path']).name}")
        typer.echo(f"last checkpoint: {result.last_checkpoint}")


def _detach(out: Path, seeds: int) -> None:
    """Run this very command again in the background (without --detach), output in <out>/train.log."""
    from sconet.experiments.background import detach

    args = [a for a in sys.argv[1:] if a != "--detach"]
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        args += ["--out", str(out)]
    if "--progress" not in args:
        args = [a for a in args if a != "--no-progress"] + ["--no-progress"]
    started = detach(args, out, name=out.name)
    typer.echo(f"run folder: {out}")
    typer.echo(started.describe())
    typer.echo(f"follow it with: sconet runs follow {out}{'/seed-…' if seeds > 1 else ''}")


def _train_seeds(config: Any, seeds: int, progress: bool | None, overwrite: bool) -> None:
    from sconet.experiments.groups import results_summary
    from sconet.training.seeds import train_seeds

    results = train_seeds(config, seeds, progress=progress, overwrite=overwrite)
    for r in results:
        m = r.final_metrics
        typer.echo(f"run: {r.out}  test F1 {_pct(m.get('test_f1'))}  accuracy {_pct(m.get('test_accuracy'))}")
    typer.echo(results_summary(Path(config.run.out).name, results).line())


@app.command("eval")
def eval_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="A sconet checkpoint (.pt) or a foreign OpenGait one.")],
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache", help="Cache store (default: the one matching the checkpoint's render settings)."
        ),
    ] = None,
    split: Annotated[
        Path | None,
        typer.Option("--split", help="OpenGait split JSON instead of the ids stored in the checkpoint."),
    ] = None,
    subset: Annotated[
        Subset, typer.Option("--set", help="Which ids to evaluate: test, val or train.")
    ] = Subset.test,
    json_out: Annotated[str | None, typer.Option("--json", metavar=JSON_METAVAR, help=JSON_HELP)] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")] = "auto",
    max_frames: Annotated[
        int | None,
        typer.Option(
            "--max-frames",
            help="First frames of each sequence used (default: as evaluated in the run, else 720).",
            min=1,
        ),
    ] = None,
    class_order: Annotated[
        ClassOrder | None,
        typer.Option("--class-order", help="Class order of a foreign checkpoint (2024 or 2025)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Whole sequences per batch.", min=1)] = 8,
    no_cut: Annotated[
        bool, typer.Option("--no-cut", help="Do not apply the 64 -> 44 width cut (default: as trained).")
    ] = False,
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            help=(
                "Record the evaluation in this ledger "
                "(default $SCONET_LEDGER or runs/ledger.sqlite; 'none' = off)."
            ),
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="Also report each sequence's PAV (raw, normalised) and the DRF gates."
        ),
    ] = False,
    explain_dir: Annotated[
        Path | None,
        typer.Option(
            "--explain-dir",
            help="Write one explanation PNG per sequence into this folder (implies --explain).",
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
    resamples: Annotated[
        int, typer.Option("--resamples", min=0, help="Bootstrap resamples of the 95 % intervals (0 = none).")
    ] = 2000,
    level: Annotated[float, typer.Option("--level", min=0.5, max=0.999, help="Interval level.")] = 0.95,
    ci_seed: Annotated[int, typer.Option("--ci-seed", help="Seed of the bootstrap resamples.")] = 0,
    progress: ProgressOpt = None,
) -> None:
    """Evaluate a checkpoint: metrics with 95 % bootstrap intervals, per-class metrics, confusion, screening.

    Intervals resample the sequences within each true class (--resamples, --level, --ci-seed).
    The evaluation, with its per-sequence predictions, goes into the ledger for `sconet compare`.

    An OpenGait checkpoint records no render settings: state how its training maps were made
    with --preset or the render flags (they pick the cache and are recorded in the ledger).
    """
    with errors():
        from sconet.evaluation import evaluate_checkpoint

        stated = render_spec(
            preset, representation, sigma_limb, sigma_joint, geometry, alignment, impute, head
        )
        result = evaluate_checkpoint(
            checkpoint,
            cache=cache,
            split=split,
            subset=subset.value,
            device=device,
            max_frames=max_frames,
            class_order=class_order.value if class_order is not None else None,
            batch_size=batch_size,
            cut_pixels=0 if no_cut else None,
            explain=explain or explain_dir is not None,
            explain_dir=explain_dir,
            render=stated,
            resamples=resamples,
            level=level,
            ci_seed=ci_seed,
            progress=progress,
            log=lambda msg: typer.echo(msg, err=True),
        )
        from sconet.experiments.recording import try_record_evaluation

        warning = try_record_evaluation(result, ledger)  # ledger: a failure only warns
        if warning:
            typer.echo(f"warning: {warning}", err=True)
        if json_out == "-":
            emit_json(result.to_dict(), "-")
            return
        typer.echo(result.format())
        if json_out is not None:
            typer.echo(f"\nwrote {emit_json(result.to_dict(), json_out)}")
