"""`sconet train` / `sconet eval` as subprocesses: a tiny run, standalone evaluation, clear errors."""

from __future__ import annotations

import json

import pytest

from _helpers import TINY_TRAIN_SETS

TINY = ["--recipe", "demo-cpu", "--iters", "3", "--device", "cpu", "--seed", "1", *TINY_TRAIN_SETS]


@pytest.fixture(scope="module")
def cli_run(sconet_cli, small_cache, small_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    proc = sconet_cli(
        "train",
        *TINY,
        "--cache",
        str(small_cache.path),
        "--split",
        str(small_split),
        "--out",
        str(out),
        "--no-progress",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_then_eval_json(cli_run, sconet_cli, tmp_path):
    out, proc = cli_run
    assert "test: accuracy" in proc.stdout and "last checkpoint" in proc.stdout
    assert (out / "last.pt").is_file() and (out / "metrics.jsonl").is_file()
    report = tmp_path / "eval.json"
    ev = sconet_cli(
        "eval", str(out / "last.pt"), "--json", str(report), "--device", "cpu", "--max-frames", "40"
    )
    assert ev.returncode == 0, ev.stderr
    assert "macro P/R/F1" in ev.stdout and "confusion" in ev.stdout
    doc = json.loads(report.read_text())
    m = doc["metrics"]
    assert doc["set"] == "test" and doc["iteration"] == 3 and doc["kind"] == "sconet"
    for key in (
        "accuracy",
        "precision",
        "recall",
        "f1",
        "sensitivity",
        "specificity",
        "per_class",
        "confusion",
    ):
        assert key in m
    assert set(m["per_class"]) == {"negative", "neutral", "positive"}
    assert m["num_samples"] == len(doc["predictions"]) == sum(map(sum, m["confusion"]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last_eval = [r for r in rows if r["kind"] == "eval"][-1]
    assert last_eval["test_f1"] == pytest.approx(m["f1"]) and last_eval["test_accuracy"] == pytest.approx(
        m["accuracy"]
    )
    # JSON on stdout
    ev2 = sconet_cli("eval", str(out / "last.pt"), "--json", "-", "--device", "cpu", "--max-frames", "40")
    assert ev2.returncode == 0 and json.loads(ev2.stdout)["metrics"]["f1"] == pytest.approx(m["f1"])


def test_resume_and_existing_run(cli_run, sconet_cli, small_cache, small_split):
    out, _ = cli_run
    again = sconet_cli(
        "train", *TINY, "--cache", str(small_cache.path), "--split", str(small_split), "--out", str(out)
    )
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--resume" in again.stderr
    more = sconet_cli("train", "--out", str(out), "--resume", "--iters", "4", "--no-progress", timeout=300)
    assert more.returncode == 0, more.stderr
    assert "iterations 3..4" in more.stdout
    fresh = sconet_cli(
        "train",
        *TINY,
        "--cache",
        str(small_cache.path),
        "--split",
        str(small_split),
        "--out",
        str(out),
        "--overwrite",
        "--iters",
        "1",
        "--set",
        "run.eval_iter=1",
        timeout=300,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert "iterations 0..1" in fresh.stdout and "removed the previous run" in fresh.stderr
    assert not list(out.glob("iter-0000003-*")) and list(out.glob("iter-0000001-*"))


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_cli_errors(sconet_cli, tmp_path, small_cache):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert str(bad) in _one_line_error(sconet_cli("eval", str(bad)))
    assert "no such checkpoint" in _one_line_error(sconet_cli("eval", str(tmp_path / "nope.pt")))
    line = _one_line_error(
        sconet_cli("train", "--recipe", "demo-cpu", "--set", "optim.bogus=1", "--out", str(tmp_path / "r"))
    )
    assert "optim.bogus" in line
    assert "unknown recipe" in _one_line_error(
        sconet_cli("train", "--recipe", "nope", "--out", str(tmp_path / "r"))
    )
    line = _one_line_error(
        sconet_cli(
            "train", "--recipe", "demo-cpu", "--cache", str(small_cache.path), "--out", str(tmp_path / "r2")
        )
    )
    assert "--split" in line  # a non-synthetic cache needs a split


def test_print_config(sconet_cli):
    proc = sconet_cli(
        "train", "--recipe", "demo-cpu", "--set", "optim.lr=0.01", "--iters", "7", "--print-config"
    )
    assert proc.returncode == 0, proc.stderr
    import tomllib

    doc = tomllib.loads(proc.stdout)
    assert doc["optim"]["lr"] == 0.01 and doc["run"]["iters"] == 7 and doc["model"]["width"] == 0.0625
