"""Dataset layouts: finding the pose files of a dataset folder, and loading them.

:data:`LAYOUTS` maps a layout name to a scanner ``(root) -> list[SequenceRecord]``; adding a
layout is one function and one entry. :func:`scan_dataset` checks the root, runs the scanner,
refuses a sequence listed twice and sorts the records by (id, view).

``scoliosis1k`` (the default): ``<root>/<id>/<Label>/<view>/<view>.{pkl,npy,npz}``, e.g.
``00000/Positive/000_180/000_180.pkl``. Ids are folder names kept as strings. Label folders are
matched without regard to case; any other label folder is an error naming its path. Hidden
entries and plain files directly under ``<root>`` or ``<root>/<id>`` are ignored. When
``<view>/<view>.<ext>`` is absent but the view folder holds exactly one pose file, that file is used.
"""

from __future__ import annotations

import errno
import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconet._io import atomic_write_json, atomic_write_text
from sconet.classes import CLASSES
from sconet.data.readers import POSE_SUFFIXES, PoseError, load_pose_file

# --------------------------------------------------------------------------------------------
# dataset scanning and loading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceRecord:
    """One sequence of a dataset: id (folder name), lower-case label, view, pose file path."""

    id: str
    label: str
    view: str
    path: Path

    def __post_init__(self) -> None:
        if self.label not in CLASSES:
            raise ValueError(f"label {self.label!r} is not one of {CLASSES}")
        object.__setattr__(self, "id", str(self.id))
        if not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))


def normalise_label(name: str, path: str | os.PathLike[str] | None = None) -> str:
    """``"Positive"`` -> ``"positive"``; anything not in :data:`CLASSES` raises :class:`PoseError`."""
    label = str(name).strip().lower()
    if label not in CLASSES:
        raise PoseError(
            path if path is not None else name,
            f"unknown label folder {name!r} (expected one of {', '.join(CLASSES)}, any letter case)",
        )
    return label


Skipped = list[tuple[str, str]]
"""``(path, reason)`` of what a ``skip_bad`` scan or load left out."""


def _link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (a loop, a dangling target), or ``None``."""
    try:
        target = path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        return "symbolic link loop (the link resolves to itself)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link resolves to itself)"
        return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
    if target.is_dir() and (path.parent.resolve() == target or target in path.parent.resolve().parents):
        return f"symbolic link loop (points to its own ancestor folder {target})"
    return None


def _visible_dirs(folder: str, skipped: Skipped | None = None) -> list[tuple[str, str]]:
    """``(name, path)`` of the sub-folders of ``folder``, sorted (hidden ones left out).
    Unreadable folders and links that loop or dangle raise :class:`PoseError`, or are listed
    in ``skipped`` when it is given. Strings, not ``Path``: a scan lists thousands of folders."""
    try:
        entries = list(os.scandir(folder))
    except NotADirectoryError:
        return []
    except OSError as exc:
        _problem(PoseError(folder, f"cannot list folder ({exc.strerror or exc})"), skipped)
        return []
    out = []
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_symlink():
            problem = _link_problem(Path(e.path))
            if problem is not None:
                _problem(PoseError(e.path, problem), skipped)
                continue
        if e.is_dir():
            out.append((e.name, e.path))
    return sorted(out)


def _problem(err: PoseError, skipped: Skipped | None) -> None:
    """Raise ``err``, or record it in ``skipped`` (the ``skip_bad`` scans)."""
    if skipped is None:
        raise err
    skipped.append((err.path, err.reason))


def _pose_file_in(view_dir: str, view: str) -> str:
    for suffix in POSE_SUFFIXES:
        p = os.path.join(view_dir, view + suffix)
        if os.path.isfile(p):
            return p
        if os.path.islink(p):
            raise PoseError(p, _link_problem(Path(p)) or "is a link to something that is not a file")
    try:
        candidates = sorted(
            e.path
            for e in os.scandir(view_dir)
            if e.is_file()
            and not e.name.startswith(".")
            and os.path.splitext(e.name)[1].lower() in POSE_SUFFIXES
        )
    except OSError as exc:
        raise PoseError(view_dir, f"cannot list folder ({exc.strerror or exc})") from None
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise PoseError(view_dir, f"no pose file (expected {view}.pkl, .npy or .npz)")
    raise PoseError(
        view_dir,
        f"{len(candidates)} pose files and none named {view}.pkl/.npy/.npz: "
        f"{[os.path.basename(c) for c in candidates]}",
    )


def scan_scoliosis1k(root: Path, skipped: Skipped | None = None) -> list[SequenceRecord]:
    """The Scoliosis1K release layout ``<root>/<id>/<Label>/<view>/<view>.{pkl,npy,npz}``.

    Raises :class:`PoseError` for an unknown label folder, an unreadable folder, a symbolic
    link that loops or dangles, a view folder without a pose file, or the same (id, view) under
    two labels; with a ``skipped`` list, each is appended there instead and left out.
    """
    records: list[SequenceRecord] = []
    seen: dict[tuple[str, str], str] = {}
    for seq_id, id_dir in _visible_dirs(str(root), skipped):
        for label_name, label_dir in _visible_dirs(id_dir, skipped):
            try:
                label = normalise_label(label_name, label_dir)
            except PoseError as exc:
                _problem(exc, skipped)
                continue
            for view, view_dir in _visible_dirs(label_dir, skipped):
                try:
                    pose_file = _pose_file_in(view_dir, view)
                except PoseError as exc:
                    _problem(exc, skipped)
                    continue
                key = (seq_id, view)
                if key in seen and skipped is None:
                    raise PoseError(
                        view_dir, f"sequence {seq_id}/{view} appears under two labels (also {seen[key]})"
                    )
                seen.setdefault(key, view_dir)
                records.append(SequenceRecord(seq_id, label, view, Path(pose_file)))
    return records


Scanner = Callable[..., list[SequenceRecord]]
"""A layout: the dataset root (an existing folder) -> its sequences, pose files not opened. A
scanner that takes a keyword ``skipped`` (a list, for ``skip_bad`` scans) appends there the
``(path, reason)`` of what it leaves out instead of raising; one that does not simply raises."""

DEFAULT_LAYOUT = "scoliosis1k"

LAYOUTS: dict[str, Scanner] = {"scoliosis1k": scan_scoliosis1k}
"""Dataset layouts by name (``CacheConfig.layout``, ``sconet cache --layout``)."""


def scan_dataset(
    root: str | os.PathLike[str], layout: str = DEFAULT_LAYOUT, skipped: Skipped | None = None
) -> list[SequenceRecord]:
    """List the sequences of the dataset at ``root`` in ``layout``, sorted by (id, view).

    Files are not opened (use :func:`load_sequences`). Raises :class:`PoseError` for a missing
    root, whatever the layout's scanner refuses, or an (id, view) listed twice; ``ValueError``
    for a layout that is not in :data:`LAYOUTS`. With a ``skipped`` list (``skip_bad``), what
    the scanner refuses (but a missing root) is appended there as ``(path, reason)`` instead and
    the scan goes on without it; every copy of an (id, view) listed twice is left out.
    """
    scanner = LAYOUTS.get(layout)
    if scanner is None:
        raise ValueError(f"unknown dataset layout {layout!r}; registered: {', '.join(sorted(LAYOUTS))}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PoseError(root, "pose dataset folder not found")
    takes_skipped = skipped is not None and "skipped" in inspect.signature(scanner).parameters
    found = scanner(root, skipped=skipped) if takes_skipped else scanner(root)
    records = sorted(found, key=lambda r: (r.id, r.view))
    twice: set[tuple[str, str]] = set()
    for a, b in zip(records, records[1:], strict=False):
        if (a.id, a.view) == (b.id, b.view):
            if skipped is None:
                raise PoseError(b.path, f"sequence {b.id}/{b.view} is listed twice (also {a.path})")
            twice.add((a.id, a.view))
    if twice and skipped is not None:
        for r in records:
            if (r.id, r.view) in twice:
                skipped.append((str(r.path), f"sequence {r.id}/{r.view} is listed twice (under two labels?)"))
        records = [r for r in records if (r.id, r.view) not in twice]
    return records


@dataclass
class LoadResult:
    """Output of :func:`load_sequences`: the loaded ``records`` and their ``poses`` (same order,
    float32 ``[T, 17, 3]`` each) and the ``skipped`` files as ``(path, reason)`` strings."""

    records: list[SequenceRecord]
    poses: list[np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def load_sequences(records: Iterable[SequenceRecord], skip_bad: bool = False) -> LoadResult:
    """Load every record's pose file (:func:`load_pose_file`), keeping the records' order.

    ``skip_bad=False``: the first bad file raises its :class:`PoseError`. ``skip_bad=True``:
    bad files are left out and listed in ``skipped`` as ``(path, reason)``; see
    :func:`write_skip_report`.
    """
    out = LoadResult(records=[], poses=[], skipped=[])
    for rec in records:
        try:
            pose = load_pose_file(rec.path)
        except PoseError as exc:
            if not skip_bad:
                raise
            out.skipped.append((str(rec.path), exc.reason))
            continue
        out.records.append(rec)
        out.poses.append(pose)
    return out


def write_skip_report(skipped: Sequence[tuple[Any, Any]], path: str | os.PathLike[str]) -> Path:
    """Write the files left out by ``skip_bad`` to ``path`` (atomically).

    ``.json``: ``{"count": n, "skipped": [{"path": ..., "reason": ...}, ...]}``; any other
    suffix: plain text, a header line then one ``path: reason`` line per file.
    """
    path = Path(path)
    items = [(str(p), str(r)) for p, r in skipped]
    if path.suffix.lower() == ".json":
        doc = {"count": len(items), "skipped": [{"path": p, "reason": r} for p, r in items]}
        return atomic_write_json(path, doc)
    lines = [f"{len(items)} pose file(s) skipped"]
    lines += [f"{p}: {r}" for p, r in items]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def labels_of(records: Iterable[SequenceRecord]) -> dict[str, str]:
    """``{id: label}`` of records (an id with several views must have one label)."""
    out: dict[str, str] = {}
    for r in records:
        prev = out.setdefault(r.id, r.label)
        if prev != r.label:
            raise PoseError(r.path, f"id {r.id} has two labels: {prev} and {r.label}")
    return out


# --------------------------------------------------------------------------------------------
# pose source of a dataset
# --------------------------------------------------------------------------------------------

POSE_SOURCE_FILE = "pose_source.json"
"""File at a dataset's root naming where its poses came from (written by ``sconet pose --manifest``)."""


def describe_pose_source(source: Mapping[str, Any] | None) -> str:
    """``blazepose (mediapipe 0.10.21, pose_landmark_full.tflite)``; ``unknown`` for None."""
    if not source:
        return "unknown (not recorded)"
    model = Path(str(source.get("model", ""))).name
    extra = ", ".join(str(v) for v in (source.get("version"), model) if v)
    return f"{source.get('backend', '?')} ({extra})" if extra else str(source.get("backend", "?"))


def read_pose_source(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The pose source recorded at ``<root>/pose_source.json`` (backend, model file and hash,
    version, settings), or None when the dataset records none. A file that is not a JSON object
    with a ``pose_source`` object raises :class:`PoseError` naming it."""
    import json

    path = Path(root).expanduser() / POSE_SOURCE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PoseError(path, f"cannot read the pose source ({exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise PoseError(path, f"not valid JSON ({exc})") from None
    source = doc.get("pose_source") if isinstance(doc, dict) else None
    if not isinstance(source, dict) or not isinstance(source.get("backend"), str):
        raise PoseError(path, "expected a JSON object with a pose_source object naming its backend")
    return source
