"""What a store's files were when it was completed, and a cheap check that they still are.

At completion a build writes ``integrity.json`` into the store: for every file of the store
(chunk files and array metadata; not the root ``zarr.json``, which the completion marker
rewrites) its size, ``mtime_ns``, ``ctime_ns`` and the sha256 of its bytes, plus a digest of
the root attributes and what the inputs were (:mod:`sconet.cache.inputs`).

Reusing a store (:func:`check_store_files`) stats every listed file (milliseconds for
the full synthetic set) and reads only the files whose stat changed: their sha256 must still
be the recorded one. Any edit through the file system changes ``ctime`` (which no user call can
set back), so a flipped byte, a truncated, swapped, missing or replaced chunk is found without
reading the unchanged files; a file whose stat changed but whose bytes did not (a copy, a
``touch``) passes and its new stat is recorded. Damage that bypasses the file system (bit rot
on the medium) is caught when a chunk is decoded (zstd frame checksums: ``train``, ``eval``)
and by :func:`sconet.cache.verify_cache`, which compares every file with its digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sconet.cache.format import PROGRESS_FILE, _atomic_write_json

MANIFEST = "integrity.json"
MANIFEST_VERSION = 1
_NOT_LISTED = {"zarr.json", MANIFEST, PROGRESS_FILE}


def digest(data: bytes | memoryview) -> str:
    """sha256 hex digest of a file's bytes (what the manifest records)."""
    return hashlib.sha256(data).hexdigest()


def attrs_digest(attrs: dict[str, Any]) -> str:
    """sha256 over the root attributes as canonical JSON (sorted keys)."""
    text = json.dumps(attrs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [int(st.st_size), int(st.st_mtime_ns), int(st.st_ctime_ns)]


def store_files(store: Path) -> list[str]:
    """Relative paths of the files a manifest lists (every file but the root ``zarr.json``,
    the manifest and a build's progress file; temporary files left out)."""
    out = []
    for dirpath, _, files in os.walk(store):
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), store)
            if rel in _NOT_LISTED or f.endswith((".partial", ".tmp")):
                continue
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def write_manifest(store: Path, known: dict[str, str], attrs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """Record every file of ``store`` (``known``: digests already computed, by relative path;
    the other files are read and hashed here) with the digest of the final root ``attrs``."""
    files = {}
    for rel in store_files(store):
        path = store / rel
        d = known.get(rel)
        if d is None:
            d = digest(path.read_bytes())
        files[rel] = [*_stat(path), d]
    doc = {
        "version": MANIFEST_VERSION,
        "attrs": attrs_digest(attrs),
        "inputs": inputs,
        "files": files,
    }
    _atomic_write_json(store / MANIFEST, doc)


def read_manifest(store: Path) -> dict[str, Any] | None:
    """The manifest of a store, or ``None`` when it is absent or unreadable."""
    try:
        doc = json.loads((store / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        return None
    files = doc.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(v, list) and len(v) == 4 and isinstance(v[3], str) for v in files.values()
    ):
        return None
    return doc


@dataclass
class FilesCheck:
    """Outcome of :func:`check_store_files`: ``problems`` (empty when every file is as built),
    ``manifest`` (``False`` when the store has none: nothing could be compared), ``rehashed``
    (files read because their stat changed) and ``refreshed`` (their new stat was recorded)."""

    problems: list[str] = field(default_factory=list)
    manifest: bool = True
    rehashed: int = 0
    refreshed: bool = False

    @property
    def ok(self) -> bool:
        return self.manifest and not self.problems


def check_store_files(store: Path, attrs: dict[str, Any], refresh: bool = True) -> FilesCheck:
    """Compare a complete store's files and root attributes with its manifest (cheap: stats;
    files are read only where the stat changed). ``refresh``: record the new stat of files
    whose bytes were found unchanged (best effort; skipped on a read-only store)."""
    doc = read_manifest(store)
    if doc is None:
        return FilesCheck(manifest=False)
    out = FilesCheck()
    if doc.get("attrs") != attrs_digest(attrs):
        out.problems.append(f"{store}: the root attributes (zarr.json) changed since the store was built")
    files: dict[str, list[Any]] = doc["files"]
    changed = False
    for rel, (size, mtime, ctime, want) in files.items():
        path = store / rel
        try:
            now = _stat(path)
        except FileNotFoundError:
            out.problems.append(f"{store}: file {rel} is missing")
            continue
        except OSError as exc:
            out.problems.append(f"{store}: file {rel} cannot be read ({exc.strerror or exc})")
            continue
        if now == [size, mtime, ctime]:
            continue
        out.rehashed += 1
        try:
            got = digest(path.read_bytes())
        except OSError as exc:
            out.problems.append(f"{store}: file {rel} cannot be read ({exc.strerror or exc})")
            continue
        if got != want:
            what = f"size {size} -> {now[0]} bytes" if now[0] != size else "same size, other bytes"
            out.problems.append(f"{store}: file {rel} changed since the store was built ({what})")
            continue
        files[rel] = [*now, want]
        changed = True
    if changed and refresh and not out.problems:
        try:
            _atomic_write_json(store / MANIFEST, doc)
            out.refreshed = True
        except OSError:
            pass
    return out


def digest_problems(store: Path, doc: dict[str, Any], rel: str, data: bytes) -> str | None:
    """For :func:`sconet.cache.verify_cache`: a file whose bytes differ from its recorded digest."""
    entry = doc["files"].get(rel)
    if entry is None or digest(data) == entry[3]:
        return None
    return f"{store}: file {rel} differs from the digest recorded when the store was built"
