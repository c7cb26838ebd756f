"""Checking a store: structure, counts and every chunk decoded (:func:`verify_cache`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import zarr

from sconet.cache.format import CacheError, ProgressCallback, VerifyReport, _read_root_attrs
from sconet.cache.integrity import attrs_digest, digest_problems, read_manifest
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
    chunk index, its frame range and its file. Every file is also compared with the sha256 the
    build recorded in the store's manifest (:mod:`sconet.cache.integrity`), which finds a chunk
    file swapped for another valid one and edited metadata; a store without a manifest (built
    by an older sconet) is checked without. ``progress(chunks_done, chunks_total)``.
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
        "format version" in p or "not a sconet" in p or "chunk shape" in p for p in report.problems
    ):
        return report
    manifest = read_manifest(path)
    if manifest is not None:
        if manifest.get("attrs") != attrs_digest(_read_root_attrs(path) or {}):
            report.problems.append(
                f"{path}: the root attributes (zarr.json) changed since the store was built"
            )
        for rel in manifest["files"]:
            if rel.startswith("frames/c."):
                continue  # read below, with the decoding
            try:
                problem = digest_problems(path, manifest, rel, (path / rel).read_bytes())
            except OSError as exc:
                problem = f"{path}: file {rel} cannot be read ({exc.strerror or exc})"
            if problem:
                report.problems.append(problem)
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
    if not isinstance(frames, zarr.Array) or frames.ndim != 4:
        return report
    n = int(frames.shape[0])
    step = int(frames.chunks[0])
    nchunks = -(-n // step)
    codec = _direct_codec(frames)
    # read and decode every chunk (checksums checked), a few threads at a time, in order
    errors: dict[int, str] = {}

    def check(c: int) -> None:
        rel = f"frames/{frames.metadata.encode_chunk_key((c, 0, 0, 0))}"
        raw = None
        if codec is not None:
            try:
                raw = (path / rel).read_bytes()
            except OSError:
                raw = None  # reported by the decoding, with the chunk's frame range
        try:
            _decode_frames_chunk(path, frames, codec, c, raw=raw)
        except CacheError as exc:
            errors[c] = str(exc)
            return
        if raw is not None and manifest is not None:
            problem = digest_problems(path, manifest, rel, raw)
            if problem:
                errors[c] = problem

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
