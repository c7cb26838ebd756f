"""The store format: constants, configuration and result types, store names and fingerprints.

The full on-disk format is described in ``sconet.cache`` (package docstring).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconet import render as _render
from sconet._io import atomic_write_json
from sconet._paths import cache_root
from sconet.data import DEFAULT_LAYOUT, SequenceRecord
from sconet.render import RenderConfig

FORMAT_VERSION = 1
"""Version of the store layout; a store with another version is refused by :func:`open_cache`."""

CHUNK_FRAMES = 300
"""Frames per chunk of ``frames`` (one 300-frame Scoliosis1K sequence)."""

FRAME_SHAPE: tuple[int, int, int] = _render.FRAME_SHAPE
"""One stored frame (the renderer's): limb map and joint map, 64 x 64."""
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

    ``poses``: dataset root; ``None`` = the built-in synthetic Scoliosis1K
    (:func:`sconet.data.synth.ensure_synthetic`, generated on first use). ``layout``: how the
    dataset's files are laid out, a name in :data:`sconet.data.LAYOUTS` (Scoliosis1K's by default).
    ``split``: an OpenGait split JSON; only validated and recorded (the store holds every
    sequence). ``out``: store path (default :func:`default_store_path`). ``skip_bad``: leave out
    unreadable / invalid pose files and write a report (``<store>.skipped.json``) instead of
    stopping at the first one. ``threads``: renderer threads (0 = all cores).
    ``batch_frames``: about how many frames are rendered per batch (whole sequences).
    ``overlap``: render the next batch while the previous one is compressed and written.
    ``rebuild``: build afresh even when a matching store (or an interrupted build) exists.
    """

    poses: Path | None = None
    render: RenderConfig = field(default_factory=RenderConfig)
    layout: str = DEFAULT_LAYOUT
    split: Path | None = None
    out: Path | None = None
    skip_bad: bool = False
    threads: int = 0
    batch_frames: int = 6000
    overlap: bool = True
    rebuild: bool = False


@dataclass
class CacheResult:
    """Outcome of :func:`build_cache`.

    ``reused``: an existing complete store with the same fingerprint was used as it is.
    ``replaced``: why an existing store at the path was rebuilt (``None`` if there was none).
    ``resumed_from``: frames already committed by an interrupted build that this one resumed
    (0 when it started from scratch). ``skipped``: ``(path, reason)`` of files left out
    (``skip_bad``); ``skipped_report``: the JSON report written beside the store
    (:func:`sconet.data.write_skip_report`). ``warnings``: e.g. split ids absent from the
    dataset (:func:`sconet.data.check_split`).
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
    from sconet.data.synth import default_synthetic_root

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
        h.update(arr.data.cast("B"))
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


def index_digest(
    ids: Sequence[str], views: Sequence[str], offsets: np.ndarray, labels: np.ndarray, pav: np.ndarray
) -> str:
    """sha256 over what says which frames belong to which sequence, label and PAV: the ``ids`` and
    ``views`` attributes and the ``offsets``, ``labels`` and ``pav`` arrays (recorded at build as
    the ``index_digest`` attribute; :func:`sconet.cache.open_cache` recomputes it)."""
    h = hashlib.sha256(b"sconet-index-v1\0")
    h.update(json.dumps([list(map(str, ids)), list(map(str, views))], separators=(",", ":")).encode())
    for arr, dtype in ((offsets, "<i8"), (labels, "i1"), (pav, "<f4")):
        h.update(b"\0")
        h.update(np.ascontiguousarray(arr, dtype=dtype).tobytes())
    return h.hexdigest()


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
    """Serialise builds of one store path (a hidden lock file beside it; never deleted).

    Where the lock file cannot be created (a read-only mount, a folder of another user), an
    existing one is locked read-only, else none is: nobody can build there either, so a complete
    store is still reused, and a build that has to write fails with its own message.
    """
    lock = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            yield  # lock-free: read only
            return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
