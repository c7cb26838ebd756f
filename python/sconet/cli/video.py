"""Video commands: ``sconet pose`` (videos -> pose files, or a dataset from a manifest) and the
options ``sconet predict`` takes for a video.

Thin: options -> :class:`sconet.video.ExtractConfig` -> :func:`sconet.video.run_jobs` ->
one line per video. A video that cannot be used prints one ``error: <file>: ...`` line; the
others go on, and the command exits with status 2 when any video failed. No torch import here.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from sconet.cli import app
from sconet.cli._common import EXIT_ERROR
from sconet.cli._common import errors as _errors
from sconet.cli._common import fail as _fail


class PoseFormat(StrEnum):
    pkl = "pkl"
    npy = "npy"


BackendOpt = Annotated[
    str,
    typer.Option("--backend", help="Pose backend: blazepose (bundled, offline) | onnx (a local model file)."),
]
ModelOpt = Annotated[
    Path | None,
    typer.Option("--model", help="The ONNX pose model file of --backend onnx (never downloaded)."),
]
BackendOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--backend-option",
        help="KEY=VALUE setting of the backend (repeatable), e.g. static_image_mode=true, min_score=0.4.",
    ),
]
RoiOpt = Annotated[
    str | None,
    typer.Option(
        "--roi", help="Region where the subject walks: x0,y0,x1,y1 in video pixels (default: whole frame)."
    ),
]
FrameStepOpt = Annotated[
    int,
    typer.Option(
        "--frame-step", min=1, help="Use every N-th video frame (2: half the work on a 30 frames/s video)."
    ),
]
MinRateOpt = Annotated[
    float,
    typer.Option(
        "--min-detection-rate", min=0.0, max=1.0, help="Refuse a video where fewer frames have a person."
    ),
]


def extract_config(
    backend: str,
    model: Path | None,
    backend_option: list[str] | None,
    roi: str | None,
    min_detection_rate: float,
    start_frame: int = 0,
    max_frames: int | None = None,
    frame_step: int = 1,
) -> Any:
    """The command line's pose options as an :class:`sconet.video.ExtractConfig`."""
    from sconet.video import ExtractConfig, parse_roi

    options: dict[str, Any] = {}
    for item in backend_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"--backend-option {item!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    if model is not None:
        options["model"] = str(model)
    return ExtractConfig(
        backend=backend,
        options=options,
        roi=parse_roi(roi) if roi else None,
        start=start_frame,
        max_frames=max_frames,
        step=frame_step,
        min_detection_rate=min_detection_rate,
    )


@app.command("pose")
def pose_cmd(
    videos: Annotated[
        list[Path] | None, typer.Argument(help="Videos (one pose file each: OUT/<name>.pkl).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("poses"),
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="CSV with columns id,label,view,video[,roi]: writes the Scoliosis1K layout "
            "OUT/<id>/<Label>/<view>/<view>.pkl.",
        ),
    ] = None,
    backend: BackendOpt = "blazepose",
    model: ModelOpt = None,
    backend_option: BackendOptionOpt = None,
    roi: RoiOpt = None,
    min_detection_rate: MinRateOpt = 0.5,
    start_frame: Annotated[int, typer.Option("--start-frame", min=0, help="First video frame used.")] = 0,
    max_frames: Annotated[
        int | None, typer.Option("--max-frames", min=1, help="Frames used from --start-frame (default: all).")
    ] = None,
    frame_step: FrameStepOpt = 1,
    fmt: Annotated[PoseFormat, typer.Option("--format", help="Pose file type.")] = PoseFormat.pkl,
    workers: Annotated[
        int, typer.Option("--workers", min=0, help="Videos extracted in parallel (0 = one per core).")
    ] = 0,
) -> None:
    """Extract the pose sequence [T, 17, 3] of the person walking in each video.

    Writes a pose file and a sidecar (.json: pose source, region, frames used, detection rate)
    per video and OUT/pose_report.json. Finished videos are skipped when the run is repeated or
    resumed after an interruption.
    """
    from sconet.cli.data import _progress_bar
    from sconet.video import jobs_from_manifest, jobs_from_videos, run_jobs
    from sconet.video.backends import describe_pose_source

    with _errors():
        if bool(videos) == (manifest is not None):
            _fail("give either videos or --manifest CSV (not both, not neither)")
        config = extract_config(
            backend, model, backend_option, roi, min_detection_rate, start_frame, max_frames, frame_step
        )
        suffix = f".{fmt.value}"
        jobs = (
            jobs_from_manifest(manifest, out, suffix)
            if manifest
            else jobs_from_videos(videos or [], out, suffix)
        )
        bars: dict[str, Any] = {}

        def progress(unit: str, done: int, total: int) -> None:
            if unit not in bars:
                bars[unit] = _progress_bar("pose" if unit == "frames" else "videos", unit, None)
            bars[unit][1](done, total)

        try:
            run = run_jobs(
                jobs, config, out, workers=workers, dataset=manifest is not None, progress=progress
            )
        finally:
            for bar, _ in bars.values():
                bar.close()
    for e in run.entries:
        if e["status"] == "failed":
            typer.echo(f"error: {e['error']}", err=True)
            continue
        typer.echo(
            f"{e['status']} {e['pose_file']}: {e['frames']} frames, person in {e['detected']} "
            f"({100 * e['detection_rate']:.1f} %)"
            + (f", {e['frames_per_second']:.0f} frames/s" if e["status"] == "extracted" else "")
        )
    typer.echo(
        f"{run.count('extracted')} extracted, {run.count('reused')} reused, {run.count('failed')} failed "
        f"in {run.seconds:.1f} s; pose source: {describe_pose_source(run.source)}; report: {run.report}"
    )
    if run.failed:
        raise typer.Exit(code=EXIT_ERROR)
