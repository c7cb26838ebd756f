"""Decoding videos with OpenCV (FFmpeg): probing, and frames read ahead on a thread.

Every failure is a :class:`VideoError` whose message starts with the file: missing, not a
video OpenCV can open, no frames, or decoding that stops before the end the container
announces (a truncated or corrupt file).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VIDEO_SUFFIXES", "VideoError", "VideoInfo", "is_video", "iter_frames", "probe_video"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".mts", ".3gp")
"""File suffixes treated as videos (``sconet predict`` tells videos from pose files by these)."""

# FFmpeg's own decoder messages ("ac-tex damaged ...") would interleave with ours; the
# problem is reported once, as a VideoError
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


class VideoError(ValueError):
    """A video could not be used. ``str(err)`` starts with the path; ``reason`` is the rest."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.reason))


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a video suffix (:data:`VIDEO_SUFFIXES`, any letter case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frame count (0 when it does not say), rate, frame size."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int


def _cv2():
    try:
        import cv2
    except ImportError as exc:
        raise VideoError(
            "<video>", f"reading videos needs OpenCV ({exc}); pip install 'sconet[video]'"
        ) from None
    return cv2


def _open(path: Path):
    cv2 = _cv2()
    if not path.exists():
        raise VideoError(path, "video file not found")
    if not path.is_file():
        raise VideoError(path, "not a file")
    if not os.access(path, os.R_OK):
        raise VideoError(path, "cannot read the file (permission denied)")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(path, "not a video OpenCV can decode (unknown format, or the file is damaged)")
    return cap


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Open ``path`` and read its frame count, rate and size (no frame is decoded)."""
    cv2 = _cv2()
    path = Path(path).expanduser()
    cap = _open(path)
    try:
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        info = VideoInfo(
            path,
            int(count) if count and count > 0 else 0,
            float(cap.get(cv2.CAP_PROP_FPS) or 0.0),
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        cap.release()
    if info.width <= 0 or info.height <= 0:
        raise VideoError(path, "no video stream (frame size unknown)")
    return info


def iter_frames(
    info: VideoInfo, start: int = 0, count: int | None = None, prefetch: int = 8, step: int = 1
) -> Generator[tuple[int, np.ndarray], None, None]:
    """``(frame index, RGB uint8 [H, W, 3])`` for ``count`` frames (to the end when None) from
    ``start``, every ``step``-th frame, decoded on a background thread ``prefetch`` frames ahead
    (frames in between are skipped without conversion).

    Raises :class:`VideoError` when decoding stops before the frames the container announces
    (more than 1 % or 2 frames short), or yields no frame at all.
    """
    cv2 = _cv2()
    path = info.path
    stop = start + (count - 1) * step + 1 if count is not None else None
    q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
    cancel = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not cancel.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        cap = cv2.VideoCapture(str(path))
        index = 0
        try:
            while stop is None or index < stop:
                if index < start or (index - start) % step:
                    ok = cap.grab()  # skip without converting
                else:
                    ok, bgr = cap.read()
                    if ok and not put((index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))):
                        return
                if not ok:
                    break
                index += 1
        except Exception as exc:  # noqa: BLE001 - reported by the consumer
            put(exc)
        finally:
            cap.release()
        put((done, index))

    thread = threading.Thread(target=decode, name="sconet-video-decode", daemon=True)
    thread.start()
    yielded = 0
    try:
        while True:
            item = q.get()
            if isinstance(item, Exception):
                raise VideoError(path, f"decoding failed ({item})")
            if item[0] is done:
                decoded = item[1]
                break
            yielded += 1
            yield item
    finally:
        cancel.set()
        thread.join()
    expected = info.frames if stop is None else min(info.frames, stop) if info.frames else stop
    if expected and decoded + max(2, expected // 100) < expected:
        raise VideoError(
            path, f"decoding stopped at frame {decoded} of {expected} (the file is truncated or corrupt)"
        )
    if yielded == 0:
        what = f"no frame at or after frame {start}" if start else "no frame could be decoded"
        raise VideoError(path, f"{what} ({info.frames} frames announced)")
