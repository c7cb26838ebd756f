"""`sconet train --detach`, heartbeats, `sconet runs` running / finished / lost and `sconet runs follow`,
with real background processes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from sconet.experiments.background import read_heartbeat


def _args(cache, split, out: Path, db: Path, iters: int) -> list:
    return [
        "train", "--detach", "--recipe", "demo-cpu", "--cache", cache, "--split", split, "--out", out,
        "--iters", iters, "--device", "cpu", "--ledger", db, "--set", "data.p=4", "--set", "data.k=2",
        "--set", "data.frames=8", "--set", "data.eval_max_frames=20", "--set", f"run.eval_iter={iters}",
        "--set", f"run.save_iter={iters}", "--set", "run.ci_resamples=100",
    ]  # fmt: skip


def _wait(predicate, timeout: float = 300, step: float = 0.2):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


def test_detached_run_finishes_and_is_followed(small_cache, small_split, sconet_cli, tmp_path):
    out, db = tmp_path / "run", tmp_path / "ledger.sqlite"
    env = {"SCONET_HEARTBEAT_S": "0.3"}
    t0 = time.monotonic()
    proc = sconet_cli(*_args(small_cache.path, small_split, out, db, 2), env=env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60  # it returned without training
    assert "started in the background" in proc.stdout and f"log: {out.resolve()}/train.log" in proc.stdout
    follow = sconet_cli("runs", "follow", out, "--ledger", db, "--interval", 0.2, env=env, timeout=600)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert (
        follow.stdout.rstrip().endswith("run finished") and "run: " in follow.stdout
    )  # the log's last lines
    assert (out / "train.log").is_file() and (out / "last.pt").is_file()
    assert read_heartbeat(out)["state"] == "finished"
    runs = json.loads(sconet_cli("runs", "--ledger", db, "--json").stdout)["runs"]
    assert [r["status"] for r in runs] == ["finished"]


def test_a_killed_detached_run_is_lost(small_cache, small_split, sconet_cli, tmp_path):
    out, db = tmp_path / "run", tmp_path / "ledger.sqlite"
    env = {"SCONET_HEARTBEAT_S": "0.3"}
    proc = sconet_cli(*_args(small_cache.path, small_split, out, db, 5000), env=env)
    assert proc.returncode == 0, proc.stderr
    hb = _wait(lambda: (h := read_heartbeat(out)) and h.get("run_id") and h)
    runs = json.loads(sconet_cli("runs", "--ledger", db, "--json").stdout)["runs"]
    assert [r["status"] for r in runs] == ["running"]
    os.kill(hb["pid"], signal.SIGKILL)

    def status() -> str:
        return json.loads(sconet_cli("runs", "--ledger", db, "--json").stdout)["runs"][0]["status"]

    _wait(lambda: status() == "lost", timeout=30)
    table = sconet_cli("runs", "--ledger", db)
    assert "lost" in table.stdout and f"process {hb['pid']} is gone" in table.stdout
    follow = sconet_cli("runs", "follow", str(runs[0]["id"]), "--ledger", db, "--interval", 0.2)
    assert follow.returncode == 1 and "run lost" in follow.stdout


def test_follow_refuses_an_unknown_run(sconet_cli, tmp_path):
    proc = sconet_cli("runs", "follow", tmp_path / "nowhere", "--ledger", tmp_path / "none.sqlite")
    assert proc.returncode == 2 and "no such run folder" in proc.stderr
