"""The experiment ledger: one embedded SQLite database recording runs, checkpoints and evaluations.

Where (:func:`resolve_ledger_path`): an explicit value (recipe ``run.ledger``, the CLI's
``--ledger``), else ``$SCONET_LEDGER``, else ``runs/ledger.sqlite`` (relative to the current
folder). ``none`` / ``off`` / ``""`` disables the ledger.

What (schema version 1; ``schema_version`` holds the applied versions, newer files are refused):

==============  ================================================================================
table           one row per
==============  ================================================================================
runs            training process: recipe name, resolved recipe TOML, overrides (the recipe keys
                that differ from the named recipe), cache fingerprint / path / render settings,
                representation, dataset, split name and key, seed, sconet git commit (or version),
                host, pid, start / end time, status ``running|finished|failed|interrupted``,
                iterations done, error
run_evals       in-run evaluation (iteration, metrics JSON: ``test_f1``, ``val_f1`` ...)
checkpoints     checkpoint file written by a run (absolute path, sha256, size, iteration, role
                ``last|best``, kept metric, the in-run metrics stored with it and the iteration
                those metrics were measured at)
evaluations     standalone evaluation (``sconet eval``, ``sconet promote``): checkpoint sha256
                and path, split, subset, max frames, metrics JSON, time
promotions      ``sconet promote`` decision (accepted or refused) with its rule evidence
==============  ================================================================================

Concurrency: WAL journal, a busy timeout, and every write is one short ``BEGIN IMMEDIATE``
transaction on a fresh connection, so several training processes (and evaluations) can write
at once; readers never block writers. The trainer writes through :class:`RunRecorder`, which
turns every ledger failure into a warning: a broken ledger never stops a run.

The split key (:func:`split_key`) is ``<dataset>/<split name>/<8 hex digits of the sorted test
ids>``: two checkpoints compete (``sconet promote``) only on the very same test set.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "LEDGER_ENV",
    "DEFAULT_LEDGER",
    "SCHEMA_VERSION",
    "STATUSES",
    "Ledger",
    "LedgerError",
    "RunSummary",
    "CheckpointRecord",
    "EvaluationRecord",
    "RunRecorder",
    "resolve_ledger_path",
    "open_ledger",
    "open_run",
    "record_evaluation",
    "file_sha256",
    "split_key",
    "sconet_commit",
]

LEDGER_ENV = "SCONET_LEDGER"
DEFAULT_LEDGER = Path("runs") / "ledger.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("running", "finished", "failed", "interrupted")
BUSY_TIMEOUT_S = 30.0
_OFF = {"none", "off", "no", "false", "0", ""}


class LedgerError(RuntimeError):
    """The ledger cannot be opened or used (message starts with the database path)."""


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def resolve_ledger_path(value: str | os.PathLike[str] | None = None) -> Path | None:
    """The ledger file: ``value``, else ``$SCONET_LEDGER``, else ``runs/ledger.sqlite``; ``None`` when disabled."""
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
        return subprocess.run(["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=5, check=False)

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


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


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
# schema
# ----------------------------------------------------------------------------------------------

_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            out TEXT, recipe TEXT, recipe_toml TEXT, overrides TEXT, representation TEXT, arch TEXT,
            cache_fingerprint TEXT, cache_path TEXT, dataset TEXT, render TEXT, renderer_version TEXT,
            split TEXT, split_key TEXT, n_train INTEGER, n_val INTEGER, n_test INTEGER, seed INTEGER,
            iters INTEGER, start_iteration INTEGER, iteration INTEGER, resumed_from INTEGER,
            git_commit TEXT, sconet_version TEXT, host TEXT, pid INTEGER, device TEXT, world_size INTEGER,
            started_at TEXT, ended_at TEXT, status TEXT NOT NULL, error TEXT)""",
        """CREATE TABLE run_evals (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL REFERENCES runs(id),
            iteration INTEGER NOT NULL, metrics TEXT NOT NULL, at TEXT NOT NULL)""",
        """CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL REFERENCES runs(id),
            path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER, iteration INTEGER NOT NULL,
            role TEXT NOT NULL, metric TEXT, metrics TEXT, metrics_iteration INTEGER, saved_at TEXT NOT NULL)""",
        """CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT, path TEXT, kind TEXT, iteration INTEGER,
            split TEXT, subset TEXT, max_frames INTEGER, cache_path TEXT, device TEXT, purpose TEXT,
            metrics TEXT NOT NULL, seconds REAL, git_commit TEXT, at TEXT NOT NULL)""",
        """CREATE TABLE promotions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, split_key TEXT NOT NULL, sha256 TEXT NOT NULL,
            source_path TEXT, artifact_path TEXT, run_id INTEGER, accepted INTEGER NOT NULL,
            metrics TEXT, evidence TEXT, at TEXT NOT NULL)""",
        "CREATE INDEX run_evals_run ON run_evals(run_id)",
        "CREATE INDEX checkpoints_run ON checkpoints(run_id)",
        "CREATE INDEX checkpoints_sha ON checkpoints(sha256)",
        "CREATE INDEX checkpoints_path ON checkpoints(path)",
        "CREATE INDEX evaluations_sha ON evaluations(sha256)",
        "CREATE INDEX promotions_split ON promotions(split_key)",
    ),
}


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _record(cls: type, row: sqlite3.Row, json_fields: Sequence[str] = ("metrics",)) -> Any:
    data = dict(row)
    for k in json_fields:
        if k in data:
            data[k] = _loads(data[k]) or {}
    names = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in data.items() if k in names})


# ----------------------------------------------------------------------------------------------
# the database
# ----------------------------------------------------------------------------------------------


class Ledger:
    """A ledger file (created on first use). Each method opens its own short-lived connection."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()
        self._ready = False

    # -- connections ----------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{self.path}: cannot open the ledger ({exc})") from None
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        return con

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction (``BEGIN IMMEDIATE`` for writes: the write lock is taken up front, so
        concurrent writers queue on the busy timeout instead of failing on upgrade)."""
        self._ensure_schema()
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: {exc}") from None
        finally:
            con.close()

    def _ensure_schema(self) -> None:
        if self._ready:
            return
        con = self._connect()
        try:
            for attempt in range(50):  # switching to WAL needs a moment without other writers
                try:
                    mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    time.sleep(0.05 * (attempt + 1))
            else:  # pragma: no cover - pathological contention: go on in the current journal mode
                mode = "?"
            del mode  # not WAL (a file system without shared memory): still correct, just more locking
            con.execute("BEGIN IMMEDIATE")
            con.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            current = con.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                con.execute("ROLLBACK")
                raise LedgerError(
                    f"{self.path}: ledger schema version {current} was written by a newer sconet "
                    f"(this one reads version {SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    con.execute(statement)
                con.execute("INSERT INTO schema_version VALUES (?, ?)", (version, _now()))
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable ledger database ({exc})") from None
        finally:
            con.close()
        self._ready = True

    def schema_version(self) -> int:
        with self._tx(write=False) as con:
            return int(con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0])

    # -- runs -----------------------------------------------------------------------------------
    def start_run(self, **values: Any) -> int:
        """Insert a run (status ``running``); ``values`` are column values (dicts become JSON)."""
        values = {k: (_json(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in values.items()}
        values.setdefault("status", "running")
        values.setdefault("started_at", _now())
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._tx() as con:
            cur = con.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(values.values()))
            return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str, iteration: int | None = None, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
        with self._tx() as con:
            con.execute(
                "UPDATE runs SET status = ?, ended_at = ?, iteration = COALESCE(?, iteration), error = ? WHERE id = ?",
                (status, _now(), iteration, error, run_id),
            )

    def add_run_eval(self, run_id: int, iteration: int, metrics: Mapping[str, Any]) -> None:
        with self._tx() as con:
            con.execute(
                "INSERT INTO run_evals (run_id, iteration, metrics, at) VALUES (?, ?, ?, ?)",
                (run_id, int(iteration), _json(dict(metrics)), _now()),
            )
            con.execute("UPDATE runs SET iteration = MAX(COALESCE(iteration, 0), ?) WHERE id = ?", (int(iteration), run_id))

    def add_checkpoint(
        self,
        run_id: int,
        path: str | os.PathLike[str],
        iteration: int,
        *,
        sha256: str | None = None,
        role: str = "last",
        metric: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        metrics_iteration: int | None = None,
    ) -> CheckpointRecord:
        """Record a checkpoint file (hashed here unless ``sha256`` is given)."""
        p = Path(path).expanduser().resolve()
        digest = sha256 or file_sha256(p)
        size = p.stat().st_size
        with self._tx() as con:
            cur = con.execute(
                "INSERT INTO checkpoints (run_id, path, sha256, size, iteration, role, metric, metrics, "
                "metrics_iteration, saved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, str(p), digest, size, int(iteration), role, metric, _json(dict(metrics or {})),
                 metrics_iteration, _now()),
            )
            con.execute("UPDATE runs SET iteration = MAX(COALESCE(iteration, 0), ?) WHERE id = ?", (int(iteration), run_id))
            row = con.execute("SELECT * FROM checkpoints WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _record(CheckpointRecord, row)

    def add_evaluation(self, **values: Any) -> int:
        values = {k: (_json(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in values.items()}
        values.setdefault("at", _now())
        cols = ", ".join(values)
        with self._tx() as con:
            cur = con.execute(f"INSERT INTO evaluations ({cols}) VALUES ({', '.join('?' for _ in values)})",
                              tuple(values.values()))
            return int(cur.lastrowid)

    def add_promotion(self, **values: Any) -> int:
        values = {k: (_json(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in values.items()}
        values.setdefault("at", _now())
        values["accepted"] = int(bool(values.get("accepted")))
        cols = ", ".join(values)
        with self._tx() as con:
            cur = con.execute(f"INSERT INTO promotions ({cols}) VALUES ({', '.join('?' for _ in values)})",
                              tuple(values.values()))
            return int(cur.lastrowid)

    # -- queries --------------------------------------------------------------------------------
    def run_row(self, run_id: int) -> dict[str, Any] | None:
        with self._tx(write=False) as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            return None
        data = dict(row)
        for k in ("overrides", "render"):
            data[k] = _loads(data[k])
        return data

    def runs(self, limit: int | None = None) -> list[RunSummary]:
        """All runs (newest last), with their best and validation-selected metrics."""
        with self._tx(write=False) as con:
            rows = con.execute("SELECT * FROM runs ORDER BY id").fetchall()
            evals = con.execute("SELECT run_id, iteration, metrics FROM run_evals ORDER BY run_id, iteration, id").fetchall()
            counts = dict(con.execute("SELECT run_id, COUNT(*) FROM checkpoints GROUP BY run_id").fetchall())
        by_run: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for e in evals:
            by_run.setdefault(e["run_id"], []).append((int(e["iteration"]), _loads(e["metrics"]) or {}))
        host = socket.gethostname()
        out = [self._summary(dict(r), by_run.get(r["id"], []), counts.get(r["id"], 0), host) for r in rows]
        return out[-limit:] if limit else out

    @staticmethod
    def _summary(row: dict[str, Any], evals: list[tuple[int, dict[str, Any]]], n_ckpt: int, host: str) -> RunSummary:
        status = row["status"]
        if status == "running" and row.get("host") == host and not _pid_alive(row.get("pid")):
            status = "lost"
        s = RunSummary(
            id=row["id"], status=status, recipe=row["recipe"], representation=row["representation"],
            arch=row["arch"], split=row["split"], split_key=row["split_key"], seed=row["seed"],
            iteration=row["iteration"], iters=row["iters"], start_iteration=row["start_iteration"],
            out=row["out"], started_at=row["started_at"], ended_at=row["ended_at"], git_commit=row["git_commit"],
            resumed_from=row["resumed_from"], evals=len(evals), checkpoints=n_ckpt,
        )

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
            s.val_selected = {
                "iteration": it, "val_f1": v, "val_accuracy": m.get("val_accuracy"),
                "test_f1": m.get("test_f1"), "test_accuracy": m.get("test_accuracy"),
                "test_precision": m.get("test_precision"), "test_recall": m.get("test_recall"),
            }
        return s

    def run_evals(self, run_id: int) -> list[dict[str, Any]]:
        with self._tx(write=False) as con:
            rows = con.execute("SELECT iteration, metrics, at FROM run_evals WHERE run_id = ? ORDER BY iteration, id",
                               (int(run_id),)).fetchall()
        return [{"iteration": r["iteration"], "at": r["at"], **(_loads(r["metrics"]) or {})} for r in rows]

    def checkpoints(self, run_id: int | None = None, *, sha256: str | None = None,
                    path: str | os.PathLike[str] | None = None) -> list[CheckpointRecord]:
        """Checkpoint records (oldest first) of a run, with a sha256, or at a path."""
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(int(run_id))
        if sha256 is not None:
            where.append("sha256 = ?")
            args.append(sha256)
        if path is not None:
            where.append("path = ?")
            args.append(str(Path(path).expanduser().resolve()))
        sql = "SELECT * FROM checkpoints" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        with self._tx(write=False) as con:
            rows = con.execute(sql, tuple(args)).fetchall()
        return [_record(CheckpointRecord, r) for r in rows]

    def evaluations(self, sha256s: Iterable[str] | None = None) -> list[EvaluationRecord]:
        with self._tx(write=False) as con:
            if sha256s is None:
                rows = con.execute("SELECT * FROM evaluations ORDER BY id").fetchall()
            else:
                shas = sorted(set(sha256s))
                if not shas:
                    return []
                rows = con.execute(
                    f"SELECT * FROM evaluations WHERE sha256 IN ({', '.join('?' for _ in shas)}) ORDER BY id", shas
                ).fetchall()
        return [_record(EvaluationRecord, r) for r in rows]

    def promotions(self, run_id: int | None = None) -> list[dict[str, Any]]:
        with self._tx(write=False) as con:
            if run_id is None:
                rows = con.execute("SELECT * FROM promotions ORDER BY id").fetchall()
            else:
                rows = con.execute("SELECT * FROM promotions WHERE run_id = ? ORDER BY id", (int(run_id),)).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["accepted"] = bool(d["accepted"])
            d["metrics"], d["evidence"] = _loads(d["metrics"]), _loads(d["evidence"])
            out.append(d)
        return out


def open_ledger(value: str | os.PathLike[str] | None = None, *, must_exist: bool = False) -> Ledger | None:
    """The :class:`Ledger` named by ``value`` / ``$SCONET_LEDGER`` / the default; ``None`` when disabled.
    ``must_exist``: raise :class:`LedgerError` when the file is not there (readers)."""
    path = resolve_ledger_path(value)
    if path is None:
        return None
    if must_exist and not path.is_file():
        raise LedgerError(f"{path}: no ledger here yet (it is created by the first `sconet train`; "
                          f"--ledger or ${LEDGER_ENV} name another)")
    return Ledger(path)


# ----------------------------------------------------------------------------------------------
# the trainer's side
# ----------------------------------------------------------------------------------------------


def _overrides(config: Any) -> list[str] | None:
    """``section.key=value`` for every value that differs from the named recipe (``None``: the
    recipe is not a shipped name or file that can be reloaded)."""
    from sconet.config import ConfigError, load_recipe

    try:
        base = load_recipe(config.name).to_dict()
    except (ConfigError, OSError):
        return None
    now = config.to_dict()
    out = []
    for section, values in now.items():
        if isinstance(values, dict):
            for k, v in values.items():
                if base.get(section, {}).get(k) != v:
                    out.append(f"{section}.{k}={json.dumps(v)}")
        elif base.get(section) != values:
            out.append(f"{section}={json.dumps(values)}")
    return out


class RunRecorder:
    """Writes one training run into the ledger; every failure is a warning (the run goes on).

    A recorder without a ledger (disabled, other ranks) does nothing.
    """

    MAX_FAILURES = 3

    def __init__(self, ledger: Ledger | None, run_id: int | None, log: Callable[[str], None]):
        self.ledger, self.run_id, self._log = ledger, run_id, log
        self.failures = 0

    @property
    def active(self) -> bool:
        return self.ledger is not None and self.run_id is not None

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.active:
            return None
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - the ledger must never kill a run
            self.failures += 1
            self._log(f"warning: ledger {self.ledger.path if self.ledger else ''}: could not record {what} ({exc})")
            if self.failures >= self.MAX_FAILURES:
                self._log("warning: ledger: giving up recording this run")
                self.run_id = None
            return None

    def evaluation(self, iteration: int, values: Mapping[str, Any]) -> None:
        self._guard(f"the evaluation at iteration {iteration}",
                    lambda: self.ledger.add_run_eval(self.run_id, iteration, values))  # type: ignore[union-attr]

    def checkpoint(self, path: Path, iteration: int, metrics: Mapping[str, Any], metrics_iteration: int | None,
                   role: str = "last", metric: str | None = None, sha256: str | None = None) -> str | None:
        """Record a written checkpoint; returns its sha256 (``None`` when nothing was recorded)."""
        rec = self._guard(
            f"checkpoint {path}",
            lambda: self.ledger.add_checkpoint(  # type: ignore[union-attr]
                self.run_id, path, iteration, sha256=sha256, role=role, metric=metric, metrics=metrics,
                metrics_iteration=metrics_iteration),
        )
        return rec.sha256 if rec is not None else None

    def kept(self, entries: Sequence[Any], iteration: int, metrics: Mapping[str, Any]) -> None:
        """Record the checkpoints :meth:`sconet.checkpoint.CheckpointKeeper.offer` just wrote
        (one payload under several names: hashed once)."""
        digest = None
        for e in entries:
            digest = self.checkpoint(e.path, iteration, metrics, iteration, role="best", metric=e.metric,
                                     sha256=digest) or digest

    def end(self, status: str, iteration: int | None, error: str | None = None) -> None:
        self._guard("the end of the run", lambda: self.ledger.end_run(self.run_id, status, iteration, error))  # type: ignore[union-attr]


def open_run(config: Any, data: Any, *, start: int, out: Path, device: Any, world_size: int = 1,
             log: Callable[[str], None] = print) -> RunRecorder:
    """Record the start of a training run (``config``: :class:`sconet.config.TrainConfig`,
    ``data``: :class:`sconet.train.DataSetup`); returns its :class:`RunRecorder`."""
    try:
        ledger = open_ledger(getattr(config.run, "ledger", None))
    except Exception as exc:  # noqa: BLE001
        log(f"warning: ledger: {exc}")
        return RunRecorder(None, None, log)
    if ledger is None:
        return RunRecorder(None, None, log)
    recorder = RunRecorder(ledger, None, log)

    def start_run() -> int:
        from sconet import __version__
        from sconet.config import to_toml

        info = data.cache_info()
        render = info.get("render") or {}
        rep = render.get("representation")
        rep_name = rep.get("name") if isinstance(rep, Mapping) else rep
        out_abs = str(Path(out).expanduser().resolve())
        previous = None
        if start > 0:
            with ledger._tx(write=False) as con:
                row = con.execute("SELECT MAX(id) FROM runs WHERE out = ?", (out_abs,)).fetchone()
                previous = row[0] if row else None
        return ledger.start_run(
            out=out_abs, recipe=config.name, recipe_toml=to_toml(config), overrides=_overrides(config),
            representation=rep_name or config.data.representation, arch=config.model.arch,
            cache_fingerprint=info.get("fingerprint"), cache_path=info.get("path"), dataset=info.get("dataset"),
            render=render, renderer_version=info.get("renderer_version"), split=data.split_name,
            split_key=split_key(info.get("dataset"), data.split_name, data.ids(data.test)),
            n_train=len(data.train), n_val=len(data.val), n_test=len(data.test), seed=config.run.seed,
            iters=config.run.iters, start_iteration=start, iteration=start, resumed_from=previous,
            git_commit=sconet_commit(), sconet_version=__version__, host=socket.gethostname(), pid=os.getpid(),
            device=str(device), world_size=world_size,
        )

    try:
        recorder.run_id = start_run()
    except Exception as exc:  # noqa: BLE001 - the ledger must never kill a run
        log(f"warning: ledger {ledger.path}: could not record the start of the run; it is not recorded ({exc})")
    return recorder


# ----------------------------------------------------------------------------------------------
# standalone evaluations
# ----------------------------------------------------------------------------------------------


def record_evaluation(result: Any, ledger: Ledger | None, *, purpose: str = "eval", sha256: str | None = None) -> int:
    """Record a :class:`sconet.evaluate.EvalResult` (raises :class:`LedgerError` on failure)."""
    if ledger is None:
        return 0
    return ledger.add_evaluation(
        sha256=sha256 or file_sha256(result.checkpoint), path=str(Path(result.checkpoint).resolve()),
        kind=result.kind, iteration=result.iteration, split=result.split, subset=result.subset,
        max_frames=result.max_frames, cache_path=str(result.cache), device=result.device, purpose=purpose,
        metrics=result.metrics.to_dict(), seconds=round(result.seconds, 3), git_commit=sconet_commit(),
    )


def try_record_evaluation(result: Any, value: str | os.PathLike[str] | None = None, purpose: str = "eval") -> str | None:
    """:func:`record_evaluation` into the ledger named by ``value`` (default: env / ``runs/``);
    returns a warning text instead of raising (an evaluation never fails for its record)."""
    try:
        ledger = open_ledger(value)
        if ledger is not None:
            record_evaluation(result, ledger, purpose=purpose)
    except Exception as exc:  # noqa: BLE001
        return f"the evaluation was not recorded in the ledger ({exc})"
    return None
