"""OpenGait's skeleton-map recipe, written literally: the reference the renderer is tested against.

The steps of OpenGait's ``datasets/pretreatment_heatmap.py`` (SkeletonGait settings) as
``docs/skeleton-maps`` spells them out, one short function each, with the libraries OpenGait
uses: scikit-learn's ``KNNImputer``, matplotlib's ``gray`` colormap, OpenCV's ``INTER_AREA`` on
float64, and numpy arithmetic in the input's dtype (float32 poses stay float32, float64 poses
float64, as OpenGait's numpy code lets them). No part of it shares code with the Rust renderer.

sconet's options beyond OpenGait, in the same style: ``impute="linear"`` / ``"none"``, the head
modes (``"zero-scores"``: head scores set to 0 after imputation; ``"remove"``: head keypoints
left out of the height normalisation too), joint / limb subsets (representations),
``alignment="shared"`` (one crop box for both channels) and ``geometry="aspect"``. Where
OpenGait fails on a whole sequence (a frame whose counted keypoints share one y), this
reference renders that frame empty, as sconet does.

Needs the test extras (scikit-learn, matplotlib, opencv-python-headless); for tests and
``bench/render.py`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
from matplotlib import cm
from sklearn.impute import KNNImputer

CANVAS = 128
OUT = 64
EPS = 1e-3
HEAD = range(5)

COCO_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8),
    (8, 10), (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
)  # fmt: skip
ALL_JOINTS: tuple[int, ...] = tuple(range(17))


def as_pose(pose: np.ndarray) -> np.ndarray:
    """The pose in its float dtype (float32 or float64; anything else read as float64)."""
    pose = np.asarray(pose)
    return pose if pose.dtype in (np.float32, np.float64) else pose.astype(np.float64)


# --------------------------------------------------------------------------------------------
# 1. Missing keypoints
# --------------------------------------------------------------------------------------------


def impute_knn(pose: np.ndarray) -> np.ndarray:
    """OpenGait's PadKeypoints: KNNImputer on the ``[T, 34]`` coordinates; if scikit-learn
    drops a column missing in every frame, the reshape fails and the pose stays as it is."""
    t, v, _ = pose.shape
    coords = pose[..., :2].reshape(t, v * 2)
    filled = KNNImputer(missing_values=0.0, n_neighbors=4, weights="distance").fit_transform(coords)
    if filled.shape != coords.shape:
        filled = coords
    return np.concatenate([filled.reshape(t, v, 2), pose[..., 2:]], axis=-1)


def impute_linear(pose: np.ndarray) -> np.ndarray:
    """sconet's linear imputation (float32): missing = ``x == 0 and y == 0``; per joint
    ``np.interp`` over the observed frames (ends held); a joint never observed goes to the mean
    of the frame's observed keypoints (or of its interpolated ones). ValueError when nothing is
    observed."""
    pose = np.asarray(pose, dtype=np.float32)
    out = pose.astype(np.float64)
    observed = ~((pose[..., 0] == 0) & (pose[..., 1] == 0))
    if not observed.any():
        raise ValueError("no observed keypoint (all coordinates are 0)")
    t_all = np.arange(pose.shape[0], dtype=np.float64)
    seen = observed.any(axis=0)
    for j in np.flatnonzero(seen):
        for c in (0, 1):
            out[:, j, c] = np.interp(t_all, t_all[observed[:, j]], out[observed[:, j], j, c])
    for t in range(pose.shape[0]):
        ref = out[t, observed[t], :2] if observed[t].any() else out[t, seen, :2]
        out[t, ~seen, :2] = ref.mean(axis=0)
    out[..., 2] = pose[..., 2]
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# 2. Normalisation
# --------------------------------------------------------------------------------------------


def center_and_scale(pose: np.ndarray, counted: Sequence[int] = ALL_JOINTS) -> tuple[np.ndarray, np.ndarray]:
    """OpenGait's CenterAndScaleNormalizer: hip midpoint to the origin, ``* 85 / (y_max - y_min)``
    over the ``counted`` keypoints, ``+ 64``. Returns the pose and which frames have an extent
    (> 0; OpenGait divides by zero on the others)."""
    xy, score = pose[..., :2], pose[..., 2:]
    hip = (xy[:, 11] + xy[:, 12]) / 2.0
    xy = xy - hip[:, None, :]
    ys = xy[:, list(counted), 1]
    extent = ys.max(axis=-1) - ys.min(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        xy *= (CANVAS // 1.5) / extent[:, None, None]
    xy += CANVAS // 2
    ok = (extent > 0) & np.isfinite(xy).all(axis=(1, 2))
    return np.concatenate([xy, score], axis=-1), ok


# --------------------------------------------------------------------------------------------
# 3. Gaussians (GeneratePoseTarget)
# --------------------------------------------------------------------------------------------


def _bounds(lo, hi, sigma: float) -> tuple[int, int]:  # noqa: ANN001 - numpy scalars
    """``max(int(lo - 3 s), 0) .. min(int(hi + 3 s) + 1, 128)``, ``int`` truncating."""
    return max(int(lo - 3 * sigma), 0), min(int(hi + 3 * sigma) + 1, CANVAS)


def draw_joint(plane: np.ndarray, point: np.ndarray, value, sigma: float) -> None:  # noqa: ANN001
    """Max-merge ``value * exp(-d^2 / 2 / s^2)`` around ``point`` (skipped below EPS)."""
    if value < EPS:
        return
    x0, x1 = _bounds(point[0], point[0], sigma)
    y0, y1 = _bounds(point[1], point[1], sigma)
    x = np.arange(x0, x1, 1, dtype=np.float32)
    y = np.arange(y0, y1, 1, dtype=np.float32)[:, None]
    if not (len(x) and len(y)):
        return
    patch = np.exp(-((x - point[0]) ** 2 + (y - point[1]) ** 2) / 2 / sigma**2) * value
    plane[y0:y1, x0:x1] = np.maximum(plane[y0:y1, x0:x1], patch)


def draw_limb(plane: np.ndarray, a: np.ndarray, b: np.ndarray, ca, cb, sigma: float) -> None:  # noqa: ANN001
    """Max-merge ``min(ca, cb) * exp(-d^2 / 2 / s^2)``, ``d`` the distance to segment ``ab``
    (to the nearer end beyond it); shorter than 1 px: joint ``a`` with peak ``ca``."""
    value = min(ca, cb)
    if value < EPS:
        return
    x0, x1 = _bounds(min(a[0], b[0]), max(a[0], b[0]), sigma)
    y0, y1 = _bounds(min(a[1], b[1]), max(a[1], b[1]), sigma)
    x = np.arange(x0, x1, 1, dtype=np.float32)
    y = np.arange(y0, y1, 1, dtype=np.float32)[:, None]
    if not (len(x) and len(y)):
        return
    d2a = (x - a[0]) ** 2 + (y - a[1]) ** 2
    d2b = (x - b[0]) ** 2 + (y - b[1]) ** 2
    d2ab = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    if d2ab < 1:
        draw_joint(plane, a, ca, sigma)
        return
    t = (d2a - d2b + d2ab) / 2.0 / d2ab
    on_a, on_b = t <= 0, t >= 1
    px, py = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
    d2line = (x + np.zeros_like(y) - px) ** 2 + (y + np.zeros_like(x) - py) ** 2
    d2 = on_a * d2a + on_b * d2b + (1 - on_a - on_b) * d2line
    patch = np.exp(-d2 / 2.0 / sigma**2) * value
    plane[y0:y1, x0:x1] = np.maximum(plane[y0:y1, x0:x1], patch)


def heat_planes(frame: np.ndarray, joints, limbs, sigma_limb: float, sigma_joint: float):  # noqa: ANN001
    """One normalised frame ``[17, 3]`` -> (limb plane, joint plane), float32 128 x 128."""
    limb = np.zeros((CANVAS, CANVAS), np.float32)
    joint = np.zeros((CANVAS, CANVAS), np.float32)
    xy, score = frame[:, :2], frame[:, 2]
    for i, j in limbs:
        draw_limb(limb, xy[i], xy[j], score[i], score[j], sigma_limb)
    for k in joints:
        draw_joint(joint, xy[k], score[k], sigma_joint)
    return limb, joint


# --------------------------------------------------------------------------------------------
# 4. Grey levels (HeatmapToImage)
# --------------------------------------------------------------------------------------------


def to_image(plane: np.ndarray) -> np.ndarray:
    """matplotlib's gray colormap, ``uint8(rgb * 255)``, averaged over RGB (float64 levels)."""
    rgb = (cm.gray(plane)[..., :3] * 255).astype(np.uint8)
    return np.mean(rgb, axis=-1)


# --------------------------------------------------------------------------------------------
# 5. Alignment (HeatmapAlignment)
# --------------------------------------------------------------------------------------------


def rows(image: np.ndarray) -> tuple[int, int]:
    """First and last row with a non-zero sum (0, 0 for an empty image), as OpenGait finds them."""
    nonzero = image.sum(axis=1) != 0
    return int(nonzero.argmax()), int(nonzero.cumsum().argmax())


def crop(image: np.ndarray, top: int, bottom: int, geometry: str) -> np.ndarray:
    """Rows ``[top, bottom]``; ``square``: columns ``[64 - h//2, 64 + h//2 + 1)`` (clipped);
    ``aspect``: an ``h x h`` square from column ``64 - h//2``, zero outside the canvas."""
    h = bottom - top + 1
    band = image[top : bottom + 1]
    if geometry == "square":
        return band[:, CANVAS // 2 - h // 2 : CANVAS // 2 + h // 2 + 1]
    c0 = CANVAS // 2 - h // 2
    out = np.zeros((h, h), image.dtype)
    lo, hi = max(c0, 0), min(c0 + h, CANVAS)
    out[:, lo - c0 : hi - c0] = band[:, lo:hi]
    return out


def align(images: Sequence[np.ndarray], geometry: str, alignment: str) -> np.ndarray:
    """Per channel: ``/ 255``, crop, ``cv2.resize(INTER_AREA)`` on float64, ``uint8(x * 255)``.
    ``shared``: both non-empty channels cropped on the union of their rows."""
    scaled = [image / 255.0 for image in images]
    boxes = [rows(s) for s in scaled]
    if alignment == "shared" and all(s.any() for s in scaled):
        union = (min(b[0] for b in boxes), max(b[1] for b in boxes))
        boxes = [union, union]
    resized = [
        cv2.resize(crop(s, top, bottom, geometry), (OUT, OUT), interpolation=cv2.INTER_AREA)
        for s, (top, bottom) in zip(scaled, boxes, strict=True)
    ]
    return (np.array(resized) * 255).astype("uint8")


# --------------------------------------------------------------------------------------------
# The whole recipe
# --------------------------------------------------------------------------------------------


def render_sequence(
    pose: np.ndarray,
    joints: Sequence[int] = ALL_JOINTS,
    limbs: Sequence[tuple[int, int]] = COCO_LIMBS,
    sigma_limb: float = 8.0,
    sigma_joint: float = 8.0,
    geometry: str = "square",
    alignment: str = "per-channel",
    impute: str = "knn",
    head: str = "keep",
) -> np.ndarray:
    """``[T, 17, 3]`` -> uint8 ``[T, 2, 64, 64]`` (limb map, joint map). Defaults: OpenGait's
    settings (full-body, sigma 8, square, per-channel, KNN imputation)."""
    pose = as_pose(pose)
    if pose.ndim != 3 or pose.shape[1:] != (17, 3) or pose.shape[0] == 0:
        raise ValueError(f"expected a [T>=1, 17, 3] pose, got {pose.shape}")
    imputers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "knn": impute_knn,
        "linear": impute_linear,
        "none": np.array,
    }
    pose = imputers[impute](pose)
    counted = ALL_JOINTS
    if head != "keep":
        pose = pose.copy()
        pose[:, list(HEAD), 2] = 0
        if head == "remove":
            counted = tuple(j for j in ALL_JOINTS if j not in HEAD)
    pose, ok = center_and_scale(pose, counted)
    maps = np.zeros((len(pose), 2, OUT, OUT), np.uint8)
    for t, frame in enumerate(pose):
        if ok[t]:
            planes = heat_planes(frame, joints, limbs, sigma_limb, sigma_joint)
            maps[t] = align([to_image(p) for p in planes], geometry, alignment)
    return maps


def render_with_config(pose: np.ndarray, config) -> np.ndarray:  # noqa: ANN001 - any RenderConfig-like object
    """:func:`render_sequence` with the settings of a :class:`sconet.render.RenderConfig`."""
    rep = config.representation
    return render_sequence(
        pose,
        joints=rep.joints,
        limbs=rep.limbs,
        sigma_limb=config.sigma_limb,
        sigma_joint=config.sigma_joint,
        geometry=config.geometry,
        alignment=config.alignment,
        impute=config.impute,
        head=getattr(config, "head", "keep"),
    )
