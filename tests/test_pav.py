"""Postural Asymmetry Vectors: hand-made poses, the IQR filter, and Rust vs the numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sconet.render import PAV_METRICS, PAV_PAIR_NAMES, PAV_PAIRS, pav, pav_batch
from sconet.render import pav_reference as ref


def symmetric_frame() -> np.ndarray:
    """All 17 keypoints valid, mirror-symmetric about x = 50, y from 0 (nose) to 100 (ankles)."""
    f = np.zeros((17, 3), np.float32)
    f[:, 2] = 1.0
    f[0] = [50, 0, 1]
    ys = {1: 5, 3: 8, 5: 25, 7: 45, 9: 60, 11: 55, 13: 78, 15: 100}
    for left, y in ys.items():
        half = 5 + left  # any horizontal offset, same on both sides
        f[left, :2] = [50 - half, y]
        f[left + 1, :2] = [50 + half, y]
    return f


SCALE = 128.0 / 100.0  # vertical extent 100 -> 128
SHOULDERS, HIPS = PAV_PAIR_NAMES.index("shoulders"), PAV_PAIR_NAMES.index("hips")
HEIGHT, MIDLINE, TILT = range(3)


def test_names():
    assert PAV_PAIRS == ref.PAV_PAIRS and len(PAV_PAIRS) == 8  # the reference keeps its own copy
    assert PAV_PAIRS[0] == (1, 2) and PAV_PAIRS[-1] == (15, 16)
    assert PAV_PAIR_NAMES == ("eyes", "ears", "shoulders", "elbows", "wrists", "hips", "knees", "ankles")
    assert PAV_METRICS == ("height_difference", "midline_deviation", "tilt_degrees")


def test_symmetric_pose_has_zero_asymmetry():
    out = pav(np.stack([symmetric_frame()] * 3))
    assert out.shape == (8, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.0, atol=1e-6)


def test_shoulder_height_difference_and_tilt():
    f = symmetric_frame()
    f[5, :2] = [40, 20]  # left shoulder
    f[6, :2] = [60, 30]  # right shoulder 10 px lower, 20 px to the right
    out = pav(f[None])
    assert out[SHOULDERS, HEIGHT] == pytest.approx(10 * SCALE, rel=1e-6)
    assert out[SHOULDERS, TILT] == pytest.approx(math.degrees(math.atan2(10, 20)), rel=1e-6)
    # Shoulders still centred on the others' mirror axis: midline deviation is 0.
    assert out[SHOULDERS, MIDLINE] == pytest.approx(0.0, abs=1e-5)
    # Walking the other way (mirrored x) gives the same vector.
    mirrored = f.copy()
    mirrored[:, 0] = 200.0 - mirrored[:, 0]
    np.testing.assert_allclose(pav(mirrored[None]), out, rtol=1e-6, atol=1e-6)


def test_midline_deviation_uses_the_mean_x():
    f = symmetric_frame()
    f[[11, 12], 0] += 3.0  # hips shifted right
    out = pav(f[None])
    mean_x = 50.0 + 6.0 / 17.0
    assert out[HIPS, MIDLINE] == pytest.approx(abs(53.0 - mean_x) * SCALE, rel=1e-6)
    assert out[HIPS, MIDLINE] > 0  # not identically 0 as with a hip-midpoint origin
    assert out[SHOULDERS, MIDLINE] == pytest.approx(abs(50.0 - mean_x) * SCALE, rel=1e-6)


def test_invalid_keypoints_are_ignored():
    f = symmetric_frame()
    f[5, :2] = [40, 20]
    f[6, :2] = [60, 30]
    f[13, 2] = 0.0  # left knee: zero confidence
    f[16, :2] = 0.0  # right ankle: missing (0, 0); the left ankle keeps the extent 0..100
    out = pav(f[None])
    np.testing.assert_array_equal(out[[6, 7]], 0.0)  # knees, ankles: no valid pair
    assert out[SHOULDERS, HEIGHT] == pytest.approx(10 * 128.0 / 100.0, rel=1e-6)
    g = f.copy()
    g[15, 2] = 0.0  # now both ankles invalid: extent 0..78
    assert pav(g[None])[SHOULDERS, HEIGHT] == pytest.approx(10 * 128.0 / 78.0, rel=1e-6)


def test_frames_without_values_and_empty_result():
    f = np.zeros((4, 17, 3), np.float32)
    f[..., 2] = 0.9  # every keypoint at (0, 0): missing
    f[1, 5] = [10, 10, 0.9]  # a single valid keypoint: no scale
    f[2, :, :2] = 7.0  # all valid but zero vertical extent
    np.testing.assert_array_equal(pav(f), 0.0)


def test_iqr_outlier_removal():
    diffs = [10, 10, 11, 9, 10, 10, 11, 9, 100]  # raw shoulder height differences
    frames = []
    for d in diffs:
        f = symmetric_frame()
        f[5, 1] = 10.0
        f[6, 1] = 10.0 + d  # stays inside the 0..100 extent
        frames.append(f)
    out = pav(np.stack(frames))
    # Quartiles of [9, 9, 10, 10, 10, 10, 11, 11, 100] are 10 and 11: 100 is dropped.
    assert out[SHOULDERS, HEIGHT] == pytest.approx(10 * SCALE, rel=1e-6)
    values = np.array(diffs, np.float64) * SCALE
    assert ref.iqr_mean(values) == pytest.approx(10 * SCALE)
    assert ref.iqr_mean(np.array([np.nan, 2.0, np.nan])) == 2.0
    assert ref.iqr_mean(np.array([])) == 0.0


def _walking_with_gaps(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, 17, 3), np.float32)
    base = symmetric_frame()
    for t in range(frames):
        p = base[:, :2] * 3 + rng.normal(0, 2.0, (17, 2)) + [300 + 2 * t, 200]
        p[[9, 15], 0] += 20 * math.sin(0.3 * t)
        out[t, :, :2] = p
        out[t, :, 2] = rng.uniform(0.0, 1.0, 17)
    out[rng.random((frames, 17)) < 0.1, :2] = 0.0  # missing keypoints
    out[rng.random((frames, 17)) < 0.05, 2] = 0.0  # zero scores
    return out


def test_rust_matches_reference():
    poses = [_walking_with_gaps(40, s) for s in range(5)] + [symmetric_frame()[None]]
    got = pav_batch(poses, threads=2)
    assert got.shape == (6, 8, 3) and got.dtype == np.float32
    want = np.stack([ref.pav(p) for p in poses])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, pav_batch(poses, threads=1))
    np.testing.assert_array_equal(got[2], pav(poses[2]))
    assert (got[:5] > 0).all()
    assert pav_batch([]).shape == (0, 8, 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"sequence 1: .*shape"):
        pav_batch([symmetric_frame()[None], np.zeros((3, 17, 2), np.float32)])
    with pytest.raises(ValueError, match="T = 0"):
        pav(np.zeros((0, 17, 3), np.float32))
    bad = symmetric_frame()[None].copy()
    bad[0, 3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        pav(bad)
    with pytest.raises(ValueError, match="threads"):
        pav_batch([bad], threads=-2)
