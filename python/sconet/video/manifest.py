"""Many videos -> pose files: ``sconet pose VIDEO... --out DIR`` and ``--manifest videos.csv``.

A manifest is a CSV with a header naming the columns ``id``, ``label``, ``view``, ``video``
(a path, relative to the CSV's folder) and optionally ``roi`` (``x0 y0 x1 y1``, overriding the
run's region). Its videos become a dataset in the Scoliosis1K layout
``DIR/<id>/<Label>/<view>/<view>.pkl``, which ``sconet cache`` and ``sconet train`` read
unchanged; ``DIR/pose_source.json`` records the pose source for the cache's provenance.

Runs resume: a video whose pose file and sidecar are complete, with the same video bytes,
pose source and settings (the sidecar's fingerprint), is not extracted again, so a run killed
at any moment (``kill -9`` included) restarts where it stopped; files are only ever replaced
atomically. Videos run in parallel over ``workers`` processes. A video that fails (unreadable,
truncated, too few frames with a person) is reported and the others go on. Each run writes
``DIR/pose_report.json``: one entry per video with its status, frames, detection rate, time.
"""

from __future__ import annotations

import csv
import multiprocessing as mp
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sconet._io import atomic_write_json
from sconet.data.layouts import POSE_SOURCE_FILE
from sconet.video.backends import PoseBackend, create_backend, sha256_file
from sconet.video.extract import (
    ExtractConfig,
    extract_poses,
    fingerprint,
    parse_roi,
    read_sidecar,
    save_poses,
)
from sconet.video.reader import VideoError

__all__ = ["ManifestError", "PoseJob", "PoseRun", "jobs_from_manifest", "jobs_from_videos", "run_jobs"]

REPORT_NAME = "pose_report.json"
_LABELS = {"negative": "Negative", "neutral": "Neutral", "positive": "Positive"}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ManifestError(ValueError):
    """A malformed manifest or output plan; the message names the file (and line)."""


@dataclass(frozen=True)
class PoseJob:
    """One video and the pose file it becomes (``roi`` overrides the run's region)."""

    video: Path
    out: Path
    roi: tuple[int, int, int, int] | None = None
    key: str = ""


@dataclass
class PoseRun:
    """What :func:`run_jobs` did: one report entry per job (``status``: extracted, reused,
    failed), and where the report was written."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    source: dict[str, Any] | None = None

    def count(self, status: str) -> int:
        return sum(e["status"] == status for e in self.entries)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["status"] == "failed"]


def jobs_from_videos(videos: Sequence[str | Path], out_dir: str | Path, fmt: str = ".pkl") -> list[PoseJob]:
    """``DIR/<video stem><fmt>`` for each video (two videos with one stem are refused)."""
    out_dir = Path(out_dir)
    jobs: list[PoseJob] = []
    seen: dict[str, Path] = {}
    for v in videos:
        v = Path(v).expanduser()
        if v.stem in seen:
            raise ManifestError(f"{v}: same name as {seen[v.stem]}; both would write {v.stem}{fmt}")
        seen[v.stem] = v
        jobs.append(PoseJob(v, out_dir / f"{v.stem}{fmt}", key=v.stem))
    return jobs


def jobs_from_manifest(manifest: str | Path, out_dir: str | Path, fmt: str = ".pkl") -> list[PoseJob]:
    """Jobs of a manifest CSV (see the module docstring); every row is checked first."""
    manifest = Path(manifest).expanduser()
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{manifest}: manifest file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{manifest}: cannot read the manifest ({exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise ManifestError(f"{manifest}: empty manifest (expected a header id,label,view,video)")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("id", "label", "view", "video") if c not in header]
    if missing:
        raise ManifestError(
            f"{manifest}: line 1: the header lacks column(s) {', '.join(missing)} (got {rows[0]})"
        )
    col = {name: header.index(name) for name in header}
    jobs: list[PoseJob] = []
    seen: dict[str, int] = {}
    labels: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise ManifestError(f"{manifest}: line {line}: {len(row)} fields, the header has {len(header)}")
        cell = {name: row[i].strip() for name, i in col.items()}
        for name in ("id", "view"):
            if not _SAFE.match(cell[name]):
                raise ManifestError(
                    f"{manifest}: line {line}: {name} {cell[name]!r} is not a plain folder name"
                )
        label = _LABELS.get(cell["label"].lower())
        if label is None:
            raise ManifestError(
                f"{manifest}: line {line}: unknown label {cell['label']!r} "
                "(expected negative, neutral or positive)"
            )
        if labels.setdefault(cell["id"], label) != label:
            raise ManifestError(
                f"{manifest}: line {line}: id {cell['id']} has two labels: {labels[cell['id']]} and {label}"
            )
        key = f"{cell['id']}/{cell['view']}"
        if key in seen:
            raise ManifestError(
                f"{manifest}: line {line}: id {cell['id']} view {cell['view']} already on line {seen[key]}"
            )
        seen[key] = line
        video = Path(cell["video"]).expanduser()
        video = video if video.is_absolute() else manifest.parent / video
        if not video.is_file():
            raise ManifestError(f"{manifest}: line {line}: video file not found: {video}")
        roi = None
        if cell.get("roi"):
            try:
                roi = parse_roi(cell["roi"].replace(" ", ","))
            except ValueError as exc:
                raise ManifestError(f"{manifest}: line {line}: {exc}") from None
        out = Path(out_dir) / cell["id"] / label / cell["view"] / f"{cell['view']}{fmt}"
        jobs.append(PoseJob(video, out, roi, key))
    if not jobs:
        raise ManifestError(f"{manifest}: no videos listed")
    return jobs


def _clean_tmp(folder: Path) -> None:
    """Temporary files of an atomic write that a killed run left behind."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            try:
                p.unlink()
            except OSError:
                pass


def _entry(job: PoseJob, status: str, **more: Any) -> dict[str, Any]:
    return {"key": job.key, "video": str(job.video), "pose_file": str(job.out), "status": status, **more}


# one backend per worker process, created by the pool's initializer
_worker_backend: PoseBackend | None = None


def _init_worker(name: str, options: dict[str, Any]) -> None:
    global _worker_backend
    _worker_backend = create_backend(name, options)


def _run_one(
    job: PoseJob,
    config: ExtractConfig,
    backend: PoseBackend | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    backend = backend or _worker_backend
    cfg = replace(config, roi=job.roi) if job.roi is not None else config
    _clean_tmp(job.out.parent)
    try:
        result = extract_poses(job.video, cfg, backend=backend, progress=progress)
    except VideoError as exc:
        return _entry(job, "failed", error=str(exc))
    save_poses(result, job.out)
    return _entry(
        job,
        "extracted",
        frames=result.n_frames,
        detected=result.n_detected,
        detection_rate=round(result.detection_rate, 4),
        seconds=round(result.seconds, 2),
        frames_per_second=round(result.frames_per_second, 1),
    )


def _is_done(job: PoseJob, config: ExtractConfig, source: dict[str, Any]) -> dict[str, Any] | None:
    doc = read_sidecar(job.out) if job.out.is_file() else None
    if doc is None:
        return None
    cfg = replace(config, roi=job.roi) if job.roi is not None else config
    try:
        video_sha = sha256_file(job.video)
    except OSError:
        return None
    if doc.get("fingerprint") != fingerprint(video_sha, source, cfg):
        return None
    return _entry(
        job,
        "reused",
        frames=doc["frames_used"]["count"],
        detected=doc["detected_frames"],
        detection_rate=doc["detection_rate"],
        seconds=0.0,
    )


def run_jobs(
    jobs: Sequence[PoseJob],
    config: ExtractConfig,
    out_dir: str | Path,
    workers: int = 0,
    dataset: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> PoseRun:
    """Extract every job's poses (see the module docstring); ``workers`` processes (0 = one
    per core, at most one per video). ``dataset=True`` also writes ``DIR/pose_source.json``.
    ``progress(unit, done, total)``: frames of the one video when a single process runs,
    else videos."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = create_backend(config.backend, config.options)
    run = PoseRun()
    source = run.source = backend.source()
    try:
        if dataset:
            atomic_write_json(
                out_dir / POSE_SOURCE_FILE, {"pose_source": source, "extract": config.settings()}
            )
        todo = []
        for job in jobs:
            done = _is_done(job, config, source)
            if done is not None:
                run.entries.append(done)
            else:
                todo.append(job)
        n = min(len(todo), workers or os.cpu_count() or 1)
        if n <= 1:
            for i, job in enumerate(todo):
                frames = (lambda d, t: progress("frames", d, t)) if progress and len(todo) == 1 else None
                run.entries.append(_run_one(job, config, backend, frames))
                if progress and len(todo) > 1:
                    progress("videos", i + 1, len(todo))
        else:
            backend.close()
            options = dict(config.options)
            if config.backend == "onnx" and "threads" not in options:
                options["threads"] = max(1, (os.cpu_count() or 1) // n)
            ctx = mp.get_context("spawn")
            with ProcessPoolExecutor(
                n, mp_context=ctx, initializer=_init_worker, initargs=(config.backend, options)
            ) as pool:
                futures = [pool.submit(_run_one, job, config) for job in todo]
                for i, fut in enumerate(as_completed(futures)):
                    run.entries.append(fut.result())
                    if progress:
                        progress("videos", i + 1, len(todo))
    finally:
        backend.close()
        order = {str(j.out): i for i, j in enumerate(jobs)}
        run.entries.sort(key=lambda e: order.get(e["pose_file"], 0))
        run.seconds = time.perf_counter() - t0
        run.report = atomic_write_json(
            out_dir / REPORT_NAME,
            {
                "videos": len(jobs),
                "extracted": run.count("extracted"),
                "reused": run.count("reused"),
                "failed": run.count("failed"),
                "pose_source": source,
                "seconds": round(run.seconds, 2),
                "entries": run.entries,
            },
        )
    return run
