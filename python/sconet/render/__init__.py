"""Skeleton-map rendering and Postural Asymmetry Vectors: the Python front of ``sconet._skelmap``.

Skeleton maps
-------------
A pose sequence ``[T, 17, 3]`` (COCO-17 ``x, y, confidence`` in image pixels, float32 or
float64) becomes uint8 ``[T, 2, 64, 64]``: channel 0 = limb map, channel 1 = joint map. Per
frame (the rules of ``docs/skeleton-maps``; :mod:`sconet.render.reference` is OpenGait's own
recipe, written literally with the libraries OpenGait uses, for the parity tests):

1. Imputation. ``impute="knn"`` (OpenGait's): every coordinate that is exactly 0 is filled by
   scikit-learn's ``KNNImputer(missing_values=0.0, n_neighbors=4, weights="distance")`` over the
   frames of the ``[T, 34]`` coordinate matrix, in the input's float type; if a coordinate is 0
   in every frame, the sequence stays as it is (OpenGait's quirk). ``impute="linear"``: missing
   keypoints (``x == 0 and y == 0``) are interpolated linearly over time per joint from the
   nearest observed frames, held constant before the first / after the last observation; a
   joint never observed in the sequence is placed at the mean of the keypoints observed in that
   frame (or of the frame's interpolated keypoints when it has none); a sequence without any
   observed keypoint is an error. ``impute="none"`` uses the keypoints as given. Confidences
   are kept, so an imputed keypoint with a low score is still not drawn.
2. ``head``: ``"keep"`` (as given), ``"zero-scores"`` (keypoints 0..4 drawn nowhere, nor any
   limb touching them, but counted in the normalisation) or ``"remove"`` (drawn nowhere and
   left out of the normalisation). Origin = hip midpoint (keypoints 11, 12); scale so the
   vertical extent of the counted keypoints (whatever their score) is 85 px; hip midpoint at
   the centre of a 128 x 128 canvas. A frame whose counted keypoints all share one y (zero
   extent) cannot be scaled and is rendered empty (all zeros), as is any frame where nothing
   is drawn.
3. Gaussians with peak = confidence inside the reference +-3 sigma windows (bounds truncated
   like OpenGait's ``int()``), skipped below confidence 1e-3; limbs use ``min(c_a, c_b)`` and
   the distance to the segment; a limb shorter than 1 px is a point at its first keypoint
   (peak ``c_a``, as OpenGait). ``sigma_limb`` for the limb map, ``sigma_joint`` for the joint
   map; element-wise max merge.
4. Grey: matplotlib ``gray`` lookup of ``floor(256 x)`` (its 24 one-level-low entries
   included).
5. Crop rows first..last non-zero (``h`` rows). ``geometry="square"`` (reference): columns
   ``[64 - h//2, 64 + h//2 + 1)`` clipped to the canvas, so an even ``h`` gives an
   ``h x (h + 1)`` crop, squeezed by one column when resized. ``geometry="aspect"``: an
   ``h x h`` square starting at column ``64 - h//2`` (zero-padded outside the canvas), resized
   without warping. ``alignment="per-channel"`` (reference) crops each channel on its own rows;
   ``"shared"`` uses one box, the union of both channels' rows, so limb and joint maps stay
   registered. Resize to 64 x 64 as OpenGait does: OpenCV ``INTER_AREA`` in float64 on
   ``level / 255``, stored as ``uint8(value * 255)`` by truncation.

Parity: with the ``opengait`` preset (:mod:`sconet.render.presets`) the maps match OpenGait's
own (:mod:`sconet.render.reference`) within one grey level, fewer than 1 pixel in 10^4 differing;
``docs/opengait.md`` lists what is left between the two.

Postural Asymmetry Vector (PAV)
-------------------------------
``pav(pose)`` -> float32 ``[8, 3]``; rows :data:`PAV_PAIRS` (eyes, ears, shoulders, elbows,
wrists, hips, knees, ankles), columns :data:`PAV_METRICS`. Conventions (reconstructed from the
DRF paper's description, which leaves these choices open):

- A keypoint is valid in a frame when its confidence is > 0 and it is not at ``(0, 0)``.
  Frames with fewer than two valid keypoints, or whose valid keypoints share one y, give no
  values. Raw poses are used (no imputation).
- Scale: the vertical extent of the frame's valid keypoints becomes 128. The described origin
  (hip midpoint) cancels out of every metric below, so it is not needed and frames
  without valid hips still count.
- Per pair with both ends valid: height difference ``|y_l - y_r|``; midline deviation
  ``|(x_l + x_r) / 2 - mean x of the frame's valid keypoints|`` (the body midline; measuring
  from the hip midpoint instead would make the hips' deviation identically 0); tilt angle
  ``atan2(|dy|, |dx|)`` in degrees, in [0, 90] and invariant to the walking direction (the
  signed ``|atan2(dy, dx)|`` flips between ~0 and ~180 degrees when the subject turns round).
- Over frames, per (pair, metric): keep the values inside ``[Q1 - 1.5 IQR, Q3 + 1.5 IQR]``
  (numpy's default linear quartiles) and average them; no value at all gives 0.0.
- Values are raw; dataset min-max normalisation (training ids only) happens at training time.

Errors are ``ValueError`` naming the sequence index (``sequence 3: ...``) or, for custom
representation files, the file. Rendering runs in Rust with the GIL released, on a per-call
thread pool (``threads=0``: all cores).
"""

from sconet.render.engine import impute, pav, pav_batch, render_batch, render_sequence
from sconet.render.presets import PRESETS, Preset, get_preset
from sconet.render.representations import (
    BUILTIN_REPRESENTATIONS,
    Representation,
    get_representation,
    load_representation,
)
from sconet.render.settings import (
    ALIGNMENTS,
    FRAME_SHAPE,
    GEOMETRIES,
    HEADS,
    IMPUTATIONS,
    MAP_SIZE,
    RENDERER_VERSION,
    RenderConfig,
)
from sconet.render.skeleton import COCO_LIMBS, JOINT_NAMES, NUM_JOINTS, PAV_METRICS, PAV_PAIR_NAMES, PAV_PAIRS

__all__ = [
    "impute",
    "pav",
    "pav_batch",
    "render_batch",
    "render_sequence",
    "PRESETS",
    "Preset",
    "get_preset",
    "BUILTIN_REPRESENTATIONS",
    "Representation",
    "get_representation",
    "load_representation",
    "ALIGNMENTS",
    "COCO_LIMBS",
    "FRAME_SHAPE",
    "GEOMETRIES",
    "HEADS",
    "IMPUTATIONS",
    "JOINT_NAMES",
    "MAP_SIZE",
    "NUM_JOINTS",
    "PAV_METRICS",
    "PAV_PAIR_NAMES",
    "PAV_PAIRS",
    "RENDERER_VERSION",
    "RenderConfig",
]
