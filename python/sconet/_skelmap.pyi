"""Type stub of the private Rust extension ``sconet._skelmap`` (use :mod:`sconet.render`)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

RENDERER_VERSION: str

def render_batch(
    poses: Sequence[npt.NDArray[np.float32] | npt.NDArray[np.float64]],
    joints: npt.NDArray[np.uint8],
    limbs: npt.NDArray[np.int64],
    sigma_limb: float,
    sigma_joint: float,
    geometry: str,
    alignment: str,
    impute: str,
    threads: int = 0,
    out: npt.NDArray[np.uint8] | None = None,
    head: str = "keep",
) -> npt.NDArray[np.uint8]:
    """Float32 or float64 ``[T, 17, 3]`` sequences -> uint8 ``[sum T, 2, 64, 64]`` (limb map,
    joint map).

    ``joints``: uint8 mask ``[17]``; ``limbs``: int64 ``[L, 2]``; ``geometry``: "square" |
    "aspect"; ``alignment``: "per-channel" | "shared"; ``impute``: "linear" | "knn" | "none"
    (knn in the input's float type); ``threads``: 0 = all cores; ``out``: a writeable
    C-contiguous uint8 array of the result's shape, rendered into and returned (untouched if
    validation fails); ``head``: "keep" | "zero-scores" | "remove". ValueError (naming the
    sequence index) on bad input.
    """

def pav_batch(
    poses: Sequence[npt.NDArray[np.float32] | npt.NDArray[np.float64]], threads: int = 0
) -> npt.NDArray[np.float32]:
    """Postural Asymmetry Vectors, float32 ``[N, 8, 3]``."""

def impute(
    pose: npt.NDArray[np.float32] | npt.NDArray[np.float64], method: str = "linear"
) -> npt.NDArray[np.float32] | npt.NDArray[np.float64]:
    """Imputation of one ``[T, 17, 3]`` sequence (a new array): "linear" (float32) or "knn"
    (OpenGait's KNNImputer, in the input's float type)."""

def gray_lut() -> npt.NDArray[np.uint8]:
    """The uint8 matplotlib-gray lookup table used for quantisation (256 entries)."""

def simd_level() -> str:
    """The compiled variant in use on this CPU: "avx512", "avx2" or "generic"."""
