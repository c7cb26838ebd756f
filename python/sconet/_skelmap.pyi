"""Type stub of the private Rust extension ``sconet._skelmap`` (use :mod:`sconet.render`)."""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

RENDERER_VERSION: str

# The skeleton (COCO-17) and the Postural Asymmetry Vector's layout.
NUM_JOINTS: int
JOINT_NAMES: tuple[str, ...]
COCO_LIMBS: tuple[tuple[int, int], ...]
HEAD_JOINTS: tuple[int, ...]
MIN_CONFIDENCE: float
PAV_PAIRS: tuple[tuple[int, int], ...]
PAV_PAIR_NAMES: tuple[str, ...]
PAV_METRICS: tuple[str, ...]

# The render settings' allowed values, the defaults (``RenderConfig()``) and the reference
# settings (``RenderConfig.reference()``).
GEOMETRIES: tuple[str, ...]
ALIGNMENTS: tuple[str, ...]
IMPUTATIONS: tuple[str, ...]
HEADS: tuple[str, ...]
DEFAULT_SIGMA_LIMB: float
DEFAULT_SIGMA_JOINT: float
DEFAULT_GEOMETRY: str
DEFAULT_ALIGNMENT: str
DEFAULT_IMPUTE: str
DEFAULT_HEAD: str
REFERENCE_SIGMA_LIMB: float
REFERENCE_SIGMA_JOINT: float
REFERENCE_GEOMETRY: str
REFERENCE_ALIGNMENT: str
REFERENCE_IMPUTE: str
REFERENCE_HEAD: str

# Sizes: the drawing canvas, a stored map, one rendered frame (limb map, joint map).
CANVAS_SIZE: int
MAP_SIZE: int
FRAME_SHAPE: tuple[int, int, int]

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
