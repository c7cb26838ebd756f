"""`sconet promote`: accepted, and refused for each rule (a, b, c), a tampered checkpoint caught."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from _helpers import tiny_config
from sconet.experiments import (
    CHANGELOG,
    INDEX,
    Ledger,
    PromotionError,
    current_promoted,
    file_sha256,
    promote,
)
from sconet.training import train

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def run(small_cache, small_split, tmp_path_factory):
    """A tiny recorded run: evaluations at 2 and 4, last.pt saved at 3 (with iteration 2's metrics) and 4."""
    root = tmp_path_factory.mktemp("promote")
    db = root / "ledger.sqlite"
    cfg = tiny_config(
        small_cache.path,
        small_split,
        root / "run",
        ("data", "eval_max_frames", 20),
        ("run", "iters", 4),
        ("run", "save_iter", 3),
        ("run", "keep_n", 2),
        ("run", "ledger", str(db)),
    )
    result = train(cfg, log=lambda _m: None)
    return db, result, root


def _kept(run, iteration: int) -> Path:
    db, result, _ = run
    (path,) = sorted(result.out.glob(f"iter-{iteration:07d}-test_f1-*.pt"))
    return path


def _go(run, path, artifact, **kw):
    db = run[0]
    return promote(path, ledger=db, artifact_dir=artifact, device="cpu", **kw)


def _rule(result, name):
    return next(r for r in result.rules if r.name == name)


def test_promotion_accepted_then_not_again(run, tmp_path):
    art = tmp_path / "artifact"
    ckpt = _kept(run, 4)
    res = _go(run, ckpt, art)
    assert res.promoted and not res.failed, res.format()
    assert [r.passed for r in res.rules] == [True, True, True]
    assert "first promotion" in _rule(res, "a").detail
    assert res.artifact.is_file() and file_sha256(res.artifact) == res.sha256 == file_sha256(ckpt)
    record = json.loads(res.record.read_text())
    assert record["sha256"] == res.sha256 and record["source"]["iteration"] == 4
    assert (
        record["source"]["run_id"] == Ledger(run[0]).runs()[0].id and record["source"]["recipe"] == "demo-cpu"
    )
    assert record["metrics"]["f1"] == pytest.approx(record["in_run_metrics"]["test_f1"], abs=1e-3)
    assert {r["name"] for r in record["rules"]} == {"a", "b", "c"}
    assert current_promoted(res.split_key, art)["sha256"] == res.sha256
    log = (art / CHANGELOG).read_text().splitlines()
    assert sum(line.startswith("- ") for line in log) == 1 and res.artifact.name in log[-1]
    # the same file again: rule (a) refuses it; nothing new in the changelog
    again = _go(run, ckpt, art)
    assert not again.promoted and [r.name for r in again.failed] == ["a"]
    assert "already the promoted one" in _rule(again, "a").detail
    assert sum(line.startswith("- ") for line in (art / CHANGELOG).read_text().splitlines()) == 1
    decisions = Ledger(run[0]).promotions()
    assert [d["accepted"] for d in decisions][-2:] == [True, False]
    assert [e.purpose for e in Ledger(run[0]).evaluations()].count("promote") >= 2


def _seed_promoted(art: Path, key: str, f1: float) -> None:
    art.mkdir(parents=True, exist_ok=True)
    record = {
        "sha256": "0" * 64,
        "artifact": str(art / "older.pt"),
        "metrics": {"f1": f1},
        "source": {"run_id": 99},
        "promoted_at": "2020-01-01T00:00:00Z",
    }
    (art / INDEX).write_text(json.dumps({"format": "sconet-promoted", "current": {key: record}}))


def test_rule_a_beats_the_promoted(run, tmp_path):
    ckpt = _kept(run, 4)
    probe = _go(run, ckpt, tmp_path / "probe", dry_run=True)
    assert not probe.promoted and not probe.failed and "dry run" in " ".join(probe.notes)
    assert not (tmp_path / "probe" / CHANGELOG).exists()
    f1 = probe.metrics["f1"]
    # a better promoted checkpoint: refused, with both numbers
    high = tmp_path / "high"
    _seed_promoted(high, probe.split_key, f1 + 0.01)
    res = _go(run, ckpt, high)
    assert not res.promoted and [r.name for r in res.failed] == ["a"]
    assert (
        f"{100 * f1:.2f}" in _rule(res, "a").detail and f"{100 * (f1 + 0.01):.2f}" in _rule(res, "a").detail
    )
    # an equal F1 does not beat it either; a lower one does
    equal = tmp_path / "equal"
    _seed_promoted(equal, probe.split_key, f1)
    assert [r.name for r in _go(run, ckpt, equal).failed] == ["a"]
    low = tmp_path / "low"
    _seed_promoted(low, probe.split_key, f1 - 0.01)
    better = _go(run, ckpt, low)
    assert better.promoted and better.previous["metrics"]["f1"] == pytest.approx(f1 - 0.01)
    assert "previous F1" in (low / CHANGELOG).read_text()


def test_rule_b_last_pt_with_older_metrics(run, small_cache, small_split, tmp_path):
    db, result, root = run
    # the finished run's last.pt (iteration 4) carries its own evaluation: fine for rule (b)
    ok = _go(run, result.last_checkpoint, tmp_path / "a", dry_run=True)
    assert _rule(ok, "b").passed, ok.format()
    # a run stopped at iteration 3 saved last.pt with the metrics of the evaluation at 2
    cfg = tiny_config(
        small_cache.path,
        small_split,
        tmp_path / "stopped",
        ("data", "eval_max_frames", 20),
        ("run", "iters", 4),
        ("run", "save_iter", 10),
        ("run", "keep_n", 0),
        ("run", "ledger", str(db)),
    )
    stopped = train(cfg, stop_at=3, log=lambda _m: None)
    res = _go(run, stopped.last_checkpoint, tmp_path / "b")
    assert not res.promoted and [r.name for r in res.failed] == ["b"]
    assert "measured at iteration 2, not at its own iteration 3" in _rule(res, "b").detail


def _ledger_claiming(run, tmp_path: Path, ckpt: Path, metric: str, delta: float) -> Path:
    """A copy of the run's ledger whose in-run records of ``ckpt`` have ``metric`` moved by ``delta``."""
    db = run[0]
    digest = file_sha256(ckpt)
    copy = tmp_path / "ledger.sqlite"
    shutil.copy(db, copy)
    for suffix in ("-wal", "-shm"):
        if Path(str(db) + suffix).exists():
            shutil.copy(str(db) + suffix, str(copy) + suffix)
    con = sqlite3.connect(copy)
    rows = con.execute("SELECT id, metrics FROM checkpoints WHERE sha256 = ?", (digest,)).fetchall()
    assert rows
    for cid, text in rows:
        m = json.loads(text)
        m[metric] = m[metric] + delta
        con.execute("UPDATE checkpoints SET metrics = ? WHERE id = ?", (json.dumps(m), cid))
    con.commit()
    con.close()
    return copy


def test_rule_b_metrics_mismatch(run, tmp_path):
    ckpt = _kept(run, 2)
    # the in-run record claims a much better F1 than the file has
    copy = _ledger_claiming(run, tmp_path, ckpt, "test_f1", 0.25)
    res = promote(ckpt, ledger=copy, artifact_dir=tmp_path / "art", device="cpu")
    assert not res.promoted and "b" in [r.name for r in res.failed]
    detail = _rule(res, "b").detail
    assert "f1" in detail and "above 0.001" in detail and "0.25" in detail.replace("0.2500", "0.25")
    assert not (tmp_path / "art" / CHANGELOG).exists()


def test_rule_b_compares_accuracy_too_to_a_thousandth(run, tmp_path):
    """Accuracy alone off by 0.005 (five times the default tolerance) fails rule (b)."""
    ckpt = _kept(run, 2)
    copy = _ledger_claiming(run, tmp_path, ckpt, "test_accuracy", 0.005)
    res = promote(ckpt, ledger=copy, artifact_dir=tmp_path / "art", device="cpu")
    assert not res.promoted and [r.name for r in res.failed] == ["b"]
    assert "above 0.001: accuracy 0.0050" in _rule(res, "b").detail
    # within the tolerance it passes (and the file is promoted: rules a and c hold)
    ok = promote(ckpt, ledger=copy, artifact_dir=tmp_path / "art2", device="cpu", tolerance=0.01)
    assert ok.promoted and _rule(ok, "b").passed


def test_rule_b_never_saved_by_a_recorded_run(run, tmp_path):
    ckpt = _kept(run, 4)
    raw = torch.load(ckpt, weights_only=True)
    raw["iteration"] = 12345  # a checkpoint no run wrote
    other = tmp_path / "other.pt"
    torch.save(raw, other)
    res = _go(run, other, tmp_path / "art")
    assert not res.promoted and [r.name for r in res.failed] == ["b"]
    assert "never saved by a recorded run" in _rule(res, "b").detail
    assert res.metrics is None  # nothing to confirm: not even evaluated


def test_rule_c_tampered_checkpoint(run, tmp_path):
    db, result, _ = run
    ckpt = _kept(run, 4)
    victim = tmp_path / "saved.pt"
    shutil.copy(ckpt, victim)
    run_id = Ledger(db).runs()[0].id
    Ledger(db).add_checkpoint(
        run_id,
        victim,
        4,
        role="best",
        metric="test_f1",
        metrics=Ledger(db).checkpoints(sha256=file_sha256(ckpt))[0].metrics,
        metrics_iteration=4,
    )
    assert _go(run, victim, tmp_path / "a0", dry_run=True).failed == []  # as saved: fine
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed: the hash changes
    victim.write_bytes(bytes(data))
    res = _go(run, victim, tmp_path / "a1")
    assert not res.promoted and [r.name for r in res.failed] == ["c"]
    assert "changed after it was saved" in _rule(res, "c").detail
    assert res.metrics is None and not (tmp_path / "a1" / INDEX).exists()


def test_cli_promote(run, sconet_cli, tmp_path):
    db, result, _ = run
    ckpt = _kept(run, 4)
    art = tmp_path / "artifact"
    ok = sconet_cli("promote", str(ckpt), "--ledger", str(db), "--artifact-dir", str(art), "--device", "cpu")
    assert ok.returncode == 0, ok.stderr
    assert "rule (a) beats the promoted: pass" in ok.stdout and "promoted:" in ok.stdout
    again = sconet_cli(
        "promote", str(ckpt), "--ledger", str(db), "--artifact-dir", str(art), "--device", "cpu", "--json"
    )
    assert again.returncode == 1, again.stderr
    doc = json.loads(again.stdout)
    assert doc["promoted"] is False and [r["name"] for r in doc["rules"] if r["passed"] is False] == ["a"]
    missing = sconet_cli("promote", str(tmp_path / "nope.pt"), "--ledger", str(db))
    assert (
        missing.returncode == 2
        and missing.stderr.startswith("error: ")
        and "no such checkpoint" in missing.stderr
    )
    noledger = sconet_cli("promote", str(ckpt), "--ledger", str(tmp_path / "none.sqlite"))
    assert noledger.returncode == 2 and "no ledger here yet" in noledger.stderr


def test_promote_errors(run, tmp_path):
    with pytest.raises(PromotionError, match="disabled"):
        promote(_kept(run, 4), ledger="none", artifact_dir=tmp_path)
