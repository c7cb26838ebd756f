"""`sconet experiment run` machinery with real tiny training: the stop rule ends a deliberately bad
candidate, on_fail = "stop" ends the plan, the report and the ledger keep the evidence."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from sconet.experiments import open_ledger
from sconet.experiments.plan import PlanError, load_plan
from sconet.experiments.runner import check_plan, run_plan

torch.set_num_threads(2)


def _split(folder: Path, train: list[str], test: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "split.json"  # the same file name: the same split name, as the split key needs
    path.write_text(json.dumps({"TRAIN_SET": train, "TEST_SET": test}))
    return path


@pytest.fixture
def biased_splits(small_store, tmp_path):
    """Test set: the positive test sequences only. The baseline trains on positives, the bad
    candidate on negatives, so it can only ever predict the class absent from the test set."""
    labels = {sid: small_store.label_name(i) for i, sid in enumerate(small_store.ids)}
    pos = sorted(s for s, lab in labels.items() if lab == "positive")
    neg = sorted(s for s, lab in labels.items() if lab == "negative")
    test = pos[len(pos) // 2 :]
    good = _split(tmp_path / "good", pos[: len(pos) // 2], test)
    bad = _split(tmp_path / "bad", neg, test)
    return good, bad, len(test)


def _plan(tmp_path: Path, cache: Path, good: Path, bad: Path, extra: str = "") -> Path:
    text = f"""
        name = "rule-machinery"
        out = "{tmp_path / "exp"}"
        ledger = "{tmp_path / "ledger.sqlite"}"
        artifact_dir = "{tmp_path / "artifact"}"
        device = "cpu"
        [rule]
        patience = 2
        resamples = 200
        [baseline]
        recipe = "demo-cpu"
        promote = true
        set = ["data.cache={cache}", "data.split={good}", "data.p=4", "data.k=2", "data.frames=8",
               "data.eval_max_frames=40", "run.iters=4", "run.eval_iter=1", "run.save_iter=4",
               "run.log_iter=1",
               "schedule.warmup_iters=0", "optim.lr=0.01", "run.ci_resamples=200"]
        [[step]]
        name = "biased training set"
        set = ["data.split={bad}"]
        on_fail = "stop"
        [[step]]
        name = "second seed"
        from = "winner"
        set = ["run.seed=1"]
        success = "none"
        {extra}
    """
    path = tmp_path / "plan.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_rule_stops_a_bad_candidate_and_on_fail_ends_the_plan(
    small_cache, biased_splits, tmp_path, sconet_cli
):
    good, bad, n_test = biased_splits
    plan = load_plan(_plan(tmp_path, small_cache.path, good, bad))
    assert [(s.name, g) for s, g in check_plan(plan)] == [
        ("biased training set", {"data": ["data.split"]}),
        ("second seed", {}),
    ]
    result = run_plan(plan, log=lambda _m: None)

    base_f1 = result.baseline.f1
    assert base_f1 > 0  # the baseline finds some positives
    bad_step, seed_step = result.steps
    assert bad_step.status == "stopped by rule" and bad_step.success is False
    (run,) = bad_step.runs
    assert run.stopped is not None and run.iterations <= 4
    evidence = run.stopped["evidence"]
    assert len(evidence) == 2 and all(e["f1_high"] < base_f1 for e in evidence)
    assert run.iterations == int(evidence[-1]["iteration"])  # it ended where the rule fired
    assert run.stopped["baseline_f1"] == pytest.approx(base_f1)
    assert seed_step.status == "skipped" and "on_fail" in seed_step.reason
    assert result.winner == "baseline" and result.promotion is None and result.ended_early

    db = open_ledger(tmp_path / "ledger.sqlite")
    row = db.run_row(run.run_id)
    assert row["status"] == "stopped" and row["stop_evidence"]["evidence"] == evidence
    evals = [e for e in db.evaluations() if e.purpose == "experiment"]
    assert len(evals) == 1 and evals[0].metrics["num_samples"] == n_test  # the baseline's standalone run
    (exp,) = db.experiments()
    assert exp["winner"] == "baseline" and exp["result"]["steps"][0]["status"] == "stopped by rule"
    promoted = json.loads((tmp_path / "artifact" / "promoted.json").read_text())["current"]
    assert len(promoted) == 1  # the trained baseline was promoted first

    report = (tmp_path / "exp" / "report.md").read_text()
    assert "stopped by rule" in report and "| 2 | second seed |" in report and "skipped" in report
    assert "evidence (reference F1" in report
    assert (tmp_path / "exp" / "curves.png").stat().st_size > 5000
    show = sconet_cli("runs", "show", str(run.run_id), "--ledger", tmp_path / "ledger.sqlite")
    assert show.returncode == 0 and "stopped by rule: F1 upper bound below" in show.stdout
    assert "test F1 95 %" in show.stdout
    doc = json.loads((tmp_path / "exp" / "result.json").read_text())
    assert doc["steps"][0]["runs"][0]["stopped"]["stop"] is True


def test_a_multi_factor_candidate_is_refused_before_anything_trains(small_cache, biased_splits, tmp_path):
    good, bad, _ = biased_splits
    extra = """
        [[step]]
        name = "two at once"
        set = ["data.representation=full-body", "optim.lr=0.1"]
    """
    plan = load_plan(_plan(tmp_path, small_cache.path, good, bad, extra))
    with pytest.raises(PlanError, match="'two at once' changes 2 factor groups"):
        run_plan(plan, log=lambda _m: None)
    assert not (tmp_path / "exp").exists()
