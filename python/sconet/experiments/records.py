"""What the ledger returns: typed rows for runs, checkpoints and evaluations, and their shared helpers."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

LEDGER_ENV = "SCONET_LEDGER"
DEFAULT_LEDGER = Path("runs") / "ledger.sqlite"
_OFF = {"none", "off", "no", "false", "0", ""}


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def resolve_ledger_path(value: str | os.PathLike[str] | None = None) -> Path | None:
    """The ledger file: ``value``, else ``$SCONET_LEDGER``, else ``runs/ledger.sqlite``; or ``None`` (off)."""
    if value is None:
        env = os.environ.get(LEDGER_ENV)
        value = env if env is not None else str(DEFAULT_LEDGER)
    text = str(value).strip()
    if text.lower() in _OFF:
        return None
    path = Path(text).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def split_key(dataset: str | None, split: str | None, test_ids: Iterable[str]) -> str:
    """``<dataset>/<split>/<sha256 of the sorted test ids, 8 hex>``: what a checkpoint is compared on."""
    digest = hashlib.sha256("\n".join(sorted(map(str, test_ids))).encode()).hexdigest()[:8]
    return f"{dataset or '?'}/{split or '?'}/{digest}"


@functools.lru_cache(maxsize=1)
def sconet_commit() -> str:
    """``git rev-parse HEAD`` of sconet's source tree (``+dirty`` with uncommitted changes) when the
    package is a tracked file of a git checkout, else ``v<version>``."""
    from sconet import __version__

    pkg = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=5, check=False
        )

    try:
        tracked = git("ls-files", "--error-unmatch", "__init__.py")
        head = git("rev-parse", "HEAD") if tracked.returncode == 0 else None
        if head is not None and head.returncode == 0 and head.stdout.strip():
            dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip()
            return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return f"v{__version__}"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=_plain_default)


def _plain_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _loads(text: str | None, where: str = "") -> Any:
    """A JSON column's value; damaged JSON is a ``ValueError`` naming ``where`` (file, table, row,
    column), not the decoder's bare message."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{where or 'a ledger column'} is not valid JSON ({exc.msg} at character {exc.pos}); "
            "the ledger was edited or damaged: repair or delete that row"
        ) from None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """One row of ``sconet runs``. ``best_*``: best in-run test values (selected on the test set:
    optimistic); ``val_selected``: the test metrics at the evaluation with the best ``val_f1``
    (``None`` without a validation set). ``status`` ``lost``: marked running, but its process is gone."""

    id: int
    status: str
    recipe: str | None
    representation: str | None
    arch: str | None
    split: str | None
    split_key: str | None
    seed: int | None
    iteration: int | None
    iters: int | None
    start_iteration: int | None
    out: str | None
    started_at: str | None
    ended_at: str | None
    git_commit: str | None
    resumed_from: int | None
    evals: int = 0
    best_test_f1: float | None = None
    best_test_f1_iteration: int | None = None
    best_test_accuracy: float | None = None
    best_test_accuracy_iteration: int | None = None
    val_selected: dict[str, Any] | None = None
    checkpoints: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckpointRecord:
    """A checkpoint file a run wrote (``metrics``: the in-run evaluation stored in the file,
    measured at ``metrics_iteration``, which may be earlier than ``iteration`` for ``last.pt``)."""

    id: int
    run_id: int
    path: str
    sha256: str
    size: int | None
    iteration: int
    role: str
    metric: str | None
    metrics: dict[str, Any]
    metrics_iteration: int | None
    saved_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvaluationRecord:
    """A standalone evaluation of a checkpoint file."""

    id: int
    sha256: str | None
    path: str | None
    kind: str | None
    iteration: int | None
    split: str | None
    subset: str | None
    max_frames: int | None
    cache_path: str | None
    device: str | None
    purpose: str | None
    metrics: dict[str, Any]
    seconds: float | None
    git_commit: str | None
    at: str
    render: dict[str, Any] = field(default_factory=dict)  # {"settings", "source", "stated"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(cls: type, row: sqlite3.Row, json_fields: Sequence[str] = ("metrics",), where: str = "") -> Any:
    data = dict(row)
    for k in json_fields:
        if k in data:
            data[k] = _loads(data[k], f"{where} row {data.get('id')}, column {k}") or {}
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
