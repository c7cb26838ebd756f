"""`sconet eval` intervals, `sconet compare`, `sconet runs diff`, `sconet promote --require-significant`
and `sconet train --seeds` through the installed command (real subprocesses, real tiny runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _helpers import tiny_config
from sconet.experiments import open_ledger
from sconet.training import train

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def two_runs(small_cache, small_split, tmp_path_factory):
    """Two recorded tiny runs differing in learning rate and seed (evaluated at 2 and 4)."""
    root = tmp_path_factory.mktemp("cli_experiments")
    db = root / "ledger.sqlite"
    common = [
        ("run", "iters", 4),
        ("run", "save_iter", 4),
        ("run", "ledger", str(db)),
        ("run", "ci_resamples", 200),
    ]
    a = train(tiny_config(small_cache.path, small_split, root / "a", *common), log=lambda _m: None)
    b = train(
        tiny_config(
            small_cache.path, small_split, root / "b", *common, ("optim", "lr", 0.01), ("run", "seed", 1)
        ),
        log=lambda _m: None,
    )
    return root, db, a, b


def _json(proc):
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_eval_reports_intervals_and_stores_predictions(two_runs, sconet_cli):
    root, db, a, _ = two_runs
    ckpt = a.out / "last.pt"
    doc = _json(sconet_cli("eval", ckpt, "--json", "-", "--ledger", db, "--resamples", 300, "--level", 0.9,
                           "--device", "cpu", "--no-progress"))  # fmt: skip
    iv, m = doc["intervals"], doc["metrics"]
    assert set(iv) == {"accuracy", "precision", "recall", "f1", "sensitivity", "specificity"}
    for name in iv:
        assert (
            iv[name]["low"] <= m[name] == iv[name]["estimate"] <= iv[name]["high"]
            and iv[name]["level"] == 0.9
        )
    assert doc["bootstrap"] == {"resamples": 300, "seed": 0, "stratified": True}
    p = doc["predictions"][0]
    assert abs(sum(p["probabilities"]) - 1) < 1e-5 and p["pred"] == ["negative", "neutral", "positive"][
        max(range(3), key=lambda k: p["probabilities"][k])]  # fmt: skip
    assert doc["split_key"].startswith(f"{doc['dataset']}/{doc['split']}/")
    record = open_ledger(db).evaluations(with_predictions=True)[-1]
    assert (
        record.intervals["f1"]["high"] == iv["f1"]["high"]
        and len(record.predictions["ids"]) == m["num_samples"]
    )
    assert record.split_key == doc["split_key"]
    text = sconet_cli("eval", ckpt, "--ledger", "none", "--device", "cpu", "--ci-seed", 3, "--no-progress")
    assert text.returncode == 0 and "95 % intervals (%)" in text.stdout and "seed 3" in text.stdout
    assert "eval: " in text.stderr  # plain progress lines off a terminal
    bare = _json(
        sconet_cli("eval", ckpt, "--json", "-", "--ledger", "none", "--resamples", 0, "--device", "cpu")
    )
    assert bare["intervals"] == {}


def test_compare_identical_checkpoints_and_evaluation_ids(two_runs, sconet_cli):
    root, db, a, b = two_runs
    same = _json(sconet_cli("compare", a.out / "last.pt", a.out / "last.pt", "--ledger", db, "--json",
                            "--device", "cpu", "--resamples", 500))  # fmt: skip
    for d in same["differences"].values():
        assert d["estimate"] == d["low"] == d["high"] == 0.0
    assert same["f1_gain_significant"] is False and same["mcnemar"]["discordant"] == 0
    eval_id = open_ledger(db).evaluations()[-1].id
    proc = sconet_cli("compare", str(eval_id), b.out / "last.pt", "--ledger", db, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert f"A: evaluation #{eval_id}" in proc.stdout and "McNemar (exact binomial)" in proc.stdout
    assert "macro F1" in proc.stdout and "verdict:" in proc.stdout
    doc = _json(sconet_cli("compare", f"eval:{eval_id}", b.out / "last.pt", "--ledger", db, "--json"))
    assert (
        doc["common_ids"] == len(a.final_predictions["ids"])
        and doc["sources"]["a"]["evaluation_id"] == eval_id
    )
    # the same checkpoint evaluated on another split file: refused
    split = json.loads(Path(a.out / "split.json").read_text())
    other = root / "other.json"
    other.write_text(json.dumps({"TRAIN_SET": split["TRAIN_SET"], "TEST_SET": split["TEST_SET"][:-1]}))
    sconet_cli("eval", a.out / "last.pt", "--split", other, "--ledger", db, "--device", "cpu")
    other_id = open_ledger(db).evaluations()[-1].id
    proc = sconet_cli("compare", str(eval_id), str(other_id), "--ledger", db)
    assert proc.returncode == 2 and "refused" in proc.stderr and "different splits" in proc.stderr
    missing = sconet_cli("compare", "999", str(eval_id), "--ledger", db)
    assert missing.returncode == 2 and "no evaluation with id 999" in missing.stderr


def test_runs_diff(two_runs, sconet_cli):
    root, db, a, b = two_runs
    proc = sconet_cli("runs", "diff", str(a.run_id), str(b.run_id), "--ledger", db)
    assert proc.returncode == 0, proc.stderr
    assert (
        "optim.lr" in proc.stdout
        and "run.seed" in proc.stdout
        and "factor groups changed: optimisation" in proc.stdout
    )
    doc = _json(sconet_cli("runs", "diff", str(a.run_id), str(b.out), "--ledger", db, "--json"))
    keys = {d["key"]: d for d in doc["differences"]}
    assert keys["optim.lr"]["b"] == 0.01 and keys["seed"]["a"] == 0 and keys["seed"]["b"] == 1
    assert "run.out" not in keys and "render.sigma_limb" not in keys  # same cache: same render settings
    bad = sconet_cli("runs", "diff", str(a.run_id), "12345", "--ledger", db)
    assert bad.returncode == 2 and "no run '12345'" in bad.stderr


def test_promote_requires_a_significant_gain(two_runs, sconet_cli, tmp_path):
    root, db, a, b = two_runs
    art = tmp_path / "artifact"
    first = sconet_cli("promote", a.out / "last.pt", "--ledger", db, "--artifact-dir", art, "--device", "cpu")
    assert first.returncode == 0, first.stdout + first.stderr
    proc = sconet_cli("promote", b.out / "last.pt", "--ledger", db, "--artifact-dir", art, "--device", "cpu",
                      "--require-significant", "--json")  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # 20-odd test sequences: no gain can be significant
    doc = json.loads(proc.stdout)
    rule_a = next(r for r in doc["rules"] if r["name"] == "a")
    assert rule_a["passed"] is False and "paired macro-F1 gain" in rule_a["detail"]
    assert doc["comparison"]["common_ids"] == len(b.final_predictions["ids"])
    decision = open_ledger(db).promotions()[-1]
    assert decision["accepted"] is False and decision["comparison"]["mcnemar"]["method"]
    text = sconet_cli("promote", b.out / "last.pt", "--ledger", db, "--artifact-dir", art, "--device", "cpu",
                      "--dry-run")  # fmt: skip
    assert "against the promoted" in text.stdout and "McNemar" in text.stdout


def test_train_seeds_reports_mean_std_and_pooled_interval(small_cache, small_split, sconet_cli, tmp_path):
    db = tmp_path / "ledger.sqlite"
    out = tmp_path / "seeds"
    proc = sconet_cli(
        "train", "--recipe", "demo-cpu", "--cache", small_cache.path, "--split", small_split, "--out", out,
        "--seeds", 2, "--seed", 5, "--iters", 2, "--device", "cpu", "--ledger", db, "--no-progress",
        "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8",
        "--set", "data.eval_max_frames=20",
        "--set", "run.eval_iter=2", "--set", "run.save_iter=2", "--set", "run.ci_resamples=100", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "seed-5" / "last.pt").is_file() and (out / "seed-6" / "last.pt").is_file()
    assert "group seeds: 2 runs" in proc.stdout and "pooled 95 % interval" in proc.stdout
    doc = _json(sconet_cli("runs", "--ledger", db, "--json"))
    (group,) = doc["groups"]
    assert group["name"] == "seeds" and group["seeds"] == [5, 6] and len(group["f1"]) == 2
    f1s = group["f1"]
    assert group["mean"]["f1"] == pytest.approx(sum(f1s) / 2)
    assert group["std"]["f1"] == pytest.approx(abs(f1s[0] - f1s[1]) / 2**0.5)
    assert group["pooled"]["f1"]["low"] <= group["mean"]["f1"] <= group["pooled"]["f1"]["high"]
    table = sconet_cli("runs", "--ledger", db)
    assert "seed groups" in table.stdout and "mean +- std" in table.stdout
