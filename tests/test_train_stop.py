"""The trainer under an experiment's stop rule: in-run intervals, per-sequence predictions in the
ledger, status ``stopped`` with its evidence, heartbeat (real tiny training runs)."""

from __future__ import annotations

import torch

from _helpers import tiny_config
from sconet.checkpoint import read_checkpoint
from sconet.evaluation.stats import stop_rule
from sconet.experiments import open_ledger
from sconet.experiments.background import read_heartbeat
from sconet.training import train

torch.set_num_threads(2)


def test_stop_rule_ends_a_run_and_the_ledger_keeps_the_evidence(small_cache, small_split, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    config = tiny_config(
        small_cache.path, small_split, tmp_path / "run", ("run", "iters", 8), ("run", "eval_iter", 1),
        ("run", "save_iter", 4), ("run", "ledger", str(ledger)), ("run", "ci_resamples", 300),
    )  # fmt: skip
    history: list[dict] = []
    seen: list[tuple[int, int]] = []

    def hook(iteration, values, predictions):
        test = predictions["test"]
        seen.append((iteration, len(test.ids)))
        assert values["test_f1_low"] <= values["test_f1"] <= values["test_f1_high"]
        history.append({"iteration": iteration, "f1": values["test_f1"], "f1_high": values["test_f1_high"]})
        return stop_rule(history, baseline_f1=1.01, patience=2)  # nothing reaches 1.01

    result = train(config, on_evaluate=hook, log=lambda _m: None)
    assert result.stopped is not None and result.stopped["stop"]
    stopped_at = int(result.stopped["evidence"][-1]["iteration"])
    assert 2 <= stopped_at < 8 and result.evals[-1]["iter"] == stopped_at
    assert [it for it, _ in seen] == list(range(1, stopped_at + 1))  # every evaluation, then no more
    assert read_checkpoint(tmp_path / "run" / "last.pt").iteration == stopped_at
    hb = read_heartbeat(tmp_path / "run")
    assert (hb["state"], hb["iteration"], hb["run_id"]) == ("stopped", stopped_at, result.run_id)

    db = open_ledger(ledger)
    row = db.run_row(result.run_id)
    assert row["status"] == "stopped" and row["stop_evidence"]["reason"] == result.stopped["reason"]
    summary = db.runs()[-1]
    assert summary.status == "stopped" and summary.stop_reason == result.stopped["reason"]
    assert summary.final["iteration"] == stopped_at
    final = db.final_predictions(result.run_id)
    assert final is not None
    iteration, metrics, preds = final
    assert iteration == stopped_at and len(preds["ids"]) == seen[-1][1] == len(preds["probs"])
    assert abs(sum(preds["probs"][0]) - 1) < 1e-3 and metrics["test_f1_high"] >= metrics["test_f1"]


def test_without_a_hook_a_run_finishes_and_intervals_can_be_off(small_cache, small_split, tmp_path):
    config = tiny_config(small_cache.path, small_split, tmp_path / "run", ("run", "ci_resamples", 0),
                         ("run", "ledger", "none"))  # fmt: skip
    result = train(config, log=lambda _m: None)
    assert result.stopped is None and result.run_id is None
    assert "test_f1_high" not in result.evals[-1] and "test_f1" in result.evals[-1]
    assert read_heartbeat(tmp_path / "run")["state"] == "finished"
