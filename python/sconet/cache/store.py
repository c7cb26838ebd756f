"""Opening a complete store read-only (:class:`CacheStore`) and decoding its chunk files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from sconet.cache.format import (
    _ARRAYS,
    CHUNK_FRAMES,
    FORMAT_VERSION,
    FRAME_SHAPE,
    CacheError,
    _partial_path,
    index_digest,
)
from sconet.classes import CLASSES
from sconet.render import RenderConfig

# --------------------------------------------------------------------------------------------
# open
# --------------------------------------------------------------------------------------------


class CacheStore:
    """A complete, validated cache store opened read-only (see :func:`open_cache`).

    Attributes: ``path``, ``attrs`` (root attributes), ``ids``, ``views`` (lists of str),
    ``labels`` (int64 ``[N]``, index into :data:`CLASSES`), ``offsets`` (int64 ``[N + 1]``),
    ``pav`` (float32 ``[N, 8, 3]``; see ``pav_available``), ``render_config``, ``provenance``,
    ``fingerprint``, ``frames`` (the zarr array, uint8 ``[n_frames, 2, 64, 64]``),
    ``n_sequences``, ``n_frames``.
    """

    def __init__(self, path: Path, group: zarr.Group, attrs: dict[str, Any]) -> None:
        self.path = path
        self._group = group
        self.attrs = attrs
        self.frames = _array(path, group, "frames")
        self.offsets = np.asarray(_array(path, group, "offsets")[:], dtype=np.int64)
        self.labels = np.asarray(_array(path, group, "labels")[:], dtype=np.int64)
        self.pav = np.asarray(_array(path, group, "pav")[:], dtype=np.float32)
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
    def render_config(self) -> RenderConfig | None:
        """The maps' render settings; ``None`` for imported maps whose settings were not stated."""
        if self._render_config is None and self.attrs.get("render") is not None:
            self._render_config = RenderConfig.from_dict(self.attrs["render"])
        return self._render_config

    @property
    def provenance(self) -> dict[str, Any] | None:
        """Where imported maps came from (:mod:`sconet.cache.opengait`); ``None`` for rendered stores."""
        prov = self.attrs.get("provenance")
        return dict(prov) if isinstance(prov, dict) else None

    @property
    def pav_available(self) -> bool:
        """Whether ``pav`` holds real PAVs (false for heatmaps imported without their poses)."""
        return bool(self.attrs.get("pav_available", True))

    @property
    def dataset(self) -> str:
        return str(self.attrs.get("dataset", {}).get("name", ""))

    @property
    def pose_source(self) -> dict[str, Any] | None:
        """Where the poses came from (backend, model, version, settings), when recorded."""
        source = self.attrs.get("dataset", {}).get("pose_source")
        return dict(source) if isinstance(source, dict) else None

    def label_name(self, i: int) -> str:
        return self.classes[int(self.labels[i])]

    def index_of(self, key: str) -> int:
        """Index of a sequence by ``id`` (or ``id/view`` when an id has several views)."""
        if self._index is None:
            index: dict[str, list[int]] = {}
            for i, (sid, view) in enumerate(zip(self.ids, self.views, strict=True)):
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

    def load_frames(self, indices: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
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
        rep = (self.attrs.get("render") or {}).get("representation")
        return (
            f"CacheStore({str(self.path)!r}, sequences={self.n_sequences}, "
            f"frames={self.n_frames}, representation={rep})"
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
        from zarr.core.chunk_grids import RegularChunkGrid
        from zarr.core.metadata import ArrayV3Metadata

        if not isinstance(frames.metadata, ArrayV3Metadata):
            return None
        codecs = tuple(frames.metadata.codecs)
        grid = frames.metadata.chunk_grid
        if (
            len(codecs) == 2
            and isinstance(grid, RegularChunkGrid)
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
    raw: bytes | None = None,
) -> np.ndarray:
    """Decode chunk ``c`` of ``frames`` (a full ``chunks[0]``-frame block; edge chunks are
    padded). With ``codec`` (see :func:`_direct_codec`) the chunk file is read and decoded
    directly, which is faster than zarr and, unlike zarr, refuses a missing chunk instead of
    returning zeros. ``raw``: the chunk file's bytes when the caller has read them.
    Raises :class:`CacheError` naming the chunk and its file."""
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
        if raw is None:
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


def _array(path: Path, group: zarr.Group, name: str) -> zarr.Array:
    """The array ``name`` of the store at ``path`` (:class:`CacheError` if missing or a group)."""
    try:
        node = group[name]
    except KeyError:
        raise CacheError(f"{path}: array {name!r} missing") from None
    if not isinstance(node, zarr.Array):
        raise CacheError(f"{path}: {name!r} is not an array")
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
    # chunk shapes before any read: an edited one would make every read allocate it
    want_chunks: dict[str, tuple[int, ...]] = {"frames": (CHUNK_FRAMES, *FRAME_SHAPE)}
    for name in ("offsets", "labels", "pav"):
        want_chunks[name] = tuple(max(1, d) for d in members[name].shape)
    for name, chunks in want_chunks.items():
        got = tuple(int(c) for c in members[name].chunks)
        if got != chunks:
            problems.append(f"{path}: {name} has chunk shape {list(got)}, expected {list(chunks)}")
    if not isinstance(views, list) or len(views) != n:
        problems.append(f"{path}: 'views' does not have one entry per sequence")
    elif not all(isinstance(x, str) for x in [*ids, *views]):
        problems.append(f"{path}: 'ids' and 'views' must be lists of strings")
    elif any(
        a >= b
        for a, b in zip(zip(ids, views, strict=True), zip(ids[1:], views[1:], strict=True), strict=False)
    ):
        problems.append(
            f"{path}: 'ids' / 'views' are not in store order (sorted by id, view): the store was edited"
        )
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
        problems.append(f"{path}: offsets end at {int(offsets[-1])} but frames has {frames.shape[0]} frames")
    classes = attrs["classes"]
    if np.any(labels < 0) or np.any(labels >= len(classes)):
        problems.append(f"{path}: labels outside 0..{len(classes) - 1}")
    if not np.all(np.isfinite(pav)):
        problems.append(f"{path}: pav holds non-finite values")
    digest = attrs.get("index_digest")
    if digest is not None and digest != index_digest(ids, views, offsets, labels, pav):
        problems.append(
            f"{path}: ids, views, offsets, labels or pav differ from the index digest recorded at build "
            "(the store was edited)"
        )
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
        hint = (
            " (an interrupted build left a .partial folder; rerun `sconet cache`)"
            if _partial_path(path).exists()
            else ""
        )
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
