"""``sconet predict video`` and ``sconet pose`` end to end on real footage: pose extraction ->
rendering -> prediction -> report; the pose source in the store, the checkpoint and the output,
and the warning when the checkpoint was trained on another pose source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _helpers import tiny_config
from _video_helpers import AWAY, need_blazepose, read_frames, vtest, write_clip
from sconet.checkpoint import read_checkpoint
from sconet.data import load_pose_file
from sconet.predict import Screener
from sconet.training import train
from sconet.video import ExtractConfig, read_sidecar
from sconet.video.screen import pose_source_warning, screen_video, write_video_report

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def ckpt(small_cache, small_split, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("video-predict") / "run"
    cfg = tiny_config(
        small_cache.path,
        small_split,
        out,
        ("data", "eval_max_frames", 60),
        ("run", "keep_n", 0),
        ("run", "ledger", "none"),
    )
    return train(cfg, log=lambda _m: None).last_checkpoint


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Path:
    """9 s of the woman walking away, cropped to her region: a real clip with one person."""
    need_blazepose()
    x0, y0, x1, y1 = AWAY.roi
    frames = [f[y0:y1, x0:x1] for f in read_frames(vtest(), AWAY.start, AWAY.frames)]
    return write_clip(tmp_path_factory.mktemp("walk") / "walk.avi", frames)


def test_the_pose_source_travels_from_store_to_checkpoint(small_store, ckpt):
    synthetic = {"backend": "synthetic", "model": "sconet.data.synth", "version": "generator 1"}
    assert small_store.pose_source == synthetic
    assert read_checkpoint(ckpt).pose_source == synthetic


def test_pose_source_warning_rule():
    blaze = {"backend": "blazepose", "model_sha256": "a" * 64, "version": "mediapipe 0.10.21"}
    assert pose_source_warning(blaze, dict(blaze)) is None
    other_model = pose_source_warning({**blaze, "model_sha256": "b" * 64}, blaze)
    assert other_model is not None and "not validated for this pose source" in other_model
    vit = pose_source_warning(None, blaze)
    assert vit is not None and vit.startswith(
        "the checkpoint was trained on poses whose source it does not record"
    )


def test_screen_video_and_its_report(ckpt, walk, tmp_path):
    screener = Screener(ckpt, max_frames=60)
    done = screen_video(walk, screener, ExtractConfig(min_detection_rate=0.8), keep_maps=True)
    r, ex = done.result, done.extraction
    assert ex.poses.shape == (AWAY.frames, 17, 3) and ex.detection_rate > 0.9
    assert r.frames == AWAY.frames and r.frames_used == 60
    assert abs(sum(r.probabilities.values()) - 1) < 1e-6
    # the same poses from a file give the same screening
    pkl = tmp_path / "walk.pkl"
    pkl.write_bytes(__import__("pickle").dumps(ex.poses))
    same = screener.screen(pkl)
    assert same.probabilities == pytest.approx(r.probabilities, abs=1e-6)
    assert r.pose_source["backend"] == "blazepose" and r.pose_source["detected_frames"] == ex.n_detected
    assert (
        len(r.warnings) == 1
        and "trained on synthetic (generator 1, sconet.data.synth) poses" in r.warnings[0]
    )
    text = r.format()
    assert "pose source: blazepose (mediapipe 0.10.21, pose_landmark_full.tflite)" in text
    assert "WARNING: the checkpoint was trained on synthetic" in text
    doc = r.to_dict()
    assert doc["pose_source"]["model_sha256"] and doc["warnings"] == r.warnings
    # the report: video frames (kept within the 60 frames used) above the maps of the same instants
    assert sorted(ex.frames) == [0, 12, 24, 35, 47, 59]
    png = write_video_report(done, tmp_path / "report.png")
    img = np.asarray(Image.open(png).convert("RGB"))
    plain = tmp_path / "plain.png"
    from sconet.predict import write_report

    write_report(r, plain, picks=[0, 12, 24, 35, 47, 59])
    assert img.shape[0] == np.asarray(Image.open(plain)).shape[0] + 256 + 4  # one video row, 2:1 tiles
    video_row = img[62 + 15 * 3 + 14 : 62 + 15 * 3 + 14 + 256, 60 : 60 + 128]
    assert video_row.std() > 20  # a real picture, not an empty band
    assert ((video_row == (255, 150, 20)).all(-1)).sum() > 10  # the skeleton's left side is drawn


def test_cli_pose(sconet_cli, tmp_path):
    need_blazepose()
    out = tmp_path / "poses"
    args = [
        "pose",
        str(vtest()),
        "--out",
        str(out),
        "--roi",
        ",".join(map(str, AWAY.roi)),
        "--start-frame",
        str(AWAY.start),
        "--max-frames",
        "30",
        "--format",
        "npy",
        "--backend-option",
        "smooth_landmarks=false",
    ]
    cp = sconet_cli(*args, "--workers", "1", timeout=300)
    assert cp.returncode == 0, cp.stderr
    assert f"extracted {out / 'vtest.npy'}: 30 frames, person in" in cp.stdout
    assert "1 extracted, 0 reused, 0 failed" in cp.stdout and "pose source: blazepose" in cp.stdout
    arr = load_pose_file(out / "vtest.npy")
    assert arr.shape == (30, 17, 3)
    side = read_sidecar(out / "vtest.npy")
    assert (
        side["pose_source"]["settings"]["smooth_landmarks"] is False and side["frames_used"]["first"] == 600
    )
    again = sconet_cli(*args, timeout=300)
    assert again.returncode == 0 and "0 extracted, 1 reused" in again.stdout
    # a broken file: one line naming it, exit status 2
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    cp = sconet_cli("pose", str(bad), "--out", str(out), timeout=300)
    assert cp.returncode == 2
    assert (
        cp.stderr.strip()
        == f"error: {bad}: not a video OpenCV can decode (unknown format, or the file is damaged)"
    )


def test_cli_predict_video(sconet_cli, ckpt, walk, tmp_path):
    # predict from the video: JSON with the pose source, the warning on stderr, the report
    report = tmp_path / "r.png"
    poses = tmp_path / "saved.pkl"
    cp = sconet_cli(
        "predict",
        str(walk),
        "--ckpt",
        str(ckpt),
        "--json",
        "--report",
        str(report),
        "--save-poses",
        str(poses),
        "--min-detection-rate",
        "0.7",
        "--frame-step",
        "2",
        timeout=300,
    )
    assert cp.returncode == 0, cp.stderr
    doc = json.loads(cp.stdout)
    assert doc["pose_source"]["backend"] == "blazepose" and doc["frames"] == AWAY.frames // 2
    assert doc["predicted"] in ("negative", "neutral", "positive") and doc["report"] == str(report)
    assert "warning: the checkpoint was trained on synthetic" in cp.stderr
    assert Image.open(report).size[0] >= 760
    assert load_pose_file(poses).shape == (AWAY.frames // 2, 17, 3)
    assert read_sidecar(poses)["frames_used"] == {"first": 0, "last": 88, "count": 45, "step": 2}
    cp = sconet_cli("predict", str(poses), "--ckpt", str(ckpt), "--roi", "0,0,10,10", timeout=300)
    assert cp.returncode == 2 and "--roi: only for a video input" in cp.stderr
