"""Pose extraction with the ``blazepose`` backend on real footage (Debian's vtest.avi), the
pose file and its sidecar, the backend registry, and the errors for bad videos."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from _video_helpers import AWAY, TOWARDS, need, need_blazepose, read_frames, vtest, write_clip
from sconet.data import load_pose_file
from sconet.render import JOINT_NAMES
from sconet.video import (
    BackendError,
    ExtractConfig,
    VideoError,
    backend_names,
    create_backend,
    extract_poses,
    read_sidecar,
    save_poses,
)
from sconet.video.blazepose import BLAZEPOSE_NAMES, COCO_FROM_BLAZEPOSE


@pytest.fixture(scope="module")
def away():
    need_blazepose()
    return extract_poses(
        vtest(), ExtractConfig(roi=AWAY.roi, start=AWAY.start, max_frames=AWAY.frames, keep_frames=3)
    )


@pytest.fixture(scope="module")
def towards():
    need_blazepose()
    return extract_poses(
        vtest(), ExtractConfig(roi=TOWARDS.roi, start=TOWARDS.start, max_frames=TOWARDS.frames)
    )


def test_coco_mapping_is_mediapipes_own_landmarks():
    need_blazepose()
    from mediapipe.python.solutions.pose import PoseLandmark

    assert BLAZEPOSE_NAMES == tuple(n.upper() for n in JOINT_NAMES)
    assert COCO_FROM_BLAZEPOSE == tuple(PoseLandmark[n].value for n in BLAZEPOSE_NAMES)
    assert COCO_FROM_BLAZEPOSE == (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)


def test_walking_person_shape_rate_and_frame(away):
    assert away.poses.shape == (AWAY.frames, 17, 3) and away.poses.dtype == np.float32
    assert away.first_frame == AWAY.start
    assert away.detection_rate >= 0.9
    pts = away.poses[away.detected]
    seen = pts[..., 2] > 0
    assert seen.mean() > 0.95
    x, y = pts[..., 0][seen], pts[..., 1][seen]
    assert (x >= 0).all() and (x <= 767).all() and (y >= 0).all() and (y <= 575).all()
    # the subject is the one person in the region (a small overshoot at its border is allowed)
    x0, y0, x1, y1 = AWAY.roi
    assert np.quantile(x, 0.02) > x0 - 10 and np.quantile(x, 0.98) < x1 + 10
    assert np.quantile(y, 0.02) > y0 - 10 and np.quantile(y, 0.98) < y1 + 10
    # a standing person: nose above hips above ankles in every detected frame
    assert (pts[:, 0, 1] < pts[:, 11:13, 1].mean(1)).all()
    assert (pts[:, 11:13, 1].mean(1) < pts[:, 15:17, 1].mean(1)).all()
    # one person tracked: the hip midpoint never jumps more than 40 px between frames
    hips = pts[:, 11:13, :2].mean(1)
    assert np.abs(np.diff(hips, axis=0)).max() < 40


def _left_minus_right(result, left: int, right: int) -> np.ndarray:
    p = result.poses[result.detected]
    return p[:, left, 0] - p[:, right, 0]


def test_left_right_are_the_persons_own_walking_away(away):
    hips_y = away.poses[away.detected][:, 11:13, 1].mean(1)
    assert hips_y[-1] < hips_y[0] - 60  # she walks up the image: away from the camera
    for left, right in ((5, 6), (11, 12)):  # shoulders, hips
        d = _left_minus_right(away, left, right)
        assert np.median(d) < -5 and (d < 0).mean() > 0.8  # her left is on the image left


def test_left_right_are_the_persons_own_walking_towards(towards):
    assert towards.detection_rate >= 0.9
    hips_y = towards.poses[towards.detected][:, 11:13, 1].mean(1)
    assert hips_y[-1] > hips_y[0] + 40  # he walks down the image: towards the camera
    for left, right in ((5, 6), (11, 12)):
        d = _left_minus_right(towards, left, right)
        assert np.median(d) > 5 and (d > 0).mean() > 0.8  # his left is on the image right


def test_frames_without_a_person_are_zero(tmp_path):
    need_blazepose()
    need("cv2")
    frames = read_frames(vtest(), AWAY.start, 30)
    blank = np.full_like(frames[0], 90)
    clip = write_clip(tmp_path / "gap.avi", frames[:12] + [blank] * 6 + frames[12:24])
    r = extract_poses(clip, ExtractConfig(roi=AWAY.roi, min_detection_rate=0.6))
    assert r.poses.shape == (30, 17, 3)
    assert not r.detected[12:18].any()
    assert (r.poses[12:18] == 0).all()
    assert r.detected[:12].mean() > 0.8 and r.detected[18:].mean() > 0.8  # found again after the gap
    assert (r.poses[~r.detected] == 0).all()
    assert (np.abs(r.poses[r.detected]).sum((1, 2)) > 0).all()


def test_too_few_frames_with_a_person_is_refused_with_the_rate(tmp_path):
    need_blazepose()
    empty_grass = (0, 440, 120, 576)
    config = ExtractConfig(roi=empty_grass, start=AWAY.start, max_frames=20)
    with pytest.raises(VideoError) as err:
        extract_poses(vtest(), config)
    msg = str(err.value)
    assert msg.startswith(
        str(vtest()) + ": a person was found in the region [0, 440, 120, 576] in 0 of 20 frames (0.0 %)"
    )
    assert "below the required 50 %" in msg and "\n" not in msg
    # a lower bar takes the same video, and records that nobody was there
    r = extract_poses(
        vtest(), ExtractConfig(roi=empty_grass, start=AWAY.start, max_frames=20, min_detection_rate=0.0)
    )
    assert r.n_detected == 0 and (r.poses == 0).all()


def test_pose_file_and_sidecar(away, tmp_path):
    pkl, side = save_poses(away, tmp_path / "walk.pkl")
    assert side.name == "walk.pkl.json"
    np.testing.assert_array_equal(load_pose_file(pkl), away.poses)
    npy, _ = save_poses(away, tmp_path / "walk.npy")
    np.testing.assert_array_equal(load_pose_file(npy), away.poses)
    assert isinstance(pickle.loads(pkl.read_bytes()), np.ndarray)
    doc = read_sidecar(pkl)
    assert doc is not None
    assert doc["pose_source"]["backend"] == "blazepose"
    assert doc["pose_source"]["version"] == "mediapipe 0.10.21"
    assert doc["pose_source"]["settings"]["model_complexity"] == 1
    assert doc["pose_source"]["model"].endswith("pose_landmark_full.tflite")
    assert len(doc["pose_source"]["model_sha256"]) == 64
    assert doc["frames_used"] == {
        "first": AWAY.start,
        "last": AWAY.start + AWAY.frames - 1,
        "count": AWAY.frames,
        "step": 1,
    }
    assert doc["detected_frames"] == away.n_detected
    assert doc["detection_rate"] == pytest.approx(away.detection_rate, abs=1e-6)
    assert doc["extract"]["roi"] == list(AWAY.roi)
    assert (
        doc["video"]["name"] == "vtest.avi" and doc["video"]["frames"] == 795 and doc["video"]["fps"] == 10.0
    )
    assert sorted(away.frames) == [0, 44, 89]  # keep_frames=3, by pose index
    assert away.frames[0].shape == (576, 768, 3)
    # a pose file changed after the fact no longer matches its sidecar
    arr = away.poses.copy()
    arr[0, 0, 0] += 1
    pkl.write_bytes(pickle.dumps(arr, protocol=4))
    assert read_sidecar(pkl) is None
    json.loads(side.read_text())  # still valid JSON, just stale


def test_blazepose_settings_change_the_poses(away):
    """Non-default settings reach mediapipe: detection on every frame without smoothing gives
    other (still plausible) poses than tracking with smoothing."""
    config = ExtractConfig(
        roi=AWAY.roi,
        start=AWAY.start + 20,
        max_frames=20,
        options={
            "static_image_mode": True,
            "smooth_landmarks": False,
            "min_detection_confidence": 0.3,
            "min_tracking_confidence": 0.7,
        },
    )
    r = extract_poses(vtest(), config)
    assert r.source["settings"] == {
        "min_detection_confidence": 0.3,
        "min_tracking_confidence": 0.7,
        "smooth_landmarks": False,
        "static_image_mode": True,
        "model_complexity": 1,
    }
    tracked = away.poses[20:40]
    both = r.detected & away.detected[20:40]
    assert both.sum() >= 15
    diff = np.abs(r.poses[both, :, :2] - tracked[both, :, :2])
    assert diff.max() > 0.5  # not the same computation
    assert np.median(diff) < 15  # but the same person


def test_backend_registry_errors():
    assert backend_names() == ["blazepose", "onnx"]
    with pytest.raises(BackendError, match="unknown pose backend 'openpose' \\(known: blazepose, onnx\\)"):
        create_backend("openpose")
    with pytest.raises(BackendError, match="has no option complexity"):
        create_backend("blazepose", {"complexity": 2})
    with pytest.raises(BackendError, match="model_complexity 2 is not bundled"):
        create_backend("blazepose", {"model_complexity": "2"})
    with pytest.raises(BackendError, match="smooth_landmarks='maybe' is not a valid bool"):
        create_backend("blazepose", {"smooth_landmarks": "maybe"})
    with pytest.raises(BackendError, match="needs a model file"):
        create_backend("onnx")
    with pytest.raises(BackendError, match="nowhere.onnx: ONNX model file not found"):
        create_backend("onnx", {"model": "/nowhere.onnx"})


def test_bad_videos_give_one_line_naming_the_file(tmp_path):
    need("cv2")
    missing = tmp_path / "missing.mp4"
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video\n")
    for path, reason in ((missing, "video file not found"), (fake, "not a video OpenCV can decode")):
        with pytest.raises(VideoError) as err:
            extract_poses(path)
        assert str(err.value).startswith(f"{path}: {reason}") and "\n" not in str(err.value)
    # a clip cut in the middle: decoding stops early, and the error says where
    clip = write_clip(tmp_path / "whole.avi", read_frames(vtest(), AWAY.start, 30))
    cut = tmp_path / "cut.avi"
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    from sconet.video.reader import iter_frames, probe_video

    with pytest.raises(
        VideoError, match=r"cut.avi: decoding stopped at frame \d+ of 30 \(the file is truncated or corrupt\)"
    ):
        for _ in iter_frames(probe_video(cut)):
            pass
    with pytest.raises(VideoError, match="lies outside the 768x576 frame"):
        extract_poses(vtest(), ExtractConfig(roi=(800, 0, 900, 100)))
    with pytest.raises(VideoError, match="no frame at or after frame 900"):
        extract_poses(vtest(), ExtractConfig(start=900, backend="blazepose"))


def test_python_without_mediapipe_wheels_is_told_which_versions_work(monkeypatch):
    import sys
    from collections import namedtuple

    version = namedtuple("version_info", "major minor micro releaselevel serial")
    monkeypatch.setattr(sys, "version_info", version(3, 13, 1, "final", 0))
    with pytest.raises(BackendError) as err:
        create_backend("blazepose")
    msg = str(err.value)
    assert "needs mediapipe 0.10.21, which has wheels for Python 3.9-3.12 only (this is Python 3.13)" in msg
    assert "use Python 3.11 or 3.12, or --backend onnx" in msg


def test_report_crop_box_stays_inside_the_frame():
    from sconet.video.screen import _crop_box

    pose = np.zeros((1, 17, 3), np.float32)
    pose[0, :, 0] = np.linspace(300, 340, 17)
    pose[0, :, 1] = np.linspace(330, 470, 17)  # feet near the bottom of a 640 x 480 frame
    x0, y0, x1, y1 = _crop_box(pose, 640, 480, 2.0)
    assert 0 <= y0 and y1 <= 480 and 0 <= x0 and x1 <= 640, (x0, y0, x1, y1)
    assert x0 <= 300 and x1 >= 340 and y0 <= 330 and y1 >= 470  # the person stays in the box
    assert abs((y1 - y0) - 2 * (x1 - x0)) <= 2 and y1 == 480  # moved up, not shrunk
    pose[0, :, 1] = np.linspace(-100, 520, 17)  # taller than the frame: centred on it
    x0, y0, x1, y1 = _crop_box(pose, 640, 480, 2.0)
    assert y0 < 0 and y1 > 480 and abs(y0 + (y1 - 480)) <= 1
    assert _crop_box(np.zeros((2, 17, 3), np.float32), 640, 480, 2.0) == (0, 0, 640, 480)
