"""Checking a store: structure, counts and every chunk decoded (:func:`verify_cache`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zarr

from sconet.cache.format import CacheError, ProgressCallback, VerifyReport
from sconet.cache.store import (
    _array,
    _decode_frames_chunk,
    _direct_codec,
    _open_group_ro,
    _read_threads,
    _structure_problems,
)

# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------


def _chunk_file(path: Path, array_name: str, arr: zarr.Array, coords: tuple[int, ...]) -> Path:
    return path / array_name / arr.metadata.encode_chunk_key(coords)


def verify_cache(path: Path | str, progress: ProgressCallback | None = None) -> VerifyReport:
    """Check a store: structure, counts and attributes, then read and decode every chunk.

    A damaged (checksum / decode failure), truncated or missing chunk file is reported with the
    chunk index, its frame range and its file. ``progress(chunks_done, chunks_total)``.
    """
    path = Path(path).expanduser()
    report = VerifyReport(path=path)
    if not path.exists():
        report.problems.append(f"{path}: no cache store here")
        return report
    try:
        group = _open_group_ro(path)
        attrs = dict(group.attrs)
    except CacheError as exc:
        report.problems.append(str(exc))
        return report
    report.problems.extend(_structure_problems(path, group, attrs))
    if any("missing" in p and "array" in p for p in report.problems) or any(
        "format version" in p or "not a sconet" in p for p in report.problems
    ):
        return report
    # small arrays: their single chunk must exist
    for name in ("offsets", "labels", "pav"):
        try:
            arr = _array(path, group, name)
        except CacheError:
            continue
        if arr.size:
            f = _chunk_file(path, name, arr, (0,) * arr.ndim)
            if not f.is_file():
                report.problems.append(f"{path}: {name} chunk file {f.relative_to(path)} missing")
    try:
        frames = _array(path, group, "frames")
    except CacheError:
        return report
    if frames.ndim != 4:
        return report
    n = int(frames.shape[0])
    step = int(frames.chunks[0])
    nchunks = -(-n // step)
    codec = _direct_codec(frames)
    # read and decode every chunk (checksums checked), a few threads at a time, in order
    errors: dict[int, str] = {}

    def check(c: int) -> None:
        try:
            _decode_frames_chunk(path, frames, codec, c)
        except CacheError as exc:
            errors[c] = str(exc)

    block = 64
    with ThreadPoolExecutor(max_workers=_read_threads(), thread_name_prefix="sconet-verify") as pool:
        for g0 in range(0, nchunks, block):
            for _ in pool.map(check, range(g0, min(nchunks, g0 + block))):
                pass
            report.chunks_checked = min(nchunks, g0 + block)
            if progress is not None:
                progress(report.chunks_checked, nchunks)
    report.problems.extend(errors[c] for c in sorted(errors))
    if codec is not None:
        extra = sorted(
            p.name
            for p in (path / "frames").iterdir()
            if p.name.startswith("c.") and not _is_frames_chunk_key(p.name, nchunks)
        )
        if extra:
            report.problems.append(
                f"{path}: unexpected files in frames/: {', '.join(extra[:5])}"
                + (f" (+{len(extra) - 5} more)" if len(extra) > 5 else "")
            )
    return report


def _is_frames_chunk_key(name: str, nchunks: int) -> bool:
    parts = name.split(".")
    return (
        len(parts) == 5
        and parts[0] == "c"
        and parts[1].isdigit()
        and int(parts[1]) < nchunks
        and parts[2:] == ["0", "0", "0"]
    )
