"""Skeleton-map rendering and Postural Asymmetry Vectors: the Python front of ``sconet._skelmap``.

Skeleton maps
-------------
A pose sequence ``[T, 17, 3]`` (COCO-17 ``x, y, confidence`` in image pixels) becomes uint8
``[T, 2, 64, 64]``: channel 0 = limb map, channel 1 = joint map. Per frame (the rules of
``docs/skeleton-maps``; :mod:`sconet.reference` is the same pipeline in slow numpy):

1. ``impute="linear"``: missing keypoints (``x == 0 and y == 0``) are interpolated linearly
   over time per joint from the nearest observed frames, held constant before the first / after
   the last observation; a joint never observed in the sequence is placed at the mean of the
   keypoints observed in that frame (or of the frame's interpolated keypoints when it has none).
   Confidences are kept, so an imputed keypoint with a low score is still not drawn, but it no
   longer drags the normalisation to the image origin. A sequence without any observed keypoint
   is an error. ``impute="none"`` uses the keypoints as given.
2. Origin = hip midpoint (keypoints 11, 12); scale so the vertical extent of all 17 keypoints
   (whatever their score) is 85 px; hip midpoint at the centre of a 128 x 128 canvas. A frame
   whose keypoints all share one y (zero extent) cannot be scaled and is rendered empty
   (all zeros), as is any frame where nothing is drawn.
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
   registered. Resize to 64 x 64 with OpenCV ``INTER_AREA`` semantics.

Parity: with :meth:`RenderConfig.reference` (full-body, sigma 8/8, square, per-channel, no
imputation) the maps equal :mod:`sconet.reference` within one grey level per pixel.

Postural Asymmetry Vector (PAV)
-------------------------------
``pav(pose)`` -> float32 ``[8, 3]``; rows :data:`PAV_PAIRS` (eyes, ears, shoulders, elbows,
wrists, hips, knees, ankles), columns :data:`PAV_METRICS`. Conventions (reconstructed; see
``models.md``):

- A keypoint is valid in a frame when its confidence is > 0 and it is not at ``(0, 0)``.
  Frames with fewer than two valid keypoints, or whose valid keypoints share one y, give no
  values. Raw poses are used (no imputation).
- Scale: the vertical extent of the frame's valid keypoints becomes 128. The origin of
  models.md (hip midpoint) cancels out of every metric below, so it is not needed and frames
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

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sconet import _skelmap

__all__ = [
    "ALIGNMENTS",
    "BUILTIN_REPRESENTATIONS",
    "COCO_LIMBS",
    "GEOMETRIES",
    "IMPUTATIONS",
    "JOINT_NAMES",
    "MAP_SIZE",
    "NUM_JOINTS",
    "PAV_METRICS",
    "PAV_PAIRS",
    "PAV_PAIR_NAMES",
    "RENDERER_VERSION",
    "RenderConfig",
    "Representation",
    "get_representation",
    "impute",
    "load_representation",
    "pav",
    "pav_batch",
    "render_batch",
    "render_sequence",
]

RENDERER_VERSION: str = _skelmap.RENDERER_VERSION
"""Version of the rendering rules (from the extension); part of :meth:`RenderConfig.key`."""

NUM_JOINTS = 17
MAP_SIZE = 64
"""Side of a stored map (px)."""

JOINT_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

COCO_LIMBS: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (5, 7), (7, 9), (0, 6), (6, 8),
    (8, 10), (5, 11), (11, 13), (13, 15), (6, 12), (12, 14), (14, 16), (11, 12),
)  # fmt: skip
"""The 17 COCO limbs of SkeletonGait / PoseC3D (no shoulder-shoulder limb, hips linked)."""

PAV_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16),
)  # fmt: skip
"""Symmetric (left, right) keypoint pairs, the PAV rows, head to ankle."""
PAV_PAIR_NAMES: tuple[str, ...] = (
    "eyes", "ears", "shoulders", "elbows", "wrists", "hips", "knees", "ankles",
)  # fmt: skip
PAV_METRICS: tuple[str, ...] = ("height_difference", "midline_deviation", "tilt_degrees")
"""The PAV columns."""

GEOMETRIES: tuple[str, ...] = ("square", "aspect")
ALIGNMENTS: tuple[str, ...] = ("shared", "per-channel")
IMPUTATIONS: tuple[str, ...] = ("linear", "none")


# --------------------------------------------------------------------------------------------
# Representations
# --------------------------------------------------------------------------------------------


def _is_index(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class Representation:
    """Which joints go on the joint map and which limbs on the limb map (data, not code).

    ``joints``: keypoint indices 0..16 (stored sorted); ``limbs``: keypoint index pairs, each
    drawn whether or not its ends are in ``joints``. Duplicates (also ``(a, b)`` with
    ``(b, a)``) and a limb from a keypoint to itself are rejected.
    """

    name: str
    joints: tuple[int, ...]
    limbs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"representation name must be a non-empty string, got {self.name!r}")
        try:
            joints = list(self.joints)
        except TypeError:
            raise ValueError(f"representation {self.name!r}: joints must be a list of indices") from None
        for j in joints:
            if not _is_index(j) or not 0 <= int(j) < NUM_JOINTS:
                raise ValueError(
                    f"representation {self.name!r}: joint {j!r} is not a keypoint index 0..16"
                )
        joints = [int(j) for j in joints]
        dup = sorted({j for j in joints if joints.count(j) > 1})
        if dup:
            raise ValueError(f"representation {self.name!r}: duplicate joints {dup}")
        limbs: list[tuple[int, int]] = []
        seen: set[frozenset[int]] = set()
        try:
            raw_limbs = list(self.limbs)
        except TypeError:
            raise ValueError(f"representation {self.name!r}: limbs must be a list of pairs") from None
        for limb in raw_limbs:
            try:
                a, b = limb
            except (TypeError, ValueError):
                raise ValueError(
                    f"representation {self.name!r}: limb {limb!r} is not a pair of indices"
                ) from None
            if not (_is_index(a) and _is_index(b)) or not (
                0 <= int(a) < NUM_JOINTS and 0 <= int(b) < NUM_JOINTS
            ):
                raise ValueError(
                    f"representation {self.name!r}: limb {limb!r} needs keypoint indices 0..16"
                )
            a, b = int(a), int(b)
            if a == b:
                raise ValueError(f"representation {self.name!r}: limb ({a}, {b}) joins a keypoint to itself")
            if frozenset((a, b)) in seen:
                raise ValueError(f"representation {self.name!r}: duplicate limb ({a}, {b})")
            seen.add(frozenset((a, b)))
            limbs.append((a, b))
        if not joints and not limbs:
            raise ValueError(f"representation {self.name!r} draws nothing (no joints, no limbs)")
        object.__setattr__(self, "name", self.name.strip())
        object.__setattr__(self, "joints", tuple(sorted(joints)))
        object.__setattr__(self, "limbs", tuple(limbs))

    def joint_mask(self) -> np.ndarray:
        """uint8 ``[17]``: 1 for the joints drawn on the joint map."""
        mask = np.zeros(NUM_JOINTS, np.uint8)
        mask[list(self.joints)] = 1
        return mask

    def limb_array(self) -> np.ndarray:
        """int64 ``[L, 2]`` keypoint pairs."""
        return np.array(self.limbs, dtype=np.int64).reshape(-1, 2)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "joints": list(self.joints), "limbs": [list(l) for l in self.limbs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> Representation:
        """From ``{"name", "joints", "limbs"}`` (optionally ``"description"``, ignored)."""
        where = f"{source}: " if source else ""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}a representation must be a table/object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"name", "joints", "limbs", "description"})
        missing = [k for k in ("name", "joints", "limbs") if k not in data]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing key(s) {missing}")
            if unknown:
                parts.append(f"unknown key(s) {unknown}")
            raise ValueError(f"{where}{'; '.join(parts)} (expected name, joints, limbs)")
        try:
            return cls(name=data["name"], joints=tuple(data["joints"]), limbs=tuple(
                tuple(l) if isinstance(l, (list, tuple)) else l for l in data["limbs"]
            ))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}{exc}") from None


def _body(lo: int) -> tuple[tuple[int, int], ...]:
    return tuple(l for l in COCO_LIMBS if min(l) >= lo)


BUILTIN_REPRESENTATIONS: Mapping[str, Representation] = MappingProxyType(
    {
        "full-body": Representation("full-body", tuple(range(17)), COCO_LIMBS),
        "body-only": Representation("body-only", tuple(range(5, 17)), _body(5)),
        "head-lite": Representation(
            "head-lite", (0, *range(5, 17)), ((0, 5), (0, 6), *_body(5))
        ),
    }
)
"""The user's representations: ``full-body`` (17 joints, 17 limbs), ``body-only`` (joints
5..16, the 11 limbs among them; the winner), ``head-lite`` (body-only + nose and the
nose-shoulder links)."""


def load_representation(path: str | Path) -> Representation:
    """A representation from a ``.toml`` or ``.json`` file with ``name``, ``joints``, ``limbs``.

    Example (TOML)::

        name = "arms"
        joints = [5, 6, 7, 8, 9, 10]
        limbs = [[5, 7], [7, 9], [6, 8], [8, 10]]

    Raises ``ValueError`` naming the file for any problem.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"{p}: a representation file must end in .toml or .json")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read representation file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8")) if suffix == ".toml" else json.loads(raw)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not valid {suffix[1:].upper()} ({exc})") from None
    return Representation.from_dict(data, source=str(p))


def get_representation(name_or_path: str | Path | Representation) -> Representation:
    """A built-in representation by name, or one loaded from a ``.toml`` / ``.json`` file."""
    if isinstance(name_or_path, Representation):
        return name_or_path
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_REPRESENTATIONS:
        return BUILTIN_REPRESENTATIONS[name_or_path]
    if isinstance(name_or_path, (str, Path)):
        p = Path(name_or_path)
        if p.suffix.lower() in (".toml", ".json") or p.exists():
            return load_representation(p)
    names = ", ".join(BUILTIN_REPRESENTATIONS)
    raise ValueError(
        f"unknown representation {name_or_path!r}: use one of {names} or a .toml/.json file"
    )


# --------------------------------------------------------------------------------------------
# Render settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderConfig:
    """Everything that defines the rendered maps (see the module docstring).

    ``representation`` may be given as a :class:`Representation`, a built-in name or a file
    path; sigmas are coerced to float. Defaults: the user's winning setup (body-only, limb
    sigma 15, joint sigma 8, square geometry, shared alignment, linear imputation).
    """

    representation: Representation = field(
        default_factory=lambda: BUILTIN_REPRESENTATIONS["body-only"]
    )
    sigma_limb: float = 15.0
    sigma_joint: float = 8.0
    geometry: str = "square"
    alignment: str = "shared"
    impute: str = "linear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "representation", get_representation(self.representation))
        for name in ("sigma_limb", "sigma_joint"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {v!r}")
            v = float(v)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v}")
            object.__setattr__(self, name, v)
        for name, allowed in (
            ("geometry", GEOMETRIES),
            ("alignment", ALIGNMENTS),
            ("impute", IMPUTATIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def reference(cls) -> RenderConfig:
        """The reference (OpenGait / SkeletonGait) settings used for parity: full-body,
        sigma 8 / 8, square, per-channel, no imputation (feed complete poses)."""
        return cls(
            representation=BUILTIN_REPRESENTATIONS["full-body"],
            sigma_limb=8.0,
            sigma_joint=8.0,
            geometry="square",
            alignment="per-channel",
            impute="none",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly settings (stored in caches); :meth:`from_dict` inverts it."""
        return {
            "representation": self.representation.to_dict(),
            "sigma_limb": self.sigma_limb,
            "sigma_joint": self.sigma_joint,
            "geometry": self.geometry,
            "alignment": self.alignment,
            "impute": self.impute,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RenderConfig:
        """From :meth:`to_dict` output; ``representation`` may also be a built-in name."""
        if not isinstance(data, Mapping):
            raise ValueError(f"render settings must be a mapping, got {type(data).__name__}")
        known = {"representation", "sigma_limb", "sigma_joint", "geometry", "alignment", "impute"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown render setting(s) {unknown}; expected {sorted(known)}")
        kwargs = dict(data)
        rep = kwargs.get("representation")
        if isinstance(rep, Mapping):
            kwargs["representation"] = Representation.from_dict(rep)
        return cls(**kwargs)

    def key(self) -> str:
        """Short stable hash (12 hex digits) of the settings and :data:`RENDERER_VERSION`."""
        payload = {"render": self.to_dict(), "renderer_version": RENDERER_VERSION}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _as_pose(pose: object, index: int) -> np.ndarray:
    try:
        return np.ascontiguousarray(pose, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sequence {index}: cannot be read as a float32 array ({exc})") from None


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


def impute(pose: np.ndarray) -> np.ndarray:
    """Linear imputation of one ``[T, 17, 3]`` sequence (see the module docstring)."""
    try:
        return _skelmap.impute(_as_pose(pose, 0))
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
