"""Ledger schema 2: a version-1 file is migrated in place, its rows kept (sconet.experiments.schema)."""

from __future__ import annotations

import sqlite3

from sconet.experiments import Ledger, open_ledger
from sconet.experiments.schema import MIGRATIONS, SCHEMA_VERSION, STATUSES


def _v1_ledger(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[1]:
        con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (1, 'then')")
    con.execute(
        "INSERT INTO runs (out, recipe, status, seed, iteration, iters) "
        "VALUES ('/r', 'sgd', 'finished', 3, 5, 5)"
    )
    con.execute(
        "INSERT INTO run_evals (run_id, iteration, metrics, at) VALUES (1, 5, '{\"test_f1\": 0.5}', 'then')"
    )
    con.execute(
        "INSERT INTO evaluations (sha256, path, subset, max_frames, metrics, at) "
        "VALUES ('ab', '/x.pt', 'test', 720, '{\"f1\": 0.4}', 'then')"
    )
    con.commit()
    con.close()


def test_version_1_file_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "ledger.sqlite"
    _v1_ledger(path)
    db = Ledger(path)
    assert db.schema_version() == SCHEMA_VERSION == 3
    (run,) = db.runs()
    assert (run.recipe, run.status, run.seed, run.final["test_f1"], run.group_name) == (
        "sgd",
        "finished",
        3,
        0.5,
        None,
    )
    (ev,) = db.evaluations()
    assert ev.metrics == {"f1": 0.4} and ev.predictions is None and ev.intervals is None
    assert db.final_predictions(1) is None  # recorded before predictions were kept
    # new columns and tables work on the migrated file
    db.add_run_eval(1, 6, {"test_f1": 0.6}, {"ids": ["a"], "labels": [0], "probs": [[1.0, 0.0, 0.0]]})
    assert db.final_predictions(1) == (
        6,
        {"test_f1": 0.6},
        {"ids": ["a"], "labels": [0], "probs": [[1.0, 0.0, 0.0]]},
    )
    db.end_run(1, "stopped", 6, stop_evidence={"reason": "rule", "evidence": []})
    assert db.run_row(1)["stop_evidence"] == {"reason": "rule", "evidence": []}
    eid = db.add_evaluation(
        sha256="cd",
        metrics={"f1": 1.0},
        predictions={"ids": ["a"]},
        intervals={"f1": {}},
        render={"source": "stated", "settings": {"sigma_limb": 15.0}},
    )
    assert db.evaluation(eid).predictions == {"ids": ["a"]}
    assert db.evaluations(["cd"])[0].render == {"source": "stated", "settings": {"sigma_limb": 15.0}}
    assert ev.render is None  # version 3's column: empty for rows recorded before it
    assert db.evaluations(["cd"])[0].predictions is None  # listing leaves the predictions out
    assert db.evaluations(["cd"], with_predictions=True)[0].predictions == {"ids": ["a"]}
    assert db.add_experiment(name="p", winner="baseline", result={"steps": []}) == 1
    assert db.experiments()[0]["result"] == {"steps": []}
    assert "stopped" in STATUSES
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2, 3]
    # opened again: nothing is applied twice
    assert open_ledger(path).schema_version() == 3
