"""Building a store: render every sequence into ``<path>.partial/``, then rename it into place.

Resumable (a rerun continues a partial store with the same fingerprint) and serialised per path.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from sconet import __version__ as _sconet_version
from sconet import render as _render
from sconet._io import write_error_reason
from sconet._paths import cache_root
from sconet.cache.format import (
    CHUNK_FRAMES,
    FORMAT_VERSION,
    FRAME_SHAPE,
    PROGRESS_FILE,
    ZSTD_LEVEL,
    CacheConfig,
    CacheError,
    CacheResult,
    ProgressCallback,
    _atomic_write_json,
    _build_lock,
    _codec_spec,
    _dir_size,
    _partial_path,
    _read_root_attrs,
    _skipped_report_path,
    _store_name,
    index_digest,
    store_fingerprint,
)
from sconet.cache.inputs import Inputs, dataset_pose_source, load_inputs, scan_inputs
from sconet.cache.integrity import digest, write_manifest
from sconet.cache.reuse import decide_reuse
from sconet.cache.store import _array, _decode_frames_chunk, _direct_codec
from sconet.classes import CLASSES
from sconet.data import PoseError, write_skip_report

if TYPE_CHECKING:
    from zarr.core.array_spec import ArrayConfigParams
    from zarr.core.chunk_key_encodings import ChunkKeyEncodingParams


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------


def _plan_batches(offsets: np.ndarray, first_seq: int, batch_frames: int) -> list[tuple[int, int]]:
    """Split sequences ``first_seq..N-1`` into runs of whole sequences of ~``batch_frames``."""
    n = len(offsets) - 1
    batches = []
    s = first_seq
    while s < n:
        e = s + 1
        while e < n and offsets[e + 1] - offsets[s] <= batch_frames:
            e += 1
        batches.append((s, e))
        s = e
    return batches


def _clean_stray_tmp(partial: Path) -> None:
    """Remove temporary files a killed zarr LocalStore write may have left."""
    for dirpath, _, files in os.walk(partial):
        for f in files:
            if f.endswith(".partial") or (f.startswith(".") and f.endswith(".tmp")):
                try:
                    os.unlink(os.path.join(dirpath, f))
                except OSError:
                    pass


def _create_arrays(
    partial: Path, attrs: dict, total: int, offsets: np.ndarray, labels: np.ndarray, pav: np.ndarray
) -> None:
    """A fresh store folder: root ``attrs``, an empty ``frames`` array of ``total`` frames (filled
    chunk by chunk by :class:`_ChunkWriter`) and the small arrays, written whole."""
    sep: ChunkKeyEncodingParams = {"name": "default", "separator": "."}
    # every chunk file is written, even an all-zero one (labels of a one-class dataset): a
    # missing chunk file then always means damage
    empty_ok: ArrayConfigParams = {"write_empty_chunks": True}
    group = zarr.open_group(LocalStore(partial), mode="w", attributes=attrs)
    group.create_array(
        "frames",
        shape=(total, *FRAME_SHAPE),
        dtype="uint8",
        chunks=(CHUNK_FRAMES, *FRAME_SHAPE),
        compressors=[ZstdCodec(level=ZSTD_LEVEL, checksum=True)],
        fill_value=0,
        chunk_key_encoding=sep,
        dimension_names=("frame", "channel", "y", "x"),
    )
    for name, data in (("offsets", offsets), ("labels", labels), ("pav", pav)):
        arr = group.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=data.shape if data.size else (1,) * data.ndim,
            compressors=[ZstdCodec(level=3, checksum=True)],
            fill_value=0,
            chunk_key_encoding=sep,
            config=empty_ok,
        )
        arr[...] = data


def _create_partial(partial: Path, inputs: Inputs, config: CacheConfig, fingerprint: str) -> None:
    pose_source = dataset_pose_source(inputs.scan.root)  # a bad pose_source.json fails before any write
    if partial.exists():
        shutil.rmtree(partial)
    lengths = np.array([p.shape[0] for p in inputs.poses], dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    labels = np.array([CLASSES.index(r.label) for r in inputs.records], dtype=np.int8)
    pav = np.asarray(inputs.pav, dtype=np.float32)  # computed (and checked finite) with the inputs
    if pav.shape != (len(lengths), 8, 3):
        raise CacheError(f"{partial}: pav_batch returned shape {pav.shape}")
    ids, views = [r.id for r in inputs.records], [r.view for r in inputs.records]
    per_class = {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)}
    attrs: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "complete": False,
        "ids": ids,
        "views": views,
        "index_digest": index_digest(ids, views, offsets, labels, pav),
        "classes": list(CLASSES),
        "render": config.render.to_dict(),
        "renderer_version": str(_render.RENDERER_VERSION),
        "sconet_version": _sconet_version,
        "dataset": {
            "name": inputs.scan.dataset,
            "source": str(inputs.scan.root.resolve()),
            "pose_source": pose_source,
        },
        "split": inputs.scan.split_name,
        "split_problems": list(inputs.scan.split_problems),
        "input_fingerprint": inputs.input_fp,
        "counts": {"sequences": len(lengths), "frames": total, "per_class": per_class},
        "codec": _codec_spec(),
        "chunk_frames": CHUNK_FRAMES,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "skipped": [{"path": p, "reason": r} for p, r in inputs.skipped],
    }
    _create_arrays(partial, attrs, total, offsets, labels, pav)
    _atomic_write_json(
        partial / PROGRESS_FILE,
        {"fingerprint": fingerprint, "frames_committed": 0, "frames_total": total},
    )


def _resumable(partial: Path, fingerprint: str) -> int | None:
    """Frames committed by an interrupted build with this fingerprint (None: not resumable)."""
    try:
        progress = json.loads((partial / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        progress = None
    attrs = _read_root_attrs(partial)
    if attrs is None or attrs.get("format_version") != FORMAT_VERSION:
        return None
    if progress is None:
        # killed after the completion marker, before the rename: complete if the marker says so
        if attrs.get("complete") is True and attrs.get("fingerprint") == fingerprint:
            return int(attrs.get("counts", {}).get("frames", -1))
        return None
    if progress.get("fingerprint") != fingerprint:
        return None
    done = progress.get("frames_committed")
    total = progress.get("frames_total")
    if not isinstance(done, int) or not isinstance(total, int) or not 0 <= done <= total:
        return None
    try:
        frames = zarr.open_array(LocalStore(partial), path="frames", mode="r")
    except Exception:
        return None
    if frames.shape != (total, *FRAME_SHAPE):
        return None
    if done % CHUNK_FRAMES and done != total:
        return None
    return done


def _write_chunk_file(path: Path, data: bytes) -> None:
    """Write one encoded chunk atomically (temporary file + ``os.replace``), as zarr's
    ``LocalStore`` does: a killed build never leaves a half-written chunk under its key."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class _ChunkWriter:
    """Encodes and writes whole ``frames`` chunks straight into the store's folder.

    The chunk files are exactly what zarr writes for this array (codecs ``[bytes, zstd]``, key
    ``c.<i>.0.0.0``, edge chunk padded with the fill value 0) and are read back through zarr in
    the tests; doing it here avoids zarr's per-chunk overhead (measured: about 25 us of extra
    CPU per frame at level 3, as much as rendering a frame) and runs the zstd encoders (which
    release the GIL) in a small thread pool.
    """

    def __init__(self, store_path: Path, frames: zarr.Array, threads: int) -> None:
        from numcodecs import Zstd

        codec = _direct_codec(frames)
        if codec is None:  # pragma: no cover - we created the array ourselves
            raise CacheError(f"{store_path}: unexpected codecs for frames")
        self.codec = Zstd(level=codec.level, checksum=codec.checksum)
        self.dir = store_path / "frames"
        self.frames = frames
        self.step = int(frames.chunks[0])
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sconet-write")
        self.digests: dict[str, str] = {}  # "frames/<key>" -> sha256 of the file written

    def _one(self, c: int, block: np.ndarray) -> None:
        if len(block) < self.step:  # the edge chunk is stored full-size, padded with zeros
            padded = np.zeros((self.step, *FRAME_SHAPE), dtype=np.uint8)
            padded[: len(block)] = block
            block = padded
        data = self.codec.encode(np.ascontiguousarray(block))
        key = self.frames.metadata.encode_chunk_key((c, 0, 0, 0))
        _write_chunk_file(self.dir / key, data)
        self.digests[f"frames/{key}"] = digest(data)

    def write(self, start: int, block: np.ndarray) -> None:
        """Write frames ``[start, start + len(block))``; ``start`` is on a chunk boundary and the
        block is whole chunks (only the array's last chunk may be short)."""
        assert start % self.step == 0
        c0 = start // self.step
        jobs = [
            self.pool.submit(self._one, c0 + k, block[k * self.step : (k + 1) * self.step])
            for k in range(-(-len(block) // self.step))
        ]
        for job in jobs:
            job.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _write_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _fill_frames(
    partial: Path,
    inputs: Inputs,
    config: CacheConfig,
    fingerprint: str,
    start: int,
    progress: ProgressCallback | None,
) -> dict[str, str]:
    """Render and write frames ``start..``; returns the sha256 of every chunk file written."""
    group = zarr.open_group(LocalStore(partial), mode="r+")
    frames = _array(partial, group, "frames")
    offsets = np.asarray(_array(partial, group, "offsets")[:], dtype=np.int64)
    total = int(offsets[-1])
    if progress is not None:
        progress(start, total)
    if start >= total:
        return {}
    first_seq = int(np.searchsorted(offsets, start, side="right") - 1)
    batches = _plan_batches(offsets, first_seq, max(1, int(config.batch_frames)))
    drop = start - int(offsets[first_seq])  # frames of first_seq already committed

    # Batch k is rendered into slot k % 2 of two reused buffers (fresh memory costs a page fault
    # and the kernel's zeroing per page: ~15% of rendering), after room for the tail of batch
    # k - 1 that did not fill a whole chunk. That tail's length is known in advance (``start``
    # is on a chunk boundary), so the render thread never waits for the main thread; the main
    # thread copies the tail in before it lets the render thread reuse the tail's slot.
    step = int(frames.chunks[0])
    sizes = [int(offsets[e] - offsets[s]) for s, e in batches]
    heads = [0] + [int(offsets[s]) % step for s, _ in batches[1:]]
    slots = [np.empty((max(h + n for h, n in zip(heads, sizes, strict=True)), *FRAME_SHAPE), np.uint8)]
    if len(batches) > 1:
        slots.append(np.empty_like(slots[0]))
    writer = _ChunkWriter(partial, frames, _write_threads())
    written = start  # frames committed to the store

    def job(k: int) -> None:
        s, e = batches[k]
        out = slots[k % 2][heads[k] : heads[k] + sizes[k]]
        try:
            _render.render_batch(inputs.poses[s:e], config.render, threads=config.threads, out=out)
        except ValueError as exc:  # name the pose file, not the index within the batch
            hit = re.match(r"sequence (\d+): (.*)", str(exc), re.S)
            if hit is None or not 0 <= int(hit.group(1)) < e - s:
                raise
            raise PoseError(inputs.records[s + int(hit.group(1))].path, hit.group(2)) from None

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sconet-render")
    try:
        pending: Future[None] | None = pool.submit(job, 0) if config.overlap else None
        tail = slots[0][:0]
        for k in range(len(batches)):
            if config.overlap:
                assert pending is not None
                pending.result()
            else:
                job(k)
            slot = slots[k % 2]
            if k == 0:
                block = slot[drop : sizes[0]]
            else:
                if len(tail) != heads[k]:  # pragma: no cover - internal invariant
                    raise CacheError(
                        f"{partial}: batch {k} expected {heads[k]} carried frames, got {len(tail)}"
                    )
                slot[: heads[k]] = tail
                block = slot[: heads[k] + sizes[k]]
            if config.overlap and k + 1 < len(batches):
                pending = pool.submit(job, k + 1)  # may now overwrite the previous slot
            last = k + 1 == len(batches)
            n = len(block) if last else (len(block) // step) * step
            if n:
                writer.write(written, block[:n])
                written += n
                _atomic_write_json(
                    partial / PROGRESS_FILE,
                    {"fingerprint": fingerprint, "frames_committed": written, "frames_total": total},
                )
                if progress is not None:
                    progress(written, total)
            tail = block[n:]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
    if written != total:  # pragma: no cover - internal invariant
        raise CacheError(f"{partial}: wrote {written} of {total} frames")
    return writer.digests


def _check_resumed_chunks(partial: Path, digests: dict[str, str]) -> None:
    """Decode (zstd checksums) the frames chunks an interrupted build wrote before this one
    resumed it: the manifest will vouch for them."""
    frames = zarr.open_array(LocalStore(partial), path="frames", mode="r")
    codec = _direct_codec(frames)
    for c in range(-(-int(frames.shape[0]) // int(frames.chunks[0]))):
        key = f"frames/{frames.metadata.encode_chunk_key((c, 0, 0, 0))}"
        if key not in digests:
            try:
                _decode_frames_chunk(partial, frames, codec, c)
            except CacheError as exc:
                raise CacheError(f"{exc}; rerun with --rebuild to start afresh") from None


def _finalise(
    partial: Path, path: Path, fingerprint: str, digests: dict[str, str], inputs_record: dict
) -> None:
    group = zarr.open_group(LocalStore(partial), mode="r+")
    try:
        (partial / PROGRESS_FILE).unlink()
    except FileNotFoundError:
        pass
    marker: dict[str, Any] = {"fingerprint": fingerprint, "complete": True}
    _check_resumed_chunks(partial, digests)
    write_manifest(partial, digests, {**(_read_root_attrs(partial) or {}), **marker}, inputs_record)
    # the completion marker: written last, in one atomic zarr.json replacement
    group.attrs.update(marker)
    if path.exists() or path.is_symlink():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.rename(path, old)
        os.rename(partial, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, path)


def build_cache(config: CacheConfig, progress: ProgressCallback | None = None) -> CacheResult:
    """Render a dataset into a Zarr store, or reuse the existing one (see the module docstring).

    ``progress(frames_done, frames_total)`` is called as chunks are committed.
    Raises :class:`sconet.data.PoseError` for the first bad pose file (unless ``skip_bad``),
    ``ValueError`` for bad render settings and :class:`CacheError` for store problems.
    Every pose file is read and checked before anything is written.
    """
    t0 = time.perf_counter()
    scan = scan_inputs(config.poses, config.skip_bad, config.split, layout=config.layout)
    if config.out is not None:
        path = Path(config.out).expanduser()
    else:
        path = Path(cache_root()) / "stores" / _store_name(scan.dataset, config.render)
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    report_path = _skipped_report_path(path) if config.skip_bad else None

    def result(reused: bool, replaced: str | None, resumed: int, n_seq: int, n_frames: int,
               skipped: list[tuple[str, str]], fingerprint: str) -> CacheResult:  # fmt: skip
        if report_path is not None:
            write_skip_report(skipped, report_path)
        return CacheResult(
            path=path,
            reused=reused,
            n_sequences=n_seq,
            n_frames=n_frames,
            seconds=time.perf_counter() - t0,
            bytes_on_disk=_dir_size(path),
            skipped=skipped,
            fingerprint=fingerprint,
            replaced=replaced,
            resumed_from=resumed,
            skipped_report=report_path,
            dataset=scan.dataset,
            warnings=list(scan.split_problems),
        )

    with _build_lock(path):
        for stale in path.parent.glob(f".{path.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)
        decision = decide_reuse(path, scan, config)
        store = decision.store
        if store is not None:
            if progress is not None:
                progress(store.n_frames, store.n_frames)
            skipped = [(str(s.get("path")), str(s.get("reason"))) for s in store.attrs.get("skipped") or []]
            return result(True, None, 0, store.n_sequences, store.n_frames, skipped, store.fingerprint)
        inputs = decision.inputs or load_inputs(scan, config.render, config.threads)
        fingerprint = store_fingerprint(inputs.input_fp, config.render)
        partial = _partial_path(path)
        start = None
        if partial.exists() and not config.rebuild:
            start = _resumable(partial, fingerprint)
        resumed = 0
        with _write_errors(path):
            if start is None:
                _create_partial(partial, inputs, config, fingerprint)
                start = 0
            else:
                _clean_stray_tmp(partial)
                resumed = start
            digests: dict[str, str] = {}
            if (partial / PROGRESS_FILE).exists():
                digests = _fill_frames(partial, inputs, config, fingerprint, start, progress)
            _finalise(partial, path, fingerprint, digests, scan.inputs_record(inputs.skipped))
    n_frames = int(sum(p.shape[0] for p in inputs.poses))
    return result(False, decision.reason, resumed, len(inputs.records), n_frames, inputs.skipped, fingerprint)


@contextmanager
def _write_errors(path: Path) -> Iterator[None]:
    """A failed write while building (full disk, quota, file size limit, read-only mount) becomes
    a :class:`CacheError` naming the store and the cause; the partial build stays resumable."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES):
            raise
        where = f" at {exc.filename}" if exc.filename else ""
        advice = (
            "choose a writable place (--out or $SCONET_CACHE)"
            if exc.errno in (errno.EROFS, errno.EACCES)
            else "make room and run it again: the build resumes where it stopped"
        )
        reason = write_error_reason(exc)
        raise CacheError(f"{path}: cannot write the cache ({reason}{where}); {advice}") from None
