"""Parity of the Rust renderer with the numpy reference (sconet.render.reference), and of the numpy
INTER_AREA with OpenCV."""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import STANDING
from sconet import _skelmap
from sconet.render import BUILTIN_REPRESENTATIONS, RenderConfig, render_sequence
from sconet.render import reference as ref


def walking_poses(frames: int, seed: int) -> np.ndarray:
    """Walking-like complete poses: swinging arms and legs, sway, drift, varied scores."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(1.5, 4.0)
    origin = rng.uniform(200, 800, size=2)
    phase = rng.uniform(0, 2 * np.pi)
    out = np.zeros((frames, 17, 3), np.float32)
    for t in range(frames):
        p = STANDING.copy()
        swing = np.sin(phase + 0.4 * t)
        p[[9, 10], 0] += [12 * swing, -12 * swing]
        p[[7, 8], 0] += [6 * swing, -6 * swing]
        p[[15, 16], 0] += [-18 * swing, 18 * swing]
        p[[13, 14], 0] += [-9 * swing, 9 * swing]
        p[:, 0] += 2 * np.sin(phase + 0.2 * t)
        p += rng.normal(0, 1.0, size=p.shape)
        out[t, :, :2] = p * scale + origin + [3.0 * t, 0.0]
        out[t, :, 2] = rng.uniform(0.3, 1.0, size=17)
    return out


def random_poses(frames: int, seed: int) -> np.ndarray:
    """Unstructured poses: keypoints anywhere in a 640 x 480 image."""
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, 17, 3), np.float32)
    out[..., 0] = rng.uniform(1, 640, size=(frames, 17))
    out[..., 1] = rng.uniform(1, 480, size=(frames, 17))
    out[..., 2] = rng.uniform(0.05, 1.0, size=(frames, 17))
    return out


def _assert_parity(pose: np.ndarray, config: RenderConfig) -> None:
    got = render_sequence(pose, config)
    want = ref.render_with_config(pose, config)
    assert got.shape == want.shape == (len(pose), 2, 64, 64)
    assert got.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1, f"max difference {diff.max()} at {np.unravel_index(diff.argmax(), diff.shape)}"
    # Differences are rare float-boundary cases, not a systematic offset.
    assert (diff > 0).mean() < 1e-3
    assert want.any()


# --------------------------------------------------------------------------------------------
# The grey lookup
# --------------------------------------------------------------------------------------------


def _matplotlib_grey(values: np.ndarray) -> np.ndarray:
    """What the reference pipeline does: matplotlib's own ``gray`` colormap, red channel x 255,
    truncated to uint8."""
    from matplotlib import colormaps

    return (colormaps["gray"](values)[..., 0] * 255).astype(np.uint8)


def test_gray_lut_is_matplotlibs_gray_colormap():
    lut = _matplotlib_grey(np.arange(256))
    np.testing.assert_array_equal(_skelmap.gray_lut(), lut)
    np.testing.assert_array_equal(ref.gray_lut(), lut)
    low = np.flatnonzero(lut.astype(int) != np.arange(256))  # matplotlib's rounding quirk
    assert len(low) == 24 and (lut[low] == low - 1).all()
    assert low[0] == 33 and low[-1] == 244


def test_to_grey_is_matplotlibs_quantisation():
    """The reference's float -> grey step equals matplotlib's colormap call on float32 values
    (index = floor(v * 256), 1.0 and above -> the last entry)."""
    sweep = np.linspace(0.0, 1.0, 200_001, dtype=np.float32)
    edges = np.array([0.0, 1 / 256 - 1e-7, 1 / 256, 33.5 / 256, 0.999, 1.0, 1.7], np.float32)
    for v in (sweep, edges):
        np.testing.assert_array_equal(ref.to_grey(v), _matplotlib_grey(v))


def test_to_grey_quantises_by_floor():
    x = np.array([0.0, 1 / 256 - 1e-7, 1 / 256, 33.5 / 256, 0.999, 1.0, 1.7], np.float32)
    np.testing.assert_array_equal(ref.to_grey(x), [0, 0, 1, 32, 255, 255, 255])


# --------------------------------------------------------------------------------------------
# Rendering parity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_reference_walking(seed):
    _assert_parity(walking_poses(6, seed), RenderConfig.reference())


@pytest.mark.parametrize("seed", [3, 4])
def test_parity_reference_random(seed):
    _assert_parity(random_poses(6, seed), RenderConfig.reference())


@pytest.mark.parametrize(
    "settings",
    [
        dict(representation="body-only"),  # the defaults: sigma 15 / 8, square, shared
        dict(representation="head-lite", geometry="aspect"),
        dict(representation="full-body", alignment="per-channel", geometry="aspect"),
        dict(representation="full-body", sigma_limb=3.0, sigma_joint=20.0),
    ],
)
def test_parity_other_settings(settings):
    config = RenderConfig(impute="none", **settings)
    _assert_parity(walking_poses(4, 7), config)
    _assert_parity(random_poses(3, 8), config)


def test_parity_edge_cases():
    pose = walking_poses(5, 11)
    pose[0, 9:11, :2] = pose[0, 7:9, :2] + 0.3  # limbs shorter than 1 px
    pose[1, 15, :2] = [-4000.0, 9000.0]  # a keypoint far outside the canvas
    pose[2, :, 2] = 0.0005  # nothing reaches the confidence floor
    pose[3, :5, 2] = 0.0  # head not drawn, still used for the scale
    pose[4, :, 1] = 321.0  # zero vertical extent
    config = RenderConfig.reference()
    got = render_sequence(pose, config)
    want = ref.render_with_config(pose, config)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert not got[2].any() and not got[4].any()


def test_parity_with_imputation():
    pose = walking_poses(8, 5)
    pose[2:5, 9, :2] = 0.0
    pose[0, 3, :2] = 0.0
    pose[:, 4, :2] = 0.0  # never observed
    config = RenderConfig(representation="full-body", impute="linear")
    _assert_parity(pose, config)


# --------------------------------------------------------------------------------------------
# INTER_AREA
# --------------------------------------------------------------------------------------------


def _crops(rng: np.random.Generator):
    sizes = [(128, 128), (64, 64), (64, 65), (127, 127), (124, 125), (100, 101), (128, 97),
             (63, 63), (40, 41), (1, 1), (2, 3), (90, 30), (30, 90), (77, 128)]  # fmt: skip
    sizes += [tuple(int(v) for v in rng.integers(1, 129, size=2)) for _ in range(40)]
    for h, w in sizes:
        yield rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        yy, xx = np.mgrid[:h, :w]
        blob = 255 * np.exp(-((yy - h / 2) ** 2 + (xx - w / 3) ** 2) / (2 * (h / 5 + 1) ** 2))
        yield blob.astype(np.uint8)


def test_resize_area_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    worst = 0
    for img in _crops(rng):
        got = ref.resize_area(img, 64, 64)
        want = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
        worst = max(worst, int(np.abs(got.astype(int) - want.astype(int)).max()))
    assert worst <= 1


def test_builtin_representations_are_the_reference_sets():
    assert BUILTIN_REPRESENTATIONS["full-body"].limbs == ref.COCO_LIMBS
    assert BUILTIN_REPRESENTATIONS["full-body"].joints == ref.ALL_JOINTS
