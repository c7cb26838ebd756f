"""A store's inputs: scanning and loading the pose files, and whether a store is still current.

Two fingerprints of a dataset:

* the **listing** (:func:`listing_fingerprint`): sha256 over every scanned pose file's relative
  path, id, label folder, view, size, ``mtime_ns`` and ``ctime_ns``, and over the problems a
  ``skip_bad`` scan left out. It needs a folder walk and one ``stat`` per file (milliseconds
  for the full synthetic set), no file is opened;
* the **content** (:func:`sconet.cache.input_fingerprint`): sha256 over every loaded pose
  array with its id, label and view. It needs every file read and validated (seconds).

A build records both. A store is current for a dataset when the listing is unchanged, or,
when it changed, the content is (a copied, touched or re-pickled dataset: the new listing is
then recorded). Renaming ``00000/Negative`` to ``00000/Positive`` changes the path and the
label, so the listing differs, the scanned labels are compared with the store's and the change
is named. File dates alone would miss an edit that restores the old ``mtime``; ``ctime``
cannot be set back by a user, and the content fingerprint decides whenever either moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconet import data as _poses
from sconet.cache.format import (
    SYNTHETIC_DATASET,
    _atomic_write_json,
    _build_lock,
    _read_root_attrs,
    dataset_name,
    input_fingerprint,
)
from sconet.cache.integrity import MANIFEST, read_manifest, write_manifest
from sconet.cache.store import CacheStore
from sconet.classes import CLASSES
from sconet.data import PoseError, SequenceRecord, describe_pose_source, read_pose_source
from sconet.render import RenderConfig
from sconet.render.checks import pose_problems


@dataclass
class Scan:
    """The pose files of a dataset (not opened) and what a ``skip_bad`` scan left out."""

    root: Path
    dataset: str
    records: list[SequenceRecord]
    skipped: list[tuple[str, str]]
    skip_bad: bool
    listing: str
    layout: str = _poses.DEFAULT_LAYOUT
    split_name: str | None = None
    split_problems: list[str] = field(default_factory=list)

    def inputs_record(self, skipped: list[tuple[str, str]]) -> dict[str, Any]:
        """What a store's manifest records about its inputs (``skipped``: every file left out)."""
        return {
            "listing": self.listing,
            "layout": self.layout,
            "skip_bad": self.skip_bad,
            "skipped": sorted(_rel(self.root, p) for p, _ in skipped),
        }


@dataclass
class Inputs:
    """Loaded, validated inputs in store order (by id, view)."""

    scan: Scan
    records: list[SequenceRecord]
    poses: list[np.ndarray]
    pav: np.ndarray
    skipped: list[tuple[str, str]]
    input_fp: str


def _rel(root: Path, path: str | Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def listing_fingerprint(root: Path, records: list[SequenceRecord], skipped: list[tuple[str, str]]) -> str:
    """sha256 over the scanned files' paths, labels, sizes and dates (see the module docstring)."""
    h = hashlib.sha256(b"sconet-listing-v1\0")
    prefix = os.path.join(str(root), "")
    for r in sorted(records, key=lambda r: (r.id, r.view)):
        path = str(r.path)
        st = os.stat(path)
        rel = path[len(prefix) :] if path.startswith(prefix) else path  # as _rel, without pathlib's cost
        row = [r.id, r.label, r.view, rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        h.update(json.dumps(row).encode() + b"\n")
    for path, reason in sorted(skipped):
        h.update(json.dumps([_rel(root, path), reason]).encode() + b"\n")
    return h.hexdigest()


def dataset_root(poses: Path | str | None) -> Path:
    """The dataset folder (``None``: the built-in synthetic one, generated on first use)."""
    if poses is None:
        from sconet.data.synth import ensure_synthetic

        return Path(ensure_synthetic()).absolute()
    return Path(poses).expanduser().absolute()


def scan_inputs(
    poses: Path | str | None,
    skip_bad: bool = False,
    split: Path | str | None = None,
    layout: str = _poses.DEFAULT_LAYOUT,
) -> Scan:
    """Scan a dataset (:func:`sconet.data.scan_dataset`), fingerprint its listing and check a split."""
    root = dataset_root(poses)
    skipped: list[tuple[str, str]] | None = [] if skip_bad else None
    records = _poses.scan_dataset(root, layout, skipped=skipped)
    if not records:
        expected = (
            "<root>/<id>/<Label>/<view>/<view>.pkl"
            if layout == _poses.DEFAULT_LAYOUT
            else f"the {layout!r} layout"
        )
        raise PoseError(root, f"no pose sequences found (expected {expected})")
    scan = Scan(
        root=root,
        dataset=SYNTHETIC_DATASET if poses is None else dataset_name(root),
        records=records,
        skipped=list(skipped or []),
        skip_bad=skip_bad,
        listing=listing_fingerprint(root, records, list(skipped or [])),
        layout=layout,
    )
    if split is not None:
        s = _poses.load_split(Path(split))
        scan.split_name = s.name
        scan.split_problems = _poses.check_split(s, records).messages(s.name)
    return scan


def load_inputs(scan: Scan, render: RenderConfig, threads: int = 0) -> Inputs:
    """Read and validate every pose file of a scan, then check that each can be rendered and
    measured (:func:`sconet.render.checks.pose_problems`), all before anything is written.
    A bad file raises :class:`PoseError` naming it, or is left out under ``scan.skip_bad``."""
    loaded = _poses.load_sequences(scan.records, skip_bad=scan.skip_bad)
    skipped = [*scan.skipped, *((str(p), str(r)) for p, r in loaded.skipped)]
    pav, problems = pose_problems(loaded.poses, render, threads=threads)
    keep = []
    for i, (rec, problem) in enumerate(zip(loaded.records, problems, strict=True)):
        if problem is None:
            keep.append(i)
        elif not scan.skip_bad:
            raise PoseError(rec.path, problem)
        else:
            skipped.append((str(rec.path), problem))
    if not keep:
        raise PoseError(scan.root, f"every pose file was bad ({len(skipped)} skipped)")
    keep.sort(key=lambda i: (loaded.records[i].id, loaded.records[i].view))
    records = [loaded.records[i] for i in keep]
    poses = [loaded.poses[i] for i in keep]
    return Inputs(
        scan=scan,
        records=records,
        poses=poses,
        pav=np.ascontiguousarray(pav[keep]),
        skipped=skipped,
        input_fp=input_fingerprint(records, poses),
    )


def record_changes(scan: Scan, store: CacheStore, recorded: dict[str, Any] | None) -> str | None:
    """How the scanned sequences (id, view, label) differ from a store's, in one line, or ``None``.

    Files the store's build left out (``recorded["skipped"]``) are not counted as new.
    """
    stored = {(i, v): int(k) for i, v, k in zip(store.ids, store.views, store.labels, strict=True)}
    left_out = set((recorded or {}).get("skipped", []))
    now = {(r.id, r.view): r for r in scan.records if _rel(scan.root, r.path) not in left_out}
    parts = []
    relabelled = [
        f"{key[0]}/{key[1]} is {r.label} in {r.path.parent.parent} but {CLASSES[stored[key]]} in the store"
        for key, r in now.items()
        if key in stored and CLASSES[stored[key]] != r.label
    ]
    if relabelled:
        parts.append(f"{len(relabelled)} sequence(s) changed label ({relabelled[0]})")
    new = sorted(k for k in now if k not in stored)
    gone = sorted(k for k in stored if k not in now)
    if new:
        parts.append(f"{len(new)} sequence(s) are new (e.g. {'/'.join(new[0])})")
    if gone:
        parts.append(f"{len(gone)} sequence(s) of the store are gone (e.g. {'/'.join(gone[0])})")
    return "; ".join(parts) or None


def dataset_pose_source(root: Path) -> dict[str, Any] | None:
    """The dataset's ``pose_source.json``; for a sconet synthetic dataset, its generator."""
    from sconet.data.synth import read_manifest as read_synth_manifest

    source = read_pose_source(root)
    manifest = read_synth_manifest(root) if source is None else None
    if manifest is not None and manifest.get("generator") == "sconet.synth":
        return {
            "backend": "synthetic",
            "model": "sconet.data.synth",
            "version": f"generator {manifest.get('generator_version')}",
        }
    return source


def inputs_current(
    scan: Scan, store: CacheStore, render: RenderConfig, threads: int = 0
) -> tuple[str | None, Inputs | None]:
    """Whether ``store`` (built from ``scan``'s dataset) still matches the dataset.

    Returns ``(None, inputs)`` when it does (``inputs`` is ``None`` when the listing alone
    showed it, else the loaded inputs: the caller may record the new listing), or
    ``(what changed, inputs)`` when it does not. The dataset's pose source
    (:func:`dataset_pose_source`) counts too: the store and the checkpoints trained on it
    carry it as the poses' provenance.
    """
    source = dataset_pose_source(scan.root)
    if source != store.pose_source:
        return (
            f"the dataset's pose source changed since the store was built ({scan.root / 'pose_source.json'}: "
            f"{describe_pose_source(source)}; the store: {describe_pose_source(store.pose_source)})",
            None,
        )
    manifest = read_manifest(store.path)
    recorded = manifest.get("inputs") if manifest is not None else None
    if isinstance(recorded, dict) and recorded.get("listing") == scan.listing:
        return None, None
    changed = record_changes(scan, store, recorded if isinstance(recorded, dict) else None)
    if changed is not None:
        return f"the pose files changed since the store was built: {changed}", None
    inputs = load_inputs(scan, render, threads)
    if inputs.input_fp != store.input_fingerprint:
        return "the content of the pose files changed since the store was built", inputs
    return None, inputs


def remember_listing(store: CacheStore, scan: Scan) -> None:
    """Record ``scan``'s listing in the store's manifest (found current by content under a new
    listing), or give the store a manifest if it has none. Best effort: a read-only store keeps
    what it has. The caller holds the store's build lock."""
    skipped = [(str(s.get("path", "")), str(s.get("reason", ""))) for s in store.attrs.get("skipped") or []]
    doc = read_manifest(store.path)
    try:
        if doc is None:
            write_manifest(store.path, {}, _read_root_attrs(store.path) or {}, scan.inputs_record(skipped))
        else:
            doc["inputs"] = scan.inputs_record(skipped)
            _atomic_write_json(store.path / MANIFEST, doc)
    except OSError:
        pass


def stale_inputs(store: CacheStore, poses: Path | str | None, threads: int = 0) -> str | None:
    """What changed in the dataset ``poses`` (``None``: the built-in synthetic one) since
    ``store`` was built from it, in one line, or ``None`` when the store is current. Scans the
    dataset as the build did (``skip_bad`` as recorded); reads the pose files only when the
    listing changed, and then records the new listing when the content is unchanged. An imported
    store (``provenance`` set) is not compared: it was made from heatmap files, not from poses."""
    manifest = read_manifest(store.path)
    recorded = manifest.get("inputs") if manifest is not None else None
    if store.render_config is None or store.attrs.get("provenance") is not None:
        return None  # imported maps: their inputs are heatmap files, which `sconet cache import` checks
    skip_bad = (
        bool(recorded.get("skip_bad")) if isinstance(recorded, dict) else bool(store.attrs.get("skipped"))
    )
    layout = recorded.get("layout") if isinstance(recorded, dict) else None
    scan = scan_inputs(poses, skip_bad, layout=layout or _poses.DEFAULT_LAYOUT)
    changed, inputs = inputs_current(scan, store, store.render_config, threads)
    if changed is None and inputs is not None and manifest is not None:
        try:
            with _build_lock(store.path):
                remember_listing(store, scan)
        except OSError:
            pass
    return changed
