"""Small atomic file helpers (no heavy imports; safe to import anywhere).

Every writer puts the data into a temporary file in the destination folder, flushes and
``fsync``\\ s it, then ``os.replace``\\ s it over the destination, so a reader (or a crash) sees
either the old file or the complete new one, never a half-written file. The temporary file is
removed if anything fails. The new file gets the mode an ``open(path, "w")`` would give it
(``0o666`` less the umask), not the ``0o600`` of :func:`tempfile.mkstemp`.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "current_umask",
    "umask_mode",
    "write_error_reason",
]

_WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file size limit, ulimit -f",
    errno.EROFS: "read-only file system",
}


def write_error_reason(exc: OSError) -> str:
    """Why a write failed, in words (``no space left on the device`` ...)."""
    return _WRITE_REASONS.get(exc.errno or 0) or (exc.strerror or str(exc)).strip()


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``/proc/self/status``)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic across threads, but brief)
    os.umask(mask)
    return mask


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the umask: the permissions a newly created file normally gets."""
    return mode & ~current_umask()


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
            if hasattr(os, "fchmod"):  # mkstemp creates 0o600; give the file the usual mode instead
                os.fchmod(f.fileno(), umask_mode())
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not exc.filename:  # a failed write() names no file: name it
            raise OSError(exc.errno, write_error_reason(exc), str(path)) from None
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
