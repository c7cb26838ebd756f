"""The run ledger: records of real tiny runs (API and CLI), concurrent writers, statuses, `sconet runs`."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import tomllib
from pathlib import Path

import pytest
import torch

from sconet.experiments import (
    SCHEMA_VERSION,
    Ledger,
    LedgerError,
    RunRecorder,
    file_sha256,
    open_ledger,
    resolve_ledger_path,
)
from sconet.training import apply_overrides, load_recipe, train

torch.set_num_threads(2)

TINY_CLI = [
    "--recipe",
    "demo-cpu",
    "--iters",
    "2",
    "--device",
    "cpu",
    "--seed",
    "1",
    "--set",
    "data.p=4",
    "--set",
    "data.k=2",
    "--set",
    "data.frames=8",
    "--set",
    "data.eval_max_frames=20",
    "--set",
    "run.eval_iter=2",
    "--set",
    "run.save_iter=2",
    "--set",
    "run.log_iter=1",
    "--no-progress",
]


def tiny(cache: Path, split: Path, out: Path, ledger: Path | str, *extra):
    return apply_overrides(
        load_recipe("demo-cpu"),
        [
            ("data", "cache", str(cache)),
            ("data", "split", str(split)),
            ("data", "p", 4),
            ("data", "k", 2),
            ("data", "frames", 8),
            ("data", "eval_max_frames", 20),
            ("data", "val_fraction", 0.3),
            ("run", "iters", 4),
            ("run", "eval_iter", 2),
            ("run", "save_iter", 3),
            ("run", "log_iter", 1),
            ("run", "keep_n", 1),
            ("run", "device", "cpu"),
            ("run", "out", str(out)),
            ("run", "ledger", str(ledger)),
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def ledger_run(small_cache, small_split, tmp_path_factory):
    root = tmp_path_factory.mktemp("ledger")
    db = root / "ledger.sqlite"
    result = train(tiny(small_cache.path, small_split, root / "run", db), log=lambda _m: None)
    return db, result


# -- where the ledger is -------------------------------------------------------------------------


def test_resolve_ledger_path(monkeypatch, tmp_path):
    monkeypatch.delenv("SCONET_LEDGER", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_ledger_path() == tmp_path / "runs" / "ledger.sqlite"
    monkeypatch.setenv("SCONET_LEDGER", str(tmp_path / "x.sqlite"))
    assert resolve_ledger_path() == tmp_path / "x.sqlite"
    assert resolve_ledger_path("y.sqlite") == tmp_path / "y.sqlite"  # explicit beats the environment
    for off in ("none", "None", "off", ""):
        assert resolve_ledger_path(off) is None
    monkeypatch.setenv("SCONET_LEDGER", "none")
    assert resolve_ledger_path() is None and open_ledger() is None
    with pytest.raises(LedgerError, match="no ledger here yet"):
        open_ledger(tmp_path / "missing.sqlite", must_exist=True)


def test_schema_version_and_wal(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    assert led.schema_version() == SCHEMA_VERSION
    con = sqlite3.connect(led.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("INSERT INTO schema_version VALUES (?, 'later')", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(LedgerError, match="newer sconet"):
        Ledger(led.path).runs()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match=str(garbage)):
        Ledger(garbage).runs()


# -- a real run ------------------------------------------------------------------------------------


def test_run_is_recorded(ledger_run, small_store):
    db, result = ledger_run
    led = Ledger(db)
    (run,) = led.runs()
    assert (run.status, run.recipe, run.representation, run.split, run.seed) == (
        "finished",
        "demo-cpu",
        "body-only",
        "Scoliosis1K_112",
        0,
    )
    assert (run.iteration, run.iters, run.evals) == (4, 4, 2)
    row = led.run_row(run.id)
    assert row["cache_fingerprint"] == small_store.fingerprint
    assert row["render"]["representation"]["name"] == "body-only"
    assert row["git_commit"] and row["ended_at"] and row["started_at"] and row["pid"]
    assert tomllib.loads(row["recipe_toml"])["run"]["iters"] == 4
    assert "run.iters=4" in row["overrides"] and "data.val_fraction=0.3" in row["overrides"]
    assert row["n_val"] > 0 and row["split_key"].endswith(tuple("0123456789abcdef"))
    # best and validation-selected metrics come from the in-run evaluations
    evals = led.run_evals(run.id)
    assert [e["iteration"] for e in evals] == [2, 4]
    assert run.best_test_f1 == max(e["test_f1"] for e in evals)
    best_val = max(evals, key=lambda e: (e["val_f1"], -e["iteration"]))
    assert run.val_selected["iteration"] == best_val["iteration"]
    assert run.val_selected["test_f1"] == best_val["test_f1"]


def test_checkpoints_are_recorded(ledger_run):
    db, result = ledger_run
    led = Ledger(db)
    (run,) = led.runs()
    ckpts = led.checkpoints(run.id)
    last = [c for c in ckpts if c.role == "last"]
    assert [c.iteration for c in last] == [3, 4]  # save_iter 3, and the end
    assert (
        last[0].metrics_iteration == 2 and last[1].metrics_iteration == 4
    )  # last.pt at 3 holds iteration 2's metrics
    assert last[-1].sha256 == file_sha256(result.last_checkpoint)
    kept = [c for c in ckpts if c.role == "best"]
    assert {c.metric for c in kept} >= {"test_f1", "test_accuracy", "val_f1"}
    for c in kept:
        assert c.metrics_iteration == c.iteration and "test_f1" in c.metrics
        if Path(c.path).is_file():
            assert file_sha256(c.path) == c.sha256
    assert (
        led.checkpoints(sha256=last[-1].sha256)
        and led.checkpoints(path=result.last_checkpoint)[-1].iteration == 4
    )


def test_statuses_interrupted_resumed_failed(small_cache, small_split, tmp_path, monkeypatch):
    db = tmp_path / "l.sqlite"
    cfg = tiny(
        small_cache.path,
        small_split,
        tmp_path / "run",
        db,
        ("run", "iters", 2),
        ("data", "val_fraction", 0.0),
    )
    train(cfg, stop_at=1, log=lambda _m: None)
    train(cfg, resume=True, log=lambda _m: None)
    first, second = Ledger(db).runs()
    assert (first.status, first.iteration) == ("interrupted", 1)
    assert (second.status, second.start_iteration, second.iteration, second.resumed_from) == (
        "finished",
        1,
        2,
        first.id,
    )
    assert second.val_selected is None

    from sconet.models import ScoNetLoss

    def boom(*_a, **_k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(ScoNetLoss, "forward", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        train(tiny(small_cache.path, small_split, tmp_path / "bad", db), log=lambda _m: None)
    failed = Ledger(db).runs()[-1]
    assert failed.status == "failed" and "simulated failure" in Ledger(db).run_row(failed.id)["error"]


def test_ledger_failure_only_warns(small_cache, small_split, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    messages: list[str] = []
    cfg = tiny(
        small_cache.path,
        small_split,
        tmp_path / "run",
        blocker / "ledger.sqlite",
        ("run", "iters", 1),
        ("run", "eval_iter", 1),
        ("data", "val_fraction", 0.0),
    )
    result = train(cfg, log=messages.append)
    assert result.iterations == 1 and result.last_checkpoint.is_file()
    assert any(m.startswith("warning: ledger") for m in messages)
    # the recorder gives up after a few failures instead of warning forever
    rec = RunRecorder(Ledger(blocker / "l.sqlite"), 1, messages.append)
    for i in range(5):
        rec.evaluation(i, {"test_f1": 0.5})
    assert rec.run_id is None and rec.failures == RunRecorder.MAX_FAILURES


def test_ledger_none_records_nothing(small_cache, small_split, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCONET_LEDGER", "none")
    train(
        tiny(
            small_cache.path,
            small_split,
            tmp_path / "run",
            "none",
            ("run", "iters", 1),
            ("run", "eval_iter", 1),
            ("data", "val_fraction", 0.0),
        ),
        log=lambda _m: None,
    )
    assert not (tmp_path / "runs" / "ledger.sqlite").exists()


# -- concurrency -----------------------------------------------------------------------------------


def _writer(path: str, n: int, tag: int) -> None:
    led = Ledger(path)
    run_id = led.start_run(recipe=f"w{tag}", out=f"/x/{tag}")
    for i in range(n):
        led.add_run_eval(run_id, i, {"test_f1": i / n, "tag": tag})
    led.end_run(run_id, "finished", n)


def test_concurrent_writers_processes(tmp_path):
    path = str(tmp_path / "l.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, 40, t)) for t in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    runs = Ledger(path).runs()
    assert sorted(r.recipe for r in runs) == ["w0", "w1", "w2"]
    assert all(r.status == "finished" and r.evals == 40 for r in runs)


def test_two_training_processes_at_once(small_cache, small_split, tmp_path):
    import os
    import subprocess
    import sys

    db = tmp_path / "shared.sqlite"
    env = dict(os.environ, SCONET_LEDGER=str(db))
    exe = str(Path(sys.executable).parent / "sconet")
    procs = [
        subprocess.Popen(
            [
                exe,
                "train",
                *TINY_CLI,
                "--cache",
                str(small_cache.path),
                "--split",
                str(small_split),
                "--out",
                str(tmp_path / f"run{i}"),
                "--seed",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "warning: ledger" not in err
    runs = Ledger(db).runs()
    assert len(runs) == 2 and {r.status for r in runs} == {"finished"}
    assert {Path(r.out).name for r in runs} == {"run0", "run1"}
    assert all(r.checkpoints >= 2 and r.evals == 1 for r in runs)


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_eval_recorded_and_runs_table(ledger_run, sconet_cli, small_cache):
    db, result = ledger_run
    ev = sconet_cli(
        "eval", str(result.last_checkpoint), "--device", "cpu", "--max-frames", "20", "--ledger", str(db)
    )
    assert ev.returncode == 0, ev.stderr
    (rec,) = [e for e in Ledger(db).evaluations() if e.purpose == "eval"]
    assert rec.sha256 == file_sha256(result.last_checkpoint) and rec.subset == "test" and rec.max_frames == 20
    assert rec.metrics["num_samples"] > 0 and 0 <= rec.metrics["f1"] <= 1

    table = sconet_cli("runs", "--ledger", str(db))
    assert table.returncode == 0, table.stderr
    assert "demo-cpu" in table.stdout and "finished" in table.stdout and "val-selected" in table.stdout
    doc = json.loads(sconet_cli("runs", "--ledger", str(db), "--json").stdout)
    (run,) = doc["runs"]
    assert run["val_selected"]["test_f1"] is not None and run["best_test_f1"] is not None
    show = sconet_cli("runs", "show", str(run["id"]), "--ledger", str(db))
    assert show.returncode == 0, show.stderr
    assert "checkpoints" in show.stdout and "standalone evaluations" in show.stdout and "last" in show.stdout
    shown = json.loads(sconet_cli("runs", "--ledger", str(db), "show", str(run["id"]), "--json").stdout)
    assert shown["run"]["id"] == run["id"] and shown["evaluations"][0]["sha256"] == rec.sha256
    missing = sconet_cli("runs", "show", "999", "--ledger", str(db))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "999" in missing.stderr
    nothing = sconet_cli("runs", "--ledger", str(db.parent / "nope.sqlite"))
    assert nothing.returncode == 2 and "no ledger here yet" in nothing.stderr
