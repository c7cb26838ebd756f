"""What the video tests share: the real footage, the optional packages, small clips.

``vtest.avi`` is Debian's ``opencv-doc`` example video (768 x 576, 10 fps, 795 frames, people
crossing a plaza, filmed from above). Two stretches of it are used:

- :data:`AWAY`: frames 600-689, a woman in a black coat walking away from the camera across
  the grass, alone in the region (her back to the camera: her left side is on the image left);
- :data:`TOWARDS`: frames 745-784, a man in a red jacket walking towards the camera, alone in
  the region's lower part (facing it: his left side is on the image right).

Under CI (``$CI`` set) a missing video or package fails the test instead of skipping it, so a
green CI run really ran these tests.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")


@dataclass(frozen=True)
class Stretch:
    start: int
    frames: int
    roi: tuple[int, int, int, int]


AWAY = Stretch(600, 90, (150, 300, 460, 576))
TOWARDS = Stretch(745, 40, (230, 180, 430, 440))


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI must provide it)")
    pytest.skip(what)


def vtest() -> Path:
    """The real footage, or skip (fail under CI) with the install command."""
    if not VTEST.is_file():
        _missing(f"{VTEST} not found: apt-get install opencv-doc")
    return VTEST


def need_blazepose() -> None:
    """Skip (fail under CI) without mediapipe 0.10.21; Python 3.13+ has no wheels for it."""
    if sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.21 has no wheels for Python 3.13+")
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        _missing("mediapipe not installed: pip install '.[video]'")


def need(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        _missing(f"{module} not installed: pip install '.[video]'")


def read_frames(path: Path, start: int, count: int) -> list[np.ndarray]:
    """RGB frames ``start .. start + count - 1`` of a video."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out, i = [], 0
    while len(out) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        if i >= start:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    return out


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """RGB frames -> a Motion-JPEG ``.avi`` (OpenCV's writer, always available)."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for f in frames:
        writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
    writer.release()
    return path
