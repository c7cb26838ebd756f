"""Migration to and from OpenGait's heatmap trees: ``sconet cache import`` / ``sconet cache export``.

An OpenGait heatmap tree is the output of OpenGait's ``datasets/pretreatment_heatmap.py``:
``<root>/<id>/<label>/<view>/<view>.pkl``, each a pickled uint8 ``[T, 2, 64, 64]`` array (limb
map, joint map). :func:`import_heatmaps` copies such a tree into a sconet store byte for byte;
:func:`export_heatmaps` writes a store back in that layout, so OpenGait can train on sconet's maps.

An imported store is an ordinary store (same arrays, same reader) whose maps sconet did not
render, so its attributes say where they came from instead:

* ``render``: the settings the user stated for the maps (``--preset`` or render flags), or
  ``None`` when unknown; ``renderer_version``: :data:`IMPORTED` (never equal to sconet's renderer
  version, so :func:`sconet.cache.find_cache` never mistakes an imported store for a rendered one:
  name it with ``--cache``);
* ``provenance``: ``kind`` (``"opengait-heatmaps"``), ``source`` (the tree), ``stated`` (the
  :class:`sconet.render.spec.RenderSpec` as a dict), ``described_as`` (its one-line text),
  ``files`` (each sequence's path relative to the tree), ``pickle`` (the files' pickle flavour
  and whether re-pickling the arrays reproduced every file exactly), ``imported`` (UTC time);
* ``pav_available``: the PAV cannot be computed from heatmaps; with ``poses`` (the pose tree the
  heatmaps were made from) it is computed as :func:`sconet.cache.build_cache` does, else the
  ``pav`` array is zeros, ``pav_available`` is false and DRF training refuses the store.

Imports are crash-safe like builds (``<path>.partial``, completion marker last, rename) and
reused when the tree, the statement and the poses are unchanged. Every file is read and checked
before anything is written; a bad file stops the import with its path named.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from sconet import __version__ as _sconet_version
from sconet import data as _data
from sconet import render as _render
from sconet._paths import cache_root
from sconet.cache.build import _ChunkWriter, _create_arrays, _finalise, _write_threads
from sconet.cache.format import (
    CHUNK_FRAMES,
    FORMAT_VERSION,
    CacheError,
    CacheResult,
    ProgressCallback,
    _build_lock,
    _codec_spec,
    _dir_size,
    _partial_path,
    _read_root_attrs,
    _slug,
    dataset_name,
    index_digest,
)
from sconet.cache.integrity import check_store_files
from sconet.cache.store import open_cache
from sconet.classes import CLASSES
from sconet.data.heatmaps import (
    HeatmapError,
    PickleFlavour,
    dumps_heatmap,
    load_heatmap_bytes,
    pickle_flavour,
)
from sconet.render.spec import RenderSpec

IMPORTED = "imported"
"""``renderer_version`` of an imported store (its maps were not rendered by sconet)."""

PROVENANCE_KIND = "opengait-heatmaps"
LABEL_CASES: tuple[str, ...] = ("as-imported", "lower", "capitalized")
"""Label folder spelling on export: the imported tree's own, ``positive`` (what OpenGait's
ScoNet maps to class ids) or ``Positive`` (the Scoliosis1K release)."""


@dataclass(frozen=True)
class ImportConfig:
    """What to import: ``source`` (the heatmap tree), ``stated`` (how its maps were made; an
    empty :class:`RenderSpec` = unknown), ``poses`` (pose tree for the PAV), ``out`` (store path,
    default ``<cache root>/stores/<dataset>-imported-<key>.zarr``), ``threads`` (PAV threads)."""

    source: Path
    stated: RenderSpec = field(default_factory=RenderSpec)
    poses: Path | None = None
    out: Path | None = None
    threads: int = 0


@dataclass
class _Tree:
    root: Path
    records: list[_data.SequenceRecord]
    lengths: list[int]
    digests: list[str]
    files: list[str]
    flavour: PickleFlavour | None
    byte_exact: bool
    fingerprint: str


def _scan_tree(root: Path, progress: ProgressCallback | None) -> _Tree:
    """Read and check every heatmap file once (nothing is written before this passes)."""
    if not root.is_dir():
        raise HeatmapError(root, "heatmap tree folder not found")
    records = _data.scan_dataset(root)
    if not records:
        hint = (
            f" (OpenGait writes the tree under a 'pkl' folder: try {root / 'pkl'})"
            if (root / "pkl").is_dir()
            else ""
        )
        raise HeatmapError(
            root, f"no heatmap files found (expected <root>/<id>/<label>/<view>/<view>.pkl){hint}"
        )
    h = hashlib.sha256(b"sconet-opengait-heatmaps-v1\0")
    lengths, digests, files, flavours = [], [], [], set()
    byte_exact = True
    for k, rec in enumerate(records):
        try:
            raw = rec.path.read_bytes()
        except OSError as exc:
            raise HeatmapError(rec.path, f"cannot read ({exc.strerror or exc})") from None
        if rec.path.suffix.lower() != ".pkl":
            raise HeatmapError(rec.path, "not a pickle; OpenGait heatmaps are .pkl files")
        maps = load_heatmap_bytes(raw, rec.path)
        flavour = pickle_flavour(raw)
        flavours.add(flavour)
        byte_exact = byte_exact and flavour is not None and dumps_heatmap(maps, flavour) == raw
        head = json.dumps([rec.id, rec.label, rec.view, list(maps.shape)], separators=(",", ":"))
        h.update(head.encode() + b"\0")
        h.update(maps.data)  # C-contiguous uint8
        lengths.append(int(maps.shape[0]))
        digests.append(hashlib.sha256(raw).hexdigest())
        files.append(rec.path.relative_to(root).as_posix())
        if progress is not None:
            progress(k + 1, len(records))
    flavour = next(iter(flavours)) if len(flavours) == 1 else None
    return _Tree(
        root, records, lengths, digests, files, flavour, byte_exact and flavour is not None, h.hexdigest()
    )


def _pav_from_poses(tree: _Tree, poses: Path, threads: int) -> tuple[np.ndarray, str]:
    """Raw PAV of every heatmap sequence from its pose sequence (same id, view, label, length)."""
    pose_records = {(r.id, r.view): r for r in _data.scan_dataset(poses)}
    chosen = []
    for rec in tree.records:
        match = pose_records.get((rec.id, rec.view))
        if match is None:
            raise HeatmapError(poses, f"no pose sequence for {rec.id}/{rec.view} (heatmaps: {rec.path})")
        if match.label != rec.label:
            raise HeatmapError(
                match.path, f"labelled {match.label} but its heatmaps {rec.path} are {rec.label}"
            )
        chosen.append(match)
    loaded = _data.load_sequences(chosen)
    for rec, pose, t in zip(chosen, loaded.poses, tree.lengths, strict=True):
        if pose.shape[0] != t:
            raise HeatmapError(
                rec.path, f"{pose.shape[0]} frames but its heatmaps have {t}: not the same sequence"
            )
    from sconet.cache.format import input_fingerprint

    pav = np.asarray(_render.pav_batch(loaded.poses, threads=threads), dtype=np.float32)
    return pav, input_fingerprint(loaded.records, loaded.poses)


def default_import_path(source: Path, stated: RenderSpec, poses: Path | None = None) -> Path:
    """``<cache root>/stores/<dataset>-imported-<12 hex of tree, statement and poses>.zarr``."""
    key_doc = {
        "source": str(source.expanduser().resolve()),
        "stated": stated.to_dict(),
        "poses": str(poses.expanduser().resolve()) if poses else None,
    }
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = dataset_name(poses if poses is not None else source)
    return Path(cache_root()) / "stores" / f"{_slug(name)}-{IMPORTED}-{key}.zarr"


def import_heatmaps(config: ImportConfig, progress: ProgressCallback | None = None) -> CacheResult:
    """Copy an OpenGait heatmap tree into a sconet store, byte for byte (see the module docstring).

    ``progress(done, total)`` is called while files are checked, then while frames are written.
    Raises :class:`sconet.data.heatmaps.HeatmapError` (a :class:`sconet.data.PoseError`) naming
    the first bad file, ``ValueError`` for a bad statement, :class:`CacheError` for store problems.
    """
    t0 = time.perf_counter()
    stated = config.stated
    render = stated.resolve().to_dict() if stated.stated else None  # validates the statement first
    root = Path(config.source).expanduser().absolute()
    tree = _scan_tree(root, progress)
    n = len(tree.records)
    if config.poses is not None:
        poses_root = Path(config.poses).expanduser().absolute()
        pav, pose_fp = _pav_from_poses(tree, poses_root, config.threads)
    else:
        poses_root, pose_fp = None, None
        pav = np.zeros((n, 8, 3), dtype=np.float32)
    input_fp = hashlib.sha256(f"{tree.fingerprint}\0{pose_fp}".encode()).hexdigest()
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "input": input_fp,
                "stated": stated.to_dict(),
                "renderer_version": IMPORTED,
                "format_version": FORMAT_VERSION,
                "chunk_frames": CHUNK_FRAMES,
                "codec": _codec_spec(),
            },
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    path = (
        Path(config.out).expanduser() if config.out else default_import_path(root, stated, poses_root)
    ).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset = dataset_name(poses_root if poses_root is not None else root)
    total = int(sum(tree.lengths))

    def result(reused: bool, replaced: str | None) -> CacheResult:
        notes = [] if poses_root is not None else [_NO_PAV_NOTE]
        if not tree.byte_exact:
            notes.append(
                "re-pickling the arrays does not reproduce every file exactly (another pickle writer or "
                "mixed flavours): `sconet cache export` will write the same arrays, not the same bytes"
            )
        return CacheResult(
            path=path,
            reused=reused,
            n_sequences=n,
            n_frames=total,
            seconds=time.perf_counter() - t0,
            bytes_on_disk=_dir_size(path),
            fingerprint=fingerprint,
            replaced=replaced,
            dataset=dataset,
            warnings=notes,
        )

    with _build_lock(path):
        replaced = None
        attrs_now = _read_root_attrs(path) if path.exists() else None
        if path.exists() and attrs_now is None and not (path.is_dir() and not any(path.iterdir())):
            raise CacheError(f"{path}: exists and is not a sconet cache store; refusing to replace it")
        if attrs_now is not None:
            replaced = "the heatmap files, the stated settings or the poses changed since the last import"
            if attrs_now.get("complete") is True and attrs_now.get("fingerprint") == fingerprint:
                files = check_store_files(path, attrs_now)
                try:
                    open_cache(path)
                    if not files.ok:
                        raise CacheError("; ".join(files.problems) or f"{path}: no integrity manifest")
                except CacheError as exc:
                    replaced = f"the existing store is damaged ({exc})"
                else:
                    return result(True, None)
        partial = _partial_path(path)
        if partial.exists():
            shutil.rmtree(partial)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(tree.lengths, out=offsets[1:])
        labels = np.array([CLASSES.index(r.label) for r in tree.records], dtype=np.int8)
        ids, views = [r.id for r in tree.records], [r.view for r in tree.records]
        attrs = {
            "format_version": FORMAT_VERSION,
            "complete": False,
            "ids": ids,
            "views": views,
            "index_digest": index_digest(ids, views, offsets, labels, pav),
            "classes": list(CLASSES),
            "render": render,
            "renderer_version": IMPORTED,
            "sconet_version": _sconet_version,
            "dataset": {"name": dataset, "source": str(root)},
            "split": None,
            "split_problems": [],
            "input_fingerprint": input_fp,
            "counts": {
                "sequences": n,
                "frames": total,
                "per_class": {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)},
            },
            "codec": _codec_spec(),
            "chunk_frames": CHUNK_FRAMES,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "skipped": [],
            "pav_available": poses_root is not None,
            "provenance": {
                "kind": PROVENANCE_KIND,
                "source": str(root),
                "stated": stated.to_dict(),
                "described_as": stated.describe() if stated.stated else "unknown",
                "poses": str(poses_root) if poses_root is not None else None,
                "files": tree.files,
                "pickle": {
                    "flavour": tree.flavour.to_dict() if tree.flavour else None,
                    "byte_exact": tree.byte_exact,
                },
                "imported": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            },
        }
        _create_arrays(partial, attrs, total, offsets, labels, pav)
        digests = _copy_frames(partial, tree, total, progress)
        # the manifest's inputs: the heatmap tree (a store of poses records its pose listing here)
        inputs_record = {"kind": PROVENANCE_KIND, "source": str(root), "files": len(tree.records)}
        _finalise(partial, path, fingerprint, digests, inputs_record)
    return result(False, replaced)


_NO_PAV_NOTE = (
    "no --poses: the store holds no PAV (it cannot be computed from heatmaps); DRF cannot train on it"
)


def _copy_frames(partial: Path, tree: _Tree, total: int, progress: ProgressCallback | None) -> dict[str, str]:
    """Second pass: every file again (it must be unchanged), written in whole chunks; returns the
    sha256 of every chunk file written (for the store's manifest)."""
    frames = zarr.open_group(LocalStore(partial), mode="r+")["frames"]
    assert isinstance(frames, zarr.Array)
    writer = _ChunkWriter(partial, frames, _write_threads())
    step = CHUNK_FRAMES
    buf = np.empty((step * 20 + max(tree.lengths), *frames.shape[1:]), dtype=np.uint8)
    fill, written = 0, 0
    try:
        for rec, digest in zip(tree.records, tree.digests, strict=True):
            raw = rec.path.read_bytes()
            if hashlib.sha256(raw).hexdigest() != digest:
                raise HeatmapError(rec.path, "changed while it was being imported; run the import again")
            maps = load_heatmap_bytes(raw, rec.path)
            buf[fill : fill + len(maps)] = maps
            fill += len(maps)
            whole = (fill // step) * step
            if whole >= step * 20 or written + fill == total:
                n = fill if written + fill == total else whole
                writer.write(written, buf[:n])
                written += n
                buf[: fill - n] = buf[n:fill]
                fill -= n
                if progress is not None:
                    progress(written, total)
    finally:
        writer.close()
    if written != total:  # pragma: no cover - internal invariant
        raise CacheError(f"{partial}: wrote {written} of {total} frames")
    return writer.digests


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What :func:`export_heatmaps` wrote: ``files`` pickles holding ``frames`` frames under
    ``out`` in ``seconds``; ``flavour`` of the pickles; ``same_bytes_as_source``: the store was
    imported and its files are reproduced byte for byte (``None``: not an imported store)."""

    out: Path
    files: int
    frames: int
    bytes_written: int
    seconds: float
    flavour: PickleFlavour
    same_bytes_as_source: bool | None = None
    notes: list[str] = field(default_factory=list)


def _relative_paths(store: Any, label_case: str) -> list[str]:
    if label_case not in LABEL_CASES:
        raise ValueError(f"label case must be one of {', '.join(LABEL_CASES)}, got {label_case!r}")
    prov = store.attrs.get("provenance") or {}
    files = prov.get("files") if prov.get("kind") == PROVENANCE_KIND else None
    out = []
    for i, (sid, view) in enumerate(zip(store.ids, store.views, strict=True)):
        label = store.label_name(i)
        if isinstance(files, list) and len(files) == store.n_sequences:
            parts = str(files[i]).split("/")
            if label_case != "as-imported":
                parts[1] = label if label_case == "lower" else label.capitalize()
            out.append("/".join(parts))
        else:
            folder = label.capitalize() if label_case == "capitalized" else label
            out.append(f"{sid}/{folder}/{view}/{view}.pkl")
    return out


def imported_flavour(store_path: Path | str) -> PickleFlavour | None:
    """The pickle flavour of the files a store was imported from (``None``: not imported, or
    files of mixed or unknown flavour)."""
    prov = open_cache(store_path).provenance or {}
    flavour = (prov.get("pickle") or {}).get("flavour") if prov.get("kind") == PROVENANCE_KIND else None
    return PickleFlavour.from_dict(flavour) if isinstance(flavour, dict) else None


def _replaceable(out: Path) -> bool:
    """Only folders (id folders) at the top: an earlier export that may be replaced."""
    return all(p.is_dir() or p.name.startswith(".") for p in out.iterdir())


def export_heatmaps(
    store_path: Path | str,
    out: Path | str,
    *,
    flavour: PickleFlavour | None = None,
    label_case: str = "as-imported",
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> ExportResult:
    """Write a store as an OpenGait heatmap tree under ``out`` (see the module docstring).

    ``flavour``: how the pickles are written (default: the imported files' flavour, else
    :class:`PickleFlavour`'s numpy-1.x protocol 4, readable by every numpy). ``label_case``: see
    :data:`LABEL_CASES` (a store that was not imported gets ``lower`` for ``as-imported``).
    ``overwrite``: replace an ``out`` that holds only folders (an earlier export). The tree is
    written into ``<out>.partial`` and renamed into place at the end.
    """
    t0 = time.perf_counter()
    store = open_cache(store_path)
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise CacheError(f"{out}: exists and is not empty (use --overwrite to replace an earlier export)")
        if not out.is_dir() or not _replaceable(out):
            raise CacheError(f"{out}: holds files, not an exported heatmap tree; refusing to replace it")
    prov = store.attrs.get("provenance") or {}
    imported = prov.get("kind") == PROVENANCE_KIND
    pickled = prov.get("pickle") or {}
    if flavour is None:
        flavour = PickleFlavour.from_dict(pickled.get("flavour")) if imported else PickleFlavour()
    rel = _relative_paths(store, label_case)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    written_bytes = 0
    groups = _sequence_groups(store.lengths, 6000)
    done = 0
    for group in groups:
        frames, offsets = store.load_frames(group)
        for j, i in enumerate(group):
            data = dumps_heatmap(frames[offsets[j] : offsets[j + 1]], flavour)
            target = partial / rel[i]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written_bytes += len(data)
        done += int(offsets[-1])
        if progress is not None:
            progress(done, store.n_frames)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(partial, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, out)
    same = None
    notes = []
    if imported:
        same = (
            bool(pickled.get("byte_exact"))
            and flavour == PickleFlavour.from_dict(pickled.get("flavour"))
            and label_case == "as-imported"
        )
        if not same:
            notes.append("the files hold the imported arrays but not byte for byte the imported files")
    if store.render_config is None:
        notes.append("the store's render settings are unknown (imported without a statement)")
    return ExportResult(
        out, store.n_sequences, store.n_frames, written_bytes, time.perf_counter() - t0, flavour, same, notes
    )


def _sequence_groups(lengths: np.ndarray, frames: int) -> list[list[int]]:
    """Consecutive sequence indices in groups of about ``frames`` frames."""
    groups: list[list[int]] = [[]]
    size = 0
    for i, t in enumerate(lengths):
        if groups[-1] and size + int(t) > frames:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += int(t)
    return [g for g in groups if g]


__all__ = [
    "IMPORTED",
    "LABEL_CASES",
    "ExportResult",
    "ImportConfig",
    "default_import_path",
    "export_heatmaps",
    "import_heatmaps",
    "imported_flavour",
]
