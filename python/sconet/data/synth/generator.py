"""The generative model of the built-in synthetic Scoliosis1K: one deterministic pose sequence per id.

Every sequence is one synthetic adolescent walking back and forth in front of a fixed camera,
simulated as a small 3D stick figure with per-subject proportions and gait, projected into a
1080 x 1920 (portrait) image, then corrupted like a 2D pose estimator's output. Labels change a
latent scoliosis severity that drives static asymmetries (see ``docs/synthetic.md``). Sequence ``i``
depends only on ``(seed, i, label, frames, asymmetry_scale, missing_rate)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sconet.classes import CLASSES

GENERATOR_VERSION = "1"
"""Bumped whenever the output of the generator changes for an unchanged :class:`SynthConfig`."""

OFFICIAL_RATIOS: tuple[str, ...] = ("1:1:2", "1:1:4", "1:1:8", "1:1:16")
DEFAULT_SPLIT_RATIO = "1:1:2"
"""The split a run on the built-in synthetic data uses when it is given none."""
"""Training-set ratios positive:neutral:negative of the four official Scoliosis1K splits."""

OFFICIAL_N_TRAIN = 745
"""Training sequences of the official splits (744 in 1:1:8)."""

IMAGE_SIZE = (1080, 1920)
"""Synthetic image ``(width, height)`` in pixels (portrait)."""

FPS = 30.0
"""Frames per second of the simulated videos."""

MANIFEST_NAME = "synthetic.json"

_RELEASE_TOTAL = 1493
_LABEL_FOLDERS = {c: c.capitalize() for c in CLASSES}


class SynthError(ValueError):
    """Invalid synthetic-data request (configuration, ratio, too few sequences...)."""


class SynthExistsError(FileExistsError):
    """The output folder exists and is not empty (and ``overwrite`` was not given)."""


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic dataset settings.

    ``n_sequences`` ids ``00000``..; ``frames`` per sequence; ``seed`` of everything.
    ``class_totals`` = (negative, neutral, positive) counts. When they do not sum to
    ``n_sequences`` they are used as proportions (largest remainder, every class with a
    non-zero total keeps at least one sequence when ``n_sequences >= 3``).
    ``asymmetry_scale`` multiplies the class-dependent asymmetries (0 = labels carry no
    signal; the default 2.0 lets the small CPU demo model learn the task in minutes, see
    docs/synthetic.md); ``missing_rate`` is the mean fraction of keypoints reported
    missing (``(0, 0, low confidence)``).
    """

    n_sequences: int = 1493
    frames: int = 300
    seed: int = 0
    class_totals: tuple[int, int, int] = (800, 200, 493)
    asymmetry_scale: float = 2.0
    missing_rate: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_totals", tuple(int(c) for c in self.class_totals))
        if not isinstance(self.n_sequences, (int, np.integer)) or not 1 <= self.n_sequences <= 99_999:
            raise SynthError(f"n_sequences must be an integer in [1, 99999], got {self.n_sequences!r}")
        if not isinstance(self.frames, (int, np.integer)) or self.frames < 1:
            raise SynthError(f"frames must be a positive integer, got {self.frames!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise SynthError(f"seed must be a non-negative integer, got {self.seed!r}")
        if len(self.class_totals) != 3 or min(self.class_totals) < 0 or sum(self.class_totals) == 0:
            raise SynthError(
                "class_totals must be 3 non-negative counts (negative, neutral, positive), got "
                f"{self.class_totals}"
            )
        if not (math.isfinite(self.asymmetry_scale) and self.asymmetry_scale >= 0):
            raise SynthError(f"asymmetry_scale must be >= 0, got {self.asymmetry_scale}")
        if not (0.0 <= self.missing_rate <= 0.5):
            raise SynthError(f"missing_rate must be in [0, 0.5], got {self.missing_rate}")
        for name in ("n_sequences", "frames", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "asymmetry_scale", float(self.asymmetry_scale))
        object.__setattr__(self, "missing_rate", float(self.missing_rate))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the manifest's ``config``)."""
        d = asdict(self)
        d["class_totals"] = list(self.class_totals)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SynthConfig:
        fields = ("n_sequences", "frames", "seed", "class_totals", "asymmetry_scale", "missing_rate")
        known = {k: d[k] for k in fields if k in d}
        if "class_totals" in known:
            known["class_totals"] = tuple(known["class_totals"])
        return cls(**known)

    def class_counts(self) -> tuple[int, int, int]:
        """Actual (negative, neutral, positive) counts for ``n_sequences``."""
        totals = self.class_totals
        n = int(self.n_sequences)
        if sum(totals) == n:
            return totals
        s = sum(totals)
        exact = [n * t / s for t in totals]
        counts = [int(math.floor(e)) for e in exact]
        for j in sorted(range(3), key=lambda j: (-(exact[j] - counts[j]), j))[: n - sum(counts)]:
            counts[j] += 1
        if n >= 3:
            for j in range(3):
                if totals[j] > 0 and counts[j] == 0:
                    donor = max(range(3), key=lambda k: counts[k])
                    counts[donor] -= 1
                    counts[j] += 1
        return counts[0], counts[1], counts[2]


def synthetic_ids(config: SynthConfig) -> list[str]:
    """``["00000", "00001", ...]`` (``n_sequences`` ids)."""
    return [f"{i:05d}" for i in range(config.n_sequences)]


def synthetic_labels(config: SynthConfig) -> list[str]:
    """Label of every id (lower case), a seeded shuffle of the class counts."""
    counts = config.class_counts()
    base = np.repeat(np.arange(3), counts)
    rng = np.random.default_rng([int(config.seed), 0x1ABE1])
    return [CLASSES[k] for k in base[rng.permutation(base.size)]]


def synthetic_view(index: int, config: SynthConfig) -> str:
    """View folder name of sequence ``index``: ``<take>_<angle>``, e.g. ``000_180``.

    ``_180``: the subject first walks towards the camera (facing it), ``_000``: first walks away.
    ``001_`` marks a second take (a cosmetic detail, like the real release's view names).
    """
    rng = np.random.default_rng([int(config.seed), int(index), 1])
    u = rng.random(2)
    take = 0 if u[0] < 0.85 else 1
    angle = 180 if u[1] < 0.7 else 0
    return f"{take:03d}_{angle:03d}"


# --------------------------------------------------------------------------------------------
# the generative model
# --------------------------------------------------------------------------------------------

# COCO-17: 0 nose, 1/2 eyes, 3/4 ears, 5/6 shoulders, 7/8 elbows, 9/10 wrists, 11/12 hips,
# 13/14 knees, 15/16 ankles (odd = left, even = right).
# pose-estimator jitter per joint (relative), missing-keypoint propensity, confidence spread
_JITTER_MULT = np.array([0.6, 0.6, 0.6, 0.7, 0.7, 0.9, 0.9, 1.2, 1.2, 1.6, 1.6, 1.3, 1.3, 1.1, 1.1, 1.4, 1.4])
_MISSING_MULT = np.array(
    [0.4, 0.4, 0.4, 0.6, 0.6, 0.5, 0.5, 0.9, 0.9, 2.8, 2.8, 0.6, 0.6, 0.9, 0.9, 2.3, 2.3]
)
_MISSING_MULT = _MISSING_MULT / _MISSING_MULT.mean()
_CONF_MULT = np.array([1.0, 1.0, 1.0, 1.1, 1.1, 0.8, 0.8, 1.1, 1.1, 1.6, 1.6, 1.1, 1.1, 1.0, 1.0, 1.4, 1.4])
_FACE = np.array([j <= 4 for j in range(17)])

# latent severity per class: |N(mean, sd)|, drawn from one standard normal per subject so that
# the same subject gets a larger severity with a "worse" label.
_SEVERITY = {"negative": (0.0, 0.35), "neutral": (0.8, 0.4), "positive": (1.45, 0.6)}


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _box_smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over axis 0 (same length, edge-padded)."""
    if width <= 1 or x.shape[0] < 2:
        return x
    pad = width // 2
    xp = np.concatenate([np.repeat(x[:1], pad, axis=0), x, np.repeat(x[-1:], width - 1 - pad, axis=0)])
    c = np.cumsum(xp, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c])
    return (c[width:] - c[:-width]) / width


def _bursts(
    rng: np.random.Generator, shape: tuple[int, ...], p_start: np.ndarray | float, max_len: int
) -> np.ndarray:
    """Boolean mask of runs: each (t, ...) starts a run with probability ``p_start`` (broadcast
    over the trailing axes), lasting 1..max_len frames."""
    starts = rng.random(shape) < p_start
    lengths = rng.integers(1, max_len + 1, size=shape)
    T = shape[0]
    diff = np.zeros((T + max_len + 1,) + shape[1:], dtype=np.int32)
    idx = np.nonzero(starts)
    if idx[0].size:
        np.add.at(diff, idx, 1)
        end = (idx[0] + lengths[idx],) + idx[1:]
        np.add.at(diff, end, -1)
    return np.cumsum(diff, axis=0)[:T] > 0


def _subject(rng: np.random.Generator, label: str, view: str, config: SynthConfig) -> dict[str, Any]:
    """Per-sequence random parameters. The number and order of draws never depend on the label."""
    g = rng.standard_normal(40)
    u = rng.random(20)
    p: dict[str, Any] = {}
    # body (metres / fractions of the height H)
    p["H"] = float(np.clip(1.58 + 0.09 * g[0], 1.35, 1.85))
    p["sh_half"] = 0.112 * (1 + 0.05 * g[1])
    p["hip_half"] = 0.088 * (1 + 0.06 * g[2])
    p["L_thigh"] = 0.245 * (1 + 0.03 * g[3])
    p["L_shank"] = 0.246 * (1 + 0.03 * g[4])
    p["ankle_h"] = 0.039
    p["torso"] = 0.29 * (1 + 0.03 * g[5])  # hip joint -> shoulder joint
    p["neck"] = 0.095 * (1 + 0.06 * g[6])  # shoulder line -> nose
    p["L_upper"] = 0.186 * (1 + 0.03 * g[7])
    p["L_fore"] = 0.146 * (1 + 0.03 * g[8])
    p["abd"] = math.radians(9 + 3 * g[9])  # arms hang slightly away from the body
    p["knee_in"] = 0.93 + 0.04 * g[10]  # knee / ankle lateral position relative to the hip
    p["ankle_in"] = 0.88 + 0.06 * g[11]
    p["lean"] = 0.02 + 0.01 * g[12]  # forward trunk lean (fraction of H)
    # gait
    cadence = float(np.clip(112 + 8 * g[13], 90, 135))  # steps per minute
    p["f_stride"] = cadence / 120.0  # strides per second
    p["stride_len"] = 0.80 * (1 + 0.07 * g[14])  # fraction of H
    p["A_hip"] = math.radians(float(np.clip(20 + 3 * g[15], 12, 28)))
    p["A_knee"] = math.radians(float(np.clip(55 + 5 * g[16], 40, 68)))
    p["A_arm"] = math.radians(float(np.clip(17 + 6 * g[17], 4, 35)))
    p["elbow0"] = math.radians(float(np.clip(14 + 5 * g[18], 3, 30)))
    p["A_list"] = math.radians(3.0 * (1 + 0.25 * g[19]))  # pelvic obliquity oscillation
    p["A_rot"] = math.radians(4.5 * (1 + 0.25 * g[20]))  # pelvic rotation
    p["sway"] = 0.016 * (1 + 0.3 * g[21])  # lateral sway (fraction of H)
    p["phase0"] = 2 * math.pi * u[0]
    p["head_yaw"] = math.radians(3.0 * (1 + 0.3 * g[22]))
    p["head_yaw_f"] = 0.15 + 0.2 * u[1]
    # camera and path
    p["f_px"] = 1700 + 400 * u[2]
    p["cam_h"] = 1.0 + 0.35 * u[3]
    p["cx"] = IMAGE_SIZE[0] / 2 + 15 * g[23]
    p["cy"] = IMAGE_SIZE[1] / 2 + 30 * g[24]
    p["roll"] = math.radians(0.6 * g[25])
    p["Z_near"] = 3.6 + 0.8 * u[4]
    p["Z_far"] = p["Z_near"] + 4.0 + 1.5 * u[5]
    p["X0"] = 0.15 * g[26]
    p["turn_s"] = 1.0 + 0.5 * u[6]  # seconds per turn
    p["turn_dir"] = (1.0 if u[7] < 0.5 else -1.0, 1.0 if u[8] < 0.5 else -1.0)
    p["start"] = u[9]  # where along the first walk the sequence starts
    p["towards_first"] = view.endswith("_180")
    # pose-estimator noise
    p["jitter"] = 0.0025 + 0.0025 * u[10]  # fraction of the person's pixel height
    p["bias"] = 0.004  # per-subject static keypoint bias sd (fraction of H)
    # scoliosis: severity and signed asymmetries
    mean, sd = _SEVERITY[label]
    s = abs(mean + sd * g[27]) * float(config.asymmetry_scale)
    side = 1.0 if u[11] < 0.6 else -1.0  # convex side of the main curve

    def sign(uu: float, agree: float = 0.8) -> float:
        return side if uu < agree else -side

    p["severity"] = s
    p["sh_dy"] = sign(u[12]) * s * 0.010 * (1 + 0.35 * g[28]) + 0.003 * g[29]
    p["pel_dy"] = -sign(u[13]) * s * 0.006 * (1 + 0.35 * g[30]) + 0.0025 * g[31]
    p["shift"] = sign(u[14]) * s * 0.010 * (1 + 0.35 * g[32]) + 0.003 * g[33]
    p["head_tilt"] = math.radians(-sign(u[15], 0.7) * s * 1.5 * (1 + 0.35 * g[34]) + 1.0 * g[35])
    arm = sign(u[16], 0.7) * s * 0.22 * (1 + 0.35 * g[36]) + 0.07 * g[37]
    p["arm_asym"] = float(np.clip(arm, -0.9, 0.9))
    return p


def _trajectory(p: dict[str, Any], T: int) -> tuple[np.ndarray, ...]:
    """Depth Z, facing angle theta, lateral X, walking-amplitude factor and time, per frame."""
    H = p["H"]
    t = np.arange(T) / FPS
    v = p["stride_len"] * H * p["f_stride"]
    D = p["Z_far"] - p["Z_near"]
    w = D / v
    tau = p["turn_s"]
    L = 2 * w + 2 * tau
    t0 = p["start"] * 0.5 * w + (0.0 if p["towards_first"] else w + tau)
    uu = np.mod(t + t0, L)
    a = uu < w
    b = (uu >= w) & (uu < w + tau)
    c = (uu >= w + tau) & (uu < 2 * w + tau)
    d = uu >= 2 * w + tau
    Z = np.where(a, p["Z_far"] - v * uu, 0.0)
    Z = np.where(b, p["Z_near"], Z)
    Z = np.where(c, p["Z_near"] + v * (uu - w - tau), Z)
    Z = np.where(d, p["Z_far"], Z)
    theta = np.where(a, math.pi, 0.0)
    theta = np.where(b, math.pi + p["turn_dir"][0] * math.pi * _smoothstep((uu - w) / tau), theta)
    theta = np.where(c, 0.0, theta)
    theta = np.where(d, p["turn_dir"][1] * math.pi * _smoothstep((uu - 2 * w - tau) / tau), theta)
    walking = (a | c).astype(np.float64)
    amp = 0.35 + 0.65 * _box_smooth(walking, 9)
    X = np.full(T, p["X0"])
    return Z, theta, X, amp, t


def _body(
    p: dict[str, Any], T: int, amp: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body-frame joint coordinates ``(left, up, forward)``, each ``[T, 17]``, in metres."""
    H = p["H"]
    phi = 2 * math.pi * p["f_stride"] * t + p["phase0"]
    lat = np.zeros((T, 17))
    up = np.zeros((T, 17))
    fw = np.zeros((T, 17))

    # legs: thigh angle from vertical (forward +) and knee flexion, left leg phase phi
    psi = np.stack([phi, phi + math.pi], axis=1)  # [T, 2] (left, right)
    a2 = amp[:, None]
    th = math.radians(6) * a2 + p["A_hip"] * a2 * np.sin(psi)
    kappa = math.radians(5) + p["A_knee"] * a2 * np.maximum(0.0, np.cos(psi + 0.5)) ** 2
    Lt, Ls = p["L_thigh"] * H, p["L_shank"] * H
    leg_v = Lt * np.cos(th) + Ls * np.cos(th - kappa)  # hip height above the ankle
    pelvis_h = p["ankle_h"] * H + leg_v.max(axis=1)  # the stance leg carries the pelvis

    sway = -p["sway"] * H * np.cos(phi) * amp  # towards the stance leg
    list_ang = p["A_list"] * np.sin(phi) * amp
    rot = p["A_rot"] * np.sin(phi) * amp
    hip_half = p["hip_half"] * H
    sides = np.array([1.0, -1.0])
    hip_l = sway[:, None] + sides * hip_half
    hip_u = pelvis_h[:, None] + sides * (hip_half * np.sin(list_ang)[:, None] + 0.5 * p["pel_dy"] * H)
    hip_f = sides * hip_half * np.sin(rot)[:, None]
    lat[:, 11:13], up[:, 11:13], fw[:, 11:13] = hip_l, hip_u, hip_f
    lat[:, 13:15] = sway[:, None] * 0.6 + sides * hip_half * p["knee_in"]
    up[:, 13:15] = hip_u - Lt * np.cos(th)
    fw[:, 13:15] = hip_f + Lt * np.sin(th)
    lat[:, 15:17] = sway[:, None] * 0.3 + sides * hip_half * p["ankle_in"]
    up[:, 15:17] = up[:, 13:15] - Ls * np.cos(th - kappa)
    fw[:, 15:17] = fw[:, 13:15] + Ls * np.sin(th - kappa)

    # trunk and shoulders (static lateral shift = scoliosis sign), thorax counter-rotation
    sc_l = sway * 0.8 + p["shift"] * H
    sc_u = pelvis_h + p["torso"] * H
    sc_f = p["lean"] * H
    sh_half = p["sh_half"] * H
    rot_th = -0.6 * rot
    lat[:, 5:7] = sc_l[:, None] + sides * sh_half
    up[:, 5:7] = sc_u[:, None] + sides * (0.5 * p["sh_dy"] * H - 0.4 * hip_half * np.sin(list_ang)[:, None])
    fw[:, 5:7] = sc_f + sides * sh_half * np.sin(rot_th)[:, None]

    # arms: left arm swings with the right leg; arm_asym > 0 = the left arm swings more
    arm_amp = p["A_arm"] * np.array([1 + 0.5 * p["arm_asym"], 1 - 0.5 * p["arm_asym"]])
    beta = -np.sin(phi)[:, None] * sides * arm_amp * a2  # shoulder flexion (forward +)
    eps = p["elbow0"] + 0.6 * np.maximum(beta, 0.0)
    Lu, Lf = p["L_upper"] * H, p["L_fore"] * H
    ca = math.cos(p["abd"])
    lat[:, 7:9] = lat[:, 5:7] + sides * Lu * math.sin(p["abd"])
    up[:, 7:9] = up[:, 5:7] - Lu * ca * np.cos(beta)
    fw[:, 7:9] = fw[:, 5:7] + Lu * ca * np.sin(beta)
    lat[:, 9:11] = lat[:, 7:9] + sides * Lf * math.sin(0.5 * p["abd"])
    up[:, 9:11] = up[:, 7:9] - Lf * np.cos(beta + eps)
    fw[:, 9:11] = fw[:, 7:9] + Lf * np.sin(beta + eps)

    # head: follows the trunk, tilts (roll) and looks around a little (yaw)
    hc_l = sc_l + 0.3 * p["shift"] * H
    hc_u = sc_u + p["neck"] * H
    hc_f = sc_f + 0.015 * H
    rel = (
        np.array(
            [  # (left, up, forward) relative to the nose level head centre, fraction of H
                [0.0, 0.0, 0.055],
                [0.020, 0.022, 0.045],
                [-0.020, 0.022, 0.045],
                [0.047, 0.014, -0.010],
                [-0.047, 0.014, -0.010],
            ]
        )
        * H
    )
    yaw = p["head_yaw"] * np.sin(2 * math.pi * p["head_yaw_f"] * t)
    cy_, sy_ = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    hl = rel[:, 0] * cy_ + rel[:, 2] * sy_
    hf = -rel[:, 0] * sy_ + rel[:, 2] * cy_
    g = p["head_tilt"] - 0.3 * math.radians(1) * np.sin(phi)[:, None]
    cg, sg = np.cos(g), np.sin(g)
    lat[:, 0:5] = hc_l[:, None] + hl * cg - rel[:, 1] * sg
    up[:, 0:5] = hc_u[:, None] + hl * sg + rel[:, 1] * cg
    fw[:, 0:5] = hc_f + hf
    return lat, up, fw


def _simulate(rng: np.random.Generator, p: dict[str, Any], T: int, config: SynthConfig) -> np.ndarray:
    H = p["H"]
    Z, theta, X, amp, t = _trajectory(p, T)
    lat, up, fw = _body(p, T, amp, t)
    # body frame -> world: left = (-cos th, 0, sin th), forward = (sin th, 0, cos th)
    ct, st = np.cos(theta)[:, None], np.sin(theta)[:, None]
    Xw = X[:, None] - lat * ct + fw * st
    Zw = Z[:, None] + lat * st + fw * ct
    f = p["f_px"]
    x = p["cx"] + f * Xw / Zw
    y = p["cy"] - f * (up - p["cam_h"]) / Zw
    # camera roll about the principal point
    cr, sr = math.cos(p["roll"]), math.sin(p["roll"])
    dx, dy = x - p["cx"], y - p["cy"]
    x = p["cx"] + cr * dx - sr * dy
    y = p["cy"] + sr * dx + cr * dy

    # --- pose-estimator corruption -------------------------------------------------------
    height_px = (f * H / Z)[:, None]  # [T, 1]
    white = rng.standard_normal((T, 17, 2))
    slow = _box_smooth(rng.standard_normal((T, 17, 2)), 7) * math.sqrt(7.0)
    lowq = _bursts(rng, (T,), 0.004, 5)  # whole-frame low-quality bursts (~1 % of frames)
    sd = p["jitter"] * height_px * _JITTER_MULT * np.where(lowq, 3.0, 1.0)[:, None]
    bias = rng.standard_normal((17, 2)) * (p["bias"] * H) * (f / Z)[:, None, None]
    x = x + sd * (0.6 * white[..., 0] + 0.8 * slow[..., 0]) + bias[..., 0]
    y = y + sd * (0.6 * white[..., 1] + 0.8 * slow[..., 1]) + bias[..., 1]

    # confidence: mostly high; lower for wrists/ankles, the face seen from behind, far away
    depth01 = (Z - p["Z_near"]) / (p["Z_far"] - p["Z_near"])
    back = np.maximum(0.0, np.cos(theta))  # 1 when walking away from the camera
    spread = _CONF_MULT * (1 + 0.4 * depth01)[:, None] * np.where(_FACE, 1 + 1.5 * back[:, None], 1.0)
    conf = 1.0 - 0.55 * rng.beta(1.5, 10.0, size=(T, 17)) * spread
    conf = np.where(lowq[:, None], conf * rng.uniform(0.4, 0.65, size=(T, 1)), conf)
    conf = np.clip(conf, 0.31, 0.995)

    # missing keypoints: runs of 1..5 frames, more often at wrists/ankles
    p_start = config.missing_rate * _MISSING_MULT / 3.0
    missing = _bursts(rng, (T, 17), p_start, 5)
    miss_conf = rng.uniform(0.02, 0.25, size=(T, 17))

    out = np.empty((T, 17, 3), dtype=np.float32)
    out[..., 0] = np.clip(x, 0.5, IMAGE_SIZE[0] - 0.5)
    out[..., 1] = np.clip(y, 0.5, IMAGE_SIZE[1] - 0.5)
    out[..., 2] = conf
    out[missing] = 0.0
    out[..., 2][missing] = miss_conf[missing]
    return out


def generate_sequence(index: int, label: str, config: SynthConfig | None = None) -> np.ndarray:
    """Sequence ``index`` with the given label: float32 ``[frames, 17, 3]`` (x, y, confidence).

    Deterministic in ``(config.seed, index, label)`` and the generative settings of ``config``
    (not in ``n_sequences``). The view (walking direction at the start) is
    :func:`synthetic_view`.
    """
    config = config or SynthConfig()
    label = str(label).lower()
    if label not in CLASSES:
        raise SynthError(f"unknown label {label!r}: expected one of {CLASSES}")
    if int(index) < 0:
        raise SynthError(f"index must be >= 0, got {index}")
    view = synthetic_view(index, config)
    rng = np.random.default_rng([int(config.seed), int(index), 0])
    p = _subject(rng, label, view, config)
    return _simulate(rng, p, int(config.frames), config)


def iter_sequences(config: SynthConfig | None = None) -> Iterator[tuple[str, str, str, np.ndarray]]:
    """``(id, label, view, pose)`` for every sequence, in id order."""
    config = config or SynthConfig()
    for i, label in enumerate(synthetic_labels(config)):
        yield f"{i:05d}", label, synthetic_view(i, config), generate_sequence(i, label, config)
