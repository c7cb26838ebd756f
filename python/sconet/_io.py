"""Small atomic file helpers (no heavy imports; safe to import anywhere).

Every writer puts the data into a temporary file in the destination folder, flushes and
``fsync``\\ s it, then ``os.replace``\\ s it over the destination, so a reader (or a crash) sees
either the old file or the complete new one, never a half-written file. The temporary file is
removed if anything fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json"]


def _fsync_dir(folder: Path) -> None:
    """Best effort: persist the directory entry of a rename (POSIX only)."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open directories
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - unusual filesystems
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, fsync: bool = True
) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``).

    The parent folder must exist. Returns ``path`` as a :class:`~pathlib.Path`. With
    ``fsync=False`` the data is not forced to disk (still atomic against crashes of this
    process, not against power loss).
    """
    path = Path(path)
    folder = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        _fsync_dir(folder)
    return path


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded with ``encoding``."""
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_json(
    path: str | os.PathLike[str], doc: Any, *, indent: int | None = 2, fsync: bool = True
) -> Path:
    """:func:`atomic_write_bytes` of ``doc`` as JSON (UTF-8, trailing newline)."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n", fsync=fsync)
