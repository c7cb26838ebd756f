"""Checks at the door: can a valid pose array be rendered and measured?

:func:`sconet.data.validate_pose` accepts any finite ``[T, 17, 3]`` array; some of those still
make no skeleton maps or no usable postural asymmetry values. :func:`pose_problems` finds them
before anything is written, so that the caller can name the file (and skip it under
``skip_bad``) instead of failing half-way through a build on a batch index:

- no observed keypoint: every ``x`` and ``y`` is 0 (nothing to impute from, nothing to draw);
- no frame can be normalised: in every frame all 17 keypoints share one ``y`` (zero vertical
  extent), so every map would be empty;
- a frame whose normalised keypoints are not finite in float32 (a vertical extent far smaller
  than the coordinates, e.g. ``y`` in ``[0, 1e-30]`` with ``x`` near ``1e10``): the renderer
  would draw that frame empty while the rest of the sequence renders;
- non-finite postural asymmetry values.

The normalisation mirrors the renderer's (after linear imputation when the settings impute):
hip midpoint as origin, vertical extent of all 17 keypoints scaled to 85 px.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sconet.render.engine import impute, pav_batch
from sconet.render.settings import RenderConfig

_TARGET_HEIGHT = 85.0
_CENTRE = 64.0
_F32_MAX = float(np.finfo(np.float32).max)


def _normalisation_problem(pose: np.ndarray) -> str | None:
    xy = pose[..., :2].astype(np.float64)
    y = xy[..., 1]
    extent = y.max(axis=1) - y.min(axis=1)
    scalable = extent > 0
    if not scalable.any():
        return "no frame can be normalised (in every frame all keypoints share one y: zero vertical extent)"
    hip = (xy[:, 11] + xy[:, 12]) / 2.0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scale = np.where(scalable, _TARGET_HEIGHT / np.where(scalable, extent, 1.0), 0.0)
        norm = (xy - hip[:, None, :]) * scale[:, None, None] + _CENTRE
    bad = scalable & ~(np.abs(norm) <= _F32_MAX).all(axis=(1, 2))
    if bad.any():
        t = int(np.argmax(bad))
        return (
            f"frame {t} cannot be normalised: its vertical extent {extent[t]:.3g} px is too small for "
            f"coordinates up to {np.abs(xy[t]).max():.3g} px (the normalised keypoints overflow)"
        )
    return None


def pose_problem(pose: np.ndarray, config: RenderConfig, pav: np.ndarray | None = None) -> str | None:
    """Why a validated float32 ``[T, 17, 3]`` pose cannot be rendered or measured, or ``None``.

    ``pav``: its postural asymmetry vector ``[8, 3]`` when already computed (else computed here).
    """
    observed = (pose[..., 0] != 0) | (pose[..., 1] != 0)
    if not observed.any():
        return "no observed keypoint (every x and y is 0)"
    filled = impute(pose) if config.impute == "linear" and not observed.all() else pose
    problem = _normalisation_problem(filled)
    if problem is not None:
        return problem
    values = pav_batch([pose], threads=1)[0] if pav is None else pav
    if not np.isfinite(values).all():
        return "its postural asymmetry values are not finite (coordinates out of scale)"
    return None


def pose_problems(
    poses: Sequence[np.ndarray], config: RenderConfig, threads: int = 0
) -> tuple[np.ndarray, list[str | None]]:
    """PAVs of all sequences (float32 ``[N, 8, 3]``) and, per sequence, :func:`pose_problem`."""
    pav = np.asarray(pav_batch(list(poses), threads=threads), dtype=np.float32).reshape(-1, 8, 3)
    return pav, [pose_problem(p, config, pav[i]) for i, p in enumerate(poses)]
