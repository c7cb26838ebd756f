"""Synthetic Scoliosis1K: determinism, plausibility, class signal, missing joints, splits,
the on-disk layout (round trip through sconet.data) and ensure_synthetic."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sconet.data import CLASSES, PoseError, labels_of, load_sequences, load_split, scan_dataset
from sconet.data.synth import (
    IMAGE_SIZE,
    OFFICIAL_RATIOS,
    SynthConfig,
    SynthError,
    SynthExistsError,
    default_synthetic_root,
    ensure_synthetic,
    generate_sequence,
    make_split,
    split_name,
    synthetic_ids,
    synthetic_labels,
    synthetic_view,
    write_synthetic,
)
from sconet.data.synth import dataset as S

OFFICIAL_TRAIN = {
    "1:1:2": (186, 186, 373),
    "1:1:4": (124, 124, 497),
    "1:1:8": (74, 74, 597),  # the official file has 596 (744 training ids)
    "1:1:16": (41, 41, 663),
}

L_SH, R_SH, L_HIP, R_HIP, NOSE, L_ANK, R_ANK = 5, 6, 11, 12, 0, 15, 16


def _missing(p: np.ndarray) -> np.ndarray:
    return (p[..., 0] == 0) & (p[..., 1] == 0)


# --------------------------------------------------------------------------------------------
# labels, ids, views
# --------------------------------------------------------------------------------------------


def test_default_class_totals_and_ids():
    config = SynthConfig()
    labels = synthetic_labels(config)
    assert len(labels) == 1493
    assert Counter(labels) == {"negative": 800, "neutral": 200, "positive": 493}
    assert labels != sorted(labels)  # shuffled
    assert labels == synthetic_labels(SynthConfig())  # deterministic
    assert labels != synthetic_labels(SynthConfig(seed=1))
    ids = synthetic_ids(config)
    assert ids[0] == "00000" and ids[-1] == "01492" and len(set(ids)) == 1493
    views = Counter(synthetic_view(i, config) for i in range(200))
    assert set(views) <= {"000_180", "000_000", "001_180", "001_000"} and views["000_180"] > 60


def test_small_configs_scale_the_class_totals():
    for n in (3, 7, 30, 100):
        counts = SynthConfig(n_sequences=n).class_counts()
        assert sum(counts) == n and min(counts) >= 1
        assert Counter(synthetic_labels(SynthConfig(n_sequences=n))) == dict(
            zip(CLASSES, counts, strict=True)
        )
    assert SynthConfig(n_sequences=30).class_counts() == (16, 4, 10)
    assert SynthConfig(n_sequences=10, class_totals=(5, 0, 5)).class_counts() == (5, 0, 5)
    for bad in (
        dict(n_sequences=0),
        dict(frames=0),
        dict(seed=-1),
        dict(class_totals=(1, 2)),
        dict(missing_rate=0.9),
    ):
        with pytest.raises(SynthError):
            SynthConfig(**bad)
    cfg = SynthConfig(n_sequences=12, frames=9, seed=4, asymmetry_scale=1.5)
    assert SynthConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# --------------------------------------------------------------------------------------------
# one sequence: determinism and plausibility
# --------------------------------------------------------------------------------------------


def test_generate_sequence_is_deterministic():
    c = SynthConfig(frames=120)
    a = generate_sequence(5, "positive", c)
    assert a.tobytes() == generate_sequence(5, "positive", c).tobytes()
    # independent of the dataset size and of the order of generation
    assert a.tobytes() == generate_sequence(5, "positive", SynthConfig(n_sequences=10, frames=120)).tobytes()
    assert a.tobytes() != generate_sequence(5, "positive", SynthConfig(frames=120, seed=1)).tobytes()
    assert a.tobytes() != generate_sequence(6, "positive", c).tobytes()
    # the same subject with another label: same body and camera, other asymmetries
    b = generate_sequence(5, "negative", c)
    assert a.tobytes() != b.tobytes()
    assert abs(np.median(a[:, NOSE, 1]) - np.median(b[:, NOSE, 1])) < 30
    with pytest.raises(SynthError, match="unknown label"):
        generate_sequence(0, "maybe", c)


def test_sequence_shape_dtype_and_ranges():
    c = SynthConfig()
    for i, label in enumerate(("negative", "neutral", "positive") * 4):
        p = generate_sequence(i, label, c)
        assert p.shape == (300, 17, 3) and p.dtype == np.float32 and p.flags.c_contiguous
        assert np.isfinite(p).all()
        miss = _missing(p)
        x, y, conf = p[..., 0][~miss], p[..., 1][~miss], p[..., 2][~miss]
        assert x.min() > 0 and x.max() < IMAGE_SIZE[0] and y.min() > 0 and y.max() < IMAGE_SIZE[1]
        assert conf.min() > 0.3 and conf.max() < 1.0 and np.median(conf) > 0.8
        assert (p[..., 2][miss] < 0.3).all()
    one = generate_sequence(0, "negative", SynthConfig(frames=1))
    assert one.shape == (1, 17, 3)


def test_walking_towards_and_away_with_perspective():
    c = SynthConfig()
    for i in range(6):
        p = generate_sequence(i, synthetic_labels(c)[i], c)
        ok = ~_missing(p)[:, [NOSE, L_ANK, R_ANK]].any(axis=1)
        height = (np.maximum(p[:, L_ANK, 1], p[:, R_ANK, 1]) - p[:, NOSE, 1])[ok]
        assert height.max() / height.min() > 1.6, "the person should grow / shrink with distance"
        assert 150 < height.min() and height.max() < 1400
        # facing the camera the subject's left shoulder is on the image right, and vice versa
        sh_ok = ~_missing(p)[:, [L_SH, R_SH]].any(axis=1)
        side = np.sign(p[sh_ok, L_SH, 0] - p[sh_ok, R_SH, 0])
        assert (side > 0).mean() > 0.2 and (side < 0).mean() > 0.2
        # gait: ankles alternate (their vertical difference changes sign many times)
        both = ~_missing(p)[:, [L_ANK, R_ANK]].any(axis=1)
        d = np.sign(p[both, L_ANK, 1] - p[both, R_ANK, 1])
        assert (np.diff(d) != 0).sum() >= 6


def test_missing_joints_at_the_intended_rate():
    c = SynthConfig(frames=300)
    poses = np.stack([generate_sequence(i, "negative", c) for i in range(60)])
    miss = _missing(poses)
    rate = miss.mean()
    assert 0.006 < rate < 0.015, rate
    per_joint = miss.mean(axis=(0, 1))
    extremities = per_joint[[9, 10, 15, 16]].mean()
    assert extremities > 2 * per_joint[[5, 6, 11, 12]].mean()
    assert (miss.sum(axis=(0, 1)) > 0).all()
    none = np.stack(
        [generate_sequence(i, "negative", SynthConfig(frames=100, missing_rate=0.0)) for i in range(5)]
    )
    assert not _missing(none).any()
    # low-quality frames: some whole frames with clearly lower confidence
    frame_conf = np.where(miss, np.nan, poses[..., 2])
    low = np.nanmean(frame_conf, axis=2) < 0.6
    assert 0.002 < low.mean() < 0.05


def _asymmetry_features(p: np.ndarray) -> dict[str, float]:
    m = _missing(p)
    ok = ~m[:, [L_SH, R_SH, L_HIP, R_HIP, NOSE, L_ANK, R_ANK]].any(axis=1)
    q = p[ok]
    height = np.maximum(q[:, L_ANK, 1], q[:, R_ANK, 1]) - q[:, NOSE, 1]
    sh = np.abs(q[:, L_SH, 1] - q[:, R_SH, 1]) / height
    hip = np.abs(q[:, L_HIP, 1] - q[:, R_HIP, 1]) / height
    shift = np.abs((q[:, L_SH, 0] + q[:, R_SH, 0]) / 2 - (q[:, L_HIP, 0] + q[:, R_HIP, 0]) / 2) / height
    return {
        "shoulder": float(np.median(sh)),
        "pelvis": float(np.median(hip)),
        "shift": float(np.median(shift)),
    }


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_class_asymmetries_are_ordered_but_overlap(scale):
    c = SynthConfig(frames=150, asymmetry_scale=scale)
    feats = {
        label: [_asymmetry_features(generate_sequence(i, label, c)) for i in range(60)] for label in CLASSES
    }
    for name in ("shoulder", "shift"):
        vals = {label: np.array([f[name] for f in feats[label]]) for label in CLASSES}
        means = [vals[label].mean() for label in CLASSES]
        assert means[0] < means[1] < means[2], (name, means)
        # overlap: negatives that look more asymmetric than some positives, never a clean cut
        assert (vals["negative"] > np.percentile(vals["positive"], 10)).mean() > 0.0, name
        assert (vals["positive"] < np.percentile(vals["negative"], 90)).mean() > 0.0, name
        if scale == 1.0:  # at scale 1 the overlap is wide
            assert (vals["negative"] > np.percentile(vals["positive"], 25)).mean() > 0.05, name
            assert (vals["positive"] < np.percentile(vals["negative"], 75)).mean() > 0.05, name
    pel = {label: np.mean([f["pelvis"] for f in feats[label]]) for label in CLASSES}
    assert pel["negative"] < pel["positive"]
    # without the class signal the classes look alike
    flat = SynthConfig(frames=150, asymmetry_scale=0.0)
    sh = {
        label: np.mean(
            [_asymmetry_features(generate_sequence(i, label, flat))["shoulder"] for i in range(40)]
        )
        for label in ("negative", "positive")
    }
    assert sh["negative"] == pytest.approx(sh["positive"], rel=1e-6)


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


def test_make_split_reproduces_the_official_training_counts():
    config = SynthConfig()
    ids, labels = synthetic_ids(config), synthetic_labels(config)
    label_of = dict(zip(ids, labels, strict=True))
    for ratio, (pos, neu, neg) in OFFICIAL_TRAIN.items():
        split = make_split(ids, labels, ratio, seed=0)
        train = Counter(label_of[i] for i in split.train_ids)
        assert (train["positive"], train["neutral"], train["negative"]) == (pos, neu, neg), ratio
        assert len(split.train_ids) + len(split.test_ids) == 1493
        assert set(split.train_ids).isdisjoint(split.test_ids) and set(split.ids) == set(ids)
        assert split.name == split_name(ratio)
        assert split == make_split(ids, labels, ratio, seed=0)
        assert split.train_ids != make_split(ids, labels, ratio, seed=1).train_ids
    assert split_name("1:1:2") == "Scoliosis1K_112" and split_name("1:1:16") == "Scoliosis1K_1116"
    # too few sequences of a class
    with pytest.raises(SynthError, match="needs 350 neutral training sequences, but only 200 exist"):
        make_split(ids, labels, "1:1:2", n_train=1400)
    with pytest.raises(SynthError, match="ratio"):
        make_split(ids, labels, "1:2", n_train=10)
    with pytest.raises(SynthError, match="ratio"):
        make_split(ids, labels, "a:b:c", n_train=10)
    # labels as a mapping work too
    assert make_split(ids, label_of, "1:1:4").train_ids == make_split(ids, labels, "1:1:4").train_ids


# --------------------------------------------------------------------------------------------
# on disk
# --------------------------------------------------------------------------------------------


def test_write_synthetic_round_trip(tmp_path):
    config = SynthConfig(n_sequences=24, frames=30, seed=3)
    out = write_synthetic(tmp_path / "poses", config, ratios=("1:1:2", "1:1:16"))
    assert out == tmp_path / "poses"
    assert [p.name for p in tmp_path.iterdir()] == ["poses"], "temporary folder left behind"
    labels = synthetic_labels(config)
    records = scan_dataset(out)
    assert [r.id for r in records] == synthetic_ids(config)
    assert [r.label for r in records] == labels
    assert [r.view for r in records] == [synthetic_view(i, config) for i in range(24)]
    for r in records:
        assert r.path.relative_to(out).parts == (r.id, r.label.capitalize(), r.view, f"{r.view}.pkl")
    loaded = load_sequences(records)
    assert not loaded.skipped
    for i, pose in enumerate(loaded.poses):
        np.testing.assert_array_equal(pose, generate_sequence(i, labels[i], config))
    raw = pickle.loads(records[0].path.read_bytes())
    assert type(raw) is np.ndarray and raw.dtype == np.float32 and raw.shape == (30, 17, 3)
    assert records[0].path.read_bytes()[:2] == b"\x80\x04"  # protocol 4

    for ratio in ("1:1:2", "1:1:16"):
        split = load_split(out / f"{split_name(ratio)}.json")
        assert sorted(split.ids) == synthetic_ids(config)
        train = Counter(labels_of(records)[i] for i in split.train_ids)
        assert min(train[c] for c in CLASSES) >= 1
    manifest = json.loads((out / "synthetic.json").read_text())
    assert manifest["config"] == config.to_dict()
    assert manifest["generator_version"] == S.GENERATOR_VERSION
    assert manifest["counts"]["per_class"] == dict(zip(CLASSES, config.class_counts(), strict=True))
    assert set(manifest["splits"]) == {"Scoliosis1K_112", "Scoliosis1K_1116"}

    # same config -> identical bytes
    again = write_synthetic(tmp_path / "again", config, ratios=("1:1:2", "1:1:16"))
    for rel in ("Scoliosis1K_112.json", "00007", "00023"):
        a = out / rel
        files_a = sorted(p.relative_to(out) for p in a.rglob("*")) if a.is_dir() else [Path(rel)]
        for f in files_a:
            if (out / f).is_file():
                assert (out / f).read_bytes() == (again / f).read_bytes()


def test_write_synthetic_refuses_and_overwrites(tmp_path):
    config = SynthConfig(n_sequences=6, frames=5)
    out = tmp_path / "ds"
    out.mkdir()  # an existing empty folder is fine
    write_synthetic(out, config)
    with pytest.raises(SynthExistsError, match="not empty"):
        write_synthetic(out, config)
    other = SynthConfig(n_sequences=4, frames=5, seed=9)
    write_synthetic(out, other, overwrite=True)
    assert len(scan_dataset(out)) == 4
    assert json.loads((out / "synthetic.json").read_text())["config"]["seed"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(SynthExistsError):
        write_synthetic(tmp_path / "file", config)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    real = S.generate_sequence

    def flaky(index, label, config=None):
        if index == 3:
            raise KeyboardInterrupt
        return real(index, label, config)

    monkeypatch.setattr(S, "generate_sequence", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(tmp_path / "ds", SynthConfig(n_sequences=6, frames=5))
    assert list(tmp_path.iterdir()) == []


def test_ensure_synthetic_generates_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("SCONET_CACHE", str(tmp_path / "cache"))
    assert default_synthetic_root() == tmp_path / "cache" / "synthetic"
    config = SynthConfig(n_sequences=20, frames=8)
    root = ensure_synthetic(config=config)
    assert root == default_synthetic_root()
    for ratio in OFFICIAL_RATIOS:
        assert (root / f"{split_name(ratio)}.json").is_file()
    assert len(scan_dataset(root)) == 20

    def boom(*a, **k):
        raise AssertionError("should have been reused")

    monkeypatch.setattr(S, "write_synthetic", boom)
    assert ensure_synthetic(config=config) == root
    monkeypatch.undo()
    monkeypatch.setenv("SCONET_CACHE", str(tmp_path / "cache"))

    # other settings -> the synthetic folder is regenerated in place
    other = SynthConfig(n_sequences=10, frames=8)
    assert ensure_synthetic(config=other) == root
    assert len(scan_dataset(root)) == 10
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]

    # a folder that is not a synthetic dataset is never replaced
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(SynthError, match="not a sconet synthetic dataset"):
        ensure_synthetic(foreign, config)
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_bad_file_in_synthetic_tree_is_reported(tmp_path):
    out = write_synthetic(tmp_path / "ds", SynthConfig(n_sequences=5, frames=5))
    records = scan_dataset(out)
    records[2].path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(PoseError) as err:
        load_sequences(records)
    assert str(err.value).startswith(str(records[2].path))
    res = load_sequences(records, skip_bad=True)
    assert len(res.records) == 4 and res.skipped[0][0] == str(records[2].path)


# --------------------------------------------------------------------------------------------
# full-size checks (slow: run with -m slow)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_dataset_pav_signal(tmp_path):
    """The full default dataset writes and carries a learnable but not trivial PAV signal.
    (Generation and write times are printed here and measured by bench/, never asserted.)"""
    import time

    from sconet.render import pav_batch

    config = SynthConfig()
    labels = synthetic_labels(config)
    t0 = time.perf_counter()
    poses = [generate_sequence(i, lab, config) for i, lab in enumerate(labels)]
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_synthetic(tmp_path / "full", config, OFFICIAL_RATIOS)
    write_s = time.perf_counter() - t0
    print(f"generate {gen_s:.2f} s, write {write_s:.2f} s")

    # a linear softmax probe on PAV features learns something but is far from perfect
    X = pav_batch(poses).reshape(len(poses), -1).astype(np.float64)
    y = np.array([CLASSES.index(lab) for lab in labels])
    split = make_split(synthetic_ids(config), labels, "1:1:2")
    tr = np.array([int(i) for i in split.train_ids])
    te = np.array([int(i) for i in split.test_ids])
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-9
    Xn = np.c_[(X - mu) / sd, np.ones(len(X))]
    W = np.zeros((Xn.shape[1], 3))
    Y = np.eye(3)[y[tr]]
    for _ in range(2000):
        Z = Xn[tr] @ W
        P = np.exp(Z - Z.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        W -= 0.5 * (Xn[tr].T @ (P - Y) / len(tr) + 1e-3 * W)
    acc = ((Xn[te] @ W).argmax(1) == y[te]).mean()
    majority = (y[te] == 0).mean()
    print(f"PAV probe accuracy {acc:.3f} (majority {majority:.3f})")
    assert majority + 0.05 < acc < 0.9
