"""Slow numpy reference of the Postural Asymmetry Vector (the conventions of :mod:`sconet.render`),
for the tests of the Rust ``pav_batch``."""

from __future__ import annotations

import numpy as np

PAV_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)  # fmt: skip
PAV_SCALE = 128.0


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
