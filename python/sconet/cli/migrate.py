"""OpenGait migration commands: ``sconet cache import`` and ``sconet cache export``.

Thin: options -> :func:`sconet.cache.import_heatmaps` / :func:`sconet.cache.export_heatmaps` ->
printed summary. Expected failures print one ``error: ...`` line and exit with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sconet.cli._common import ProgressOpt, errors
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
from sconet.cli.data import _progress_bar, _size, cache_app


@cache_app.command("import")
def cache_import_cmd(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="OpenGait heatmap tree (<id>/<label>/<view>/<view>.pkl, uint8 [T, 2, 64, 64]).",
        ),
    ],
    preset: PresetOpt = None,
    representation: RepresentationOpt = None,
    sigma_limb: SigmaLimbOpt = None,
    sigma_joint: SigmaJointOpt = None,
    geometry: GeometryOpt = None,
    alignment: AlignmentOpt = None,
    impute: ImputeOpt = None,
    head: HeadOpt = None,
    poses: Annotated[
        Path | None,
        typer.Option(
            "--poses", help="The pose tree the heatmaps were made from (for the PAV; DRF needs it)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Store path (default: <cache root>/stores/<dataset>-imported-<key>.zarr)."
        ),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", min=0, help="PAV threads (0 = all cores).")] = 0,
    progress: ProgressOpt = None,
) -> None:
    """Copy an OpenGait heatmap tree into a sconet store, byte for byte.

    State how the maps were made with --preset or the render flags (recorded in the store);
    without them the store records the settings as unknown.
    """
    from sconet.cache import ImportConfig, import_heatmaps

    with errors():
        stated = render_spec(
            preset, representation, sigma_limb, sigma_joint, geometry, alignment, impute, head
        )
        config = ImportConfig(source=source, stated=stated, poses=poses, out=out, threads=threads)
        bar, update = _progress_bar("importing", "files/frames", progress)
        with bar:
            result = import_heatmaps(config, progress=update)
    verb = "reused existing store (same files, statement and poses)" if result.reused else "imported"
    typer.echo(f"{verb}: {result.path}")
    if result.replaced:
        typer.echo(f"replaced the earlier import: {result.replaced}")
    typer.echo(
        f"sequences {result.n_sequences:,}  frames {result.n_frames:,}  time {result.seconds:.1f} s  "
        f"size {_size(result.bytes_on_disk)}"
    )
    typer.echo(f"render settings: {stated.describe() if stated.stated else 'unknown'}")
    if not stated.stated:
        typer.echo(
            "note: state how the maps were made (--preset NAME or the render flags) so checkpoints trained "
            "on them can be matched",
            err=True,
        )
    for note in result.warnings:
        typer.echo(f"note: {note}", err=True)


@cache_app.command("export")
def cache_export_cmd(
    store: Annotated[Path, typer.Argument(help="A sconet store (.zarr).")],
    out: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder to write the OpenGait heatmap tree into.")
    ],
    protocol: Annotated[
        int | None,
        typer.Option("--protocol", min=2, max=5, help="Pickle protocol (default: as imported, else 4)."),
    ] = None,
    numpy_module: Annotated[
        str | None,
        typer.Option(
            "--numpy-module",
            help="numpy.core (numpy 1.x pickles, read by every numpy) or numpy._core (numpy 2.x); "
            "default: as imported, else numpy.core.",
        ),
    ] = None,
    label_case: Annotated[
        str,
        typer.Option(
            "--label-case",
            help="Label folders: as-imported (a store that was not imported: lower), lower (positive, as "
            "OpenGait's ScoNet maps labels) or capitalized (Positive).",
        ),
    ] = "as-imported",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace DIR if it holds an earlier export (folders only).")
    ] = False,
    progress: ProgressOpt = None,
) -> None:
    """Write a store as an OpenGait heatmap tree (pickled uint8 [T, 2, 64, 64] per sequence)."""
    from sconet.cache import export_heatmaps
    from sconet.cache.opengait import imported_flavour
    from sconet.data.heatmaps import PickleFlavour

    with errors():
        flavour = None
        if protocol is not None or numpy_module is not None:
            base = imported_flavour(store) or PickleFlavour()
            flavour = PickleFlavour(protocol or base.protocol, numpy_module or base.numpy_module)
        bar, update = _progress_bar("exporting", "frames", progress)
        with bar:
            result = export_heatmaps(
                store, out, flavour=flavour, label_case=label_case, overwrite=overwrite, progress=update
            )
    typer.echo(
        f"wrote {result.files:,} heatmap files ({result.frames:,} frames, {_size(result.bytes_written)}) to "
        f"{result.out} in {result.seconds:.1f} s"
    )
    typer.echo(f"pickles: protocol {result.flavour.protocol}, {result.flavour.numpy_module}")
    if result.same_bytes_as_source:
        typer.echo("the files are byte for byte those the store was imported from")
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
