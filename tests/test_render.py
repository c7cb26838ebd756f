"""sconet.render: representations, settings, rendering behaviour and input validation."""

from __future__ import annotations

import json
import os
from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from _helpers import STANDING
from sconet import _skelmap
from sconet import render as R
from sconet.render import (
    BUILTIN_REPRESENTATIONS,
    RenderConfig,
    Representation,
    get_representation,
    impute,
    render_batch,
    render_sequence,
)
from sconet.render import reference as ref


def walker(frames: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, 17, 3), np.float32)
    for t in range(frames):
        p = STANDING.copy()
        s = np.sin(0.5 * t)
        p[[9, 10, 15, 16], 0] += [10 * s, -10 * s, -15 * s, 15 * s]
        out[t, :, :2] = p * 3 + [500, 400] + rng.normal(0, 0.5, (17, 2))
        out[t, :, 2] = rng.uniform(0.6, 1.0, 17)
    return out


# --------------------------------------------------------------------------------------------
# Representations
# --------------------------------------------------------------------------------------------


def test_builtin_representations():
    full, body, head = (BUILTIN_REPRESENTATIONS[k] for k in ("full-body", "body-only", "head-lite"))
    assert full.joints == tuple(range(17)) and len(full.limbs) == 17
    assert body.joints == tuple(range(5, 17)) and len(body.limbs) == 11
    assert all(min(limb) >= 5 for limb in body.limbs)
    assert head.joints == (0, *range(5, 17))
    assert set(head.limbs) == set(body.limbs) | {(0, 5), (0, 6)}
    assert get_representation("body-only") is body
    np.testing.assert_array_equal(body.joint_mask(), [0] * 5 + [1] * 12)
    assert body.limb_array().shape == (11, 2) and body.limb_array().dtype == np.int64


@pytest.mark.parametrize(
    "joints, limbs, match",
    [
        ((5, 17), (), "joint 17"),
        ((-1,), (), "joint -1"),
        ((5, 5), (), "duplicate joints"),
        ((5,), ((5, 17),), "limb"),
        ((5,), ((5, 6), (6, 5)), "duplicate limb"),
        ((5,), ((6, 6),), "itself"),
        ((5,), ((1, 2, 3),), "pair"),
        ((True,), (), "joint True"),
        ((), (), "draws nothing"),
    ],
)
def test_representation_validation(joints, limbs, match):
    with pytest.raises(ValueError, match=match):
        Representation("bad", joints, limbs)


def test_representation_is_frozen_and_normalised():
    rep = Representation(" arms ", [10, 5, np.int64(7)], [[5, 7], (7, 10)])
    assert rep.name == "arms" and rep.joints == (5, 7, 10) and rep.limbs == ((5, 7), (7, 10))
    with pytest.raises(FrozenInstanceError):
        rep.name = "x"  # type: ignore[misc]


def _arms_dict():
    return {"name": "arms", "joints": [5, 6, 7, 8, 9, 10], "limbs": [[5, 7], [7, 9], [6, 8], [8, 10]]}


def test_custom_representation_files(tmp_path):
    toml = tmp_path / "arms.toml"
    toml.write_text(
        'name = "arms"\njoints = [5, 6, 7, 8, 9, 10]\nlimbs = [[5, 7], [7, 9], [6, 8], [8, 10]]\n'
    )
    js = tmp_path / "arms.json"
    js.write_text(json.dumps(_arms_dict()))
    a, b = get_representation(str(toml)), get_representation(js)
    assert a == b == Representation.from_dict(_arms_dict())
    # A representation is data: arms-only maps equal full-body maps of the pose with every
    # other keypoint's score zeroed (scores do not take part in the normalisation).
    pose = walker(3)
    masked = pose.copy()
    masked[:, [j for j in range(17) if j not in a.joints], 2] = 0.0
    got = render_sequence(pose, RenderConfig(representation=a))
    want = render_sequence(masked, RenderConfig(representation="full-body"))
    np.testing.assert_array_equal(got, want)
    assert got.any()


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("bad.toml", 'name = "x"\njoints = [1, 99]\nlimbs = []\n', "joint 99"),
        ("bad2.toml", 'name = "x"\njoints = [1\n', "not valid TOML"),
        ("bad.json", '{"name": "x", "joints": [1], "limbs": [[1, 20]]}', "limb"),
        ("bad2.json", '{"name": "x", "joints": [1]}', "missing key"),
        ("bad3.json", '{"name": "x", "joints": [1], "limbs": [], "colour": 1}', "unknown key"),
    ],
)
def test_custom_representation_errors_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        get_representation(path)
    assert str(path) in str(info.value)


def test_unknown_representation():
    with pytest.raises(ValueError, match="full-body"):
        get_representation("no-such-thing")
    with pytest.raises(ValueError, match="cannot read"):
        get_representation("/nonexistent/rep.toml")


# --------------------------------------------------------------------------------------------
# RenderConfig
# --------------------------------------------------------------------------------------------


def test_render_config_defaults_roundtrip_and_key():
    c = RenderConfig()
    assert c.representation.name == "body-only"
    assert (c.sigma_limb, c.sigma_joint, c.geometry, c.alignment, c.impute, c.head) == (
        15.0, 8.0, "square", "shared", "linear", "keep",
    )  # fmt: skip
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert RenderConfig.from_dict(d) == c
    assert RenderConfig.from_dict({**d, "representation": "body-only"}) == c
    assert RenderConfig(sigma_limb=15, representation="body-only") == c  # coerced
    k = c.key()
    assert len(k) == 12 and k == RenderConfig().key()
    keys = {
        k,
        RenderConfig(sigma_limb=14.0).key(),
        RenderConfig(geometry="aspect").key(),
        RenderConfig(alignment="per-channel").key(),
        RenderConfig(impute="none").key(),
        RenderConfig(impute="knn").key(),
        RenderConfig(head="zero-scores").key(),
        RenderConfig(head="remove").key(),
        RenderConfig(representation="full-body").key(),
    }
    assert len(keys) == 9
    assert R.RENDERER_VERSION == _skelmap.RENDERER_VERSION == "3"
    # Settings recorded before ``head`` existed read as ``keep``.
    old = {k: v for k, v in RenderConfig(impute="knn").to_dict().items() if k != "head"}
    assert RenderConfig.from_dict(old) == RenderConfig(impute="knn")


def test_shared_constants_come_from_the_extension():
    """The skeleton, the settings' values and defaults and the sizes are defined once, in Rust:
    the public names are the extension's objects, with their documented values and types."""
    for name in (
        "NUM_JOINTS", "JOINT_NAMES", "COCO_LIMBS", "PAV_PAIRS", "PAV_PAIR_NAMES", "PAV_METRICS",
        "GEOMETRIES", "ALIGNMENTS", "IMPUTATIONS", "HEADS", "MAP_SIZE", "FRAME_SHAPE",
    ):  # fmt: skip
        assert getattr(R, name) is getattr(_skelmap, name), name
    assert R.NUM_JOINTS == len(R.JOINT_NAMES) == 17 and type(R.NUM_JOINTS) is int
    assert R.JOINT_NAMES[0] == "nose" and R.JOINT_NAMES[5:7] == ("left_shoulder", "right_shoulder")
    assert R.JOINT_NAMES[-1] == "right_ankle"
    assert R.COCO_LIMBS == (
        (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8),
        (8, 10), (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
    )  # fmt: skip
    assert all(type(limb) is tuple and all(type(k) is int for k in limb) for limb in R.COCO_LIMBS)
    assert R.GEOMETRIES == ("square", "aspect")
    assert R.ALIGNMENTS == ("shared", "per-channel")
    assert R.IMPUTATIONS == ("linear", "knn", "none")
    assert R.HEADS == ("keep", "zero-scores", "remove")
    assert (R.MAP_SIZE, R.FRAME_SHAPE, _skelmap.CANVAS_SIZE) == (64, (2, 64, 64), 128)
    assert _skelmap.HEAD_JOINTS == (0, 1, 2, 3, 4) and _skelmap.MIN_CONFIDENCE == 1e-3
    from sconet.cache import format as cache_format
    from sconet.stream import FRAME_SHAPE

    assert cache_format.FRAME_SHAPE is FRAME_SHAPE is R.FRAME_SHAPE
    ref_config = RenderConfig.reference()
    assert ref_config.representation.name == "full-body"
    assert (
        ref_config.sigma_limb, ref_config.sigma_joint, ref_config.geometry, ref_config.alignment,
        ref_config.impute, ref_config.head,
    ) == (8.0, 8.0, "square", "per-channel", "none", "keep")  # fmt: skip
    # Every allowed value is one the renderer accepts, and only those.
    pose, mask, limbs = [walker(1)], np.ones(17, np.uint8), np.array([[5, 6]], np.int64)
    for g in R.GEOMETRIES:
        for a in R.ALIGNMENTS:
            for i in R.IMPUTATIONS:
                for h in R.HEADS:
                    _skelmap.render_batch(pose, mask, limbs, 8.0, 8.0, g, a, i, 1, head=h)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(sigma_limb=0.0), "sigma_limb"),
        (dict(sigma_joint=-1.0), "sigma_joint"),
        (dict(sigma_joint=float("nan")), "sigma_joint"),
        (dict(sigma_limb="15"), "sigma_limb"),
        (dict(geometry="round"), "geometry"),
        (dict(alignment="joint"), "alignment"),
        (dict(impute="cubic"), "impute"),
        (dict(head="drop"), "head"),
        (dict(representation="nope"), "unknown representation"),
    ],
)
def test_render_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RenderConfig(**kwargs)


def test_presets_are_data_and_recorded_as_settings():
    og = R.get_preset("opengait")
    assert og.representation.name == "full-body"
    assert (og.sigma_limb, og.sigma_joint, og.geometry, og.alignment, og.impute, og.head) == (
        8.0, 8.0, "square", "per-channel", "knn", "keep",
    )  # fmt: skip
    fork = R.get_preset("opengait-sigma15-joint8")
    assert fork.representation.name == "body-only"
    assert (fork.sigma_limb, fork.sigma_joint, fork.alignment, fork.impute, fork.head) == (
        15.0, 8.0, "per-channel", "knn", "zero-scores",
    )  # fmt: skip
    assert set(R.PRESETS) == {"opengait", "opengait-sigma15-joint8"}
    assert RenderConfig.from_dict(json.loads(json.dumps(fork.to_dict()))) == fork
    assert og.key() != fork.key() != RenderConfig().key()
    with pytest.raises(ValueError, match="unknown render preset 'sconet'.*opengait"):
        R.get_preset("sconet")


def test_head_modes():
    """zero-scores: the head is drawn nowhere but still scales the body; remove: left out of
    the scale too. body-only never draws the head, so zero-scores changes nothing there."""
    pose = walker(3)
    full = RenderConfig("full-body", impute="none")
    by_hand = pose.copy()
    by_hand[:, :5, 2] = 0
    zeroed = render_sequence(pose, RenderConfig("full-body", impute="none", head="zero-scores"))
    np.testing.assert_array_equal(zeroed, render_sequence(by_hand, full))
    assert not np.array_equal(zeroed, render_sequence(pose, full))
    body = RenderConfig(impute="none")
    np.testing.assert_array_equal(
        render_sequence(pose, RenderConfig(impute="none", head="zero-scores")), render_sequence(pose, body)
    )
    removed = render_sequence(pose, RenderConfig(impute="none", head="remove", alignment="per-channel"))
    kept = render_sequence(pose, RenderConfig(impute="none", alignment="per-channel"))
    assert not np.array_equal(removed, kept)
    # Removed == kept with the head hidden and moved inside the body's height (out of the scale).
    inside = by_hand.copy()
    inside[:, :5, 1] = pose[:, 11:13, 1].mean(axis=1, keepdims=True)
    np.testing.assert_array_equal(
        removed, render_sequence(inside, RenderConfig(impute="none", alignment="per-channel"))
    )


def test_render_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="sigma"):
        RenderConfig.from_dict({**RenderConfig().to_dict(), "sigma": 3})


# --------------------------------------------------------------------------------------------
# Rendering behaviour
# --------------------------------------------------------------------------------------------


def test_output_shape_dtype_and_batch_order():
    a, b = walker(3, 1), walker(5, 2)
    out = render_batch([a, b], RenderConfig(), threads=1)
    assert out.shape == (8, 2, 64, 64) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out[:3], render_sequence(a))
    np.testing.assert_array_equal(out[3:], render_sequence(b))
    np.testing.assert_array_equal(out, render_batch([a, b], threads=2))
    np.testing.assert_array_equal(out, render_batch([a, b], threads=0))
    np.testing.assert_array_equal(out, render_batch((a.astype(np.float64), b)))
    assert render_batch([]).shape == (0, 2, 64, 64)


@pytest.mark.parametrize("name, hidden", [("body-only", range(5)), ("head-lite", range(1, 5))])
def test_builtin_representations_draw_exactly_their_joints(name, hidden):
    pose = walker(4)
    masked = pose.copy()
    masked[:, list(hidden), 2] = 0.0  # zero score: not drawn, still used for the scale
    for alignment in ("shared", "per-channel"):
        got = render_sequence(pose, RenderConfig(representation=name, alignment=alignment))
        want = render_sequence(masked, RenderConfig(representation="full-body", alignment=alignment))
        np.testing.assert_array_equal(got, want)
    # The hidden keypoints' scores do not matter at all ...
    bumped = pose.copy()
    bumped[:, list(hidden), 2] = 1.0
    np.testing.assert_array_equal(
        render_sequence(bumped, RenderConfig(representation=name)),
        render_sequence(pose, RenderConfig(representation=name)),
    )
    # ... while the full body's maps do change with them.
    full = RenderConfig(representation="full-body")
    assert not np.array_equal(render_sequence(bumped, full), render_sequence(masked, full))


def test_body_only_joint_map_has_no_head_energy():
    # A long neck puts the head far above the shoulders. With the full limb set, both
    # representations share the same crop box (set by the limb map, head included), so the
    # joint maps can be compared row by row: the body joints leave the head rows empty.
    pose = walker(2)
    pose[:, :5, 1] -= 400.0
    body_joints = Representation("body-joints", tuple(range(5, 17)), R.COCO_LIMBS)
    body = render_sequence(pose, RenderConfig(body_joints))
    full = render_sequence(pose, RenderConfig("full-body"))
    np.testing.assert_array_equal(body[:, 0], full[:, 0])  # same limb maps, same box
    head_rows = slice(0, 10)
    assert full[:, 1, head_rows].sum() > 0
    assert body[:, 1, head_rows].sum() == 0
    assert body[:, 1].sum() > 0
    # Cropped on its own rows, the built-in body-only joint map is that same map.
    per = dict(alignment="per-channel")
    np.testing.assert_array_equal(
        render_sequence(pose, RenderConfig("body-only", **per))[:, 1],
        render_sequence(pose, RenderConfig(body_joints, **per))[:, 1],
    )


def _blob_pose() -> np.ndarray:
    """One frame whose left hip lands exactly on the canvas centre (both hips coincide)."""
    pose = np.zeros((1, 17, 3), np.float32)
    pose[0, :, 0] = 300.0
    pose[0, :, 1] = np.linspace(100, 400, 17)
    pose[0, 11, :2] = pose[0, 12, :2] = [300.0, 250.0]
    pose[0, :, 2] = 1.0
    return pose


def test_geometry_aspect_keeps_a_circle_round():
    # One joint, sigma 49/6: its window is rows and columns 39..88, h = 50 (even), so the
    # square crop is 50 x 51 (squeezed by a column) and the aspect crop 50 x 50.
    rep = Representation("left-hip", (11,), ())
    sigma = 49 / 6
    pose = _blob_pose()
    aspect = render_sequence(pose, RenderConfig(rep, sigma_joint=sigma, geometry="aspect"))[0, 1]
    square = render_sequence(pose, RenderConfig(rep, sigma_joint=sigma, geometry="square"))[0, 1]
    # Transposition symmetric up to float rounding (one level), unlike the squeezed square.
    assert np.abs(aspect.astype(int) - aspect.T).max() <= 1
    assert np.abs(square.astype(int) - square.T).max() > 5

    def spread(img, axis):
        w = img.astype(np.float64).sum(axis=axis)
        c = np.arange(len(w))
        m = (w * c).sum() / w.sum()
        return np.sqrt((w * (c - m) ** 2).sum() / w.sum())

    assert spread(aspect, 0) == pytest.approx(spread(aspect, 1), rel=1e-3)
    assert spread(square, 0) < spread(square, 1) * 0.99  # 50/51 narrower horizontally
    # With an odd row extent the two geometries coincide.
    odd = render_sequence(pose, RenderConfig(rep, sigma_joint=8.0, geometry="aspect"))
    np.testing.assert_array_equal(odd, render_sequence(pose, RenderConfig(rep, sigma_joint=8.0)))
    assert not render_sequence(pose, RenderConfig(rep, sigma_joint=sigma))[0, 0].any()  # no limbs


def test_shared_alignment_registers_the_maps():
    # A wrist joint and a thigh limb occupy different rows: per-channel crops stretch each to
    # the full height; shared keeps them where they are relative to each other.
    rep = Representation("wrist-thigh", (9,), ((11, 13),))
    pose = walker(1)
    per = render_sequence(pose, RenderConfig(rep, alignment="per-channel"))[0]
    shared = render_sequence(pose, RenderConfig(rep, alignment="shared"))[0]
    rows = lambda img: np.flatnonzero(img.any(axis=1))  # noqa: E731
    for ch in (0, 1):
        r = rows(per[ch])
        assert r[0] == 0 and r[-1] == 63  # each channel fills its own box
    # Shared: one box for both, so at least one channel no longer spans it all.
    assert rows(shared[1])[-1] < 63 or rows(shared[0])[0] > 0
    # The box is the union of both channels' non-zero rows (as in the reference).
    want = ref.render_sequence(
        pose, joints=rep.joints, limbs=rep.limbs, sigma_limb=15.0, sigma_joint=8.0,
        alignment="shared", impute="none",
    )  # fmt: skip
    got = render_sequence(pose, RenderConfig(rep, impute="none"))
    assert np.abs(got.astype(int) - want).max() <= 1


@pytest.mark.parametrize(
    "config",
    [
        RenderConfig(),
        RenderConfig.reference(),
        RenderConfig(geometry="aspect", alignment="per-channel"),
        RenderConfig("head-lite", geometry="aspect"),
    ],
    ids=["default", "reference", "aspect-per-channel", "head-lite-aspect"],
)
def test_render_into_a_reused_buffer(config):
    a, b = walker(3, 1), walker(5, 2)
    a[1, :, 1] = 77.0  # a degenerate (empty) frame must be cleared too
    want = render_batch([a, b], config, threads=1)
    out = np.full((8, 2, 64, 64), 201, np.uint8)  # stale contents from an earlier batch
    for threads in (1, 2):
        got = render_batch([a, b], config, threads=threads, out=out)
        assert got is out
        np.testing.assert_array_equal(out, want)
        out[:] = 201
    # a row slice of a bigger buffer is contiguous: batches can fill a preallocated store
    big = np.full((12, 2, 64, 64), 9, np.uint8)
    render_batch([a, b], config, out=big[2:10])
    np.testing.assert_array_equal(big[2:10], want)
    assert (big[:2] == 9).all() and (big[10:] == 9).all()


def test_render_into_rejects_bad_buffers_and_keeps_them_on_bad_input():
    a = walker(3)
    for bad, match in [
        (np.zeros((4, 2, 64, 64), np.uint8), r"shape \[3, 2, 64, 64\], got shape \[4, 2, 64, 64\]"),
        (np.zeros((3, 2, 64, 64), np.float32), "uint8 numpy array .* got an array of dtype float32"),
        (np.zeros((3, 2, 64, 128), np.uint8)[..., ::2], "not C-contiguous"),
        ([0] * 3, "uint8 numpy array .* got a <class 'list'>"),
    ]:
        with pytest.raises(ValueError, match=match):
            render_batch([a], out=bad)
    frozen = np.zeros((3, 2, 64, 64), np.uint8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="out cannot be written"):
        render_batch([a], out=frozen)
    bad = walker(2)
    bad[1, 3, 0] = np.nan
    out = np.full((5, 2, 64, 64), 7, np.uint8)
    with pytest.raises(ValueError, match="sequence 1: non-finite"):
        render_batch([a, bad], out=out)
    assert (out == 7).all(), "a batch that fails validation leaves the buffer as it was"


def test_empty_frames_are_zero():
    pose = walker(3)
    pose[0, :, 1] = 77.0  # zero vertical extent: cannot be scaled
    pose[1, :, 2] = 0.0  # nothing confident enough to draw
    out = render_sequence(pose)
    assert not out[0].any() and not out[1].any() and out[2].any()


# --------------------------------------------------------------------------------------------
# Imputation
# --------------------------------------------------------------------------------------------


def test_imputation_fills_gaps_linearly():
    pose = walker(6)
    pose[:, 9, 0] = np.arange(6) * 10.0 + 100.0
    pose[:, 9, 1] = 50.0
    for t in (0, 2, 3, 5):
        pose[t, 9, :2] = 0.0
    pose[:, 3, :2] = 0.0  # left ear never observed
    pose[4, :, :2] = 0.0  # a frame with nothing observed
    pose[4, 9, :2] = [140.0, 50.0]
    out = impute(pose)
    np.testing.assert_allclose(out[:, 9, 0], [110, 110, 120, 130, 140, 140])
    np.testing.assert_allclose(out[:, 9, 1], 50.0)
    np.testing.assert_array_equal(out[..., 2], pose[..., 2])  # scores untouched
    observed = ~((pose[1, :, 0] == 0) & (pose[1, :, 1] == 0))
    np.testing.assert_allclose(out[1, 3, :2], pose[1, observed, :2].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(out, ref.impute_linear(pose), rtol=1e-6)
    # Rendering with imputation == rendering the imputed pose without it.
    np.testing.assert_array_equal(
        render_sequence(pose, RenderConfig(impute="linear")),
        render_sequence(out, RenderConfig(impute="none")),
    )


def test_imputation_needs_an_observation():
    pose = np.zeros((3, 17, 3), np.float32)
    pose[..., 2] = 0.9
    with pytest.raises(ValueError, match="no observed keypoint"):
        impute(pose)
    with pytest.raises(ValueError, match="sequence 1: no observed keypoint"):
        render_batch([walker(2), pose])
    render_batch([walker(2), pose], RenderConfig(impute="none"))  # renders (empty frames)


# --------------------------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 17, 2), np.float32), r"shape \[T, 17, 3\]"),
        (np.zeros((4, 16, 3), np.float32), r"shape \[T, 17, 3\]"),
        (np.zeros((17, 3), np.float32), r"shape \[T, 17, 3\]"),
        (np.zeros((0, 17, 3), np.float32), r"T = 0"),
        ("not a pose", "float array"),
    ],
)
def test_bad_shapes_name_the_sequence(bad, match):
    with pytest.raises(ValueError, match=match) as info:
        render_batch([walker(2), walker(2), bad])
    assert "sequence 2" in str(info.value)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(value):
    pose = walker(3)
    pose[1, 7, 1] = value
    with pytest.raises(ValueError, match=r"sequence 1: non-finite value .* frame 1, keypoint 7, y"):
        render_batch([walker(2), pose])
    with pytest.raises(ValueError, match="non-finite"):
        R.pav_batch([pose])


def test_extension_validates_its_arguments():
    pose = [walker(2)]
    mask = np.ones(17, np.uint8)
    limbs = np.array([[0, 1]], np.int64)
    args = (15.0, 8.0, "square", "shared", "none")
    with pytest.raises(ValueError, match="limb 1"):
        _skelmap.render_batch(pose, mask, np.array([[0, 1], [3, 17]], np.int64), *args)
    with pytest.raises(ValueError, match="limb 0"):
        _skelmap.render_batch(pose, mask, np.array([[-1, 1]], np.int64), *args)
    with pytest.raises(ValueError, match=r"limbs must have shape \[L, 2\]"):
        _skelmap.render_batch(pose, mask, np.zeros((2, 3), np.int64), *args)
    with pytest.raises(ValueError, match="mask of 17"):
        _skelmap.render_batch(pose, np.ones(16, np.uint8), limbs, *args)
    for i, bad in [(0, 0.0), (0, -2.0), (1, float("nan")), (1, float("inf"))]:
        a = list(args)
        a[i] = bad
        with pytest.raises(ValueError, match="sigma"):
            _skelmap.render_batch(pose, mask, limbs, *a)
    with pytest.raises(ValueError, match="geometry"):
        _skelmap.render_batch(pose, mask, limbs, 15.0, 8.0, "round", "shared", "none")
    with pytest.raises(ValueError, match="alignment"):
        _skelmap.render_batch(pose, mask, limbs, 15.0, 8.0, "square", "both", "none")
    with pytest.raises(ValueError, match="impute"):
        _skelmap.render_batch(pose, mask, limbs, 15.0, 8.0, "square", "shared", "cubic")
    with pytest.raises(ValueError, match="head"):
        _skelmap.render_batch(pose, mask, limbs, *args, head="drop")
    with pytest.raises(ValueError, match="threads"):
        _skelmap.render_batch(pose, mask, limbs, *args, -1)
    with pytest.raises(ValueError, match="sequence 0: expected a float32 or float64"):
        _skelmap.render_batch([walker(2).astype(np.int64)], mask, limbs, *args)
    # Non-contiguous float32 input is accepted (copied).
    strided = np.asfortranarray(walker(2))
    np.testing.assert_array_equal(
        _skelmap.render_batch([strided], mask, limbs, *args),
        _skelmap.render_batch([walker(2)], mask, limbs, *args),
    )


def test_python_front_validates_threads_and_config():
    with pytest.raises(ValueError, match="threads"):
        render_batch([walker(1)], threads=-1)
    with pytest.raises(ValueError, match="config"):
        render_batch([walker(1)], config="body-only")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="list"):
        render_batch(walker(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^expected shape"):
        render_sequence(np.zeros((2, 17, 2), np.float32))


# --------------------------------------------------------------------------------------------
# CPU variants, threads, fork
# --------------------------------------------------------------------------------------------


def test_simd_variants_agree(monkeypatch):
    pose = walker(3)
    config = RenderConfig.reference()
    best = render_sequence(pose, config)
    assert _skelmap.simd_level() in ("avx512", "avx2", "generic")
    for var in ("SCONET_SKELMAP_NO_AVX512", "SCONET_SKELMAP_NO_SIMD"):
        monkeypatch.setenv(var, "1")
        out = render_sequence(pose, config)
        assert np.abs(out.astype(int) - best).max() <= 1
    assert _skelmap.simd_level() == "generic"


def test_concurrent_calls():
    from concurrent.futures import ThreadPoolExecutor

    poses = [walker(12, s) for s in range(4)]
    want = [render_sequence(p) for p in poses]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda p: render_batch([p], threads=2), poses))
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_renders_in_a_forked_child():
    import multiprocessing
    import warnings

    pose = walker(6)
    want = render_batch([pose], threads=2)  # the parent has used a (per-call) pool

    def child() -> None:
        out = render_batch([pose], threads=2)
        os._exit(0 if np.array_equal(out, want) else 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        proc = multiprocessing.get_context("fork").Process(target=child)
        proc.start()
    proc.join(60)
    if proc.exitcode is None:
        proc.kill()
        pytest.fail("rendering in a forked child hung")
    assert proc.exitcode == 0


@pytest.mark.parametrize("alignment", ["per-channel", "shared"])
def test_faint_keypoints_are_drawn_down_to_the_threshold(alignment):
    """A joint with confidence 0.0095 (above the 1e-3 threshold, peak grey level 2 on the canvas)
    still shows in the joint map; one at 0.0009 is not drawn (the maps equal those of a
    confidence of 0). The wrist is held out to the side, clear of the other joints."""
    config = RenderConfig(representation="full-body", alignment=alignment, impute="none")
    wrist = 9

    def render(score: float) -> np.ndarray:
        pose = walker(1)
        pose[0, wrist, 0] = 500 - 40 * 3  # 40 units left of the hips' midline (walker: x3 + 500)
        pose[0, wrist, 2] = score
        return render_sequence(pose, config)[0]

    absent = render(0.0)
    np.testing.assert_array_equal(render(0.0009), absent)
    faint = render(0.0095)
    np.testing.assert_array_equal(faint[0], absent[0])  # its limb lies under the arm's own
    rows, cols = np.nonzero(faint[1] != absent[1])
    assert len(rows) >= 3 and cols.max() < 32  # on the left half of the map
    diff = faint[1][rows, cols].astype(int) - absent[1][rows, cols]
    assert diff.min() > 0 and diff.max() <= 2  # brighter, by a grey level or two
