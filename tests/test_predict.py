"""`sconet predict`: one synthetic subject of each class, output structure, report, bad input."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from _helpers import tiny_config
from sconet.classes import CLASSES
from sconet.data import PoseError
from sconet.data.synth import SynthConfig, generate_sequence
from sconet.predict import LARGE_PERCENTILE, Screener, pav_reference, screen
from sconet.render import PAV_METRICS, PAV_PAIR_NAMES
from sconet.training import train

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def ckpt(small_cache, small_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "run"
    cfg = tiny_config(
        small_cache.path,
        small_split,
        out,
        ("data", "eval_max_frames", 300),
        ("run", "keep_n", 0),
        ("run", "ledger", "none"),
    )
    return train(cfg, log=lambda _m: None).last_checkpoint


@pytest.fixture(scope="module")
def subjects(tmp_path_factory) -> dict[str, Path]:
    """One 300-frame synthetic sequence of each class, as release-style pickles."""
    root = tmp_path_factory.mktemp("subjects")
    config = SynthConfig(n_sequences=30, frames=300, seed=5)
    out = {}
    for i, label in enumerate(CLASSES):
        path = root / f"{label}.pkl"
        with open(path, "wb") as f:
            pickle.dump(generate_sequence(i, label, config), f)
        out[label] = path
    return out


def test_predict_each_class(ckpt, subjects):
    screener = Screener(ckpt)
    assert screener.max_frames == 300 and screener.cut == 10
    for path in subjects.values():
        r = screener.screen(path)
        assert r.source == str(path) and r.frames == 300 and r.frames_used == 300
        assert list(r.probabilities) == list(CLASSES)
        assert sum(r.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert all(0.0 <= p <= 1.0 for p in r.probabilities.values())
        assert r.predicted == max(r.probabilities, key=r.probabilities.get) and r.predicted in CLASSES
        assert len(r.logits) == 3 and all(-1.0 <= v <= 1.0 for v in r.logits)  # cosine logits
        assert [(a.pair, a.metric) for a in r.asymmetries] == [
            (p, m) for p in PAV_PAIR_NAMES for m in PAV_METRICS
        ]
        for a in r.asymmetries:
            assert a.value >= 0 and a.p95 is not None and 0.0 <= a.percentile <= 100.0
            assert a.large == (a.value > a.p95)
        doc = json.loads(json.dumps(r.to_dict()))
        assert doc["predicted"] == r.predicted and len(doc["pav"]) == 24
        assert doc["large_asymmetries"] == [a.name for a in r.large]
        assert f"{LARGE_PERCENTILE:g}th percentile" in doc["rule"] and "healthy" in doc["rule"]
        assert set(doc["seconds"]) == {"read", "render", "pav", "model", "total"}
        text = r.format()
        assert f"prediction: {r.predicted}" in text and "shoulders" in text
    # the read-out is the same whatever the class: the synthetic positives are the asymmetric ones
    pos = screener.screen(subjects["positive"])
    neg = screener.screen(subjects["negative"])
    assert len(pos.large) >= len(neg.large)


def test_predict_matches_evaluation_on_cached_maps(ckpt, small_store, small_dataset):
    """Rendering on the fly gives the logits the evaluation computes from the cached maps."""
    from sconet.checkpoint import read_checkpoint
    from sconet.data import scan_dataset
    from sconet.evaluation import load_model, predict
    from sconet.stream import FrameBank

    model = load_model(read_checkpoint(ckpt))
    screener = Screener(ckpt)
    records = {r.id: r for r in scan_dataset(small_dataset)}
    for i in (0, 7):
        bank = FrameBank(small_store, np.array([i]), cut_pixels=10, max_frames=300)
        ref = predict(model, bank, "cpu").logits[0]
        r = screener.screen(records[small_store.ids[i]].path)
        np.testing.assert_allclose(r.logits, ref, atol=1e-5)
        np.testing.assert_allclose(
            [a.value for a in r.asymmetries], small_store.pav[i].reshape(-1), rtol=1e-6
        )


def test_predict_drf_matches_evaluation(ckpt, small_cache, small_split, small_store, small_dataset, tmp_path):
    """A DRF checkpoint (warm-started from ``ckpt``): on-the-fly render + PAV + the checkpoint's
    PAV normalisation give the logits the evaluation computes from the cached maps and PAVs."""
    from sconet.checkpoint import read_checkpoint
    from sconet.data import scan_dataset
    from sconet.evaluation import load_model, predict
    from sconet.stream import FrameBank, PavNormalizer

    cfg = tiny_config(
        small_cache.path,
        small_split,
        tmp_path / "drf",
        ("data", "eval_max_frames", 300),
        ("model", "width", 0.0625),
        ("run", "init_from", str(ckpt)),
        ("run", "freeze_iters", 0),
        ("run", "eval_iter", 1000),
        ("run", "keep_n", 0),
        ("run", "ledger", "none"),
        recipe="drf-warmstart",
    )
    drf_ckpt = train(cfg, log=lambda _m: None).last_checkpoint
    loaded = read_checkpoint(drf_ckpt)
    model = load_model(loaded)
    assert model.config.arch == "drf"
    norm = PavNormalizer.from_state_dict(loaded.raw["pav_norm"])
    screener = Screener(drf_ckpt)
    assert screener.needs_pav
    records = {r.id: r for r in scan_dataset(small_dataset)}
    logits = []
    for i in (0, 7):
        bank = FrameBank(small_store, np.array([i]), cut_pixels=10, max_frames=300)
        ref = predict(model, bank, "cpu", pav_normalizer=norm).logits[0]
        r = screener.screen(records[small_store.ids[i]].path)
        np.testing.assert_allclose(r.logits, ref, atol=1e-5)
        logits.append(np.asarray(r.logits))
    # the PAV reaches the model: another normalisation of it changes the logits
    other = PavNormalizer.fit(small_store.pav[[7, 8, 9]])
    bank = FrameBank(small_store, np.array([0]), cut_pixels=10, max_frames=300)
    assert not np.allclose(predict(model, bank, "cpu", pav_normalizer=other).logits[0], logits[0], atol=1e-4)


def test_cli_predict_json_and_report(ckpt, subjects, sconet_cli, tmp_path):
    png = tmp_path / "report.png"
    proc = sconet_cli(
        "predict", str(subjects["positive"]), "--ckpt", str(ckpt), "--json", "--report", str(png)
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["report"] == str(png) and sum(doc["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 700 and im.size[1] >= 400
    text = sconet_cli("predict", str(subjects["negative"]), "--ckpt", str(ckpt))
    assert text.returncode == 0, text.stderr
    assert "prediction:" in text.stdout and "large asymmetries:" in text.stdout and "time:" in text.stdout


def _one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_and_hostile_pose_files(ckpt, sconet_cli, tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(_Exploit(marker)))
    line = _one_line_error(sconet_cli("predict", str(hostile), "--ckpt", str(ckpt)))
    assert str(hostile) in line and not marker.exists()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pickle.dumps(np.zeros((10, 17, 3), np.float32))[:40])
    assert str(truncated) in _one_line_error(sconet_cli("predict", str(truncated), "--ckpt", str(ckpt)))
    shape = tmp_path / "shape.pkl"
    shape.write_bytes(pickle.dumps(np.zeros((10, 5, 3), np.float32)))
    assert str(shape) in _one_line_error(sconet_cli("predict", str(shape), "--ckpt", str(ckpt)))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((4, 17, 3), np.nan, np.float32))
    assert str(nan) in _one_line_error(sconet_cli("predict", str(nan), "--ckpt", str(ckpt)))
    empty = tmp_path / "empty.npy"  # no keypoint ever observed: cannot be rendered
    np.save(empty, np.zeros((4, 17, 3), np.float32))
    assert str(empty) in _one_line_error(sconet_cli("predict", str(empty), "--ckpt", str(ckpt)))
    with pytest.raises(PoseError, match=str(hostile)):
        screen(hostile, ckpt)
    # a foreign checkpoint has no render settings
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.load(ckpt, weights_only=True)["model"]}, foreign)
    assert "render settings" in _one_line_error(sconet_cli("predict", str(hostile), "--ckpt", str(foreign)))


def test_pav_reference_rule():
    rng = np.random.default_rng(0)
    pav = rng.uniform(0, 1, size=(200, 8, 3)).astype(np.float32)
    labels = np.array([0] * 100 + [2] * 100)
    pav[labels == 2] += 5.0  # the positives are far more asymmetric
    ref = pav_reference(pav, labels)
    assert ref["n_healthy"] == 100 and tuple(ref["healthy"].shape) == (21, 8, 3)
    assert float(ref["healthy"].max()) < 1.5  # quantiles of the healthy ones only
    assert all(isinstance(v, (torch.Tensor, int)) for v in ref.values())
