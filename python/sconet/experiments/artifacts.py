"""The artifact folder of promoted checkpoints: its index, its lock, verified copies.

``<artifact>/promoted.json`` maps each split key to the record of its promoted checkpoint;
``.promote.lock`` serialises concurrent promotions; files are copied through a temporary file and
checked against their sha256 before they replace anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sconet.experiments.records import file_sha256

__all__ = ["DEFAULT_ARTIFACT_DIR", "INDEX", "CHANGELOG", "PromotionError", "current_promoted"]

DEFAULT_ARTIFACT_DIR = Path("artifact")
INDEX = "promoted.json"
CHANGELOG = "CHANGELOG.md"


class PromotionError(ValueError):
    """A promotion that cannot even be decided (no ledger, unreadable file, no cache ...)."""


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(folder / ".promote.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / INDEX
    if not path.is_file():
        return {"format": "sconet-promoted", "current": {}}
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PromotionError(f"{path}: unreadable promotion index ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("current"), dict):
        raise PromotionError(f"{path}: not a promotion index (no 'current' table)")
    return doc


def current_promoted(split: str, artifact_dir: str | Path = DEFAULT_ARTIFACT_DIR) -> dict[str, Any] | None:
    """The record of the checkpoint currently promoted for ``split`` (a split key), if any."""
    return _read_index(Path(artifact_dir).expanduser()).get("current", {}).get(split)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _copy_verified(src: Path, dst: Path, sha256: str) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fsync(fo.fileno())
        if file_sha256(tmp) != sha256:
            raise PromotionError(f"{src}: the file changed while it was being copied; try again")
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
