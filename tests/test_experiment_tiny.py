"""The shipped tiny plan end to end on the built-in synthetic data, on the CPU (slow: builds the
full synthetic body-only and full-body caches and trains five small runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_plan_runs_the_seed_steps_and_stops_the_bad_candidate(sconet_cli, cache_root_dir, tmp_path):
    plan = REPO / "experiments" / "next-experiments-tiny.toml"
    check = sconet_cli("experiment", "check", plan, cwd=tmp_path)
    assert check.returncode == 0 and "render (data.representation)" in check.stdout, check.stderr
    proc = sconet_cli("experiment", "run", plan, "--no-progress", cwd=tmp_path, timeout=7200,
                      env={"SCONET_LEDGER": str(tmp_path / "runs" / "ledger.sqlite")})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "runs" / "next-experiments-tiny"
    result = json.loads((out / "result.json").read_text())
    steps = {s["name"]: s for s in result["steps"]}
    assert steps["deliberately bad: positives-only training set"]["status"] == "stopped by rule"
    stopped = steps["deliberately bad: positives-only training set"]["runs"][0]["stopped"]
    assert all(e["f1_high"] < stopped["baseline_f1"] for e in stopped["evidence"])
    # at this budget a candidate may also collapse and be stopped (renderer 3's maps stop the
    # full-body control at iteration 60): each outcome must carry its own evidence
    for name in ("full-body control", "DRF warm-start"):
        step = steps[name]
        assert step["status"] in ("won", "lost", "stopped by rule"), step["status"]
        if step["status"] == "stopped by rule":
            rule = step["runs"][0]["stopped"]
            assert all(e["f1_high"] < rule["baseline_f1"] for e in rule["evidence"])
        else:
            assert step["comparison"]["mcnemar"]["method"]
    assert any(steps[n]["status"] in ("won", "lost") for n in ("full-body control", "DRF warm-start"))
    assert steps["optimizer confirmation (second seed)"]["status"] == "for information"
    report = (out / "report.md").read_text()
    assert "stopped by rule" in report and "![curves](curves.png)" in report
    assert (out / "curves.png").stat().st_size > 10_000
    assert (out / "artifact" / "promoted.json").is_file()  # the baseline, and the winner if one won
    # the shipped biased split still matches the synthetic data: positive training ids, the same test ids
    biased = REPO / "experiments" / "tiny" / "positives-only" / "Scoliosis1K_112.json"
    shipped = json.loads(biased.read_text())
    synthetic = json.loads((cache_root_dir / "synthetic" / "Scoliosis1K_112.json").read_text())
    assert shipped["TEST_SET"] == synthetic["TEST_SET"]
    labels = {p.parent.name: p.name.lower() for p in (cache_root_dir / "synthetic").glob("*/*")}
    assert {labels[i] for i in shipped["TRAIN_SET"]} == {"positive"}
    assert {i for i in synthetic["TRAIN_SET"] if labels[i] == "positive"} == set(shipped["TRAIN_SET"])
