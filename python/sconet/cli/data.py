"""Data commands: ``sconet synth``, ``sconet cache`` (+ ``cache verify``), ``sconet show``.

Thin: each command parses its options, calls one API function (:mod:`sconet.data.synth`,
:mod:`sconet.cache`, :mod:`sconet.preview`) and prints. Expected failures (a bad pose file, a
damaged or missing store, bad render settings) print one ``error: ...`` line to stderr and exit
with status 2. No torch import on this path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from sconet import _skelmap
from sconet.cli import app
from sconet.cli._common import ProgressOpt
from sconet.cli._common import errors as _errors
from sconet.cli._common import fail as _fail


# The render settings' choices for typer (it needs Enum classes); tests/test_cli_data.py checks
# them against the renderer's lists (sconet._skelmap), whose defaults the commands use.
class Geometry(StrEnum):
    square = "square"
    aspect = "aspect"


class Alignment(StrEnum):
    shared = "shared"
    per_channel = "per-channel"


class Impute(StrEnum):
    linear = "linear"
    knn = "knn"
    none = "none"


class Head(StrEnum):
    keep = "keep"
    zero_scores = "zero-scores"
    remove = "remove"


_DEFAULT_GEOMETRY = Geometry(_skelmap.DEFAULT_GEOMETRY)
_DEFAULT_ALIGNMENT = Alignment(_skelmap.DEFAULT_ALIGNMENT)
_DEFAULT_IMPUTE = Impute(_skelmap.DEFAULT_IMPUTE)
_DEFAULT_HEAD = Head(_skelmap.DEFAULT_HEAD)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _render_config(
    representation: str,
    sigma_limb: float,
    sigma_joint: float,
    geometry: Geometry,
    alignment: Alignment,
    impute: Impute,
    head: Head,
) -> Any:
    from sconet.render import RenderConfig, get_representation

    return RenderConfig(
        representation=get_representation(representation),
        sigma_limb=float(sigma_limb),
        sigma_joint=float(sigma_joint),
        geometry=geometry.value,
        alignment=alignment.value,
        impute=impute.value,
        head=head.value,
    )


# shared option declarations -------------------------------------------------------------------
RepresentationOpt = Annotated[
    str,
    typer.Option(
        "--representation",
        "-r",
        help="body-only | full-body | head-lite | a .toml/.json file with name, joints, limbs.",
    ),
]
PosesOpt = Annotated[
    Path | None,
    typer.Option(
        "--poses",
        help="Pose dataset root (<root>/<id>/<Label>/<view>/<view>.pkl). "
        "Default: the built-in synthetic Scoliosis1K.",
    ),
]
SigmaLimbOpt = Annotated[
    float, typer.Option("--sigma-limb", help="Gaussian sigma of the limb map (px on the 128 canvas).")
]
SigmaJointOpt = Annotated[float, typer.Option("--sigma-joint", help="Gaussian sigma of the joint map.")]
GeometryOpt = Annotated[
    Geometry, typer.Option("--geometry", help="square (reference crop) or aspect (keep aspect ratio).")
]
AlignmentOpt = Annotated[
    Alignment,
    typer.Option("--alignment", help="shared crop box for both channels, or per-channel (reference)."),
]
ImputeOpt = Annotated[
    Impute,
    typer.Option(
        "--impute",
        help="Fill missing keypoints: linear interpolation in time, knn (OpenGait's KNNImputer), or none.",
    ),
]
HeadOpt = Annotated[
    Head,
    typer.Option(
        "--head",
        help="Head keypoints: keep, zero-scores (drawn nowhere, still scale the body) or remove.",
    ),
]


# sconet synth ---------------------------------------------------------------------------------
def _looks_like_dataset(folder: Path) -> bool:
    """Only id folders, split files and the synthetic manifest: safe to replace."""
    from sconet.data.synth import MANIFEST_NAME

    for p in folder.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir() and p.name.isdigit():
            continue
        if (
            p.is_file()
            and p.suffix == ".json"
            and (p.name.startswith("Scoliosis1K_") or p.name == MANIFEST_NAME)
        ):
            continue
        return False
    return True


@app.command("synth")
def synth_cmd(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic dataset into.")],
    ratio: Annotated[
        list[str] | None,
        typer.Option(
            "--ratio",
            help="Training-set ratio positive:neutral:negative of a split file to write (repeatable).",
            show_default="1:1:2",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    sequences: Annotated[
        int, typer.Option("--sequences", min=1, help="Number of sequences (ids 00000..).")
    ] = 1493,
    frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per sequence.")] = 300,
    asymmetry_scale: Annotated[
        float,
        typer.Option(
            "--asymmetry-scale",
            min=0.0,
            help="Multiplier of the class-dependent asymmetries (0 = no signal).",
        ),
    ] = 2.0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT if it holds a dataset.")
    ] = False,
) -> None:
    """Write a deterministic synthetic Scoliosis1K (release layout + split JSON files)."""
    from sconet.data.synth import SynthConfig, write_synthetic

    ratios = tuple(ratio) if ratio else ("1:1:2",)
    with _errors():
        out = out.expanduser()
        if out.is_dir() and any(out.iterdir()):
            if not overwrite:
                _fail(f"{out}: exists and is not empty (use --overwrite to replace it)")
            if not _looks_like_dataset(out):
                _fail(f"{out}: does not look like a pose dataset; refusing to replace it")
        t0 = time.perf_counter()
        config = SynthConfig(n_sequences=sequences, frames=frames, seed=seed, asymmetry_scale=asymmetry_scale)
        root = write_synthetic(out, config, ratios=ratios, overwrite=overwrite)
        seconds = time.perf_counter() - t0
    splits = sorted(p.name for p in Path(root).glob("Scoliosis1K_*.json"))
    typer.echo(
        f"wrote {sequences} synthetic sequences x {frames} frames (seed {seed}) to {root} in {seconds:.1f} s"
    )
    if splits:
        typer.echo(f"splits: {', '.join(splits)}")


# sconet cache ---------------------------------------------------------------------------------
cache_app = typer.Typer(
    name="cache",
    help="Render a pose dataset into a Zarr store (reused when inputs and settings are unchanged).",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cache_app, name="cache")


def _progress_bar(label: str, unit: str, live: bool | None) -> tuple[Any, Callable[[int, int], None]]:
    """A bar with rate and ETA on a terminal, plain lines every 10 s otherwise or with --no-progress."""
    from sconet.progress import Progress

    bar = Progress(label, None, unit, live=live, log=lambda m: typer.echo(m, err=True))
    return bar, lambda done, total: bar.update(done, total)


@cache_app.callback()
def cache_cmd(
    ctx: typer.Context,
    representation: RepresentationOpt = "body-only",
    poses: PosesOpt = None,
    split: Annotated[
        Path | None, typer.Option("--split", help="OpenGait split JSON to validate and record.")
    ] = None,
    sigma_limb: SigmaLimbOpt = _skelmap.DEFAULT_SIGMA_LIMB,
    sigma_joint: SigmaJointOpt = _skelmap.DEFAULT_SIGMA_JOINT,
    geometry: GeometryOpt = _DEFAULT_GEOMETRY,
    alignment: AlignmentOpt = _DEFAULT_ALIGNMENT,
    impute: ImputeOpt = _DEFAULT_IMPUTE,
    head: HeadOpt = _DEFAULT_HEAD,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Store path (default: <cache root>/stores/<dataset>-<representation>-<key>.zarr)."
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option("--skip-bad", help="Leave out bad pose files and write a report instead of stopping."),
    ] = False,
    threads: Annotated[int, typer.Option("--threads", min=0, help="Renderer threads (0 = all cores).")] = 0,
    layout: Annotated[
        str,
        typer.Option("--layout", help="Dataset layout of --poses (a name in sconet.data.LAYOUTS)."),
    ] = "scoliosis1k",
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Build afresh even if a matching store (or an interrupted build) exists."
        ),
    ] = False,
    progress: ProgressOpt = None,
) -> None:
    """Render a pose dataset into a Zarr store, or reuse the existing one.

    With no subcommand, builds (or reuses) the store; `sconet cache verify PATH` checks one.
    """
    if ctx.invoked_subcommand is not None:
        return
    from sconet.cache import CacheConfig, build_cache

    with _errors():
        render = _render_config(representation, sigma_limb, sigma_joint, geometry, alignment, impute, head)
        config = CacheConfig(
            poses=poses,
            render=render,
            layout=layout,
            split=split,
            out=out,
            skip_bad=skip_bad,
            threads=threads,
            rebuild=rebuild,
        )
        bar, update = _progress_bar("rendering", "frames", progress)
        with bar:
            result = build_cache(config, progress=update)
    fps = result.frames_per_second
    if result.reused:
        typer.echo(f"reused existing store (same inputs and settings): {result.path}")
        typer.echo(
            f"sequences {result.n_sequences:,}  frames {result.n_frames:,}  "
            f"checked in {result.seconds:.1f} s  size {_size(result.bytes_on_disk)}"
        )
    else:
        if result.replaced:
            typer.echo(f"rebuilt: {result.replaced}; the old store was replaced")
        if result.resumed_from:
            typer.echo(f"resumed an interrupted build from frame {result.resumed_from:,}")
        typer.echo(f"built store: {result.path}")
        typer.echo(
            f"sequences {result.n_sequences:,}  frames {result.n_frames:,}  "
            f"time {result.seconds:.1f} s  ({fps:,.0f} frames/s)  size {_size(result.bytes_on_disk)}"
        )
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.skipped:
        typer.echo(f"skipped {len(result.skipped)} bad file(s); report: {result.skipped_report}", err=True)
        for path, reason in result.skipped[:5]:
            typer.echo(f"  {path}: {reason}", err=True)
        if len(result.skipped) > 5:
            typer.echo(f"  ... ({len(result.skipped) - 5} more in the report)", err=True)
    elif result.skipped_report is not None:
        typer.echo(f"no bad files; report: {result.skipped_report}")


@cache_app.command("verify")
def cache_verify_cmd(
    path: Annotated[Path, typer.Argument(help="Store to check.")],
    progress: ProgressOpt = None,
) -> None:
    """Check a store: structure, counts, attributes, and that every chunk reads back.

    Exit status 1 (problems listed) when the store is damaged.
    """
    from sconet.cache import verify_cache

    with _errors():
        if not path.exists():
            _fail(f"{path}: no cache store here")
        bar, update = _progress_bar("verifying", "chunks", progress)
        with bar:
            report = verify_cache(path, progress=update)
    if report.ok:
        typer.echo(f"ok: {path} ({report.chunks_checked} chunks read)")
        return
    typer.echo(f"damaged: {path} ({len(report.problems)} problem(s))", err=True)
    for problem in report.problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(code=1)


# sconet show ----------------------------------------------------------------------------------
@app.command("show")
def show_cmd(
    seq_id: Annotated[
        str,
        typer.Argument(metavar="ID", help="Sequence id (e.g. 00000; id/view if an id has several views)."),
    ],
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache", help="Store path (default: the store of --representation and the render options)."
        ),
    ] = None,
    representation: RepresentationOpt = "body-only",
    poses: PosesOpt = None,
    sigma_limb: SigmaLimbOpt = _skelmap.DEFAULT_SIGMA_LIMB,
    sigma_joint: SigmaJointOpt = _skelmap.DEFAULT_SIGMA_JOINT,
    geometry: GeometryOpt = _DEFAULT_GEOMETRY,
    alignment: AlignmentOpt = _DEFAULT_ALIGNMENT,
    impute: ImputeOpt = _DEFAULT_IMPUTE,
    head: HeadOpt = _DEFAULT_HEAD,
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")] = Path("preview.png"),
    frames: Annotated[int, typer.Option("--frames", min=1, help="Evenly spaced frames to show.")] = 16,
    scale: Annotated[int, typer.Option("--scale", min=1, help="Magnification of the 64x64 maps.")] = 2,
) -> None:
    """Write a PNG contact sheet of one cached sequence (limb map, joint map, overlay)."""
    from sconet.cache import find_cache, open_cache
    from sconet.preview import contact_sheet

    with _errors():
        if cache is None:
            render = _render_config(
                representation, sigma_limb, sigma_joint, geometry, alignment, impute, head
            )
            cache = find_cache(render, poses=poses)
            if cache is None:
                what = "the synthetic dataset" if poses is None else str(poses)
                where = "" if poses is None else f" --poses {poses}"
                _fail(
                    f"no cache of {what} for representation {render.representation.name} with "
                    f"these settings; build it first: sconet cache --representation "
                    f"{representation}{where} (and the same render options)"
                )
        store = open_cache(cache)
        index = store.index_of(seq_id)
        png = contact_sheet(store, index, out, frames=frames, scale=scale)
    typer.echo(
        f"wrote {png}: {store.ids[index]} ({store.label_name(index)}), {frames} frames from {store.path}"
    )
