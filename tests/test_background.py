"""Heartbeats, liveness and following a run (sconet.experiments.background), with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sconet.experiments.background import (
    HEARTBEAT,
    TRAIN_LOG,
    Heartbeat,
    follow,
    liveness,
    lost_after,
    pid_alive,
    read_heartbeat,
)


def test_heartbeat_beats_and_ends(tmp_path):
    hb = Heartbeat(tmp_path, total=10, every_s=0.05, run_id=3).start()
    first = read_heartbeat(tmp_path)
    assert first["state"] == "running" and first["pid"] == os.getpid() and first["run_id"] == 3
    hb.update(4)
    time.sleep(0.2)
    later = read_heartbeat(tmp_path)
    assert later["iteration"] == 4 and later["time"] > first["time"]
    assert liveness("running", str(tmp_path))[0] == "running"
    hb.stop("finished", 10)
    end = read_heartbeat(tmp_path)
    assert (end["state"], end["iteration"]) == ("finished", 10)
    # the ledger still says running (it missed the end): the final heartbeat wins
    assert liveness("running", str(tmp_path))[0] == "finished"
    assert liveness("failed", str(tmp_path)) == ("failed", "")


def _beating_child(tmp_path):
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[2]);"
        "from sconet.experiments.background import Heartbeat;"
        "Heartbeat(sys.argv[1], every_s=0.05).start(); time.sleep(60)"
    )
    pkg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), pkg])
    for _ in range(200):
        if read_heartbeat(tmp_path):
            break
        time.sleep(0.05)
    return proc


def test_a_killed_process_is_lost(tmp_path):
    proc = _beating_child(tmp_path)
    try:
        assert liveness("running", str(tmp_path)) == ("running", "")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        status, why = liveness("running", str(tmp_path))
        assert status == "lost" and f"process {proc.pid} is gone" in why
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_stale_heartbeat_from_another_host_is_lost(tmp_path):
    doc = {"pid": 1, "host": "elsewhere", "state": "running", "every_s": 1.0, "time": time.time()}
    (tmp_path / HEARTBEAT).write_text(json.dumps(doc))
    assert liveness("running", str(tmp_path))[0] == "running"
    status, why = liveness("running", str(tmp_path), now=doc["time"] + lost_after(1.0) + 1)
    assert status == "lost" and "no heartbeat for" in why
    # no heartbeat at all (older runs): the ledger's pid and host decide
    empty = tmp_path / "empty"
    assert liveness("running", str(empty), pid=os.getpid(), host=os.uname().nodename)[0] == "running"
    assert not pid_alive(None)


def test_follow_prints_the_log_until_the_run_ends(tmp_path):
    log = tmp_path / TRAIN_LOG
    log.write_text("start\niter 1/2\n")
    states = iter([("running", ""), ("running", ""), ("finished", "")])
    seen: list[str] = []

    def status():
        state = next(states)
        if state[0] == "finished":
            with open(log, "a") as f:
                f.write("iter 2/2\ndone")
        return state

    assert follow(tmp_path, status=status, write=seen.append, poll_s=0.01) == "finished"
    assert seen == ["start", "iter 1/2", "iter 2/2", "done", "run finished"]


def test_follow_without_a_log_reads_the_metrics(tmp_path):
    rows = [
        {"kind": "train", "iter": 10, "loss": 1.5, "it_per_s": 2.0},
        {"kind": "eval", "iter": 10, "test_f1": 0.5, "test_accuracy": 0.75},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[str] = []
    assert follow(tmp_path, status=lambda: ("lost", "process 1 is gone"), write=seen.append) == "lost"
    assert seen[0] == "iter 10: loss 1.5000  2.00 it/s"
    assert seen[1] == "iter 10: evaluation  test_f1 50.00  test_accuracy 75.00"
    assert seen[-1] == "run lost (process 1 is gone)"
    assert (
        follow(tmp_path, status=lambda: ("running", ""), write=seen.append, poll_s=0.01, timeout_s=0.05)
        == "running"
    )


@pytest.mark.parametrize("every", ["0.5", "bogus"])
def test_heartbeat_interval_from_the_environment(monkeypatch, every):
    from sconet.experiments.background import DEFAULT_EVERY_S, heartbeat_every

    monkeypatch.setenv("SCONET_HEARTBEAT_S", every)
    assert heartbeat_every() == (0.5 if every == "0.5" else DEFAULT_EVERY_S)
