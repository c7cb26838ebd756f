"""Slow pure-numpy reference of the reference (OpenGait-style) skeleton-map pipeline.

This module is the rendering spec (``docs/skeleton-maps``) written as plain numpy, one readable
step per function. It exists for the parity tests and for ``bench/render.py``; production code
uses the Rust extension through :mod:`sconet.render`. Nothing here imports the extension.

Pipeline, per frame of a ``[T, 17, 3]`` float pose sequence ``(x, y, confidence)``:

1. (optional) imputation of missing keypoints, see :func:`impute_linear`.
2. :func:`normalise_frame`: origin = hip midpoint (keypoints 11, 12); scale so that the vertical
   extent of all 17 keypoints (whatever their score) is ``85 = 128 // 1.5`` px; hip midpoint at
   the canvas centre ``(64, 64)`` of a 128 x 128 canvas. A frame with zero vertical extent (or a
   non-finite result) is rendered empty.
3. :func:`draw_point` / :func:`draw_limb`: gaussians with peak = confidence inside a +-3 sigma
   window whose bounds are truncated with ``int()`` like OpenGait
   (``st = max(int(mu - 3 sigma), 0)``, ``ed = min(int(mu + 3 sigma) + 1, size)``); keypoints
   (limbs) with confidence (``min(c_a, c_b)``) below ``1e-3`` are skipped; a limb whose ends are
   closer than 1 px is drawn as a point at its first end with that end's confidence (OpenGait's
   behaviour). Joints are merged into one plane by element-wise max, limbs into another.
4. :func:`to_grey`: ``level = floor(x * 256)`` (``x`` float32) clipped to ``[0, 255]``, then the
   matplotlib ``gray`` lookup table (:func:`gray_lut`), which is one level low at 24 entries.
5. :func:`crop_box` / :func:`crop`: rows from the first to the last non-zero row (``h`` rows);
   ``square`` geometry: columns ``[64 - h//2, 64 + h//2 + 1)`` clipped to the canvas (the
   reference); ``aspect`` geometry: an ``h x h`` square starting at column ``64 - h//2``,
   zero-padded where it would leave the canvas. ``per-channel`` alignment crops each channel on
   its own rows (the reference); ``shared`` uses the union of both channels' rows for both.
6. :func:`resize_area`: OpenCV ``INTER_AREA`` to 64 x 64 on the uint8 crop (float32 weights,
   integer-scale fast path, bilinear-style upscaling below 64 px, round to nearest).

A channel with nothing drawn is all zeros. Output: uint8 ``[T, 2, 64, 64]``, channel 0 = limb
map, channel 1 = joint map.

Known difference from OpenGait itself: OpenGait resizes the crop as a float64 image in
``[0, 1]`` and truncates ``x * 255`` to uint8 at the end, so its maps can be one level below
these (round-to-nearest on uint8, as ``cv2.resize`` does on uint8 input).

The module also holds a numpy reference of the linear imputation (:func:`impute_linear`) and of
the Postural Asymmetry Vector (:func:`pav`); the conventions are documented in
:mod:`sconet.render`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CANVAS = 128
"""Side of the square rendering canvas (px)."""
OUT = 64
"""Side of the stored map (px)."""
TARGET_HEIGHT = CANVAS // 1.5
"""Vertical extent of the normalised skeleton: ``128 // 1.5 == 85.0`` px."""
CENTRE = CANVAS // 2
"""Canvas centre (the hip midpoint lands on pixel ``(64, 64)``)."""
EPS = 1e-3
"""Keypoints (limbs) with a confidence below this are not drawn."""

COCO_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8),
    (8, 10), (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
)  # fmt: skip
"""The 17 COCO limbs of SkeletonGait / PoseC3D (no shoulder-shoulder limb, hips linked)."""

ALL_JOINTS: tuple[int, ...] = tuple(range(17))

PAV_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)  # fmt: skip
PAV_SCALE = 128.0


# --------------------------------------------------------------------------------------------
# Grey lookup table
# --------------------------------------------------------------------------------------------


def gray_lut(n: int = 256) -> np.ndarray:
    """The uint8 lookup of matplotlib's ``gray`` colormap, built with matplotlib's own numpy ops.

    matplotlib's ``_create_lookup_table`` for the segment data ``((0, 0, 0), (1, 1, 1))`` gives
    ``xind = (N - 1) * linspace(0, 1, N) ** 1.0`` and ``lut = xind / (N - 1)`` (clipped to
    [0, 1]); ``(lut * 255).astype(uint8)`` then truncates, which makes 24 of the 256 entries
    one level low (e.g. entry 33 is 32).
    """
    x = np.array([0.0, 1.0]) * (n - 1)
    y0 = np.array([0.0, 1.0])
    y1 = np.array([0.0, 1.0])
    xind = (n - 1) * np.linspace(0, 1, n) ** 1.0
    ind = np.searchsorted(x, xind)[1:-1]
    distance = (xind[1:-1] - x[ind - 1]) / (x[ind] - x[ind - 1])
    lut = np.concatenate([[y1[0]], distance * (y0[ind] - y1[ind - 1]) + y1[ind - 1], [y0[-1]]])
    lut = np.clip(lut, 0.0, 1.0)
    return (lut * 255).astype(np.uint8)


GRAY_LUT = gray_lut()


def to_grey(plane: np.ndarray) -> np.ndarray:
    """float32 heat plane in [0, 1] -> uint8 grey: ``LUT[clip(floor(x * 256), 0, 255)]``."""
    x = np.asarray(plane, dtype=np.float32) * np.float32(256)  # exact: power-of-two scaling
    level = np.clip(np.floor(x), 0, 255).astype(np.intp)
    return GRAY_LUT[level]


# --------------------------------------------------------------------------------------------
# Imputation and normalisation
# --------------------------------------------------------------------------------------------


def missing_mask(pose: np.ndarray) -> np.ndarray:
    """``[T, 17]`` bool: a keypoint is missing when both its coordinates are exactly 0."""
    return (pose[..., 0] == 0) & (pose[..., 1] == 0)


def impute_linear(pose: np.ndarray) -> np.ndarray:
    """Fill missing keypoints by linear interpolation over time, per joint.

    Observed frames of a joint are kept; gaps are interpolated between the nearest observed
    frames and the ends are held constant (``np.interp``). A joint never observed in the sequence
    is placed, per frame, at the mean of the keypoints observed in that frame (or, when the frame
    has none, at the mean of the frame's interpolated keypoints). Confidences are unchanged.
    Raises ``ValueError`` when the sequence has no observed keypoint at all.
    """
    pose = np.asarray(pose, dtype=np.float32)
    out = pose.astype(np.float64)
    missing = missing_mask(pose)
    observed = ~missing
    if not observed.any():
        raise ValueError("no observed keypoint (all coordinates are 0)")
    t_all = np.arange(pose.shape[0], dtype=np.float64)
    seen = observed.any(axis=0)
    for j in np.flatnonzero(seen):
        t_obs = t_all[observed[:, j]]
        for c in (0, 1):
            out[:, j, c] = np.interp(t_all, t_obs, out[observed[:, j], j, c])
    never = np.flatnonzero(~seen)
    if never.size:
        for t in range(pose.shape[0]):
            obs = observed[t]
            ref = out[t, obs, :2] if obs.any() else out[t, seen, :2]
            out[t, never, :2] = ref.mean(axis=0)
    out[..., 2] = pose[..., 2]
    return out.astype(np.float32)


def normalise_frame(frame: np.ndarray) -> np.ndarray | None:
    """One frame ``[17, 3]`` -> canvas coordinates ``[17, 2]`` (float64), or None if degenerate.

    ``(p - hip) * (85 / (y_max - y_min)) + 64`` with ``hip`` the midpoint of keypoints 11 and 12
    and the extent taken over all 17 keypoints whatever their score.
    """
    xy = np.asarray(frame, dtype=np.float64)[:, :2]
    hip = (xy[11] + xy[12]) / 2.0
    extent = xy[:, 1].max() - xy[:, 1].min()
    if not extent > 0:
        return None
    out = (xy - hip) * (TARGET_HEIGHT / extent) + CENTRE
    if not np.isfinite(out).all():
        return None
    return out


# --------------------------------------------------------------------------------------------
# Gaussian drawing (OpenGait GeneratePoseTarget semantics)
# --------------------------------------------------------------------------------------------


def _window(lo: float, hi: float, sigma: float, size: int) -> tuple[int, int]:
    """``[max(int(lo - 3 sigma), 0), min(int(hi + 3 sigma) + 1, size))``; int() truncates."""
    return max(int(lo - 3 * sigma), 0), min(int(hi + 3 * sigma) + 1, size)


def draw_point(plane: np.ndarray, mu_x: float, mu_y: float, value: float, sigma: float) -> None:
    """Max-merge ``value * exp(-d^2 / (2 sigma^2))`` around ``(mu_x, mu_y)`` into ``plane``."""
    if value < EPS:
        return
    h, w = plane.shape
    st_x, ed_x = _window(mu_x, mu_x, sigma, w)
    st_y, ed_y = _window(mu_y, mu_y, sigma, h)
    if st_x >= ed_x or st_y >= ed_y:
        return
    xs = np.arange(st_x, ed_x, dtype=np.float64)
    ys = np.arange(st_y, ed_y, dtype=np.float64)[:, None]
    patch = np.exp(-((xs - mu_x) ** 2 + (ys - mu_y) ** 2) / 2.0 / sigma**2) * value
    view = plane[st_y:ed_y, st_x:ed_x]
    np.maximum(view, patch, out=view, casting="unsafe")


def draw_limb(
    plane: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    c_a: float,
    c_b: float,
    sigma: float,
) -> None:
    """Max-merge ``min(c_a, c_b) * exp(-d^2 / (2 sigma^2))``, d = distance to segment [a, b].

    The window is the segment's bounding box grown by 3 sigma (so pixels farther than 3 sigma
    inside the box still get a value). A segment shorter than 1 px is a point at ``a`` with
    peak ``c_a``.
    """
    value = min(c_a, c_b)
    if value < EPS:
        return
    h, w = plane.shape
    (ax, ay), (bx, by) = a, b
    st_x, ed_x = _window(min(ax, bx), max(ax, bx), sigma, w)
    st_y, ed_y = _window(min(ay, by), max(ay, by), sigma, h)
    if st_x >= ed_x or st_y >= ed_y:
        return
    d2_ab = (ax - bx) ** 2 + (ay - by) ** 2
    if d2_ab < 1:
        draw_point(plane, ax, ay, c_a, sigma)
        return
    xs = np.arange(st_x, ed_x, dtype=np.float64)[None, :]
    ys = np.arange(st_y, ed_y, dtype=np.float64)[:, None]
    d2_a = (xs - ax) ** 2 + (ys - ay) ** 2
    d2_b = (xs - bx) ** 2 + (ys - by) ** 2
    t = (d2_a - d2_b + d2_ab) / 2.0 / d2_ab  # projection parameter of the pixel on [a, b]
    d2_line = (xs - (ax + t * (bx - ax))) ** 2 + (ys - (ay + t * (by - ay))) ** 2
    d2 = np.where(t <= 0, d2_a, np.where(t >= 1, d2_b, d2_line))
    patch = np.exp(-d2 / 2.0 / sigma**2) * value
    view = plane[st_y:ed_y, st_x:ed_x]
    np.maximum(view, patch, out=view, casting="unsafe")


def render_planes(
    xy: np.ndarray,
    conf: np.ndarray,
    joints: Sequence[int],
    limbs: Sequence[tuple[int, int]],
    sigma_limb: float,
    sigma_joint: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Canvas coordinates ``[17, 2]`` + confidences -> (limb plane, joint plane), float32."""
    limb_plane = np.zeros((CANVAS, CANVAS), np.float32)
    joint_plane = np.zeros((CANVAS, CANVAS), np.float32)
    for i, j in limbs:
        draw_limb(limb_plane, tuple(xy[i]), tuple(xy[j]), float(conf[i]), float(conf[j]), sigma_limb)
    for k in joints:
        draw_point(joint_plane, float(xy[k, 0]), float(xy[k, 1]), float(conf[k]), sigma_joint)
    return limb_plane, joint_plane


# --------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------


def nonzero_rows(grey: np.ndarray) -> tuple[int, int] | None:
    """(first, last) non-zero row of a grey plane, or None when it is all zero."""
    rows = np.flatnonzero(grey.any(axis=1))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1])


def crop(grey: np.ndarray, top: int, bottom: int, geometry: str) -> np.ndarray:
    """Crop rows ``[top, bottom]`` and the centred columns of the given geometry."""
    h = bottom - top + 1
    rows = grey[top : bottom + 1]
    c0 = CENTRE - h // 2
    if geometry == "square":
        return rows[:, max(c0, 0) : min(CENTRE + h // 2 + 1, grey.shape[1])]
    if geometry == "aspect":
        out = np.zeros((h, h), dtype=grey.dtype)
        lo, hi = max(c0, 0), min(c0 + h, grey.shape[1])
        if hi > lo:
            out[:, lo - c0 : hi - c0] = rows[:, lo:hi]
        return out
    raise ValueError(f"unknown geometry {geometry!r}")


def align(limb_grey: np.ndarray, joint_grey: np.ndarray, geometry: str, alignment: str) -> np.ndarray:
    """Two grey planes -> uint8 ``[2, 64, 64]`` (crop + INTER_AREA resize per channel)."""
    greys = (limb_grey, joint_grey)
    boxes = [nonzero_rows(g) for g in greys]
    if alignment == "shared":
        present = [b for b in boxes if b is not None]
        shared = (min(b[0] for b in present), max(b[1] for b in present)) if present else None
        boxes = [shared if b is not None else None for b in boxes]
    elif alignment != "per-channel":
        raise ValueError(f"unknown alignment {alignment!r}")
    out = np.zeros((2, OUT, OUT), np.uint8)
    for ch, (grey, box) in enumerate(zip(greys, boxes)):
        if box is not None:
            out[ch] = resize_area(crop(grey, box[0], box[1], geometry), OUT, OUT)
    return out


# --------------------------------------------------------------------------------------------
# OpenCV INTER_AREA on uint8, in numpy
# --------------------------------------------------------------------------------------------


def _area_table(ssize: int, dsize: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV ``computeResizeAreaTab`` as dense ``[dsize, taps]`` index / float32 weight tables.

    Taps of one output pixel are consecutive source pixels, in OpenCV's order; padding taps
    have weight 0 (adding ``0 * v`` leaves a float sum unchanged).
    """
    taps: list[list[tuple[int, float]]] = []
    for dx in range(dsize):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, ssize - fsx1)
        sx1 = int(np.ceil(fsx1))
        sx2 = int(np.floor(fsx2))
        sx2 = min(sx2, ssize - 1)
        sx1 = min(sx1, sx2)
        row: list[tuple[int, float]] = []
        if sx1 - fsx1 > 1e-3:
            row.append((sx1 - 1, (sx1 - fsx1) / cell))
        for sx in range(sx1, sx2):
            row.append((sx, 1.0 / cell))
        if fsx2 - sx2 > 1e-3:
            row.append((sx2, min(min(fsx2 - sx2, 1.0), cell) / cell))
        taps.append(row)
    n = max(len(r) for r in taps)
    idx = np.zeros((dsize, n), np.intp)
    wts = np.zeros((dsize, n), np.float32)
    for dx, row in enumerate(taps):
        for k, (s, a) in enumerate(row):
            idx[dx, k] = s
            wts[dx, k] = np.float32(a)
    return idx, wts


def _linear_area_coeffs(ssize: int, dsize: int, scale: float, inv_scale: float, is_x: bool):
    """OpenCV's INTER_AREA coefficients for its bilinear path (used when a side grows).

    Returns the first source index per output pixel and the two weights in 11-bit fixed point
    (``rint(w * 2048)`` of float32 weights). Like OpenCV, only the horizontal direction snaps the
    last source pixel to weight (2048, 0); vertically the second row is clipped to the image.
    """
    src = np.zeros(dsize, np.intp)
    coef = np.zeros((dsize, 2), np.int64)
    one = np.float32(1.0)
    for d in range(dsize):
        s = int(np.floor(d * scale))
        f = np.float32((d + 1) - (s + 1) * inv_scale)
        f = np.float32(0.0) if f <= 0 else np.float32(f - np.floor(f))
        if is_x and s >= ssize - 1:
            s, f = ssize - 1, np.float32(0.0)
        src[d] = s
        coef[d, 0] = int(np.rint((one - f) * np.float32(2048)))
        coef[d, 1] = int(np.rint(f * np.float32(2048)))
    return src, coef


def resize_area(img: np.ndarray, out_h: int = OUT, out_w: int = OUT) -> np.ndarray:
    """``cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)`` for 2-D uint8 ``img``.

    - same size: a copy;
    - both scales integer (``src = k * dst``): block means; 2 x 2 blocks are
      ``(a + b + c + d + 2) >> 2``, other blocks ``rint(sum * float32(1 / area))``;
    - both scales >= 1: separable area weights (float32, rows after columns, accumulated in
      OpenCV's order), rounded to nearest (ties to even) and saturated;
    - otherwise (some side grows): OpenCV's area-flavoured bilinear in 11-bit fixed point,
      with the rounding of its SIMD vertical pass.
    """
    img = np.asarray(img, dtype=np.uint8)
    ih, iw = img.shape
    if (ih, iw) == (out_h, out_w):
        return img.copy()
    inv_sx, inv_sy = out_w / iw, out_h / ih
    sx, sy = 1.0 / inv_sx, 1.0 / inv_sy
    isx, isy = int(round(sx)), int(round(sy))
    eps = np.finfo(np.float64).eps
    if sx >= 1 and sy >= 1:
        if abs(sx - isx) < eps and abs(sy - isy) < eps:
            blocks = img[: out_h * isy, : out_w * isx].astype(np.int64)
            sums = blocks.reshape(out_h, isy, out_w, isx).sum(axis=(1, 3))
            if isx == 2 and isy == 2:
                return ((sums + 2) >> 2).astype(np.uint8)
            scale = np.float32(1.0) / np.float32(isx * isy)
            return np.clip(np.rint(sums.astype(np.float32) * scale), 0, 255).astype(np.uint8)
        xi, xw = _area_table(iw, out_w, sx)
        yi, yw = _area_table(ih, out_h, sy)
        src = img.astype(np.float32)
        rows = np.zeros((ih, out_w), np.float32)  # horizontal pass, one row at a time
        for k in range(xi.shape[1]):
            rows += src[:, xi[:, k]] * xw[:, k]
        acc = np.zeros((out_h, out_w), np.float32)
        for k in range(yi.shape[1]):
            acc += rows[yi[:, k]] * yw[:, k][:, None]
        return np.clip(np.rint(acc), 0, 255).astype(np.uint8)
    xs, xc = _linear_area_coeffs(iw, out_w, sx, inv_sx, True)
    ys, yc = _linear_area_coeffs(ih, out_h, sy, inv_sy, False)
    src = img.astype(np.int64)
    x1 = np.minimum(xs + 1, iw - 1)
    horiz = src[:, xs] * xc[:, 0] + src[:, x1] * xc[:, 1]  # [ih, out_w], scale 2048
    y1 = np.minimum(ys + 1, ih - 1)
    s0 = horiz[ys] >> 4
    s1 = horiz[y1] >> 4
    v = ((s0 * yc[:, 0:1]) >> 16) + ((s1 * yc[:, 1:2]) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Sequences
# --------------------------------------------------------------------------------------------


def render_frame(
    frame: np.ndarray,
    joints: Sequence[int] = ALL_JOINTS,
    limbs: Sequence[tuple[int, int]] = COCO_LIMBS,
    sigma_limb: float = 8.0,
    sigma_joint: float = 8.0,
    geometry: str = "square",
    alignment: str = "per-channel",
) -> np.ndarray:
    """One (already imputed) frame ``[17, 3]`` -> uint8 ``[2, 64, 64]``."""
    xy = normalise_frame(frame)
    if xy is None:
        return np.zeros((2, OUT, OUT), np.uint8)
    conf = np.asarray(frame, dtype=np.float32)[:, 2]
    limb_plane, joint_plane = render_planes(xy, conf, joints, limbs, sigma_limb, sigma_joint)
    return align(to_grey(limb_plane), to_grey(joint_plane), geometry, alignment)


def render_sequence(
    pose: np.ndarray,
    joints: Sequence[int] = ALL_JOINTS,
    limbs: Sequence[tuple[int, int]] = COCO_LIMBS,
    sigma_limb: float = 8.0,
    sigma_joint: float = 8.0,
    geometry: str = "square",
    alignment: str = "per-channel",
    impute: str = "none",
) -> np.ndarray:
    """``[T, 17, 3]`` -> uint8 ``[T, 2, 64, 64]``. Defaults = the reference (full-body, sigma 8)."""
    pose = np.asarray(pose, dtype=np.float32)
    if pose.ndim != 3 or pose.shape[1:] != (17, 3) or pose.shape[0] == 0:
        raise ValueError(f"expected a [T>=1, 17, 3] pose, got {pose.shape}")
    if impute == "linear":
        pose = impute_linear(pose)
    elif impute != "none":
        raise ValueError(f"unknown impute {impute!r}")
    return np.stack(
        [render_frame(f, joints, limbs, sigma_limb, sigma_joint, geometry, alignment) for f in pose]
    )


# --------------------------------------------------------------------------------------------
# Postural Asymmetry Vector
# --------------------------------------------------------------------------------------------


def pav_frame(frame: np.ndarray) -> np.ndarray:
    """One frame -> float64 ``[8, 3]`` (height difference, midline deviation, tilt in degrees).

    NaN where a pair (or the whole frame) has no value. Valid keypoints: confidence > 0 and not
    at (0, 0). Scale: vertical extent of the valid keypoints -> 128 (frame skipped when fewer
    than 2 are valid or the extent is 0). The hip-midpoint origin of models.md cancels in every
    metric (all are differences), so it is not subtracted. Midline = mean x of the valid
    keypoints.
    """
    f = np.asarray(frame, dtype=np.float64)
    out = np.full((len(PAV_PAIRS), 3), np.nan)
    valid = (f[:, 2] > 0) & ~((f[:, 0] == 0) & (f[:, 1] == 0))
    if valid.sum() < 2:
        return out
    ys = f[valid, 1]
    extent = ys.max() - ys.min()
    if not extent > 0:
        return out
    scale = PAV_SCALE / extent
    mid_x = f[valid, 0].mean()
    for p, (l, r) in enumerate(PAV_PAIRS):  # noqa: E741
        if not (valid[l] and valid[r]):
            continue
        dy = (f[l, 1] - f[r, 1]) * scale
        dx = (f[l, 0] - f[r, 0]) * scale
        out[p, 0] = abs(dy)
        out[p, 1] = abs(((f[l, 0] + f[r, 0]) / 2.0 - mid_x) * scale)
        out[p, 2] = np.degrees(np.arctan2(abs(dy), abs(dx)))
    return out


def iqr_mean(values: np.ndarray) -> float:
    """Mean of the values inside ``[Q1 - 1.5 IQR, Q3 + 1.5 IQR]`` (numpy's linear quartiles).

    NaNs are ignored; no value -> 0.0.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return 0.0
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    kept = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
    return float(kept.mean()) if kept.size else 0.0


def pav(pose: np.ndarray) -> np.ndarray:
    """``[T, 17, 3]`` -> float32 ``[8, 3]``: per (pair, metric) IQR-filtered mean over frames."""
    pose = np.asarray(pose, dtype=np.float32)
    per_frame = np.stack([pav_frame(f) for f in pose])  # [T, 8, 3]
    out = np.zeros((len(PAV_PAIRS), 3), np.float32)
    for p in range(len(PAV_PAIRS)):
        for m in range(3):
            out[p, m] = iqr_mean(per_frame[:, p, m])
    return out


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
    )
