"""The experiment ledger: one embedded SQLite database recording runs, checkpoints and evaluations.

Where (:func:`resolve_ledger_path`): an explicit value (recipe ``run.ledger``, the CLI's
``--ledger``), else ``$SCONET_LEDGER``, else ``runs/ledger.sqlite`` (relative to the current
folder). ``none`` / ``off`` / ``""`` disables the ledger.

What: runs, their in-run evaluations (with the test set's per-sequence predictions), the
checkpoints they saved, standalone evaluations (with bootstrap intervals and per-sequence
predictions), promotion decisions and experiments; the tables and their versions are in
:mod:`sconet.experiments.schema` (``schema_version`` holds the applied versions; an older file is
migrated on open, a newer one is refused).

Concurrency: WAL journal, a busy timeout, and every write is one short ``BEGIN IMMEDIATE``
transaction on a fresh connection, so several training processes (and evaluations) can write
at once; readers never block writers. The trainer writes through :class:`RunRecorder`, which
turns every ledger failure into a warning: a broken ledger never stops a run.

The split key (:func:`split_key`) is ``<dataset>/<split name>/<8 hex digits of the sorted test
ids>``: two checkpoints compete (``sconet promote``) only on the very same test set.
"""

from __future__ import annotations

import dataclasses
import os
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
    _record,
    file_sha256,
    resolve_ledger_path,
    summarise_run,
)
from sconet.experiments.schema import MIGRATIONS, SCHEMA_VERSION, STATUSES

BUSY_TIMEOUT_S = 30.0


class LedgerError(RuntimeError):
    """The ledger cannot be opened or used (message starts with the database path)."""


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


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
                for statement in MIGRATIONS[version]:
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
        self,
        run_id: int,
        status: str,
        iteration: int | None = None,
        error: str | None = None,
        stop_evidence: Mapping[str, Any] | None = None,
    ) -> None:
        """Mark a run ended (``stop_evidence``: the stop rule's decision for status ``stopped``)."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; use one of {', '.join(STATUSES)}")
        with self._tx() as con:
            con.execute(
                "UPDATE runs SET status = ?, ended_at = ?, iteration = COALESCE(?, iteration), error = ?, "
                "stop_evidence = ? WHERE id = ?",
                (status, _now(), iteration, error, _json(stop_evidence), run_id),
            )

    def add_run_eval(
        self,
        run_id: int,
        iteration: int,
        metrics: Mapping[str, Any],
        predictions: Mapping[str, Any] | None = None,
    ) -> None:
        """Record an in-run evaluation (``predictions``: the test set's ids, labels, probabilities)."""
        with self._tx() as con:
            con.execute(
                "INSERT INTO run_evals (run_id, iteration, metrics, predictions, at) VALUES (?, ?, ?, ?, ?)",
                (run_id, int(iteration), _json(dict(metrics)), _json(predictions), _now()),
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

    def add_experiment(self, **values: Any) -> int:
        values = {k: (_json(v) if isinstance(v, (dict, list, tuple)) else v) for k, v in values.items()}
        values.setdefault("at", _now())
        with self._tx() as con:
            cur = con.execute(
                f"INSERT INTO experiments ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
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
        for k in ("overrides", "render", "stop_evidence"):
            data[k] = _loads(data[k], f"{self._where('runs')} row {run_id}, column {k}")
        return data

    def run_id_for(self, out: str | os.PathLike[str]) -> int | None:
        """The latest run recorded with this run folder."""
        with self._tx(write=False) as con:
            row = con.execute(
                "SELECT MAX(id) FROM runs WHERE out = ?", (str(Path(out).expanduser().resolve()),)
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

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
        out = [summarise_run(dict(r), by_run.get(r["id"], []), counts.get(r["id"], 0)) for r in rows]
        return out[-limit:] if limit else out

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

    def final_predictions(self, run_id: int) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        """``(iteration, metrics, predictions)`` of the run's last in-run evaluation with test predictions."""
        with self._tx(write=False) as con:
            row = con.execute(
                "SELECT iteration, metrics, predictions FROM run_evals "
                "WHERE run_id = ? AND predictions IS NOT NULL "
                "ORDER BY iteration DESC, id DESC LIMIT 1",
                (int(run_id),),
            ).fetchone()
        if row is None:
            return None
        where = f"{self._where('run_evals')} run {run_id}, column"
        return (
            int(row["iteration"]),
            _loads(row["metrics"], f"{where} metrics") or {},
            _loads(row["predictions"], f"{where} predictions"),
        )

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

    def evaluations(
        self, sha256s: Iterable[str] | None = None, *, with_predictions: bool = False
    ) -> list[EvaluationRecord]:
        """Standalone evaluations (oldest first), of every file or of these sha256s; per-sequence
        predictions are read only ``with_predictions``."""
        names = [f.name for f in dataclasses.fields(EvaluationRecord) if f.name != "predictions"]
        cols = "*" if with_predictions else ", ".join(names) + ", NULL AS predictions"
        args: list[str] = []
        if sha256s is None:
            sql = f"SELECT {cols} FROM evaluations ORDER BY id"
        else:
            args = sorted(set(sha256s))
            if not args:
                return []
            marks = ", ".join("?" for _ in args)
            sql = f"SELECT {cols} FROM evaluations WHERE sha256 IN ({marks}) ORDER BY id"
        with self._tx(write=False) as con:
            rows = con.execute(sql, args).fetchall()
        where = self._where("evaluations")
        return [_record(EvaluationRecord, r, EvaluationRecord.JSON_FIELDS, where=where) for r in rows]

    def evaluation(self, evaluation_id: int) -> EvaluationRecord | None:
        """One standalone evaluation, with its per-sequence predictions."""
        with self._tx(write=False) as con:
            row = con.execute("SELECT * FROM evaluations WHERE id = ?", (int(evaluation_id),)).fetchone()
        if row is None:
            return None
        return _record(EvaluationRecord, row, EvaluationRecord.JSON_FIELDS, where=self._where("evaluations"))

    def experiments(self) -> list[dict[str, Any]]:
        with self._tx(write=False) as con:
            rows = con.execute("SELECT * FROM experiments ORDER BY id").fetchall()
        where = self._where("experiments")
        return [{**dict(r), "result": _loads(r["result"], f"{where} row {r['id']}, column result")}
                for r in rows]  # fmt: skip

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
            d["comparison"] = _loads(d.get("comparison"), f"{where} comparison")
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
