"""Runs in the background: detached starts, heartbeats, liveness, and following a run's progress.

* :func:`detach` starts ``sconet train ...`` so that it outlives the shell: through
  ``systemd-run --user --unit sconet-train-<name>-<time>`` when a user systemd manager answers,
  else as a new session (``setsid``) with stdin closed. Either way stdout and stderr go to
  ``<run folder>/train.log``. ``$SCONET_DETACH=process`` skips systemd.
* :class:`Heartbeat` (used by the trainer) rewrites ``<run folder>/heartbeat.json`` from a
  background thread every ``every_s`` seconds (``$SCONET_HEARTBEAT_S``, default 15) with the
  pid, host, iteration and state, and a final state when the run ends. A thread keeps beating
  through long evaluations; a killed process stops beating.
* :func:`liveness` turns a ledger status and the heartbeat into ``running`` / ``lost`` /
  the recorded final status: a run the ledger still calls running is ``lost`` when its process is
  gone (same host) or its heartbeat is older than :func:`lost_after` (any host).
* :func:`follow` prints a run's log (or its metrics) as it grows until the run ends.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sconet._io import atomic_write_json

__all__ = [
    "HEARTBEAT",
    "TRAIN_LOG",
    "Heartbeat",
    "DetachedRun",
    "heartbeat_every",
    "lost_after",
    "read_heartbeat",
    "liveness",
    "pid_alive",
    "systemd_available",
    "detach",
    "follow",
]

HEARTBEAT = "heartbeat.json"
TRAIN_LOG = "train.log"
HEARTBEAT_ENV = "SCONET_HEARTBEAT_S"
DETACH_ENV = "SCONET_DETACH"
DEFAULT_EVERY_S = 15.0


def heartbeat_every() -> float:
    """Seconds between heartbeats (``$SCONET_HEARTBEAT_S``, default 15)."""
    try:
        return max(0.05, float(os.environ.get(HEARTBEAT_ENV, DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def lost_after(every_s: float) -> float:
    """A heartbeat older than this means the run is gone: four missed beats, at least 5 s."""
    return max(5.0, 4.0 * every_s)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


# ----------------------------------------------------------------------------------------------
# heartbeat
# ----------------------------------------------------------------------------------------------


class Heartbeat:
    """Writes ``heartbeat.json`` in ``out`` every ``every_s`` seconds until :meth:`stop`."""

    def __init__(
        self,
        out: str | os.PathLike[str],
        total: int | None = None,
        every_s: float | None = None,
        run_id: int | None = None,
    ):
        self.path = Path(out) / HEARTBEAT
        self.every_s = heartbeat_every() if every_s is None else float(every_s)
        self.doc: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "state": "running",
            "iteration": 0,
            "total": total,
            "every_s": self.every_s,
            "started": time.time(),
            "run_id": run_id,
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        self._write()
        self._thread = threading.Thread(target=self._loop, name="sconet-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._write()

    def _write(self) -> None:
        with self._lock:
            doc = {**self.doc, "time": time.time()}
        try:
            atomic_write_json(self.path, doc, fsync=False)
        except (OSError, TypeError, ValueError):  # a full disk must not kill the run
            pass

    def update(self, iteration: int, **extra: Any) -> None:
        with self._lock:
            self.doc["iteration"] = int(iteration)
            self.doc.update(extra)

    def stop(self, state: str, iteration: int | None = None, error: str | None = None) -> None:
        """The final beat: ``state`` ``finished``, ``failed``, ``interrupted`` or ``stopped``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self.doc["state"] = state
            if iteration is not None:
                self.doc["iteration"] = int(iteration)
            if error:
                self.doc["error"] = error
        self._write()


def read_heartbeat(out: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The run folder's heartbeat, or ``None`` (no folder, no file, unreadable)."""
    if not out:
        return None
    try:
        doc = json.loads((Path(out) / HEARTBEAT).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def liveness(
    status: str, out: str | None, *, pid: int | None = None, host: str | None = None, now: float | None = None
) -> tuple[str, str]:
    """``(status, why)`` of a run the ledger records with ``status``: ``running`` only while its
    process lives (same host) and its heartbeat is fresh; ``lost`` otherwise."""
    if status != "running":
        return status, ""
    here = socket.gethostname()
    hb = read_heartbeat(out)
    now = time.time() if now is None else now
    if hb is not None and hb.get("state") not in (None, "running"):
        return str(hb["state"]), "final heartbeat (the ledger missed the end of the run)"
    hb_pid, hb_host = (hb.get("pid"), hb.get("host")) if hb else (pid, host)
    if hb_host == here and not pid_alive(hb_pid):
        return "lost", f"process {hb_pid} is gone"
    if hb is not None:
        age = now - float(hb.get("time", 0.0))
        limit = lost_after(float(hb.get("every_s", DEFAULT_EVERY_S)))
        if age > limit:
            return "lost", f"no heartbeat for {age:.0f} s (limit {limit:.0f} s)"
    return "running", ""


# ----------------------------------------------------------------------------------------------
# detached start
# ----------------------------------------------------------------------------------------------


@dataclass
class DetachedRun:
    """How a detached run was started: ``method`` ``systemd`` (``unit``) or ``process`` (``pid``)."""

    method: str
    out: Path
    log: Path
    pid: int | None = None
    unit: str | None = None

    def describe(self) -> str:
        how = f"systemd user unit {self.unit}" if self.method == "systemd" else f"detached process {self.pid}"
        return f"started in the background ({how}); log: {self.log}"


def systemd_available() -> bool:
    """A user systemd manager that ``systemd-run --user`` can talk to."""
    if os.environ.get(DETACH_ENV, "").lower() == "process" or shutil.which("systemd-run") is None:
        return False
    try:
        r = subprocess.run(
            ["systemctl", "--user", "is-system-running"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.stdout.strip() in ("running", "degraded")


_PASS_ENV = (
    "SCONET_CACHE",
    "SCONET_LEDGER",
    HEARTBEAT_ENV,
    "PYTHONPATH",
    "CUDA_VISIBLE_DEVICES",
    "PATH",
    "OMP_NUM_THREADS",
    "VIRTUAL_ENV",
)


def detach(
    args: Sequence[str],
    out: str | os.PathLike[str],
    *,
    name: str = "run",
    env: Mapping[str, str] | None = None,
    python: str | None = None,
) -> DetachedRun:
    """Start ``python -m sconet <args>`` in the background with its output in ``out/train.log``."""
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / TRAIN_LOG
    command = [python or sys.executable, "-m", "sconet", *args]
    environ = {**os.environ, **(env or {})}
    if systemd_available():
        unit = f"sconet-train-{_unit_slug(name)}-{time.strftime('%Y%m%d-%H%M%S')}"
        setenv = [f"--setenv={k}={environ[k]}" for k in _PASS_ENV if k in environ]
        r = subprocess.run(
            [
                "systemd-run",
                "--user",
                "--unit",
                unit,
                "--collect",
                "--quiet",
                f"--working-directory={os.getcwd()}",
                "-p",
                f"StandardOutput=append:{log}",
                "-p",
                f"StandardError=append:{log}",
                *setenv,
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=environ,
        )
        if r.returncode == 0:
            return DetachedRun("systemd", out, log, unit=unit)
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=environ,
            start_new_session=True,
            close_fds=True,
        )
    return DetachedRun("process", out, log, pid=proc.pid)


def _unit_slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:40].strip("-") or "run"


# ----------------------------------------------------------------------------------------------
# follow
# ----------------------------------------------------------------------------------------------


def _metrics_line(row: Mapping[str, Any]) -> str:
    it = row.get("iter")
    if row.get("kind") == "eval":
        parts = [
            f"{k} {100 * float(v):.2f}"
            for k, v in row.items()
            if k.endswith(("_f1", "_accuracy")) and isinstance(v, (int, float))
        ]
        return f"iter {it}: evaluation  " + "  ".join(parts)
    loss = row.get("loss")
    rate = row.get("it_per_s")
    return (
        f"iter {it}: loss {loss:.4f}" + (f"  {rate:.2f} it/s" if isinstance(rate, (int, float)) else "")
        if isinstance(loss, (int, float))
        else f"iter {it}"
    )


def follow(
    out: str | os.PathLike[str],
    *,
    status: Callable[[], tuple[str, str]],
    write: Callable[[str], None],
    poll_s: float = 1.0,
    timeout_s: float | None = None,
) -> str:
    """Print the run's ``train.log`` (or, without one, its ``metrics.jsonl`` as short lines) as it
    grows, until ``status()`` says the run is no longer running; returns that final status."""
    out = Path(out)
    log, metrics = out / TRAIN_LOG, out / "metrics.jsonl"
    pos = 0
    partial = ""
    t0 = time.monotonic()
    while True:
        state, why = status()
        source = log if log.is_file() else metrics
        try:
            with open(source, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
        except OSError:
            chunk = b""
        if chunk:
            text = partial + chunk.decode("utf-8", "replace")
            lines = text.split("\n")
            partial = lines.pop()
            for line in lines:
                if source == metrics:
                    try:
                        line = _metrics_line(json.loads(line))
                    except ValueError:
                        pass
                write(line.rstrip("\r"))
        if state != "running":
            if partial:
                write(partial)
            write(f"run {state}" + (f" ({why})" if why else ""))
            return state
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            write(f"still running after {timeout_s:.0f} s; stopped following")
            return state
        time.sleep(poll_s)
