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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

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


# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """One row of ``sconet runs``. ``best_*``: best in-run test values (selected on the test set:
    optimistic); ``val_selected``: the test metrics at the evaluation with the best ``val_f1``
    (``None`` without a validation set); ``final``: the metrics of the last in-run evaluation.
    ``status`` ``lost``: recorded as running, but its process is gone or its heartbeat stopped
    (``status_note`` says which); ``stopped``: ended by an experiment's stop rule (``stop_reason``).
    ``group_name``: the runs of one ``sconet train --seeds N`` share it."""

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
    final: dict[str, Any] | None = None
    group_name: str | None = None
    stop_reason: str | None = None
    status_note: str = ""

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
    dataset: str | None = None
    split_key: str | None = None
    intervals: dict[str, Any] | None = None
    predictions: dict[str, Any] | None = None
    render: dict[str, Any] | None = None  # {"settings", "source", "stated"} (schema 3)

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("metrics", "intervals", "predictions", "render")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(cls: type, row: sqlite3.Row, json_fields: Sequence[str] = ("metrics",), where: str = "") -> Any:
    data = dict(row)
    for k in json_fields:
        if k in data:
            value = _loads(data[k], f"{where} row {data.get('id')}, column {k}")
            data[k] = value or ({} if k == "metrics" else None)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def summarise_run(row: dict[str, Any], evals: list[tuple[int, dict[str, Any]]], n_ckpt: int) -> RunSummary:
    """A :class:`RunSummary` from a ``runs`` row and its in-run evaluations (oldest first)."""
    from sconet.experiments.background import liveness

    status, note = liveness(row["status"], row.get("out"), pid=row.get("pid"), host=row.get("host"))
    stop = (
        _loads(row["stop_evidence"])
        if isinstance(row.get("stop_evidence"), str)
        else row.get("stop_evidence")
    )
    names = ("recipe", "representation", "arch", "split", "split_key", "seed", "iteration", "iters",
             "start_iteration", "out", "started_at", "ended_at", "git_commit", "resumed_from",
             "group_name")  # fmt: skip
    s = RunSummary(id=row["id"], status=status, **{k: row.get(k) for k in names}, evals=len(evals),
                   checkpoints=n_ckpt, status_note=note, stop_reason=(stop or {}).get("reason"))  # fmt: skip

    def best(key: str) -> tuple[float | None, int | None, dict[str, Any] | None]:
        top: tuple[float, int, dict[str, Any]] | None = None
        for it, m in evals:  # ties: the earlier evaluation (as the checkpoint keeper)
            v = m.get(key)
            if isinstance(v, (int, float)) and v == v and (top is None or v > top[0]):
                top = (float(v), it, m)
        return (top[0], top[1], top[2]) if top else (None, None, None)

    s.best_test_f1, s.best_test_f1_iteration, _ = best("test_f1")
    s.best_test_accuracy, s.best_test_accuracy_iteration, _ = best("test_accuracy")
    v, it, m = best("val_f1")
    if v is not None and m is not None:
        s.val_selected = {"iteration": it, "val_f1": v, **{k: m.get(k) for k in (
            "val_accuracy", "test_f1", "test_accuracy", "test_precision", "test_recall")}}  # fmt: skip
    if evals:
        s.final = {"iteration": evals[-1][0], **evals[-1][1]}
    return s
