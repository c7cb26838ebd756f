"""The experiment ledger: one embedded SQLite database recording runs, checkpoints and evaluations.

Where (:func:`resolve_ledger_path`): an explicit value (recipe ``run.ledger``, the CLI's
``--ledger``), else ``$SCONET_LEDGER``, else ``runs/ledger.sqlite`` (relative to the current
folder). ``none`` / ``off`` / ``""`` disables the ledger.

What (schema version 2; ``schema_version`` holds the applied versions, newer files are refused;
older files are migrated on open):

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
                and path, split, subset, max frames, metrics JSON, time, render settings of the
                checkpoint's maps and their source (``checkpoint`` or the user's statement)
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

import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sconet.experiments.records import (
    LEDGER_ENV,
    CheckpointRecord,
    EvaluationRecord,
    RunSummary,
    _json,
    _loads,
    _now,
    _pid_alive,
    _record,
    file_sha256,
    resolve_ledger_path,
)

SCHEMA_VERSION = 2
STATUSES = ("running", "finished", "failed", "interrupted")
BUSY_TIMEOUT_S = 30.0


class LedgerError(RuntimeError):
    """The ledger cannot be opened or used (message starts with the database path)."""


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
            role TEXT NOT NULL, metric TEXT, metrics TEXT, metrics_iteration INTEGER,
            saved_at TEXT NOT NULL)""",
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
    # version 2: the render settings an evaluated checkpoint's maps have and where they came
    # from (recorded by sconet, or stated by the user for an OpenGait checkpoint)
    2: ("ALTER TABLE evaluations ADD COLUMN render TEXT",),
}


def _rowid(cur: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just added (sqlite3 types ``lastrowid`` as optional)."""
    if cur.lastrowid is None:  # pragma: no cover - only after a statement that inserted nothing
        raise LedgerError("the ledger did not return the id of the inserted row")
    return int(cur.lastrowid)


# ----------------------------------------------------------------------------------------------
# the database
# ----------------------------------------------------------------------------------------------


class Ledger:
    """A ledger file (created on first use). Each method opens its own short-lived connection."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()
        self._ready = False

    def _where(self, table: str) -> str:
        return f"{self.path}: table {table},"

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
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
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
            return _rowid(cur)

    def end_run(
        self, run_id: int, status: str, iteration: int | None = None, error: str | None = None
    ) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
        with self._tx() as con:
            con.execute(
                "UPDATE runs SET status = ?, ended_at = ?, iteration = COALESCE(?, iteration), error = ? "
                "WHERE id = ?",
                (status, _now(), iteration, error, run_id),
            )

    def add_run_eval(self, run_id: int, iteration: int, metrics: Mapping[str, Any]) -> None:
        with self._tx() as con:
            con.execute(
                "INSERT INTO run_evals (run_id, iteration, metrics, at) VALUES (?, ?, ?, ?)",
                (run_id, int(iteration), _json(dict(metrics)), _now()),
            )
            con.execute(
                "UPDATE runs SET iteration = MAX(COALESCE(iteration, 0), ?) WHERE id = ?",
                (int(iteration), run_id),
            )

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
                (
                    run_id,
                    str(p),
                    digest,
                    size,
                    int(iteration),
                    role,
                    metric,
                    _json(dict(metrics or {})),
                    metrics_iteration,
                    _now(),
                ),
            )
            con.execute(
                "UPDATE runs SET iteration = MAX(COALESCE(iteration, 0), ?) WHERE id = ?",
                (int(iteration), run_id),
            )
            row = con.execute("SELECT * FROM checkpoints WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _record(CheckpointRecord, row, where=self._where("checkpoints"))

    def add_evaluation(self, **values: Any) -> int:
        values = {k: (_json(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in values.items()}
        values.setdefault("at", _now())
        cols = ", ".join(values)
        with self._tx() as con:
            cur = con.execute(
                f"INSERT INTO evaluations ({cols}) VALUES ({', '.join('?' for _ in values)})",
                tuple(values.values()),
            )
            return _rowid(cur)

    def add_promotion(self, **values: Any) -> int:
        values = {k: (_json(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in values.items()}
        values.setdefault("at", _now())
        values["accepted"] = int(bool(values.get("accepted")))
        cols = ", ".join(values)
        with self._tx() as con:
            cur = con.execute(
                f"INSERT INTO promotions ({cols}) VALUES ({', '.join('?' for _ in values)})",
                tuple(values.values()),
            )
            return _rowid(cur)

    # -- queries --------------------------------------------------------------------------------
    def run_row(self, run_id: int) -> dict[str, Any] | None:
        with self._tx(write=False) as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            return None
        data = dict(row)
        for k in ("overrides", "render"):
            data[k] = _loads(data[k], f"{self._where('runs')} row {run_id}, column {k}")
        return data

    def runs(self, limit: int | None = None) -> list[RunSummary]:
        """All runs (newest last), with their best and validation-selected metrics."""
        with self._tx(write=False) as con:
            rows = con.execute("SELECT * FROM runs ORDER BY id").fetchall()
            evals = con.execute(
                "SELECT id, run_id, iteration, metrics FROM run_evals ORDER BY run_id, iteration, id"
            ).fetchall()
            counts = dict(con.execute("SELECT run_id, COUNT(*) FROM checkpoints GROUP BY run_id").fetchall())
        by_run: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        for e in evals:
            metrics = _loads(e["metrics"], f"{self._where('run_evals')} row {e['id']}, column metrics")
            by_run.setdefault(e["run_id"], []).append((int(e["iteration"]), metrics or {}))
        host = socket.gethostname()
        out = [self._summary(dict(r), by_run.get(r["id"], []), counts.get(r["id"], 0), host) for r in rows]
        return out[-limit:] if limit else out

    @staticmethod
    def _summary(
        row: dict[str, Any], evals: list[tuple[int, dict[str, Any]]], n_ckpt: int, host: str
    ) -> RunSummary:
        status = row["status"]
        if status == "running" and row.get("host") == host and not _pid_alive(row.get("pid")):
            status = "lost"
        s = RunSummary(
            id=row["id"],
            status=status,
            recipe=row["recipe"],
            representation=row["representation"],
            arch=row["arch"],
            split=row["split"],
            split_key=row["split_key"],
            seed=row["seed"],
            iteration=row["iteration"],
            iters=row["iters"],
            start_iteration=row["start_iteration"],
            out=row["out"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            git_commit=row["git_commit"],
            resumed_from=row["resumed_from"],
            evals=len(evals),
            checkpoints=n_ckpt,
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
                "iteration": it,
                "val_f1": v,
                "val_accuracy": m.get("val_accuracy"),
                "test_f1": m.get("test_f1"),
                "test_accuracy": m.get("test_accuracy"),
                "test_precision": m.get("test_precision"),
                "test_recall": m.get("test_recall"),
            }
        return s

    def run_evals(self, run_id: int) -> list[dict[str, Any]]:
        with self._tx(write=False) as con:
            rows = con.execute(
                "SELECT id, iteration, metrics, at FROM run_evals WHERE run_id = ? ORDER BY iteration, id",
                (int(run_id),),
            ).fetchall()
        where = self._where("run_evals")
        out = []
        for r in rows:
            metrics = _loads(r["metrics"], f"{where} row {r['id']}, column metrics") or {}
            out.append({"iteration": r["iteration"], "at": r["at"], **metrics})
        return out

    def checkpoints(
        self,
        run_id: int | None = None,
        *,
        sha256: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> list[CheckpointRecord]:
        """Checkpoint records (oldest first) of a run, with a sha256, or at a path."""
        where: list[str] = []
        args: list[int | str] = []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(int(run_id))
        if sha256 is not None:
            where.append("sha256 = ?")
            args.append(sha256)
        if path is not None:
            where.append("path = ?")
            args.append(str(Path(path).expanduser().resolve()))
        sql = (
            "SELECT * FROM checkpoints" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
        )
        with self._tx(write=False) as con:
            rows = con.execute(sql, tuple(args)).fetchall()
        return [_record(CheckpointRecord, r, where=self._where("checkpoints")) for r in rows]

    def evaluations(self, sha256s: Iterable[str] | None = None) -> list[EvaluationRecord]:
        with self._tx(write=False) as con:
            if sha256s is None:
                rows = con.execute("SELECT * FROM evaluations ORDER BY id").fetchall()
            else:
                shas = sorted(set(sha256s))
                if not shas:
                    return []
                rows = con.execute(
                    f"SELECT * FROM evaluations WHERE sha256 IN ({', '.join('?' for _ in shas)}) ORDER BY id",
                    shas,
                ).fetchall()
        return [
            _record(EvaluationRecord, r, ("metrics", "render"), where=self._where("evaluations"))
            for r in rows
        ]

    def promotions(self, run_id: int | None = None) -> list[dict[str, Any]]:
        with self._tx(write=False) as con:
            if run_id is None:
                rows = con.execute("SELECT * FROM promotions ORDER BY id").fetchall()
            else:
                rows = con.execute(
                    "SELECT * FROM promotions WHERE run_id = ? ORDER BY id", (int(run_id),)
                ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["accepted"] = bool(d["accepted"])
            where = f"{self._where('promotions')} row {d['id']}, column"
            d["metrics"], d["evidence"] = (
                _loads(d["metrics"], f"{where} metrics"),
                _loads(d["evidence"], f"{where} evidence"),
            )
            out.append(d)
        return out


def open_ledger(value: str | os.PathLike[str] | None = None, *, must_exist: bool = False) -> Ledger | None:
    """The :class:`Ledger` named by ``value`` / ``$SCONET_LEDGER`` / the default; ``None`` when disabled.
    ``must_exist``: raise :class:`LedgerError` when the file is not there (readers)."""
    path = resolve_ledger_path(value)
    if path is None:
        return None
    if must_exist and not path.is_file():
        raise LedgerError(
            f"{path}: no ledger here yet (it is created by the first `sconet train`; "
            f"--ledger or ${LEDGER_ENV} name another)"
        )
    return Ledger(path)


# ----------------------------------------------------------------------------------------------
