"""Video -> pose sequence ``[T, 17, 3]``, and the pose file with its sidecar.

:func:`extract_poses` runs a pose backend over the frames of one video: COCO-17 keypoints in
the video's pixels with a confidence; a frame without a person is all zeros (as is a keypoint
the backend puts outside the frame). When fewer than ``min_detection_rate`` of the frames have
a person the video is refused (:class:`VideoError` giving the rate), so a pose file always
describes a visible subject. :func:`save_poses` writes the array as ``.pkl`` (a plain numpy
array, as in the Scoliosis1K release) or ``.npy``, atomically, then the sidecar
``<name>.pkl.json`` recording the video, the pose source (backend, model file and hash,
version, settings), the region of interest, the frames used and the detection rate.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconet._io import atomic_write_bytes, atomic_write_json
from sconet.video.backends import PoseBackend, create_backend, sha256_file
from sconet.video.reader import VideoError, VideoInfo, iter_frames, probe_video

__all__ = [
    "SIDECAR_FORMAT",
    "ExtractConfig",
    "PoseExtraction",
    "extract_poses",
    "read_sidecar",
    "save_poses",
    "sidecar_path",
]

SIDECAR_FORMAT = "sconet-pose-sidecar"
SIDECAR_VERSION = 1
POSE_FORMATS = (".pkl", ".npy")

Roi = tuple[int, int, int, int]


@dataclass(frozen=True)
class ExtractConfig:
    """How poses are extracted from a video.

    ``backend`` / ``options``: a registered pose backend and its settings
    (:func:`sconet.video.backends.create_backend`); ``roi``: ``(x0, y0, x1, y1)`` pixels where
    the subject is looked for (None: the whole frame); ``start`` / ``max_frames`` / ``step``:
    the frames used (``step=2``: every other frame, half the work for a 30 frames/s video);
    ``min_detection_rate``: below this fraction of frames with a person the video is
    refused; ``keep_frames``: evenly spaced frames kept (RGB) for a report, among the first
    ``keep_within`` frames used (all by default).
    """

    backend: str = "blazepose"
    options: Mapping[str, Any] = field(default_factory=dict)
    roi: Roi | None = None
    start: int = 0
    max_frames: int | None = None
    step: int = 1
    min_detection_rate: float = 0.5
    keep_frames: int = 0
    keep_within: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_detection_rate <= 1.0:
            raise ValueError(f"min_detection_rate must be in [0, 1], got {self.min_detection_rate}")
        if self.start < 0 or (self.max_frames is not None and self.max_frames < 1) or self.keep_frames < 0:
            raise ValueError("start must be >= 0, max_frames >= 1 and keep_frames >= 0")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step}")
        if self.roi is not None:
            roi = tuple(int(v) for v in self.roi)
            if len(roi) != 4 or roi[0] < 0 or roi[1] < 0 or roi[2] <= roi[0] or roi[3] <= roi[1]:
                raise ValueError(
                    "region of interest must be x0,y0,x1,y1 with 0 <= x0 < x1 and 0 <= y0 < y1, "
                    f"got {self.roi}"
                )
            object.__setattr__(self, "roi", roi)
        object.__setattr__(self, "options", dict(self.options))

    def settings(self) -> dict[str, Any]:
        """What, besides the pose source, decides the output (recorded and fingerprinted)."""
        return {
            "roi": None if self.roi is None else list(self.roi),
            "start": self.start,
            "max_frames": self.max_frames,
            "step": self.step,
            "min_detection_rate": self.min_detection_rate,
        }


def parse_roi(text: str) -> Roi:
    """``"x0,y0,x1,y1"`` -> a tuple of ints (ValueError naming the problem)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(float(p)) for p in parts)
    except ValueError:
        raise ValueError(f"region of interest {text!r}: expected four pixel values x0,y0,x1,y1") from None
    if len(values) != 4:
        raise ValueError(f"region of interest {text!r}: expected four pixel values x0,y0,x1,y1")
    return values[0], values[1], values[2], values[3]


@dataclass
class PoseExtraction:
    """The poses of one video (float32 ``[T, 17, 3]``), which frames had a person, and where
    they came from (``source``: the backend's pose source)."""

    video: VideoInfo
    poses: np.ndarray
    detected: np.ndarray
    first_frame: int
    source: dict[str, Any]
    config: ExtractConfig
    seconds: float
    video_sha256: str = ""
    frames: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    """Frames kept for a report (``keep_frames``), by pose index."""

    @property
    def n_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def n_detected(self) -> int:
        return int(self.detected.sum())

    @property
    def detection_rate(self) -> float:
        return self.n_detected / self.n_frames if self.n_frames else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.n_frames / self.seconds if self.seconds > 0 else 0.0

    def sidecar(self, pose_file: Path | None = None) -> dict[str, Any]:
        """The sidecar document (see the module docstring)."""
        from sconet import __version__

        v = self.video
        doc: dict[str, Any] = {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "video": {
                "path": str(v.path.resolve()),
                "name": v.path.name,
                "sha256": self.video_sha256,
                "frames": v.frames,
                "fps": v.fps,
                "width": v.width,
                "height": v.height,
            },
            "pose_source": self.source,
            "extract": self.config.settings(),
            "frames_used": {
                "first": self.first_frame,
                "last": self.first_frame + (self.n_frames - 1) * self.config.step,
                "step": self.config.step,
                "count": self.n_frames,
            },
            "detected_frames": self.n_detected,
            "detection_rate": round(self.detection_rate, 6),
            "shape": list(self.poses.shape),
            "seconds": round(self.seconds, 3),
            "sconet_version": __version__,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "fingerprint": fingerprint(self.video_sha256, self.source, self.config),
        }
        if pose_file is not None:
            doc["pose_file"] = {"name": pose_file.name, "sha256": sha256_file(pose_file)}
        return doc


def fingerprint(video_sha256: str, source: Mapping[str, Any], config: ExtractConfig) -> str:
    """What decides a pose file: the video's bytes, the pose source and the extraction settings."""
    doc = {"video": video_sha256, "source": source, "extract": config.settings()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def _check_roi(path: Path, roi: Roi | None, info: VideoInfo) -> tuple[int, int, int, int]:
    if roi is None:
        return 0, 0, info.width, info.height
    x0, y0, x1, y1 = roi
    if x0 >= info.width or y0 >= info.height:
        raise VideoError(
            path, f"region of interest {list(roi)} lies outside the {info.width}x{info.height} frame"
        )
    return x0, y0, min(x1, info.width), min(y1, info.height)


def extract_poses(
    video: str | Path,
    config: ExtractConfig | None = None,
    backend: PoseBackend | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PoseExtraction:
    """Poses of the person in ``video`` (see the module docstring).

    ``backend``: an open backend to reuse (it is reset, not closed); by default one is created
    from ``config`` and closed afterwards. ``progress(done, total)`` is called every 10 frames.
    Raises :class:`VideoError` (unreadable or truncated video, too few frames with a person,
    a region outside the frame) and :class:`sconet.video.backends.BackendError`.
    """
    config = config or ExtractConfig()
    t0 = time.perf_counter()
    info = probe_video(video)
    path = info.path
    box = _check_roi(path, config.roi, info)
    frames = iter_frames(info, config.start, config.max_frames, step=config.step)
    # the first frame is decoded before the pose model loads: a video with no frame to read
    # fails in milliseconds and without the backend installed
    first = next(frames)
    own = backend is None
    try:
        backend = backend or create_backend(config.backend, config.options)
    except BaseException:
        frames.close()
        raise
    try:
        backend.reset()
        total = -(-max(0, info.frames - config.start) // config.step) if info.frames else 0
        if config.max_frames is not None:
            total = min(total, config.max_frames) if total else config.max_frames
        span = min(total, config.keep_within) if config.keep_within else total
        keep = set(_spread(span, config.keep_frames).tolist()) if config.keep_frames else set()
        poses: list[np.ndarray] = []
        detected: list[bool] = []
        kept: dict[int, np.ndarray] = {}
        zero = np.zeros((17, 3), np.float32)
        for _, rgb in itertools.chain([first], frames):
            pose = backend.estimate(rgb, box)
            if pose is None:
                poses.append(zero)
                detected.append(False)
            else:
                outside = (
                    (pose[:, 0] < 0)
                    | (pose[:, 0] > info.width - 1)
                    | (pose[:, 1] < 0)
                    | (pose[:, 1] > info.height - 1)
                )
                pose = np.where(outside[:, None], 0.0, pose).astype(np.float32)
                poses.append(pose)
                detected.append(True)
            k = len(poses) - 1
            if k in keep:
                kept[k] = rgb
            if progress is not None and (k % 10 == 9):
                progress(k + 1, max(total, k + 1))
        source = backend.source()
    finally:
        frames.close()
        if own:
            backend.close()
    arr = np.stack(poses).astype(np.float32, copy=False)
    result = PoseExtraction(
        video=info,
        poses=arr,
        detected=np.asarray(detected, bool),
        first_frame=config.start,
        source=source,
        config=config,
        seconds=time.perf_counter() - t0,
        frames=kept,
    )
    if progress is not None:
        progress(result.n_frames, result.n_frames)
    if result.detection_rate < config.min_detection_rate:
        where = "" if config.roi is None else f" in the region {list(config.roi)}"
        raise VideoError(
            path,
            f"a person was found{where} in {result.n_detected} of {result.n_frames} frames "
            f"({100 * result.detection_rate:.1f} %), "
            f"below the required {100 * config.min_detection_rate:.0f} %; "
            "film one person walking, or set --roi to the region where the subject walks",
        )
    result.video_sha256 = sha256_file(path)
    return result


def _spread(n: int, count: int) -> np.ndarray:
    if n <= 0 or count <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, min(count, n))).astype(np.int64))


def sidecar_path(pose_file: str | Path) -> Path:
    """``clip.pkl`` -> ``clip.pkl.json`` (same folder)."""
    p = Path(pose_file)
    return p.with_name(p.name + ".json")


def save_poses(result: PoseExtraction, out: str | Path) -> tuple[Path, Path]:
    """Write ``result.poses`` to ``out`` (``.pkl`` or ``.npy``), then its sidecar; both atomic,
    the sidecar last (its presence marks a complete file). Returns both paths."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in POSE_FORMATS:
        raise ValueError(f"{out}: pose files are written as {' or '.join(POSE_FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(result.poses, np.float32)
    if suffix == ".pkl":
        data = pickle.dumps(arr, protocol=4)
    else:
        import io

        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        data = buf.getvalue()
    atomic_write_bytes(out, data)
    side = atomic_write_json(sidecar_path(out), result.sidecar(out))
    return out, side


def read_sidecar(pose_file: str | Path) -> dict[str, Any] | None:
    """The sidecar of ``pose_file`` when it is complete and matches the file's bytes, else None."""
    pose_file = Path(pose_file)
    try:
        doc = json.loads(sidecar_path(pose_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT:
        return None
    recorded = doc.get("pose_file", {})
    try:
        if not isinstance(recorded, dict) or recorded.get("sha256") != sha256_file(pose_file):
            return None
    except OSError:
        return None
    return doc
