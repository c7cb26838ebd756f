"""The training loop: reproducibility, resume, keep-best, metrics by hand, recipes, schedules, init-from."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import tiny_config as _tiny
from sconet.checkpoint import read_checkpoint
from sconet.classes import CLASSES
from sconet.evaluation import evaluate_checkpoint, load_model
from sconet.training import (
    ConfigError,
    TrainConfig,
    TrainError,
    apply_overrides,
    carve_validation,
    config_from_dict,
    list_recipes,
    load_recipe,
    lr_factor,
    to_toml,
    train,
)

torch.set_num_threads(2)


def tiny_config(cache: Path, split: Path, out: Path, *extra):
    """6 iterations, evaluated every 2, saved every 3, the best 1 kept per metric."""
    return _tiny(
        cache, split, out, ("run", "iters", 6), ("run", "save_iter", 3), ("run", "keep_n", 1), *extra
    )


def _quiet(_msg: str) -> None:
    pass


# -- recipes -------------------------------------------------------------------------------------


def test_recipes_load():
    assert {"sgd", "adamw-multistep", "adamw-cosine", "demo-cpu"} <= set(list_recipes())
    sgd = load_recipe("sgd")
    assert (sgd.optim.name, sgd.optim.lr, sgd.optim.momentum, sgd.optim.weight_decay) == (
        "sgd",
        0.1,
        0.9,
        5e-4,
    )
    assert (sgd.schedule.name, sgd.schedule.milestones, sgd.run.iters, sgd.run.amp) == (
        "multistep",
        [10000, 14000, 18000],
        20000,
        True,
    )
    cos = load_recipe("adamw-cosine")
    assert (cos.optim.name, cos.schedule.name) == ("adamw", "cosine") and cos.run.iters >= 20000
    demo = load_recipe("demo-cpu")
    assert demo.model.width == 0.0625 and (demo.data.p, demo.data.k) == (8, 2)
    assert demo.run.iters == 300 and demo.run.eval_iter == 150 and demo.data.eval_max_frames == 90
    assert demo.optim.name == "adamw" and demo.schedule.name == "cosine"  # inherits adamw-cosine


def test_overrides_apply_and_unknown_keys_error(tmp_path):
    c = apply_overrides(
        load_recipe("sgd"),
        [
            "optim.lr=0.05",
            "model.width=0.25",
            "schedule.milestones=[5, 9]",
            "data.representation=full-body",
            "run.amp=false",
            "loss.class_weights=inverse",
        ],
    )
    assert (
        c.optim.lr,
        c.model.width,
        c.schedule.milestones,
        c.data.representation,
        c.run.amp,
        c.loss.class_weights,
    ) == (0.05, 0.25, [5, 9], "full-body", False, "inverse")
    for bad, pattern in [
        ("optim.lrr=1", "unknown key optim.lrr"),
        ("nosuch.key=1", "unknown section 'nosuch'"),
        ("run.iters=many", "expected an integer"),
        ("run.amp=3", "expected true or false"),
        ("model.width=0", "width"),
        ("optim=1", "section.key=value"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            apply_overrides(c, [bad])
    # a recipe file with an unknown key, and round trip through TOML
    f = tmp_path / "mine.toml"
    f.write_text('base = "demo-cpu"\n[optim]\nlr = 0.01\n[run]\nitres = 5\n')
    with pytest.raises(ConfigError, match=r"mine.toml.*run.itres"):
        load_recipe(f)
    f.write_text('base = "demo-cpu"\n[optim]\nlr = 0.01\n')
    mine = load_recipe(f)
    assert mine.optim.lr == 0.01 and mine.model.width == 0.0625 and mine.name == "mine"
    import tomllib

    assert config_from_dict(tomllib.loads(to_toml(c))).to_dict() == c.to_dict()
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe("no-such-recipe")


def test_lr_schedules():
    c = apply_overrides(
        TrainConfig(),
        [
            "run.iters=100",
            "schedule.name=cosine",
            "schedule.warmup_iters=10",
            "schedule.warmup_start=0.0",
            "schedule.min_lr_ratio=0.0",
        ],
    )
    assert lr_factor(0, c) == 0.0 and lr_factor(5, c) == pytest.approx(0.5)
    assert lr_factor(10, c) == pytest.approx(1.0) and lr_factor(55, c) == pytest.approx(0.5)
    assert lr_factor(100, c) == pytest.approx(0.0, abs=1e-12)
    m = apply_overrides(
        TrainConfig(), ["schedule.name=multistep", "schedule.milestones=[10, 20]", "schedule.gamma=0.1"]
    )
    assert [lr_factor(s, m) for s in (0, 9, 10, 19, 20, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_carve_validation_is_stratified():
    labels = np.array([0] * 40 + [1] * 10 + [2] * 20)
    train_idx = np.arange(70)
    tr, va = carve_validation(train_idx, labels, 0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 70
    assert np.bincount(labels[va], minlength=3).tolist() == [8, 2, 4]
    tr2, va2 = carve_validation(train_idx, labels, 0.2, seed=0)
    assert np.array_equal(va, va2)


# -- training runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def straight(small_cache, small_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    return train(tiny_config(small_cache.path, small_split, out), progress=False, log=_quiet)


def test_run_folder_and_reproducibility(straight, small_cache, small_split, tmp_path):
    out = straight.out
    assert len(straight.losses) == 6 and all(math.isfinite(v) for v in straight.losses)
    for name in ("config.toml", "split.json", "metrics.jsonl", "last.pt", "best.json"):
        assert (out / name).exists(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if r["kind"] == "eval"] == [2, 4, 6]
    assert [r["iter"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    # keep_n=1 per metric: one file per metric name, named after its iteration and value
    for metric in ("test_f1", "test_accuracy"):
        kept = list(out.glob(f"iter-*-{metric}-*.pt"))
        assert len(kept) == 1
        m = re.match(rf"iter-(\d{{7}})-{metric}-(\d\.\d{{4}})\.pt", kept[0].name)
        best = max(r[metric] for r in rows if r["kind"] == "eval")
        assert m and float(m.group(2)) == pytest.approx(best, abs=5e-5)
    # same seed -> same losses
    again = train(
        tiny_config(small_cache.path, small_split, tmp_path / "again", ("run", "iters", 3)),
        progress=False,
        log=_quiet,
    )
    assert again.losses == straight.losses[:3]
    # an existing run folder is not overwritten
    with pytest.raises(TrainError, match="--resume"):
        train(tiny_config(small_cache.path, small_split, out), progress=False, log=_quiet)


def test_resume_continues_identically(straight, small_cache, small_split, tmp_path):
    cfg = tiny_config(small_cache.path, small_split, tmp_path / "split_run")
    first = train(cfg, progress=False, log=_quiet, stop_at=3)
    assert first.iterations == 3 and len(first.losses) == 3
    second = train(cfg, resume=True, progress=False, log=_quiet)
    assert second.start_iteration == 3
    assert first.losses + second.losses == straight.losses
    a = read_checkpoint(straight.out / "last.pt").state_dict
    b = read_checkpoint(tmp_path / "split_run" / "last.pt").state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "split_run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_eval_metrics_match_hand_computation(straight, small_store):
    ckpt_path = next(straight.out.glob("iter-*-test_f1-*.pt"))
    result = evaluate_checkpoint(ckpt_path, device="cpu", max_frames=40)
    ck = read_checkpoint(ckpt_path)
    model = load_model(ck).eval()
    test_ids = ck.split["test_ids"]
    y_true, y_pred = [], []
    with torch.no_grad():
        for i in small_store.indices_of(test_ids):  # one whole sequence at a time
            seq = small_store.sequence(int(i))[:40, :, :, 10:54]
            x = torch.from_numpy(seq.astype(np.float32) / 255.0)
            logits = model(x, [len(seq)]).logits
            y_pred.append(int(logits.mean(-1).argmax(-1)))
            y_true.append(int(small_store.labels[i]))
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    assert np.array_equal(result.predictions.pred, y_pred)
    assert result.metrics.accuracy == pytest.approx(float((y_true == y_pred).mean()))
    present = sorted(set(y_true) | set(y_pred))
    f1s, ps, rs = [], [], []
    for c in present:
        tp = int(((y_pred == c) & (y_true == c)).sum())
        fp = int(((y_pred == c) & (y_true != c)).sum())
        fn = int(((y_pred != c) & (y_true == c)).sum())
        ps.append(tp / (tp + fp) if tp + fp else 0.0)
        rs.append(tp / (tp + fn) if tp + fn else 0.0)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    assert result.metrics.precision == pytest.approx(np.mean(ps))
    assert result.metrics.recall == pytest.approx(np.mean(rs))
    assert result.metrics.f1 == pytest.approx(np.mean(f1s))
    # the in-run evaluation of that iteration agrees with the standalone one
    rows = [json.loads(line) for line in (straight.out / "metrics.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["kind"] == "eval" and r["iter"] == ck.iteration)
    assert row["test_f1"] == pytest.approx(result.metrics.f1)
    assert row["test_accuracy"] == pytest.approx(result.metrics.accuracy)
    assert np.array_equal(np.array(row["test_confusion"]), result.metrics.confusion_matrix)
    assert result.metrics.class_names == CLASSES


def test_validation_set_and_init_from(straight, small_cache, small_split, tmp_path):
    cfg = tiny_config(
        small_cache.path,
        small_split,
        tmp_path / "ft",
        ("data", "val_fraction", 0.25),
        ("run", "iters", 2),
        ("run", "init_from", str(straight.out / "last.pt")),
        ("optim", "lr", 1e-12),
        ("schedule", "warmup_iters", 0),
    )
    messages: list[str] = []
    res = train(cfg, progress=False, log=messages.append)
    assert any("initialised the weights from" in m for m in messages)
    assert {"val_f1", "val_accuracy", "test_f1"} <= set(res.final_metrics)
    assert list(res.out.glob("iter-*-val_f1-*.pt"))
    ck = read_checkpoint(res.out / "last.pt")
    val, tr = set(ck.split["val_ids"]), set(ck.split["train_ids"])
    assert val and not val & tr and not val & set(ck.split["test_ids"])
    split_doc = json.loads((res.out / "split.json").read_text())
    assert sorted(split_doc["VAL_SET"]) == sorted(val)
    # lr ~ 0: the convolution weights are still the warm-start ones (BN running stats move)
    init = read_checkpoint(straight.out / "last.pt").state_dict
    key = "Backbone.forward_block.conv1.conv.weight"
    assert torch.allclose(ck.state_dict[key], init[key], atol=1e-9)
    # optimizer state is not carried over by init_from (fresh AdamW: step count = this run's)
    steps = [s["step"] for s in ck.raw["optimizer"]["state"].values()]
    assert all(float(s) == 2 for s in steps)
    assert evaluate_checkpoint(res.out / "last.pt", subset="val", device="cpu").metrics.num_samples == len(
        val
    )
