"""Parity of the renderer with OpenGait's own recipe (sconet.render.reference: scikit-learn's
KNNImputer, matplotlib's gray colormap, OpenCV INTER_AREA on float64, numpy in the input dtype).

Per setting, over poses that exercise every step: every pixel within 1 grey level of OpenGait's
and fewer than 1 pixel in 10^4 different.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from matplotlib import cm

from sconet import _skelmap
from sconet.data.synth import SynthConfig, generate_sequence
from sconet.render import RenderConfig, get_preset, render_sequence
from sconet.render import reference as ref

SETTINGS = {
    "opengait": get_preset("opengait"),
    "opengait-sigma15-joint8": get_preset("opengait-sigma15-joint8"),
    "shared": replace(get_preset("opengait-sigma15-joint8"), alignment="shared"),
    "aspect": replace(get_preset("opengait"), geometry="aspect"),
    "head-removed-linear": replace(get_preset("opengait"), head="remove", impute="linear"),
    "head-lite-none": replace(get_preset("opengait"), representation="head-lite", impute="none"),
}


def synth(index: int, frames: int) -> np.ndarray:
    """A complete synthetic walk (float32 image coordinates)."""
    config = SynthConfig(frames=frames, missing_rate=0.0)
    return generate_sequence(index, ("negative", "neutral", "positive")[index % 3], config)


def drop(pose: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """``rate`` of the coordinates set to 0 (x and y independently)."""
    pose = pose.copy()
    missing = np.random.default_rng(seed).random(pose.shape[:2] + (2,)) < rate
    pose[..., :2][missing] = 0
    return pose


def rescale(pose: np.ndarray, factor: float) -> np.ndarray:
    """The subject scaled about its first hip midpoint (image coordinates stay positive)."""
    pose = pose.copy()
    centre = pose[0, 11:13, :2].mean(axis=0)
    pose[..., :2] = (pose[..., :2] - centre) * factor + centre * max(factor, 1.0)
    return pose


def cases(scale: int = 1) -> Iterator[tuple[str, np.ndarray]]:
    """(name, pose) covering the parity conditions; ``scale`` multiplies the frame counts."""
    yield "complete", synth(0, 6 * scale)
    gappy = drop(synth(1, 8 * scale), 0.03, seed=1)
    gappy[2:5, 9, :2] = 0  # a whole joint missing for three frames
    yield "missing-3%", gappy
    yield "missing-1%", drop(synth(2, 8 * scale), 0.01, seed=2)
    edge = synth(3, 6 * scale)
    edge[..., 0] -= np.percentile(edge[..., 0], 30)
    edge[..., 0] = np.maximum(edge[..., 0], 0)  # x clamped to 0 at the image edge, y kept
    yield "x-clamped", edge
    rng = np.random.default_rng(4)
    wide = synth(4, 6 * scale).astype(np.float64)
    wide[..., :2] += rng.uniform(-0.5, 0.5, wide[..., :2].shape)  # not float32-representable
    yield "float64", drop(wide, 0.03, seed=4)
    yield "tiny", rescale(synth(5, 4 * scale), 0.05)
    yield "huge", rescale(synth(6, 4 * scale), 25.0)
    yield "T=1", synth(7, 1)
    yield "T=1-missing", drop(synth(8, 1), 0.05, seed=8)  # KNN: every gap is a whole column
    low = synth(9, 4 * scale)
    just_below = np.nextafter(np.float32(1e-3), np.float32(0))
    low[:, :, 2] = np.resize([1e-3, just_below, 0.0011, 0.0009, 0.5], 17).astype(np.float32)
    yield "scores-1e-3", low
    low64 = low.astype(np.float64)
    low64[:, :, 2] = np.resize([1e-3, 0.000_999_999_999_9, 0.001_000_000_1, 0.6], 17)
    yield "scores-1e-3-float64", low64


def compare(config: RenderConfig, scale: int = 1) -> tuple[int, int, list[str]]:
    """Differing pixels, total pixels, and the cases that break the 1-level bound."""
    differing = total = 0
    broken = []
    for name, pose in cases(scale):
        got = render_sequence(pose, config)
        want = ref.render_with_config(pose, config)
        assert got.shape == want.shape == (len(pose), 2, 64, 64) and got.dtype == np.uint8
        assert want.any(), f"{name}: nothing drawn"
        diff = np.abs(got.astype(np.int16) - want)
        if diff.max() > 1:
            broken.append(f"{name}: {diff.max()} levels at {np.unravel_index(diff.argmax(), diff.shape)}")
        differing += int((diff > 0).sum())
        total += diff.size
    return differing, total, broken


@pytest.mark.parametrize("setting", SETTINGS)
def test_parity_with_opengait(setting):
    differing, total, broken = compare(SETTINGS[setting])
    assert not broken
    assert differing < total * 1e-4, f"{differing} of {total} pixels differ"


@pytest.mark.slow
@pytest.mark.parametrize("setting", SETTINGS)
def test_parity_with_opengait_long(setting):
    differing, total, broken = compare(SETTINGS[setting], scale=6)
    assert not broken
    assert differing < total * 1e-4, f"{differing} of {total} pixels differ"


def test_reference_truncates_where_rounding_would_not():
    """The trap this parity guards: OpenGait truncates the float64 resize, so maps rendered by
    rounding sit one level above on a large share of pixels."""
    pose = synth(10, 3)
    config = get_preset("opengait")
    want = ref.render_with_config(pose, config)
    got = render_sequence(pose, config)
    rounded = np.zeros_like(want)
    for t, frame in enumerate(ref.center_and_scale(ref.impute_knn(pose))[0]):
        planes = ref.heat_planes(frame, ref.ALL_JOINTS, ref.COCO_LIMBS, 8.0, 8.0)
        for ch, plane in enumerate(planes):
            image = ref.to_image(plane) / 255.0
            top, bottom = ref.rows(image)
            crop = ref.crop(image, top, bottom, "square")
            resized = ref.cv2.resize(crop, (64, 64), interpolation=ref.cv2.INTER_AREA)
            rounded[t, ch] = np.rint(resized * 255).astype(np.uint8)
    assert ((rounded.astype(int) - want) == 1).mean() > 0.1
    assert np.abs(got.astype(int) - want).max() <= 1


def test_reference_constants_match_the_renderer():
    """The reference keeps its own copy of OpenGait's constants (it shares no code with the
    renderer); they must equal the ones the renderer exports, and its defaults the preset."""
    assert ref.COCO_LIMBS == _skelmap.COCO_LIMBS
    assert ref.ALL_JOINTS == tuple(range(_skelmap.NUM_JOINTS))
    assert tuple(ref.HEAD) == _skelmap.HEAD_JOINTS
    assert (ref.CANVAS, ref.OUT) == (_skelmap.CANVAS_SIZE, _skelmap.MAP_SIZE)
    assert ref.EPS == _skelmap.MIN_CONFIDENCE
    params = inspect.signature(ref.render_sequence).parameters
    defaults = {name: p.default for name, p in params.items() if name != "pose"}
    preset = get_preset("opengait")
    assert defaults == {
        "joints": preset.representation.joints,
        "limbs": preset.representation.limbs,
        "sigma_limb": preset.sigma_limb,
        "sigma_joint": preset.sigma_joint,
        "geometry": preset.geometry,
        "alignment": preset.alignment,
        "impute": preset.impute,
        "head": preset.head,
    }


def test_gray_lut_is_matplotlibs():
    """The quantiser's lookup is matplotlib's gray colormap at every level (24 entries one low)."""
    centres = (np.arange(256, dtype=np.float32) + 0.5) / 256
    want = (cm.gray(centres)[:, 0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(_skelmap.gray_lut(), want)
    low = np.flatnonzero(want.astype(int) != np.arange(256))
    assert len(low) == 24 and low[0] == 33 and low[-1] == 244


def test_edge_frames():
    """Limbs shorter than 1 px, a keypoint far off the canvas, nothing above the score floor,
    and a frame of zero height (OpenGait fails there; both render it empty)."""
    pose = synth(11, 5)
    pose[0, 9:11, :2] = pose[0, 7:9, :2] + 0.3
    pose[1, 15, :2] = [4000.0, 9000.0]
    pose[2, :, 2] = 0.0005
    pose[3, :5, 2] = 0.0
    pose[4, :, 1] = 321.0
    config = replace(get_preset("opengait"), impute="none")
    got = render_sequence(pose, config)
    want = ref.render_with_config(pose, config)
    assert np.abs(got.astype(int) - want).max() <= 1
    assert not got[2].any() and not got[4].any() and got[3].any()


def test_knn_quirk_keeps_the_sequence_unimputed():
    """A coordinate missing in every frame: OpenGait (and sconet) render the raw poses."""
    pose = drop(synth(12, 5), 0.03, seed=12)
    pose[:, 4, 0] = 0  # right ear x never seen
    knn = render_sequence(pose, get_preset("opengait"))
    raw = render_sequence(pose, replace(get_preset("opengait"), impute="none"))
    np.testing.assert_array_equal(knn, raw)
    want = ref.render_with_config(pose, get_preset("opengait"))
    assert np.abs(knn.astype(int) - want).max() <= 1
