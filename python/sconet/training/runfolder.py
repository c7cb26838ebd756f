"""A run folder belongs to one run at a time.

* :class:`RunLock`: an advisory ``flock`` on ``<run folder>/.sconet-run.lock``, taken by
  :func:`sconet.training.train` (a fresh run, ``--overwrite`` and ``--resume`` alike) before it
  looks at or writes anything in the folder, and held until the run ends. A second run on the
  same folder is refused with the holder's pid and host (written into the lock file). The kernel
  drops the lock when the holder dies, even by ``kill -9``, so there is no stale lock to clean up;
  the file itself stays (deleting a lock file races with the next taker).
* :func:`reserve_run_folder`: the generated ``runs/<recipe>-<time>`` names are claimed with an
  atomic ``mkdir``; a name already taken (two runs started in the same second) gets ``-2``,
  ``-3``, ... so two runs never share a generated folder.
* :func:`check_run_folder`: ``--out`` naming a file (or a path through one) is a one-line error.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from sconet.training.config import TrainError

__all__ = ["LOCK_FILE", "RunLock", "check_run_folder", "read_lock_holder", "reserve_run_folder"]

LOCK_FILE = ".sconet-run.lock"


def check_run_folder(out: Path) -> None:
    """Raise :class:`TrainError` when ``out`` (or a parent of it) exists and is not a folder."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            what = "--out" if p == out else f"--out {out}: its parent"
            raise TrainError(f"{p}: {what} is a file, not a folder; choose a folder for the run")
        if p.is_dir():
            return


def read_lock_holder(out: Path) -> dict[str, Any]:
    """What the lock file of ``out`` says about its last taker (``{}`` when unknown)."""
    try:
        doc = json.loads((out / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class RunLock:
    """Exclusive use of a run folder (see the module docstring); a context manager."""

    def __init__(self, out: str | os.PathLike[str]):
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        """Create the folder if needed and take the lock, or raise :class:`TrainError` naming the holder."""
        if self._fd is not None:
            return self
        check_run_folder(self.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise TrainError(f"{self.out}: cannot use the run folder ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_lock_holder(self.out)
            who = f"pid {holder.get('pid', '?')}"
            if holder.get("host") and holder.get("host") != socket.gethostname():
                who += f" on {holder['host']}"
            raise TrainError(
                f"{self.out}: in use by another sconet run ({who}): wait for it to end or use another --out"
            ) from None
        except OSError as exc:  # a file system without flock: say so rather than run unguarded
            os.close(fd)
            raise TrainError(f"{self.path}: cannot lock the run folder ({exc.strerror or exc})") from None
        doc = {"pid": os.getpid(), "host": socket.gethostname(), "since": round(time.time(), 3)}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(doc) + "\n").encode(), 0)
        except OSError:  # the lock holds without the note (a full disk): the run fails later, clearly
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no holder any more
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def reserve_run_folder(parent: str | os.PathLike[str], stem: str, tries: int = 1000) -> Path:
    """Create and return a new folder ``parent/stem`` (``stem-2``, ``stem-3``, ... when taken)."""
    parent = Path(parent)
    check_run_folder(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainError(f"{parent}: cannot create the runs folder ({exc.strerror or exc})") from None
    for i in range(1, tries + 1):
        path = parent / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise TrainError(f"{path}: cannot create the run folder ({exc.strerror or exc})") from None
        return path
    raise TrainError(f"{parent}: {tries} run folders named {stem}* already exist; give --out")
