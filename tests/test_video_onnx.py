"""The ``onnx`` backend's plumbing with tiny models exported from torch here: cropping,
normalisation, both output kinds (heatmaps, SimCC), decoding back to frame pixels, person
presence and tracking. Not accuracy: the "pose model" puts every keypoint on the brightest
spot of its input, and the clip is a bright disc moving over a dark background."""

from __future__ import annotations

import numpy as np
import pytest

from _video_helpers import need, write_clip
from sconet.video import BackendError, ExtractConfig, VideoError, create_backend, extract_poses

W, H = 320, 240
IN_W, IN_H = 96, 128
RADIUS = 6


def _disc_path(n: int) -> list[tuple[int, int]]:
    return [(40 + 8 * t, 60 + 4 * t) for t in range(n)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple:
    need("cv2")
    import cv2

    frames, centres = [], _disc_path(24)
    for t, (x, y) in enumerate(centres):
        f = np.full((H, W, 3), 20, np.uint8)
        if not 10 <= t < 14:  # frames 10-13: nobody there
            cv2.circle(f, (x, y), RADIUS, (255, 255, 255), -1)
        frames.append(f)
    path = write_clip(tmp_path_factory.mktemp("onnx") / "disc.avi", frames)
    return path, np.array(centres, np.float32)


def _export(tmp_path, kind: str, split: int = 2):
    need("onnxruntime")
    need("onnx")
    import torch

    class Spot(torch.nn.Module):
        """Every keypoint at the centroid of the input's bright pixels, as a Gaussian peak (or
        SimCC vectors) whose height is the brightest normalised value."""

        def forward(self, x):
            g = x.mean(1)[0]  # [H, W], normalised
            w = torch.relu(g)
            ys = torch.arange(IN_H, dtype=torch.float32)[:, None]
            xs = torch.arange(IN_W, dtype=torch.float32)[None, :]
            total = w.sum().clamp_min(1e-6)
            cx, cy = (w * xs).sum() / total, (w * ys).sum() / total
            amp = g.amax()
            if kind == "heatmap":  # stride 4, peak at the centroid
                hx = torch.arange(IN_W // 4, dtype=torch.float32)[None, :] * 4 + 1.5
                hy = torch.arange(IN_H // 4, dtype=torch.float32)[:, None] * 4 + 1.5
                peak = amp * torch.exp(-((hx - cx) ** 2 + (hy - cy) ** 2) / 32.0)
                return peak[None, None].repeat(1, 17, 1, 1)
            bx = torch.arange(IN_W * split, dtype=torch.float32)[None, None] / split
            by = torch.arange(IN_H * split, dtype=torch.float32)[None, None] / split
            sx = amp * torch.exp(-((bx - cx) ** 2) / 2.0)
            sy = amp * torch.exp(-((by - cy) ** 2) / 2.0)
            return sx.repeat(1, 17, 1), sy.repeat(1, 17, 1)

    model = Spot()
    names = ["heatmaps"] if kind == "heatmap" else ["simcc_x", "simcc_y"]
    path = tmp_path / f"{kind}.onnx"
    torch.onnx.export(
        model.eval(),
        torch.zeros(1, 3, IN_H, IN_W),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=names,
    )
    return path


@pytest.mark.parametrize("kind", ["heatmap", "simcc"])
def test_keypoints_land_on_the_spot_in_frame_pixels(clip, tmp_path, kind):
    video, centres = clip
    model = _export(tmp_path, kind)
    roi = (20, 30, 300, 230)
    r = extract_poses(video, ExtractConfig(backend="onnx", options={"model": str(model)}, roi=roi))
    assert r.source["backend"] == "onnx" and r.source["settings"]["output"] == kind
    assert r.source["settings"]["input_size"] == [IN_W, IN_H]
    assert r.source["model"] == model.name and len(r.source["model_sha256"]) == 64
    present = np.ones(24, bool)
    present[10:14] = False
    np.testing.assert_array_equal(r.detected, present)
    assert (r.poses[~present] == 0).all()
    err = np.abs(r.poses[:, :, :2] - centres[:, None, :]).max((1, 2))
    # frames 0 and 14 are read in the whole region (coarse: 4 input pixels are ~15 frame
    # pixels), the others in a box around the previous keypoints (~1.5 frame pixels)
    searched = np.zeros(24, bool)
    searched[[0, 14]] = True
    assert err[searched].max() <= 12
    assert err[present & ~searched].max() <= 3
    assert (r.poses[present][:, :, 2] > 1.0).all()  # the spot's normalised brightness


def test_settings_reach_the_model(clip, tmp_path):
    video, centres = clip
    model = str(_export(tmp_path, "simcc", split=3))
    base = {"model": model, "simcc_split": 3, "threads": 1}
    # a wider crop around the previous keypoints changes nothing in frame pixels
    r = extract_poses(video, ExtractConfig(backend="onnx", options={**base, "padding": 2.0}))
    present = r.detected
    assert present.sum() == 20
    assert np.abs(r.poses[present][:, :, :2] - centres[present][:, None, :]).max() <= 4.0
    # the wrong split misplaces every keypoint (coordinates scaled by 3/2 in the crop)
    config = ExtractConfig(backend="onnx", options={**base, "simcc_split": 2.0}, min_detection_rate=0.0)
    wrong = extract_poses(video, config)
    assert np.abs(wrong.poses[wrong.detected][:, 0, :2] - centres[wrong.detected]).max() > 10
    # normalisation: a mean as bright as the spot leaves no score above min_score ...
    with pytest.raises(VideoError, match=r"a person was found in 0 of 24 frames \(0.0 %\)"):
        extract_poses(video, ExtractConfig(backend="onnx", options={**base, "mean": "255,255,255"}))
    # ... and a large std shrinks the scores below the default min_score, not below a lower one
    dim = {**base, "std": (1000.0, 1000.0, 1000.0)}
    with pytest.raises(VideoError, match="below the required 50 %"):
        extract_poses(video, ExtractConfig(backend="onnx", options=dim))
    ok = extract_poses(video, ExtractConfig(backend="onnx", options={**dim, "min_score": 0.1}))
    assert ok.n_detected == 20


def test_every_other_frame(clip, tmp_path):
    video, centres = clip
    model = str(_export(tmp_path, "simcc"))
    config = ExtractConfig(
        backend="onnx", options={"model": model}, start=1, step=2, max_frames=8, keep_frames=2
    )
    r = extract_poses(video, config)
    used = np.arange(1, 16, 2)  # video frames 1, 3, ..., 15
    assert r.poses.shape == (8, 17, 3)
    np.testing.assert_array_equal(r.detected, ~((used >= 10) & (used < 14)))
    assert np.abs(r.poses[r.detected][:, :, :2] - centres[used][r.detected][:, None]).max() <= 12
    assert r.sidecar()["frames_used"] == {"first": 1, "last": 15, "count": 8, "step": 2}
    assert sorted(r.frames) == [0, 7]
    np.testing.assert_array_less(0, np.abs(r.frames[7].astype(int) - r.frames[0].astype(int)).sum())
    with pytest.raises(ValueError, match="step must be >= 1"):
        ExtractConfig(step=0)


def test_bad_onnx_models_are_refused(tmp_path):
    need("onnxruntime")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx model")
    with pytest.raises(BackendError, match=r"junk.onnx: not a usable ONNX model"):
        create_backend("onnx", {"model": junk})
    need("onnx")
    import torch

    class Wrong(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3))  # [1, 3]: no keypoints

    path = tmp_path / "wrong.onnx"
    torch.onnx.export(Wrong(), torch.zeros(1, 3, 64, 48), str(path), dynamo=False)
    with pytest.raises(BackendError, match=r"wrong.onnx: expected heatmaps \[1, 17, h, w\] or SimCC outputs"):
        create_backend("onnx", {"model": path})
    with pytest.raises(BackendError, match="padding must be >= 1"):
        create_backend("onnx", {"model": path, "padding": 0.5})
