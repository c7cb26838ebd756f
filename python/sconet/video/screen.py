"""``sconet predict video.mp4 --ckpt best.pt``: pose extraction, rendering, prediction, report.

:func:`screen_video` extracts the poses of the video (:func:`sconet.video.extract_poses`, all
frames), screens them with a :class:`sconet.predict.Screener` exactly as a pose file would be,
and records the pose source in the result. When the checkpoint was trained on poses from
another source (another backend or model file, or a source it does not record, such as
Scoliosis1K's ViTPose poses) the result carries a plain warning: its numbers were never
validated on this kind of input. :func:`write_video_report` is the PNG report with a few video
frames and the detected skeleton above the skeleton maps of the same instants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sconet.video.backends import describe_pose_source
from sconet.video.extract import ExtractConfig, PoseExtraction, extract_poses

if TYPE_CHECKING:
    from sconet.predict import Screener, ScreenResult

__all__ = ["VideoScreen", "pose_source_warning", "screen_video", "skeleton_tiles", "write_video_report"]

REPORT_FRAMES = 6


@dataclass
class VideoScreen:
    """The screening of one video (``result``) and the poses it was made from (``extraction``)."""

    result: ScreenResult
    extraction: PoseExtraction


def _same_source(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.get("backend") == b.get("backend") and a.get("model_sha256") == b.get("model_sha256")


def pose_source_warning(trained: Mapping[str, Any] | None, used: Mapping[str, Any]) -> str | None:
    """The warning for screening poses from ``used`` with a model trained on ``trained`` poses
    (None when they are the same backend and model file)."""
    if trained is not None and _same_source(trained, used):
        return None
    what = (
        "poses whose source it does not record (Scoliosis1K's released poses come from ViTPose)"
        if trained is None
        else f"{describe_pose_source(trained)} poses"
    )
    return (
        f"the checkpoint was trained on {what}, this video's poses come from {describe_pose_source(used)}: "
        "the prediction and the asymmetry read-out are not validated for this pose source"
    )


def screen_video(
    video: str | Path,
    screener: Screener,
    config: ExtractConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_maps: bool = False,
) -> VideoScreen:
    """Extract the poses of ``video`` with ``config`` and screen them with ``screener``.

    ``keep_maps`` keeps the skeleton maps and :data:`REPORT_FRAMES` video frames for
    :func:`write_video_report`. Errors: :class:`sconet.video.VideoError` (unreadable video, too
    few frames with a person), :class:`sconet.video.BackendError`.
    """
    config = config or ExtractConfig()
    config = dataclasses.replace(
        config, keep_frames=REPORT_FRAMES if keep_maps else 0, keep_within=screener.max_frames
    )
    extraction = extract_poses(video, config, progress=progress)
    result = screener.screen(extraction.poses, source=str(video), keep_maps=keep_maps)
    result.timings = {"pose": extraction.seconds, **result.timings}
    result.timings["total"] = result.timings.get("total", 0.0) + extraction.seconds
    result.pose_source = {
        **extraction.source,
        "detected_frames": extraction.n_detected,
        "detection_rate": round(extraction.detection_rate, 4),
        "first_frame": extraction.first_frame,
        "roi": None if config.roi is None else list(config.roi),
    }
    warning = pose_source_warning(screener.ckpt.pose_source, extraction.source)
    if warning:
        result.warnings.append(warning)
    return VideoScreen(result, extraction)


def _crop_box(poses: np.ndarray, width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """One box around every detected keypoint of ``poses`` (plus a margin), ``aspect`` = h / w,
    moved inside the frame where it fits (a person near an edge fills the tile instead of
    leaving a blank band), centred on the frame along a side where it does not."""
    pts = poses[..., :2].reshape(-1, 2)
    pts = pts[(pts != 0).any(1)]
    if not len(pts):
        return 0, 0, width, height
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    h = max(y1 - y0, (x1 - x0) * aspect, 32.0) * 1.2
    w = h / aspect

    def start(centre: float, size: float, extent: int) -> int:
        if size >= extent:
            return int(round((extent - size) / 2))
        return int(round(min(max(centre - size / 2, 0.0), extent - size)))

    bx, by = start((x0 + x1) / 2, w, width), start((y0 + y1) / 2, h, height)
    return bx, by, bx + int(round(w)), by + int(round(h))


def skeleton_tiles(
    extraction: PoseExtraction, picks: list[int], tile_w: int, aspect: float = 2.0
) -> list[np.ndarray]:
    """The kept video frames at pose indices ``picks``, cropped to one box around the person
    and ``tile_w`` wide, with the detected skeleton drawn (left side orange, right side blue)."""
    import cv2

    from sconet.render import COCO_LIMBS

    info = extraction.video
    poses = extraction.poses[picks]
    x0, y0, x1, y1 = _crop_box(poses, info.width, info.height, aspect)
    scale = tile_w / max(x1 - x0, 1)
    tile_h = int(round(tile_w * aspect))
    colour = {"l": (255, 150, 20), "r": (40, 150, 255), "c": (235, 235, 235)}

    def side(k: int) -> str:
        return "c" if k == 0 else "l" if k % 2 == 1 else "r"

    tiles = []
    for t, pose in zip(picks, poses, strict=True):
        frame = extraction.frames[t]
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
        img = cv2.warpAffine(frame, m, (tile_w, tile_h), flags=cv2.INTER_AREA, borderValue=(24, 24, 24))
        seen = (pose[:, :2] != 0).any(1)
        xy = np.round((pose[:, :2] - (x0, y0)) * scale).astype(np.int32)
        for a, b in COCO_LIMBS:
            if seen[a] and seen[b]:
                c = colour[side(b) if side(a) == "c" else side(a)]
                cv2.line(img, tuple(map(int, xy[a])), tuple(map(int, xy[b])), c, 2, cv2.LINE_AA)
        for k in np.flatnonzero(seen):
            cv2.circle(img, tuple(map(int, xy[k])), 3, colour[side(int(k))], -1, cv2.LINE_AA)
        if not seen.any():
            cv2.putText(img, "no person", (4, tile_h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 90, 80), 1)
        tiles.append(img)
    return tiles


def write_video_report(screen: VideoScreen, out_png: str | Path, scale: int = 2) -> Path:
    """The prediction report (:func:`sconet.predict.write_report`) with a row of video frames
    and their detected skeletons above the skeleton maps of the same frames."""
    from sconet.predict import write_report

    result, extraction = screen.result, screen.extraction
    if result.maps is None:
        raise ValueError("the result holds no skeleton maps: screen_video(..., keep_maps=True)")
    picks = sorted(extraction.frames)
    picks = [t for t in picks if t < result.maps.shape[0]]
    tiles = skeleton_tiles(extraction, picks, 64 * scale)
    return write_report(result, out_png, scale=scale, picks=picks, video_tiles=tiles)
