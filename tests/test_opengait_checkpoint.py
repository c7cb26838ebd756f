"""OpenGait checkpoints in `sconet eval`, `sconet predict` and `sconet train --init-from`.

The checkpoint is written as OpenGait's ``save_ckpt`` writes it (``model`` with OpenGait's key
names, SGD ``optimizer``, MultiStepLR ``scheduler``, ``iteration``). It records no render
settings: they must be stated (preset or render flags), are recorded, and pick or check the
cache; without them every command stops and says what to state.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sconet.cache import CacheConfig, build_cache, open_cache
from sconet.checkpoint import read_checkpoint
from sconet.classes import CLASSES
from sconet.data import load_split
from sconet.data.synth import SynthConfig, generate_sequence
from sconet.evaluation import RenderMismatchError, evaluate_checkpoint
from sconet.experiments import open_ledger
from sconet.models import ModelConfig, ScoNetMT
from sconet.predict import Screener
from sconet.render import render_sequence
from sconet.render.spec import RenderSpec
from sconet.stream import width_cut

WIDTH = 0.0625
# how the test checkpoint's maps were "made": OpenGait's square / per-channel geometry on the full body
FLAGS = (
    "--representation",
    "full-body",
    "--sigma-limb",
    "8",
    "--sigma-joint",
    "8",
    "--alignment",
    "per-channel",
)
STATED = RenderSpec(
    settings={
        "representation": "full-body",
        "sigma_limb": 8.0,
        "sigma_joint": 8.0,
        "alignment": "per-channel",
    }
)


@pytest.fixture(scope="module")
def og_model() -> ScoNetMT:
    """A ScoNet-MT-ske whose BatchNorm statistics are not the initial ones (a 'trained' model)."""
    model = ScoNetMT(ModelConfig(width=WIDTH), seed=3)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4 * 6, 2, 64, 44), [6] * 4)
    return model.eval()


@pytest.fixture(scope="module")
def og_ckpt(og_model, tmp_path_factory) -> Path:
    """The file OpenGait's BaseModel.save_ckpt writes at iteration 20000 of the SGD recipe."""
    opt = torch.optim.SGD(og_model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[10000, 14000, 18000], gamma=0.1)
    og_model.train()
    out = og_model(torch.rand(2 * 5, 2, 64, 44), [5, 5])
    out.logits.sum().backward()
    opt.step()
    sched.step()
    og_model.eval()
    path = tmp_path_factory.mktemp("opengait") / "ScoNet-20000.pt"
    checkpoint = {
        "model": og_model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "iteration": 20000,
    }
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def og_store(small_dataset):
    """The small dataset rendered with the stated settings."""
    return open_cache(build_cache(CacheConfig(poses=small_dataset, render=STATED.resolve())).path)


def _direct_logits(model: ScoNetMT, maps: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(width_cut(maps[:720], 10))).float().div_(255.0)
    with torch.inference_mode():
        return model(x, [x.shape[0]]).logits.float().mean(-1)[0].numpy()


def test_the_file_is_opengaits(og_ckpt):
    raw = torch.load(og_ckpt, weights_only=True)
    assert set(raw) == {"model", "optimizer", "scheduler", "iteration"}
    assert "Backbone.forward_block.conv1.conv.weight" in raw["model"] and "BNNecks.fc_bin" in raw["model"]
    ck = read_checkpoint(og_ckpt)
    assert ck.kind == "opengait" and ck.iteration == 20000 and ck.render is None


def test_eval_with_stated_settings_equals_the_weights_run_directly(og_model, og_ckpt, og_store, small_split):
    test_ids = [str(i) for i in load_split(small_split).test_ids]
    result = evaluate_checkpoint(og_ckpt, split=small_split, render=STATED, device="cpu", batch_size=1)
    assert result.cache == og_store.path  # found by the stated settings
    assert result.maps.render == STATED.resolve().to_dict()
    assert (
        result.maps.source
        == "stated: settings representation=full-body, sigma_limb=8, sigma_joint=8, alignment=per-channel"
    )
    assert sorted(result.predictions.ids) == sorted(i for i in og_store.ids if i in test_ids)
    for sid, logits in zip(result.predictions.ids, result.predictions.logits, strict=True):
        direct = _direct_logits(og_model, og_store.sequence(sid))
        np.testing.assert_array_equal(logits, direct)


def test_cli_eval_records_the_statement(og_model, og_ckpt, og_store, small_split, sconet_cli, cache_root_dir):
    done = sconet_cli("eval", og_ckpt, *FLAGS, "--split", small_split, "--device", "cpu", "--json", "-")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["kind"] == "opengait" and doc["cache"] == str(og_store.path)
    assert doc["render"]["settings"] == STATED.resolve().to_dict()
    assert doc["render"]["stated"]["settings"] == STATED.settings
    for entry in doc["predictions"]:
        direct = _direct_logits(og_model, og_store.sequence(entry["id"]))
        np.testing.assert_allclose(entry["logits"], direct, atol=1e-6)  # the JSON rounds to 6 decimals
    records = open_ledger(cache_root_dir / "ledger.sqlite").evaluations()
    mine = [e for e in records if e.path == str(og_ckpt.resolve())]
    assert mine and mine[-1].render["source"].startswith("stated: settings representation=full-body")
    assert mine[-1].render["settings"] == STATED.resolve().to_dict()


def test_unstated_settings_are_refused_not_guessed(og_ckpt, og_store, small_cache, small_split, sconet_cli):
    for extra in ((), ("--cache", og_store.path)):
        done = sconet_cli("eval", og_ckpt, "--split", small_split, "--device", "cpu", *extra)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "records no render settings" in done.stderr and "--preset" in done.stderr
    # stated settings that are not the cache's maps: refused, both named
    with pytest.raises(RenderMismatchError, match="stated") as info:
        evaluate_checkpoint(og_ckpt, cache=small_cache.path, split=small_split, render=STATED, device="cpu")
    assert "full-body" in str(info.value) and "body-only" in str(info.value)


def test_predict_on_an_opengait_checkpoint(og_model, og_ckpt, tmp_path, sconet_cli):
    pose = generate_sequence(3, "positive", SynthConfig(n_sequences=30, frames=120, seed=9))
    path = tmp_path / "subject.pkl"
    path.write_bytes(pickle.dumps(pose))
    done = sconet_cli("predict", path, "--ckpt", og_ckpt, *FLAGS, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    direct = _direct_logits(og_model, render_sequence(pose, STATED.resolve()))
    np.testing.assert_allclose(doc["logits"], direct, atol=1e-5)
    probs = F.softmax(16 * torch.from_numpy(direct), -1).numpy()  # OpenGait's ScoNet scale
    np.testing.assert_allclose([doc["probabilities"][c] for c in CLASSES], probs, atol=1e-4)
    assert "stated: settings representation=full-body" in doc["render"]
    refused = sconet_cli("predict", path, "--ckpt", og_ckpt)
    assert refused.returncode == 2 and "records no render settings" in refused.stderr
    # the 2024 class order of the file is honoured
    screener = Screener(og_ckpt, render=STATED, class_order="2024")
    perm = [0, 2, 1]  # the file's (negative, positive, neutral) columns in sconet's order
    np.testing.assert_allclose(screener.screen(path).logits, direct[perm], atol=1e-5)


def test_a_statement_must_agree_with_a_sconet_checkpoint(og_store, small_split, tmp_path):
    from _helpers import tiny_config
    from sconet.checkpoint import CheckpointError
    from sconet.training import train

    run = train(
        tiny_config(og_store.path, small_split, tmp_path / "run", ("run", "ledger", "none")),
        progress=False,
        log=lambda _m: None,
    )
    ok = evaluate_checkpoint(run.last_checkpoint, render=STATED, device="cpu", max_frames=40)
    assert ok.maps.source == "checkpoint"
    with pytest.raises(CheckpointError, match="records its own render settings"):
        evaluate_checkpoint(
            run.last_checkpoint, render=RenderSpec(settings={"sigma_limb": 3.0}), device="cpu"
        )


def test_train_init_from_an_opengait_checkpoint(og_ckpt, small_dataset, small_split, tmp_path, sconet_cli):
    common = (
        "train", "--recipe", "drf-warmstart", "--init-from", og_ckpt, "--poses", small_dataset,
        "--split", small_split, "--iters", "1", "--device", "cpu", "--no-progress",
        "--set", f"model.width={WIDTH}", "--set", "data.p=4", "--set", "data.k=2", "--set", "data.frames=8",
        "--set", "run.eval_iter=1000", "--set", "run.freeze_iters=0", "--set", "run.eval_test=false",
    )  # fmt: skip
    refused = sconet_cli(*common, "--out", tmp_path / "no")
    assert refused.returncode == 2 and "records no render settings" in refused.stderr
    assert "--preset" in refused.stderr and "data.render" in refused.stderr
    stated = [
        "--representation", "full-body", "--set", "data.render.sigma_limb=8",
        "--set", "data.render.sigma_joint=8", "--set", "data.render.alignment=per-channel",
    ]  # fmt: skip
    done = sconet_cli(*common, *stated, "--out", tmp_path / "drf")
    assert done.returncode == 0, done.stderr
    assert (
        "OpenGait checkpoint" in done.stderr
        and "its maps taken to be [full-body, sigma limb 8.0" in done.stderr
    )
    ck = read_checkpoint(tmp_path / "drf" / "last.pt")
    assert ck.render == STATED.resolve().to_dict()  # trained on maps with the stated settings
    assert ck.recipe["data"]["render"] == {"sigma_limb": 8.0, "sigma_joint": 8.0, "alignment": "per-channel"}
    assert ck.recipe["run"]["init_from"] == str(og_ckpt)
    # the weights came from the OpenGait file (one small AdamW step since), not a fresh initialisation
    before, after = read_checkpoint(og_ckpt).state_dict, ck.state_dict
    fresh = ScoNetMT(ModelConfig(width=WIDTH, arch="drf"), seed=0).state_dict()
    for key in ("Backbone.forward_block.conv1.conv.weight", "FCs.fc_bin", "BNNecks.fc_bin"):
        assert (
            float((after[key] - before[key]).abs().max())
            < 1e-3
            < float((fresh[key] - before[key]).abs().max())
        )
