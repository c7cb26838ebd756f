"""impute="knn": the Rust imputer against scikit-learn's KNNImputer itself (OpenGait's settings).

Agreement expected (``python/sconet/render/presets.py`` / ``docs/opengait.md``): bit for bit
in most sequences; otherwise within float rounding, because scikit-learn's distances come from
BLAS sums (another order) and numpy's argpartition orders tied and chosen donors its own way.
In float32 with many coordinates missing per frame, scikit-learn's distance formula cancels
catastrophically (``|x|^2 + |y|^2 - 2 x.y`` at ``|x|^2 ~ 1e7``), so near-duplicate frames sit
at rounding-noise distances whose exact value depends on that order: there a few values
differ by up to about 0.1 %. Even with few coordinates missing, the order of numpy's BLAS decides
the last float32 digits (one sequence in 21 differs by 3.9e-5 relative under numpy 2.4's
OpenBLAS, with scikit-learn 1.8 and 1.9 alike), hence the 1e-4 bound there.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.impute import KNNImputer

from sconet.data.synth import SynthConfig, generate_sequence
from sconet.render import RenderConfig, impute, render_sequence


def sklearn_impute(pose: np.ndarray) -> np.ndarray:
    """OpenGait's PadKeypoints: KNNImputer on ``[T, 34]``; a dropped column keeps the input."""
    t = pose.shape[0]
    coords = pose[..., :2].reshape(t, 34)
    filled = KNNImputer(missing_values=0.0, n_neighbors=4, weights="distance").fit_transform(coords)
    if filled.shape != coords.shape:
        return pose.copy()
    return np.concatenate([filled.reshape(t, 17, 2), pose[..., 2:]], axis=-1)


def masked_pose(seed: int, frames: int, rate: float, dtype: type, kind: str) -> np.ndarray:
    """A synthetic walk with ``rate`` of its coordinates zeroed, plus a pattern ``kind``."""
    rng = np.random.default_rng(seed)
    labels = ("negative", "neutral", "positive")
    pose = generate_sequence(seed, labels[seed % 3], SynthConfig(frames=frames, missing_rate=0.0))
    pose = pose.astype(dtype)
    if dtype == np.float64:
        pose[..., :2] += rng.uniform(-0.5, 0.5, pose[..., :2].shape)
    if kind == "duplicates" and frames > 2:
        pose[1 : frames // 2 + 1] = pose[0]  # tied distances
    missing = rng.random((frames, 17, 2)) < rate
    pose[..., :2][missing] = 0
    if kind == "joint-gap":
        pose[rng.integers(frames) :, rng.integers(17), :2] = 0
    if kind == "x-only":
        pose[rng.random((frames, 17)) < 0.1, 0] = 0  # x at the image edge, y kept
    if kind == "empty-frame" and frames > 1:
        pose[rng.integers(frames), :, :2] = 0  # no shared coordinate: the column mean
    return pose


KINDS = ("plain", "duplicates", "joint-gap", "x-only", "empty-frame")


def compare(rate: float, dtype: type, trials: int) -> tuple[int, list[float]]:
    """Sequences equal bit for bit, and per sequence the largest relative deviation."""
    exact, worst = 0, []
    for seed in range(trials):
        frames = (1, 2, 3, 4, 5, 9, 24)[seed % 7]
        pose = masked_pose(seed, frames, rate, dtype, KINDS[seed % len(KINDS)])
        got, want = impute(pose, "knn"), sklearn_impute(pose)
        assert got.dtype == pose.dtype and got.shape == pose.shape
        np.testing.assert_array_equal(got[..., 2], pose[..., 2])  # scores untouched
        observed = pose[..., :2] != 0
        np.testing.assert_array_equal(got[..., :2][observed], pose[..., :2][observed])
        exact += bool(np.array_equal(got, want))
        worst.append(float(np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want)))))
    return exact, worst


def check_light(rate: float, dtype: type, trials: int) -> None:
    exact, worst = compare(rate, dtype, trials)
    assert max(worst) < (1e-4 if dtype == np.float32 else 1e-6), worst
    assert exact >= trials * (0.6 if dtype == np.float32 else 0.1), exact


def check_heavy(rate: float, dtype: type, trials: int) -> None:
    exact, worst = compare(rate, dtype, trials)
    if dtype == np.float64:
        assert max(worst) < 1e-6, worst
    else:
        assert max(worst) < 5e-3, worst
        assert np.median(worst) < 1e-5 and exact >= trials * 0.3, (exact, worst)


@pytest.mark.parametrize("rate", [0.01, 0.03, 0.05])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_matches_sklearn_light_masks(rate, dtype):
    check_light(rate, dtype, trials=21)


@pytest.mark.parametrize("rate", [0.2, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_matches_sklearn_heavy_masks(rate, dtype):
    check_heavy(rate, dtype, trials=14)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_knn_matches_sklearn_many_masks(dtype):
    for rate in (0.01, 0.02, 0.03, 0.04, 0.05):
        check_light(rate, dtype, trials=140)
    for rate in (0.1, 0.2, 0.35, 0.5):
        check_heavy(rate, dtype, trials=70)


def test_column_missing_everywhere_keeps_the_sequence():
    """scikit-learn drops an all-missing column; OpenGait's reshape then fails and the poses stay
    un-imputed (the other gaps too)."""
    pose = masked_pose(3, 6, 0.05, np.float32, "plain")
    pose[:, 6, 1] = 0
    assert (pose[..., :2] == 0).sum() > 6
    np.testing.assert_array_equal(impute(pose, "knn"), pose)
    np.testing.assert_array_equal(sklearn_impute(pose), pose)
    one = masked_pose(4, 1, 0.1, np.float64, "plain")  # T = 1: every gap is a whole column
    np.testing.assert_array_equal(impute(one, "knn"), one)


def test_knn_hand_computed():
    """Four donors at distances 1, 2, 3, 4 (times sqrt(34/33)) weigh 1, 1/2, 1/3, 1/4."""
    pose = np.zeros((6, 17, 3), np.float64)
    pose[..., :2] = 100.0 + np.arange(34).reshape(17, 2)
    pose[..., 2] = 0.9
    for t in range(1, 6):
        pose[t, :, :2] += t
        pose[t, 0, 0] = 500.0 + 10 * t  # the donors' values of the missing coordinate
    pose[0, 0, 0] = 0
    w = 1.0 / np.arange(1, 5)
    want = (w * (500.0 + 10 * np.arange(1, 5))).sum() / w.sum()
    assert impute(pose, "knn")[0, 0, 0] == pytest.approx(want, rel=1e-12)
    assert sklearn_impute(pose)[0, 0, 0] == pytest.approx(want, rel=1e-12)


def test_render_with_knn_is_render_of_the_imputed_pose():
    pose = masked_pose(5, 9, 0.05, np.float32, "joint-gap")
    np.testing.assert_array_equal(
        render_sequence(pose, RenderConfig(impute="knn")),
        render_sequence(impute(pose, "knn"), RenderConfig(impute="none")),
    )


def test_impute_method_is_checked():
    with pytest.raises(ValueError, match="method must be 'linear' or 'knn'"):
        impute(masked_pose(0, 3, 0.0, np.float32, "plain"), "cubic")
