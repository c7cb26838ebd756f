"""Checkpoints: round trip, refused files (truncated, hostile, foreign, render mismatch, renamed keys),
foreign OpenGait files, keep-the-best bookkeeping, RNG states."""

from __future__ import annotations

import os
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import tiny_config
from sconet.checkpoint import (
    CheckpointError,
    CheckpointKeeper,
    load_checkpoint,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from sconet.classes import CLASSES, class_permutation
from sconet.evaluation import RenderMismatchError, evaluate_checkpoint, load_model
from sconet.render.spec import RenderSpec

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def trained(small_cache, small_split, tmp_path_factory):
    from sconet.training import train

    out = tmp_path_factory.mktemp("ckpt_run") / "run"
    return train(tiny_config(small_cache.path, small_split, out), progress=False, log=lambda m: None)


def test_round_trip(trained, small_store):
    raw = torch.load(trained.last_checkpoint, weights_only=True)  # plain tensors and containers only
    ck = read_checkpoint(trained.last_checkpoint)
    assert ck.kind == "sconet" and ck.iteration == 2
    assert ck.class_order == CLASSES
    for key in (
        "model",
        "model_config",
        "optimizer",
        "scheduler",
        "recipe",
        "cache",
        "split",
        "sconet_version",
        "rng",
    ):
        assert key in raw, key
    assert raw["cache"]["fingerprint"] == small_store.fingerprint
    assert raw["cache"]["render"] == small_store.attrs["render"]
    assert raw["cache"]["renderer_version"] == small_store.attrs["renderer_version"]
    assert raw["recipe"]["model"]["width"] == 0.0625
    assert set(raw["split"]["test_ids"]) and not set(raw["split"]["test_ids"]) & set(
        raw["split"]["train_ids"]
    )
    assert all(k.startswith(("Backbone.forward_block.", "FCs.", "BNNecks.")) for k in raw["model"])
    model = load_model(ck)
    for k, v in model.state_dict().items():
        assert torch.equal(v, raw["model"][k])
    assert not list(trained.out.glob(".*.tmp")), "no temporary file left behind"


def test_truncated_file_refused(trained, tmp_path):
    data = trained.last_checkpoint.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(str(bad))):
        read_checkpoint(bad)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt"):
        read_checkpoint(empty)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="garbage.pt"):
        read_checkpoint(garbage)
    with pytest.raises(CheckpointError, match="no such"):
        read_checkpoint(tmp_path / "missing.pt")


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "hostile.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Evil(marker)}, zipped)
    legacy = tmp_path / "hostile_legacy.pt"
    with open(legacy, "wb") as f:
        pickle.dump({"model": _Evil(marker)}, f, protocol=2)
    for path in (zipped, legacy):
        with pytest.raises(
            CheckpointError, match=r"refused: .*system.*nothing from the file was executed"
        ) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
        assert not marker.exists(), "no code may run while loading"


def test_foreign_files(tmp_path, trained):
    other = tmp_path / "other.pt"
    torch.save({"weights": [1, 2, 3], "note": "hello"}, other)
    with pytest.raises(CheckpointError, match="not a sconet or OpenGait checkpoint"):
        read_checkpoint(other)
    lst = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_checkpoint(lst)
    raw = torch.load(trained.last_checkpoint, weights_only=True)
    raw["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(raw, newer)
    with pytest.raises(CheckpointError, match="format version 99"):
        read_checkpoint(newer)


def _edited(trained, tmp_path: Path, name: str, edit) -> Path:
    raw = torch.load(trained.last_checkpoint, weights_only=True)
    edit(raw)
    path = tmp_path / name
    save_checkpoint(raw, path)
    return path


def test_render_mismatch_refused(trained, tmp_path, small_cache):
    def sigma(raw):
        raw["cache"]["render"]["sigma_limb"] = 12.0

    path = _edited(trained, tmp_path, "sigma.pt", sigma)
    with pytest.raises(RenderMismatchError) as info:
        evaluate_checkpoint(path, cache=small_cache.path, device="cpu")
    msg = str(info.value)
    assert str(path) in msg and str(small_cache.path) in msg
    assert "sigma limb 12.0" in msg and "sigma limb 15.0" in msg

    def renderer(raw):
        raw["cache"]["renderer_version"] = "0.0.0-elsewhere"

    path = _edited(trained, tmp_path, "renderer.pt", renderer)
    with pytest.raises(RenderMismatchError, match="0.0.0-elsewhere"):
        evaluate_checkpoint(path, cache=small_cache.path, device="cpu")
    with pytest.raises((RenderMismatchError, CheckpointError), match="renderer 0.0.0-elsewhere"):
        evaluate_checkpoint(path, device="cpu")  # found by settings, refused by renderer version


def test_renamed_keys_refused(trained, tmp_path, small_cache):
    def rename(raw):
        raw["model"]["FCs.fc_bins"] = raw["model"].pop("FCs.fc_bin")

    path = _edited(trained, tmp_path, "renamed.pt", rename)
    with pytest.raises(CheckpointError) as info:
        evaluate_checkpoint(path, cache=small_cache.path, device="cpu")
    msg = str(info.value)
    assert str(path) in msg and "FCs.fc_bin" in msg and "FCs.fc_bins" in msg


def test_opengait_checkpoint_with_2024_order(trained, tmp_path, small_cache, small_split):
    raw = torch.load(trained.last_checkpoint, weights_only=True)
    perm = list(class_permutation("2025", "2024"))  # sconet order -> 2024 order
    sd = {f"module.{k}": v.clone() for k, v in raw["model"].items()}
    sd["module.BNNecks.fc_bin"] = sd["module.BNNecks.fc_bin"][..., perm].clone()
    foreign = tmp_path / "opengait.pt"
    torch.save({"model": sd, "optimizer": {}, "scheduler": {}, "iteration": 7}, foreign)
    ck = read_checkpoint(foreign)
    assert ck.kind == "opengait" and ck.iteration == 7
    model = load_model(ck, class_order="2024")
    for k, v in model.state_dict().items():
        assert torch.equal(v, raw["model"][k]), k
    # an OpenGait file records no render settings: never a silent guess, even with --cache
    for cache in (None, small_cache.path):
        with pytest.raises(CheckpointError, match="records no render settings; state how the maps"):
            evaluate_checkpoint(foreign, cache=cache, split=small_split, device="cpu")
    ours = evaluate_checkpoint(trained.last_checkpoint, device="cpu", max_frames=40)
    stated = RenderSpec(settings={"representation": "body-only"})  # = the small cache's settings
    theirs = evaluate_checkpoint(
        foreign,
        cache=small_cache.path,
        split=small_split,
        class_order="2024",
        device="cpu",
        max_frames=40,
        render=stated,
    )
    assert theirs.maps.source == "stated: settings representation=body-only"
    assert np.array_equal(ours.predictions.pred, theirs.predictions.pred)
    assert np.allclose(ours.predictions.logits, theirs.predictions.logits, atol=1e-6)


def test_keeper_keeps_top_k_per_metric(tmp_path):
    keeper = CheckpointKeeper(tmp_path, keep_n=2, metrics=("test_f1", "test_accuracy"))
    offers = [(1, 0.5, 0.6), (2, 0.7, 0.5), (3, 0.6, 0.9), (4, 0.4, 0.4), (5, 0.7, 0.7)]
    for it, f1, acc in offers:
        keeper.offer(it, {"test_f1": f1, "test_accuracy": acc}, {"it": torch.tensor(it)})
    assert [e.iteration for e in keeper.kept["test_f1"]] == [2, 5]  # tie: the earlier stays ahead
    assert [e.iteration for e in keeper.kept["test_accuracy"]] == [3, 5]
    names = sorted(p.name for p in tmp_path.glob("*.pt"))
    assert names == sorted(
        [
            "iter-0000002-test_f1-0.7000.pt",
            "iter-0000005-test_f1-0.7000.pt",
            "iter-0000003-test_accuracy-0.9000.pt",
            "iter-0000005-test_accuracy-0.7000.pt",
        ]
    )
    assert int(torch.load(tmp_path / "iter-0000003-test_accuracy-0.9000.pt", weights_only=True)["it"]) == 3
    again = CheckpointKeeper(tmp_path, keep_n=2, metrics=("test_f1", "test_accuracy"))
    assert again.summary() == keeper.summary()
    (tmp_path / "best.json").unlink()
    rebuilt = CheckpointKeeper(tmp_path, keep_n=2, metrics=("test_f1", "test_accuracy"))
    assert [e.iteration for e in rebuilt.kept["test_accuracy"]] == [3, 5]
    rebuilt.offer(6, {"test_f1": 0.1, "test_accuracy": 0.95}, {"it": torch.tensor(6)})
    assert not (tmp_path / "iter-0000005-test_accuracy-0.7000.pt").exists()
    assert (tmp_path / "iter-0000006-test_accuracy-0.9500.pt").exists()
    assert not list(tmp_path.glob("iter-0000006-test_f1-*"))


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = rng_state({"seed": 0, "next_step": 5})
    path = save_checkpoint({"rng": state}, tmp_path / "rng.pt")
    a = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(path)["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_standalone_evaluation_cuts_as_the_run_did(trained, tmp_path, small_cache):
    """evaluate_checkpoint takes the width cut from the file's recipe (data.cut, data.cut_pixels)
    unless told otherwise; a recipe with 6 pixels or with cut = false is evaluated that way."""

    def recipe(cut: bool, pixels: int):
        def edit(raw):
            raw["recipe"]["data"]["cut"] = cut
            raw["recipe"]["data"]["cut_pixels"] = pixels

        return edit

    def logits(path: Path, **kw) -> np.ndarray:
        res = evaluate_checkpoint(path, cache=small_cache.path, device="cpu", max_frames=40, **kw)
        return res.predictions.logits

    assert read_checkpoint(trained.last_checkpoint).recipe["data"]["cut_pixels"] == 10
    ten = logits(trained.last_checkpoint)
    six = logits(_edited(trained, tmp_path, "cut6.pt", recipe(True, 6)))
    off = logits(_edited(trained, tmp_path, "nocut.pt", recipe(False, 10)))
    np.testing.assert_array_equal(six, logits(trained.last_checkpoint, cut_pixels=6))
    np.testing.assert_array_equal(off, logits(trained.last_checkpoint, cut_pixels=0))
    assert not np.allclose(six, ten) and not np.allclose(off, ten) and not np.allclose(six, off)
