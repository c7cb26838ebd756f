"""Zarr v3 caches of rendered skeleton maps: build (resumable), open, verify, find.

One store per (dataset, render settings), by default
``<cache_root>/stores/<dataset>-<representation>-<RenderConfig.key()>.zarr``:

=========  ===================================  ==========================================
node       dtype, shape                         chunks / codec
=========  ===================================  ==========================================
frames     uint8 ``[total_frames, 2, 64, 64]``  ``(300, 2, 64, 64)``, zstd (see below)
offsets    int64 ``[N + 1]``                    one chunk; sequence ``i`` is
                                                ``frames[offsets[i]:offsets[i + 1]]``
labels     int8 ``[N]``                         one chunk; index into :data:`CLASSES`
pav        float32 ``[N, 8, 3]``                one chunk; raw postural asymmetry vectors
=========  ===================================  ==========================================

Root attributes: ``format_version``, ``ids``, ``views``, ``classes``, ``render``
(:meth:`RenderConfig.to_dict`), ``renderer_version``, ``sconet_version``, ``dataset``
(``{"name", "source"}``), ``split`` and ``split_problems`` (the split given when the store was
built, informational only: the store holds every sequence and is reused whatever split is given
later), ``input_fingerprint``, ``counts`` (``{"sequences", "frames", "per_class"}``), ``codec``,
``chunk_frames``, ``created``, ``skipped`` (files left out by ``skip_bad``) and, written last,
``fingerprint`` and ``complete = true``. Chunk keys use the ``"."`` separator
(``frames/c.12.0.0.0``: one flat folder of chunk files, no sharding) and every chunk file is
written, even an all-zero one, so that a missing chunk file always means damage.

Fingerprints
------------
* input fingerprint: sha256 over the sorted ``(id, label, view, shape, float32 pose bytes)`` of
  every sequence that goes into the store (content, not file names or dates: re-pickling the same
  arrays keeps it, changing one keypoint changes it);
* store fingerprint: sha256 over the input fingerprint, the render settings, the renderer version,
  the store format version and the codec.

A complete store whose fingerprint matches is reused as it is. A store at the same path with
another fingerprint (inputs changed) is never reused: it is rebuilt and replaced, and
:class:`CacheResult` says so (``replaced``).

Crash safety and resuming
-------------------------
A store is built in ``<path>.partial/`` (a zarr v3 ``LocalStore``). Arrays and attributes
(``complete = false``) come first, then the frames, rendered in batches of whole sequences
(``batch_frames``, into two reused buffers) and written in whole chunks only (the tail of a
batch that does not fill a chunk is carried into the next batch's buffer; only the very last
chunk of the array may be short), so every chunk file is
written exactly once. Each chunk file, like every file zarr's ``LocalStore`` writes, goes
through a temporary file and a rename. After each flushed chunk range ``progress.json`` (frames
committed, fingerprint) is replaced atomically (tmp + ``os.replace``). At the end the completion
marker (attributes ``fingerprint`` and ``complete = true``, one atomic ``zarr.json``
replacement) is written LAST, then the folder is renamed into place (an older store at the path
is swapped out and deleted only after that). So a ``kill -9`` at any moment leaves at worst a
``.partial`` folder that does not claim to be complete. The next build with the same fingerprint
resumes it from its first uncommitted frame (re-rendering from the sequence that holds it); a
partial with another fingerprint is discarded. Builds of one path are serialised with an
``flock`` on a hidden lock file beside the store. Files are not fsynced: the guarantee covers a
killed or crashed process, not power loss (``verify_cache`` finds what that damaged).

Writing and reading chunks
--------------------------
Rendering of batch ``k + 1`` (Rust, GIL released) runs in a worker thread while batch ``k`` is
compressed and written by a small pool of encoder threads (numcodecs zstd releases the GIL).
The chunk files are encoded here with numcodecs' ``Zstd`` (exactly what zarr writes for this
array's ``[bytes, zstd]`` codecs; the tests read them back through zarr) rather than through
``zarr.Array.__setitem__``, which costs about 25 us of extra CPU per frame. Reads
(:meth:`CacheStore.load_frames`, :func:`verify_cache`) likewise decode the chunk files
directly, in a few threads: faster than zarr, and a missing chunk file is an error instead of
silently reading as zeros (zarr's fill value).

Codec choice (measured)
-----------------------
Measured on the built-in synthetic Scoliosis1K, body-only, default settings (1,493 x 300 =
447,900 frames; 2 cores, quiet machine; best of 2 full builds each). Rendering alone takes
11.5 s (38,800 frames/s), so the codec decides the rest:

===============================  ==========  ============  =========  =============
frames codec (full build)        build time  frames/s      store      bytes/frame
===============================  ==========  ============  =========  =============
zstd 1, direct writer            13.0-13.5 s 33-34 k       1.70 GiB   4,071
zstd 2, direct writer            12.6-13.6 s 33-36 k       1.46 GiB   3,495
**zstd 3, direct writer**        14.8-15.8 s 28-30 k       1.33 GiB   3,189
zstd 3, through zarr setitem     18.1-20.5 s 22-25 k       1.33 GiB   3,189
===============================  ==========  ============  =========  =============

One encoder thread on 30,000 cached frames (encode / decode speed, bytes per frame):
zstd 1: 16.2 us, 151 k/s, 4,069 B; zstd 2: 18.5 us, 222 k/s, 3,492 B; zstd 3: 25.4 us,
219 k/s, 3,186 B; blosc-lz4: 4.2 us, 867 k/s, 5,179 B; blosc-zstd 1: 12.8 us, 326 k/s,
4,412 B; blosc-zstd 3: 25.8 us, 349 k/s, 3,623 B. Blosc's block splitting costs compression
ratio (blosc-zstd 3 is 14% bigger than plain zstd 3 at the same encode cost), and blosc-lz4 would
save at most ~3 s of a render-bound build for a 1.6x bigger store (2.16 GiB).

Choice: plain zstd level 3 (with its content checksum, which lets :func:`verify_cache` and
every read detect a damaged chunk): the smallest store (22% below level 1, 9% below level 2)
for 1-3 s more build time, which rendering dominates anyway; level 1 is not faster than level 2
here (more bytes to write). Decoding is as fast as for level 2. Overlapping rendering with
writing changed a build by -8% to +6% on 2 cores (each stage already uses both cores) and by
-12% with zarr's writer; it is kept on (``overlap``), where it helps more on machines with more
cores. Writing through ``zarr.Array.__setitem__`` costs ~25% more wall time and ~6 s more CPU
than the direct writer. Reading everything back (:meth:`CacheStore.load_frames`, page cache
warm) runs at ~360 k frames/s (zarr's own reads: ~160 k frames/s); :func:`verify_cache` of the
full store takes ~1.7 s.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from sconet import __version__ as _sconet_version
from sconet import poses as _poses
from sconet import render as _render
from sconet._io import atomic_write_json
from sconet._paths import cache_root
from sconet.classes import CLASSES
from sconet.poses import PoseError, SequenceRecord
from sconet.render import RenderConfig

__all__ = [
    "CHUNK_FRAMES",
    "CLASSES",
    "FORMAT_VERSION",
    "CacheConfig",
    "CacheError",
    "CacheResult",
    "CacheStore",
    "VerifyReport",
    "build_cache",
    "cache_root",
    "dataset_name",
    "default_store_path",
    "find_cache",
    "input_fingerprint",
    "open_cache",
    "store_fingerprint",
    "verify_cache",
]

FORMAT_VERSION = 1
"""Version of the store layout; a store with another version is refused by :func:`open_cache`."""

CHUNK_FRAMES = 300
"""Frames per chunk of ``frames`` (one 300-frame Scoliosis1K sequence)."""

FRAME_SHAPE = (2, 64, 64)
ZSTD_LEVEL = 3
"""zstd level of the ``frames`` chunks (see the measurements in the module docstring)."""

SYNTHETIC_DATASET = "synthetic"
"""Dataset name of the built-in synthetic Scoliosis1K."""

PROGRESS_FILE = "progress.json"
_PARTIAL_SUFFIX = ".partial"
_ARRAYS = ("frames", "offsets", "labels", "pav")

ProgressCallback = Callable[[int, int], None]


class CacheError(RuntimeError):
    """A cache store is missing, incomplete, of another format, malformed or cannot be built.

    The message starts with the store path.
    """


# --------------------------------------------------------------------------------------------
# configuration and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheConfig:
    """What to cache and where.

    ``poses``: dataset root in the Scoliosis1K layout; ``None`` = the built-in synthetic
    Scoliosis1K (:func:`sconet.synth.ensure_synthetic`, generated on first use).
    ``split``: an OpenGait split JSON; only validated and recorded (the store holds every
    sequence). ``out``: store path (default :func:`default_store_path`). ``skip_bad``: leave out
    unreadable / invalid pose files and write a report (``<store>.skipped.json``) instead of
    stopping at the first one. ``threads``: renderer threads (0 = all cores).
    ``batch_frames``: about how many frames are rendered per batch (whole sequences).
    ``overlap``: render the next batch while the previous one is compressed and written.
    """

    poses: Path | None = None
    render: RenderConfig = field(default_factory=RenderConfig)
    split: Path | None = None
    out: Path | None = None
    skip_bad: bool = False
    threads: int = 0
    batch_frames: int = 6000
    overlap: bool = True


@dataclass
class CacheResult:
    """Outcome of :func:`build_cache`.

    ``reused``: an existing complete store with the same fingerprint was used as it is.
    ``replaced``: why an existing store at the path was rebuilt (``None`` if there was none).
    ``resumed_from``: frames already committed by an interrupted build that this one resumed
    (0 when it started from scratch). ``skipped``: ``(path, reason)`` of files left out
    (``skip_bad``); ``skipped_report``: the JSON report written beside the store
    (:func:`sconet.poses.write_skip_report`). ``warnings``: e.g. split ids absent from the
    dataset (:func:`sconet.poses.check_split`).
    """

    path: Path
    reused: bool
    n_sequences: int
    n_frames: int
    seconds: float
    bytes_on_disk: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fingerprint: str = ""
    replaced: str | None = None
    resumed_from: int = 0
    skipped_report: Path | None = None
    dataset: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def frames_rendered(self) -> int:
        """Frames rendered by this call (0 when reused; less than ``n_frames`` when resumed)."""
        return 0 if self.reused else self.n_frames - self.resumed_from

    @property
    def frames_per_second(self) -> float:
        """Rendered frames per second of this call (all frames when reused)."""
        n = self.n_frames if self.reused else self.frames_rendered
        return n / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_cache`: ``problems`` (empty when the store is sound) and ``ok``.

    Behaves like the list of problems (``len``, iteration, ``bool`` = "has problems"), as the
    design's ``verify_cache(path) -> list[str]`` contract reads.
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    chunks_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __iter__(self) -> Iterator[str]:
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def __getitem__(self, i: int) -> str:
        return self.problems[i]


# --------------------------------------------------------------------------------------------
# names, paths, fingerprints
# --------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return s or "dataset"


def _synthetic_root() -> Path:
    from sconet.synth import default_synthetic_root

    return Path(default_synthetic_root())


def dataset_name(poses: Path | str | None) -> str:
    """Store-name prefix of a dataset.

    ``None`` (or the default synthetic root) -> ``"synthetic"``; any other root ->
    ``<folder name>-<6 hex of its absolute path>`` so that two datasets in folders of the same
    name never share a store path.
    """
    if poses is None:
        return SYNTHETIC_DATASET
    root = Path(poses).expanduser().resolve()
    try:
        if root == _synthetic_root().expanduser().resolve():
            return SYNTHETIC_DATASET
    except ImportError:  # pragma: no cover - synth module missing
        pass
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:6]
    return f"{_slug(root.name)}-{digest}"


def default_store_path(
    render: RenderConfig, poses: Path | str | None = None, root: Path | str | None = None
) -> Path:
    """``<root>/stores/<dataset>-<representation>-<render.key()>.zarr`` (root = :func:`cache_root`)."""
    base = Path(root) if root is not None else Path(cache_root())
    return base / "stores" / _store_name(dataset_name(poses), render)


def _store_name(dataset: str, render: RenderConfig) -> str:
    return f"{dataset}-{_slug(render.representation.name)}-{render.key()}.zarr"


def _codec_spec() -> dict[str, Any]:
    return {"name": "zstd", "level": ZSTD_LEVEL, "checksum": True}


def input_fingerprint(records: Sequence[SequenceRecord], poses: Sequence[np.ndarray]) -> str:
    """sha256 over the sorted ``(id, label, view, shape, float32 pose bytes)`` of a dataset."""
    if len(records) != len(poses):
        raise ValueError("records and poses differ in length")
    order = sorted(range(len(records)), key=lambda i: (records[i].id, records[i].view))
    h = hashlib.sha256(b"sconet-input-v1\0")
    for i in order:
        r = records[i]
        arr = np.ascontiguousarray(poses[i], dtype="<f4")
        head = json.dumps([r.id, r.label, r.view, list(arr.shape)], separators=(",", ":"))
        h.update(head.encode())
        h.update(b"\0")
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def store_fingerprint(input_fp: str, render: RenderConfig) -> str:
    """sha256 over input fingerprint + render settings + renderer and format versions + codec."""
    doc = {
        "input": input_fp,
        "render": render.to_dict(),
        "renderer_version": str(_render.RENDERER_VERSION),
        "format_version": FORMAT_VERSION,
        "chunk_frames": CHUNK_FRAMES,
        "codec": _codec_spec(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _partial_path(path: Path) -> Path:
    return path.with_name(path.name + _PARTIAL_SUFFIX)


def _skipped_report_path(path: Path) -> Path:
    stem = path.name[: -len(".zarr")] if path.name.endswith(".zarr") else path.name
    return path.with_name(stem + ".skipped.json")


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def _read_root_attrs(path: Path) -> dict[str, Any] | None:
    """Root attributes of a Zarr v3 store read straight from ``zarr.json`` (None if unreadable)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes", {})
    return attrs if isinstance(attrs, dict) else None


def _atomic_write_json(path: Path, doc: Any) -> None:
    # atomic against a killed process (temporary file + os.replace); not fsynced, like the chunk
    # files: power loss is outside the guarantee, `sconet cache verify` finds what it damaged
    atomic_write_json(path, doc, indent=1, fsync=False)


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """Serialise builds of one store path (a hidden lock file beside it; never deleted)."""
    lock = path.with_name(f".{path.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------


@dataclass
class _Inputs:
    root: Path
    dataset: str
    records: list[SequenceRecord]
    poses: list[np.ndarray]
    skipped: list[tuple[str, str]]
    split_name: str | None
    split_problems: list[str]
    input_fp: str


def _load_inputs(config: CacheConfig) -> _Inputs:
    if config.poses is None:
        from sconet.synth import ensure_synthetic

        root = Path(ensure_synthetic())
    else:
        root = Path(config.poses).expanduser()
    records = list(_poses.scan_dataset(root))
    if not records:
        raise PoseError(
            root, "no pose sequences found (expected <root>/<id>/<Label>/<view>/<view>.pkl)"
        )
    split_name = None
    split_problems: list[str] = []
    if config.split is not None:
        split = _poses.load_split(Path(config.split))
        split_name = split.name
        split_problems = _poses.check_split(split, records).messages(split.name)
    loaded = _poses.load_sequences(records, skip_bad=config.skip_bad)
    recs = list(loaded.records)
    arrs = list(loaded.poses)
    skipped = [(str(p), str(reason)) for p, reason in loaded.skipped]
    if not recs:
        raise PoseError(root, f"every pose file was bad ({len(skipped)} skipped)")
    order = sorted(range(len(recs)), key=lambda i: (recs[i].id, recs[i].view))
    recs = [recs[i] for i in order]
    arrs = [arrs[i] for i in order]
    return _Inputs(
        root=root,
        dataset=SYNTHETIC_DATASET if config.poses is None else dataset_name(root),
        records=recs,
        poses=arrs,
        skipped=skipped,
        split_name=split_name,
        split_problems=split_problems,
        input_fp=input_fingerprint(recs, arrs),
    )


def _store_state(path: Path, fingerprint: str) -> tuple[str, str | None]:
    """('missing'|'match'|'other', reason) for what sits at ``path``."""
    if not path.exists() and not path.is_symlink():
        return "missing", None
    attrs = _read_root_attrs(path)
    if attrs is None or "format_version" not in attrs:
        if path.is_dir() and not any(path.iterdir()):
            return "other", "an empty folder"
        raise CacheError(
            f"{path}: exists and is not a sconet cache store; refusing to replace it "
            "(choose another --out or remove it)"
        )
    if attrs.get("complete") is not True:
        return "other", "the existing store is incomplete"
    if attrs.get("format_version") != FORMAT_VERSION:
        return "other", f"the existing store has format version {attrs.get('format_version')}"
    if attrs.get("fingerprint") != fingerprint:
        return "other", "the existing store has another fingerprint (inputs or settings changed)"
    return "match", None


def _describe_mismatch(path: Path, inputs_fp: str) -> str:
    attrs = _read_root_attrs(path) or {}
    if attrs.get("input_fingerprint") and attrs.get("input_fingerprint") != inputs_fp:
        return "the pose files changed since the existing store was built"
    if attrs.get("renderer_version") not in (None, str(_render.RENDERER_VERSION)):
        return "the renderer version changed since the existing store was built"
    return "the existing store has another fingerprint (settings or format changed)"


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


def _create_partial(partial: Path, inputs: _Inputs, config: CacheConfig, fingerprint: str) -> None:
    if partial.exists():
        shutil.rmtree(partial)
    lengths = np.array([p.shape[0] for p in inputs.poses], dtype=np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    labels = np.array([CLASSES.index(r.label) for r in inputs.records], dtype=np.int8)
    pav = np.asarray(_render.pav_batch(inputs.poses, threads=config.threads), dtype=np.float32)
    if pav.shape != (len(lengths), 8, 3):
        raise CacheError(f"{partial}: pav_batch returned shape {pav.shape}")
    per_class = {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)}
    attrs = {
        "format_version": FORMAT_VERSION,
        "complete": False,
        "ids": [r.id for r in inputs.records],
        "views": [r.view for r in inputs.records],
        "classes": list(CLASSES),
        "render": config.render.to_dict(),
        "renderer_version": str(_render.RENDERER_VERSION),
        "sconet_version": _sconet_version,
        "dataset": {"name": inputs.dataset, "source": str(inputs.root.resolve())},
        "split": inputs.split_name,
        "split_problems": list(inputs.split_problems),
        "input_fingerprint": inputs.input_fp,
        "counts": {"sequences": len(lengths), "frames": total, "per_class": per_class},
        "codec": _codec_spec(),
        "chunk_frames": CHUNK_FRAMES,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "skipped": [{"path": p, "reason": r} for p, r in inputs.skipped],
    }
    sep = {"name": "default", "separator": "."}
    # every chunk file is written, even an all-zero one (labels of a one-class dataset): a
    # missing chunk file then always means damage
    empty_ok = {"write_empty_chunks": True}
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

    def _one(self, c: int, block: np.ndarray) -> None:
        if len(block) < self.step:  # the edge chunk is stored full-size, padded with zeros
            padded = np.zeros((self.step, *FRAME_SHAPE), dtype=np.uint8)
            padded[: len(block)] = block
            block = padded
        data = self.codec.encode(np.ascontiguousarray(block))
        key = self.frames.metadata.encode_chunk_key((c, 0, 0, 0))
        _write_chunk_file(self.dir / key, data)

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
    inputs: _Inputs,
    config: CacheConfig,
    fingerprint: str,
    start: int,
    progress: ProgressCallback | None,
) -> None:
    group = zarr.open_group(LocalStore(partial), mode="r+")
    frames = group["frames"]
    offsets = np.asarray(group["offsets"][:], dtype=np.int64)
    total = int(offsets[-1])
    if progress is not None:
        progress(start, total)
    if start >= total:
        return
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
    slots = [np.empty((max(h + n for h, n in zip(heads, sizes)), *FRAME_SHAPE), np.uint8)]
    if len(batches) > 1:
        slots.append(np.empty_like(slots[0]))
    writer = _ChunkWriter(partial, frames, _write_threads())
    written = start  # frames committed to the store

    def job(k: int) -> None:
        s, e = batches[k]
        out = slots[k % 2][heads[k] : heads[k] + sizes[k]]
        _render.render_batch(inputs.poses[s:e], config.render, threads=config.threads, out=out)

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
                    raise CacheError(f"{partial}: batch {k} expected {heads[k]} carried frames, got {len(tail)}")
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


def _finalise(partial: Path, path: Path, fingerprint: str) -> None:
    group = zarr.open_group(LocalStore(partial), mode="r+")
    try:
        (partial / PROGRESS_FILE).unlink()
    except FileNotFoundError:
        pass
    # the completion marker: written last, in one atomic zarr.json replacement
    group.attrs.update({"fingerprint": fingerprint, "complete": True})
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
    Raises :class:`sconet.poses.PoseError` for the first bad pose file (unless ``skip_bad``),
    ``ValueError`` for bad render settings and :class:`CacheError` for store problems.
    """
    t0 = time.perf_counter()
    inputs = _load_inputs(config)
    fingerprint = store_fingerprint(inputs.input_fp, config.render)
    if config.out is not None:
        path = Path(config.out).expanduser()
    else:
        path = Path(cache_root()) / "stores" / _store_name(inputs.dataset, config.render)
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    n_seq = len(inputs.records)
    n_frames = int(sum(p.shape[0] for p in inputs.poses))

    report_path: Path | None = None
    if config.skip_bad:
        report_path = _skipped_report_path(path)
        _poses.write_skip_report(inputs.skipped, report_path)

    def result(reused: bool, replaced: str | None, resumed: int) -> CacheResult:
        return CacheResult(
            path=path,
            reused=reused,
            n_sequences=n_seq,
            n_frames=n_frames,
            seconds=time.perf_counter() - t0,
            bytes_on_disk=_dir_size(path),
            skipped=list(inputs.skipped),
            fingerprint=fingerprint,
            replaced=replaced,
            resumed_from=resumed,
            skipped_report=report_path,
            dataset=inputs.dataset,
            warnings=list(inputs.split_problems),
        )

    with _build_lock(path):
        for stale in path.parent.glob(f".{path.name}.old-*"):
            shutil.rmtree(stale, ignore_errors=True)
        state, reason = _store_state(path, fingerprint)
        if state == "match":
            try:
                open_cache(path)  # structure validated (chunk contents: verify_cache)
            except CacheError as exc:
                state, reason = "other", f"the existing store is damaged ({exc})"
            else:
                if progress is not None:
                    progress(n_frames, n_frames)
                return result(True, None, 0)
        replaced = None
        if state == "other":
            replaced = reason
            if reason and "fingerprint" in reason:
                replaced = _describe_mismatch(path, inputs.input_fp)
        partial = _partial_path(path)
        start = _resumable(partial, fingerprint) if partial.exists() else None
        resumed = 0
        if start is None:
            _create_partial(partial, inputs, config, fingerprint)
            start = 0
        else:
            _clean_stray_tmp(partial)
            resumed = start
        if (partial / PROGRESS_FILE).exists():
            _fill_frames(partial, inputs, config, fingerprint, start, progress)
        _finalise(partial, path, fingerprint)
    return result(False, replaced, resumed)


# --------------------------------------------------------------------------------------------
# open
# --------------------------------------------------------------------------------------------


class CacheStore:
    """A complete, validated cache store opened read-only (see :func:`open_cache`).

    Attributes: ``path``, ``attrs`` (root attributes), ``ids``, ``views`` (lists of str),
    ``labels`` (int64 ``[N]``, index into :data:`CLASSES`), ``offsets`` (int64 ``[N + 1]``),
    ``pav`` (float32 ``[N, 8, 3]``), ``render_config``, ``fingerprint``, ``frames`` (the zarr
    array, uint8 ``[n_frames, 2, 64, 64]``), ``n_sequences``, ``n_frames``.
    """

    def __init__(self, path: Path, group: zarr.Group, attrs: dict[str, Any]) -> None:
        self.path = path
        self._group = group
        self.attrs = attrs
        self.frames = group["frames"]
        self.offsets = np.asarray(group["offsets"][:], dtype=np.int64)
        self.labels = np.asarray(group["labels"][:], dtype=np.int64)
        self.pav = np.asarray(group["pav"][:], dtype=np.float32)
        self.ids: list[str] = [str(x) for x in attrs["ids"]]
        self.views: list[str] = [str(x) for x in attrs["views"]]
        self.classes: tuple[str, ...] = tuple(attrs.get("classes", CLASSES))
        self.fingerprint: str = str(attrs["fingerprint"])
        self.input_fingerprint: str = str(attrs.get("input_fingerprint", ""))
        self._render_config: RenderConfig | None = None
        self._index: dict[str, list[int]] | None = None
        self._codec = _direct_codec(self.frames)

    # -- metadata ----------------------------------------------------------------------------
    @property
    def n_sequences(self) -> int:
        return len(self.ids)

    @property
    def n_frames(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        """Frames per sequence, int64 ``[N]``."""
        return np.diff(self.offsets)

    @property
    def render_config(self) -> RenderConfig:
        if self._render_config is None:
            self._render_config = RenderConfig.from_dict(self.attrs["render"])
        return self._render_config

    @property
    def dataset(self) -> str:
        return str(self.attrs.get("dataset", {}).get("name", ""))

    def label_name(self, i: int) -> str:
        return self.classes[int(self.labels[i])]

    def index_of(self, key: str) -> int:
        """Index of a sequence by ``id`` (or ``id/view`` when an id has several views)."""
        if self._index is None:
            index: dict[str, list[int]] = {}
            for i, (sid, view) in enumerate(zip(self.ids, self.views)):
                index.setdefault(sid, []).append(i)
                index.setdefault(f"{sid}/{view}", []).append(i)
            self._index = index
        hits = self._index.get(str(key))
        if not hits:
            raise KeyError(f"{self.path}: no sequence with id {key!r}")
        if len(hits) > 1:
            views = ", ".join(f"{key}/{self.views[i]}" for i in hits)
            raise KeyError(f"{self.path}: id {key!r} has several views; use one of {views}")
        return hits[0]

    def indices_of(self, ids: Sequence[str]) -> np.ndarray:
        """Indices (in store order) of every sequence whose id is in ``ids``."""
        wanted = {str(x) for x in ids}
        return np.array([i for i, sid in enumerate(self.ids) if sid in wanted], dtype=np.int64)

    # -- frames ------------------------------------------------------------------------------
    def _resolve(self, i: int | str) -> int:
        if isinstance(i, str):
            return self.index_of(i)
        i = int(i)
        if not -self.n_sequences <= i < self.n_sequences:
            raise IndexError(f"sequence index {i} out of range (0..{self.n_sequences - 1})")
        return i % self.n_sequences

    def sequence(self, i: int | str) -> np.ndarray:
        """Skeleton maps of one sequence (index or id): uint8 ``[T, 2, 64, 64]``."""
        i = self._resolve(i)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        out = np.empty((b - a, *FRAME_SHAPE), dtype=np.uint8)
        self._read_ranges([(a, b, 0)], out)
        return out

    def load_frames(
        self, indices: Sequence[int] | np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frames of the chosen sequences (all when ``None``) in RAM, concatenated in order.

        Returns ``(frames uint8 [sum T, 2, 64, 64], offsets int64 [len(indices) + 1])``; the
        ``j``-th chosen sequence is ``frames[offsets[j]:offsets[j + 1]]``. Every chunk needed is
        read and decoded once per call (in a few threads; zstd releases the GIL), whole chunks
        straight into the output where they fit. A missing or damaged chunk raises
        :class:`CacheError` naming it (zarr itself would silently read a missing chunk as zeros).
        """
        if indices is None:
            out = np.empty((self.n_frames, *FRAME_SHAPE), dtype=np.uint8)
            self._read_ranges([(0, self.n_frames, 0)], out)
            return out, self.offsets.copy()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -self.n_sequences or idx.max() >= self.n_sequences):
            raise IndexError(f"sequence indices out of range (0..{self.n_sequences - 1})")
        idx = idx % max(1, self.n_sequences)
        lengths = self.offsets[idx + 1] - self.offsets[idx]
        out_offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_offsets[1:])
        out = np.empty((int(out_offsets[-1]), *FRAME_SHAPE), dtype=np.uint8)
        # merge runs of consecutive sequences into frame ranges
        runs: list[tuple[int, int, int]] = []  # (src_start, src_stop, dst_start)
        for j, i in enumerate(idx):
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            if runs and runs[-1][1] == a:
                runs[-1] = (runs[-1][0], b, runs[-1][2])
            else:
                runs.append((a, b, int(out_offsets[j])))
        self._read_ranges(runs, out)
        return out, out_offsets

    # -- chunk reading -----------------------------------------------------------------------
    @property
    def _step(self) -> int:
        return int(self.frames.chunks[0])

    def _decode_chunk(self, c: int, out: np.ndarray | None = None) -> np.ndarray:
        return _decode_frames_chunk(self.path, self.frames, self._codec, c, out, hint=True)

    def _read_ranges(self, ranges: list[tuple[int, int, int]], out: np.ndarray) -> None:
        """Copy frames ``[a, b)`` of the store to ``out[d : d + b - a]`` for each range."""
        step = self._step
        tasks: dict[int, list[tuple[int, int, int]]] = {}
        for a, b, d in ranges:
            c = a // step
            while c * step < b:
                lo, hi = max(a, c * step), min(b, (c + 1) * step)
                tasks.setdefault(c, []).append((lo, hi, d + lo - a))
                c += 1

        def work(c: int) -> None:
            parts = tasks[c]
            base = c * step
            if len(parts) == 1 and parts[0][0] == base and parts[0][1] == base + step:
                d = parts[0][2]
                self._decode_chunk(c, out=out[d : d + step])  # whole chunk, in place
                return
            if self._codec is None:
                block = self._decode_chunk(c)
            else:
                block = self._decode_chunk(c, out=np.empty((step, *FRAME_SHAPE), np.uint8))
            for lo, hi, d in parts:
                out[d : d + hi - lo] = block[lo - base : hi - base]

        chunks = sorted(tasks)
        if len(chunks) <= 2:
            for c in chunks:
                work(c)
            return
        with ThreadPoolExecutor(max_workers=_read_threads(), thread_name_prefix="sconet-read") as pool:
            for _ in pool.map(work, chunks):
                pass

    def __len__(self) -> int:
        return self.n_sequences

    def __repr__(self) -> str:
        return (
            f"CacheStore({str(self.path)!r}, sequences={self.n_sequences}, "
            f"frames={self.n_frames}, representation={self.attrs['render'].get('representation')})"
        )


_FRAME_BYTES = int(np.prod(FRAME_SHAPE))


def _read_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _direct_codec(frames: zarr.Array) -> Any:
    """numcodecs Zstd for reading chunk files directly when ``frames`` has the layout this module
    writes ([bytes, zstd] codecs, regular chunk grid, no sharding); ``None`` otherwise."""
    from numcodecs import Zstd
    from zarr.codecs import BytesCodec

    try:
        codecs = tuple(frames.metadata.codecs)
        grid = frames.metadata.chunk_grid
        if (
            len(codecs) == 2
            and isinstance(codecs[0], BytesCodec)
            and isinstance(codecs[1], ZstdCodec)
            and tuple(grid.chunk_shape[1:]) == FRAME_SHAPE
            and np.dtype(frames.dtype) == np.uint8
        ):
            return Zstd(level=codecs[1].level, checksum=codecs[1].checksum)
    except Exception:  # pragma: no cover - other zarr versions: fall back to zarr
        return None
    return None


def _decode_frames_chunk(
    path: Path,
    frames: zarr.Array,
    codec: Any,
    c: int,
    out: np.ndarray | None = None,
    hint: bool = False,
) -> np.ndarray:
    """Decode chunk ``c`` of ``frames`` (a full ``chunks[0]``-frame block; edge chunks are
    padded). With ``codec`` (see :func:`_direct_codec`) the chunk file is read and decoded
    directly, which is faster than zarr and, unlike zarr, refuses a missing chunk instead of
    returning zeros. Raises :class:`CacheError` naming the chunk and its file."""
    step = int(frames.chunks[0])
    n = int(frames.shape[0])
    key = frames.metadata.encode_chunk_key((c, 0, 0, 0))

    def error(what: str) -> CacheError:
        a, b = c * step, min(n, (c + 1) * step) - 1
        tail = "; run `sconet cache verify` and rebuild the store" if hint else ""
        return CacheError(f"{path}: frames chunk {c} (frames {a}..{b}) file frames/{key} {what}{tail}")

    if codec is None:  # not the layout this module writes: let zarr decode
        a = c * step
        try:
            data = np.asarray(frames[a : min(n, a + step)])
        except Exception as exc:
            raise error(f"is damaged ({type(exc).__name__}: {exc})") from None
        if out is not None:
            out[: len(data)] = data
            return out
        return data
    try:
        raw = (path / "frames" / key).read_bytes()
    except FileNotFoundError:
        raise error("is missing") from None
    except OSError as exc:
        raise error(f"cannot be read ({exc})") from None
    try:
        if out is not None:
            codec.decode(raw, out=out)
            return out
        data = codec.decode(raw)
    except Exception as exc:
        raise error(f"is damaged ({type(exc).__name__}: {exc})") from None
    arr = np.frombuffer(data, dtype=np.uint8)
    if arr.size != step * _FRAME_BYTES:
        raise error(f"decodes to {arr.size} bytes, expected {step * _FRAME_BYTES}")
    return arr.reshape(step, *FRAME_SHAPE)


def _open_group_ro(path: Path) -> zarr.Group:
    try:
        node = zarr.open(LocalStore(path, read_only=True), mode="r", zarr_format=3)
    except Exception as exc:
        raise CacheError(f"{path}: not a readable Zarr v3 store ({exc})") from None
    if not isinstance(node, zarr.Group):
        raise CacheError(f"{path}: is a Zarr array, not a sconet cache store")
    return node


def _structure_problems(path: Path, group: zarr.Group, attrs: dict[str, Any]) -> list[str]:
    """Structural checks shared by :func:`open_cache` (first problem fatal) and verify."""
    problems: list[str] = []
    fv = attrs.get("format_version")
    if fv is None:
        return [f"{path}: not a sconet cache store (no format_version attribute)"]
    if fv != FORMAT_VERSION:
        return [f"{path}: store format version {fv}, this sconet reads version {FORMAT_VERSION}"]
    if attrs.get("complete") is not True:
        problems.append(f"{path}: incomplete store (no completion marker; an interrupted build?)")
    if not attrs.get("fingerprint"):
        problems.append(f"{path}: no fingerprint attribute")
    for key in ("ids", "views", "classes", "render", "counts", "input_fingerprint"):
        if key not in attrs:
            problems.append(f"{path}: attribute {key!r} missing")
    members = {}
    for name in _ARRAYS:
        try:
            node = group[name]
        except Exception:
            problems.append(f"{path}: array {name!r} missing")
            continue
        if not isinstance(node, zarr.Array):
            problems.append(f"{path}: {name!r} is not an array")
            continue
        members[name] = node
    if problems:
        return problems
    ids, views = attrs["ids"], attrs["views"]
    n = len(ids) if isinstance(ids, list) else -1
    frames, offsets_a, labels_a, pav_a = (members[k] for k in _ARRAYS)
    expect = {
        "frames": (np.dtype("uint8"), None),
        "offsets": (np.dtype("int64"), (n + 1,)),
        "labels": (np.dtype("int8"), (n,)),
        "pav": (np.dtype("float32"), (n, 8, 3)),
    }
    for name, (dtype, shape) in expect.items():
        arr = members[name]
        if np.dtype(arr.dtype) != dtype:
            problems.append(f"{path}: {name} has dtype {arr.dtype}, expected {dtype}")
        if shape is not None and tuple(arr.shape) != shape:
            problems.append(f"{path}: {name} has shape {tuple(arr.shape)}, expected {shape}")
    if frames.ndim != 4 or tuple(frames.shape[1:]) != FRAME_SHAPE:
        problems.append(f"{path}: frames has shape {tuple(frames.shape)}, expected [n, 2, 64, 64]")
    if not isinstance(views, list) or len(views) != n:
        problems.append(f"{path}: 'views' does not have one entry per sequence")
    if problems:
        return problems
    try:
        offsets = np.asarray(offsets_a[:])
        labels = np.asarray(labels_a[:])
        pav = np.asarray(pav_a[:])
    except Exception as exc:
        return [f"{path}: cannot read offsets/labels/pav ({exc})"]
    if n == 0:
        problems.append(f"{path}: store holds no sequences")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 1):
        problems.append(f"{path}: offsets are not strictly increasing from 0")
    if int(offsets[-1]) != frames.shape[0]:
        problems.append(
            f"{path}: offsets end at {int(offsets[-1])} but frames has {frames.shape[0]} frames"
        )
    classes = attrs["classes"]
    if np.any(labels < 0) or np.any(labels >= len(classes)):
        problems.append(f"{path}: labels outside 0..{len(classes) - 1}")
    if not np.all(np.isfinite(pav)):
        problems.append(f"{path}: pav holds non-finite values")
    counts = attrs["counts"] if isinstance(attrs["counts"], dict) else {}
    if counts.get("sequences") != n or counts.get("frames") != frames.shape[0]:
        problems.append(f"{path}: counts attribute {counts} disagrees with the arrays")
    per_class = counts.get("per_class")
    if isinstance(per_class, dict):
        actual = {c: int((labels == k).sum()) for k, c in enumerate(classes)}
        if {k: int(v) for k, v in per_class.items()} != actual:
            problems.append(f"{path}: per-class counts {per_class} disagree with labels {actual}")
    return problems


def open_cache(path: Path | str) -> CacheStore:
    """Open a complete cache store read-only, after validating its structure.

    Raises :class:`CacheError` (naming the path) when the store is missing, incomplete, of
    another format version or malformed. Chunk contents are not read (see :func:`verify_cache`).
    """
    path = Path(path).expanduser()
    if not path.exists():
        hint = " (an interrupted build left a .partial folder; rerun `sconet cache`)" if _partial_path(path).exists() else ""
        raise CacheError(f"{path}: no cache store here{hint}")
    if not (path / "zarr.json").is_file():
        raise CacheError(f"{path}: not a Zarr v3 store (no zarr.json)")
    group = _open_group_ro(path)
    attrs = dict(group.attrs)
    problems = _structure_problems(path, group, attrs)
    if problems:
        raise CacheError(problems[0] if len(problems) == 1 else "; ".join(problems))
    try:
        return CacheStore(path, group, attrs)
    except CacheError:
        raise
    except Exception as exc:
        raise CacheError(f"{path}: malformed store ({exc})") from None


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
            arr = group[name]
        except Exception:
            continue
        if arr.size:
            f = _chunk_file(path, name, arr, (0,) * arr.ndim)
            if not f.is_file():
                report.problems.append(f"{path}: {name} chunk file {f.relative_to(path)} missing")
    try:
        frames = group["frames"]
    except Exception:
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


# --------------------------------------------------------------------------------------------
# find
# --------------------------------------------------------------------------------------------


def _render_dict(render: RenderConfig) -> dict[str, Any]:
    return json.loads(json.dumps(render.to_dict(), default=str))


def find_cache(
    render_config: RenderConfig | Path | str | None = None,
    poses: Path | str | RenderConfig | None = None,
    root: Path | str | None = None,
    *,
    dataset: str | dict[str, Any] | None = None,
    fingerprint: str | None = None,
) -> Path | None:
    """The complete store for these render settings and dataset, or ``None``.

    ``poses``: the dataset root the store was built from (``None`` = built-in synthetic);
    ``dataset``: a dataset name instead (as in the store name / ``attrs["dataset"]["name"]``);
    ``root``: cache root (default :func:`cache_root`); ``fingerprint``: only a store with this
    store fingerprint (e.g. the one recorded in a checkpoint). The default store path is tried
    first, then every store under ``<root>/stores`` whose attributes match (newest first). The
    inputs are not re-read: a store found here is the one built for these settings from that
    dataset, not re-checked against the current pose files (``build_cache`` does that).

    Also accepts the design document's positional order
    ``find_cache(cache_root, render_config, dataset)``.
    """
    if not isinstance(render_config, RenderConfig) and isinstance(poses, RenderConfig):
        # design.md order: (cache_root, render_config, dataset)
        root, render_config, dataset_arg = render_config, poses, root
        poses = None
        if dataset is None and dataset_arg is not None:
            dataset = dataset_arg  # type: ignore[assignment]
    if not isinstance(render_config, RenderConfig):
        raise TypeError("find_cache needs a RenderConfig")
    base = Path(root).expanduser() if root is not None else Path(cache_root())
    if isinstance(dataset, dict):  # attrs["dataset"] as stored: {"name", "source"}
        dataset = dataset.get("name")
    name = str(dataset) if dataset is not None else dataset_name(poses)
    want_render = _render_dict(render_config)
    want_renderer = str(_render.RENDERER_VERSION)

    def matches(p: Path) -> str | None:
        attrs = _read_root_attrs(p)
        if not attrs or attrs.get("complete") is not True or not attrs.get("fingerprint"):
            return None
        if attrs.get("format_version") != FORMAT_VERSION:
            return None
        if fingerprint is not None and attrs.get("fingerprint") != fingerprint:
            return None
        if attrs.get("renderer_version") != want_renderer:
            return None
        if json.loads(json.dumps(attrs.get("render"), default=str)) != want_render:
            return None
        ds = attrs.get("dataset") or {}
        if ds.get("name") != name:
            return None
        return str(attrs.get("created", ""))

    first = base / "stores" / _store_name(name, render_config)
    if first.is_dir() and matches(first) is not None:
        return first
    stores = base / "stores"
    if not stores.is_dir():
        return None
    found = []
    for p in stores.iterdir():
        if p.is_dir() and not p.name.endswith(_PARTIAL_SUFFIX) and not p.name.startswith("."):
            created = matches(p)
            if created is not None:
                found.append((created, p))
    if not found:
        return None
    found.sort(reverse=True)
    return found[0][1]

