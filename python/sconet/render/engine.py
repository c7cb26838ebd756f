"""Rendering and PAV entry points over the Rust extension (GIL released, per-call thread pool)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sconet import _skelmap
from sconet.render.settings import RenderConfig


def _as_pose(pose: object, index: int) -> np.ndarray:
    """A C-contiguous float32 or float64 array (KNN imputation runs in the input's float type,
    as scikit-learn does); any other input is read as float64, as scikit-learn reads it."""
    try:
        arr = np.asarray(pose)
        dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float64
        return np.ascontiguousarray(arr, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sequence {index}: cannot be read as a float array ({exc})") from None


def _threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0 = all cores), got {threads!r}")
    return int(threads)


def render_batch(
    poses: Sequence[np.ndarray],
    config: RenderConfig | None = None,
    threads: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Render several ``[T_i, 17, 3]`` sequences -> uint8 ``[sum T_i, 2, 64, 64]``, in order.

    Runs in parallel in Rust with the GIL released (``threads=0``: all cores). ``out``: a
    writeable C-contiguous uint8 array of that shape to render into (and return) instead of a
    new one: reusing a buffer from batch to batch spares the page faults and kernel zeroing of
    fresh memory (~15% of rendering time). It is written only after every sequence has passed
    validation.
    """
    config = RenderConfig() if config is None else config
    if not isinstance(config, RenderConfig):
        raise ValueError(f"config must be a RenderConfig, got {type(config).__name__}")
    if isinstance(poses, np.ndarray):
        raise ValueError("poses must be a list of [T, 17, 3] arrays (use render_sequence for one)")
    arrays = [_as_pose(p, i) for i, p in enumerate(poses)]
    rep = config.representation
    return _skelmap.render_batch(
        arrays,
        rep.joint_mask(),
        rep.limb_array(),
        config.sigma_limb,
        config.sigma_joint,
        config.geometry,
        config.alignment,
        config.impute,
        _threads(threads),
        out,
        config.head,
    )


def _single(exc: ValueError) -> ValueError:
    msg = str(exc)
    return ValueError(msg[len("sequence 0: ") :] if msg.startswith("sequence 0: ") else msg)


def render_sequence(pose: np.ndarray, config: RenderConfig | None = None) -> np.ndarray:
    """Render one ``[T, 17, 3]`` sequence -> uint8 ``[T, 2, 64, 64]`` (limb map, joint map)."""
    try:
        return render_batch([pose], config, threads=1)
    except ValueError as exc:
        raise _single(exc) from None


def impute(pose: np.ndarray, method: str = "linear") -> np.ndarray:
    """Imputation of one ``[T, 17, 3]`` sequence as rendering does it (see the module docstring):
    ``method="linear"`` (float32 result) or ``"knn"`` (OpenGait's scikit-learn ``KNNImputer``, in
    the input's float type; the input unchanged when a coordinate is 0 in every frame)."""
    try:
        return _skelmap.impute(_as_pose(pose, 0), method)
    except ValueError as exc:
        raise _single(exc) from None


# --------------------------------------------------------------------------------------------
# Postural Asymmetry Vectors
# --------------------------------------------------------------------------------------------


def pav_batch(poses: Sequence[np.ndarray], threads: int = 0) -> np.ndarray:
    """PAV of each sequence -> float32 ``[N, 8, 3]`` (raw, unnormalised)."""
    if isinstance(poses, np.ndarray):
        raise ValueError("poses must be a list of [T, 17, 3] arrays (use pav for one)")
    arrays = [_as_pose(p, i) for i, p in enumerate(poses)]
    return _skelmap.pav_batch(arrays, _threads(threads))


def pav(pose: np.ndarray) -> np.ndarray:
    """PAV of one sequence -> float32 ``[8, 3]`` (rows :data:`PAV_PAIRS`, columns
    :data:`PAV_METRICS`)."""
    try:
        return pav_batch([pose], threads=1)[0]
    except ValueError as exc:
        raise _single(exc) from None
