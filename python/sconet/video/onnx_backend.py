"""``onnx``: a top-down pose model in a local ONNX file, run with onnxruntime.

The user names the file (``--backend-option model=vitpose-b.onnx``); nothing is downloaded.
Accepted models take one image ``[1, 3, H, W]`` and give either

- heatmaps ``[1, 17, h, w]`` (ViTPose, HRNet): the keypoint is the maximum of its map, moved a
  quarter pixel towards the higher neighbour, the score is the maximum; or
- SimCC vectors ``[1, 17, Wx]`` and ``[1, 17, Hy]`` (RTMPose): the coordinates are the argmax of
  each vector divided by ``simcc_split``, the score the smaller of the two maxima.

There is no person detector: the first frame (and any frame after the person was lost) is read
in the region of interest (the whole frame without one); later frames in the box of the previous
frame's keypoints (at least a tenth of the region's side), enlarged by ``padding``. The crop
keeps the model's aspect ratio and is normalised as ``(rgb - mean) / std`` (ImageNet values by
default, as mmpose's models expect).
A frame has a person when the mean keypoint score reaches ``min_score``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sconet.video.backends import BackendError, PoseBackend, register_backend, settings_dict, sha256_file

__all__ = ["OnnxPose", "OnnxPoseSettings"]

N_KEYPOINTS = 17


@dataclass(frozen=True)
class OnnxPoseSettings:
    """``model``: the ONNX file (required); ``min_score``: mean keypoint score of a person;
    ``padding``: box enlargement around the previous keypoints; ``simcc_split``: SimCC bins per
    pixel; ``mean``/``std``: input normalisation (RGB, 0-255 scale); ``threads``: onnxruntime
    intra-op threads (0 = its default)."""

    model: Path | None = None
    min_score: float = 0.3
    padding: float = 1.25
    simcc_split: float = 2.0
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    threads: int = 0

    def __post_init__(self) -> None:
        if self.model is None:
            raise BackendError("pose backend 'onnx' needs a model file: --backend-option model=PATH.onnx")
        if not Path(self.model).is_file():
            raise BackendError(f"{self.model}: ONNX model file not found")
        if self.padding < 1.0 or self.simcc_split <= 0 or self.threads < 0:
            raise BackendError("pose backend 'onnx': padding must be >= 1, simcc_split > 0, threads >= 0")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise BackendError("pose backend 'onnx': mean and std take 3 values each (std > 0)")


def _box_transform(
    box: tuple[float, float, float, float], size: tuple[int, int], padding: float
) -> np.ndarray:
    """2x3 affine map from frame pixels to model-input pixels for ``box`` with the input's
    aspect ratio (the box grows, centred, to that ratio and by ``padding``)."""
    x0, y0, x1, y1 = box
    w_in, h_in = size
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    if bw * h_in > bh * w_in:
        bh = bw * h_in / w_in
    else:
        bw = bh * w_in / h_in
    scale = w_in / (bw * padding)
    return np.array([[scale, 0.0, w_in / 2 - scale * cx], [0.0, scale, h_in / 2 - scale * cy]], np.float64)


def _decode_heatmaps(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[17, h, w]`` -> ``(xy [17, 2] in heatmap pixels, scores [17])``."""
    k, h, w = maps.shape
    flat = maps.reshape(k, -1)
    idx = flat.argmax(1)
    scores = flat[np.arange(k), idx].astype(np.float32)
    ys, xs = np.divmod(idx, w)
    xy = np.stack([xs, ys], 1).astype(np.float32)
    for j in range(k):
        x, y = int(xs[j]), int(ys[j])
        if 0 < x < w - 1:
            xy[j, 0] += 0.25 * np.sign(maps[j, y, x + 1] - maps[j, y, x - 1])
        if 0 < y < h - 1:
            xy[j, 1] += 0.25 * np.sign(maps[j, y + 1, x] - maps[j, y - 1, x])
    return xy, scores


@register_backend("onnx", OnnxPoseSettings)
class OnnxPose(PoseBackend):
    """A local top-down ONNX pose model (heatmap or SimCC output, e.g. ViTPose, RTMPose)."""

    def __init__(self, settings: OnnxPoseSettings) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError(
                f"pose backend 'onnx' needs onnxruntime ({exc}); pip install 'sconet[video]'"
            ) from None
        super().__init__(settings)
        self._version = ort.__version__
        options = ort.SessionOptions()
        if settings.threads:
            options.intra_op_num_threads = settings.threads
        try:
            self._session = ort.InferenceSession(
                str(settings.model), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - any failure to load is a bad model file
            raise BackendError(
                f"{settings.model}: not a usable ONNX model ({str(exc).splitlines()[0]})"
            ) from None
        inputs = self._session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if (
            shape is None
            or len(shape) != 4
            or shape[1] != 3
            or not all(isinstance(v, int) for v in shape[2:])
        ):
            raise BackendError(
                f"{settings.model}: expected one input [1, 3, H, W] with a fixed H and W, got "
                f"{[(i.name, i.shape) for i in inputs]}"
            )
        self._input = inputs[0].name
        self._size = (int(shape[3]), int(shape[2]))  # (W, H)
        outs = [o.shape for o in self._session.get_outputs()]
        if len(outs) == 1 and len(outs[0]) == 4 and outs[0][1] == N_KEYPOINTS:
            self._kind = "heatmap"
        elif len(outs) == 2 and all(len(o) == 3 and o[1] == N_KEYPOINTS for o in outs):
            self._kind = "simcc"
        else:
            raise BackendError(
                f"{settings.model}: expected heatmaps [1, 17, h, w] or SimCC outputs [1, 17, Wx] "
                f"and [1, 17, Hy], got {outs}"
            )
        self._sha256 = sha256_file(Path(str(settings.model)))
        self._mean = np.asarray(settings.mean, np.float32)
        self._inv_std = 1.0 / np.asarray(settings.std, np.float32)
        self._previous: np.ndarray | None = None

    def source(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": Path(self.settings.model or "").name,
            "model_sha256": self._sha256,
            "version": f"onnxruntime {self._version}",
            "settings": {
                **settings_dict(self.settings),
                "model": str(self.settings.model),
                "output": self._kind,
                "input_size": list(self._size),
            },
            "keypoints": "COCO-17 (the model's own output order)",
            "confidence": f"{self._kind} maximum",
        }

    def reset(self) -> None:
        self._previous = None

    def _box(self, roi: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if self._previous is None:
            return roi
        xy = self._previous[:, :2]
        good = self._previous[:, 2] >= self.settings.min_score
        pts = xy[good] if good.sum() >= 2 else xy
        lo, hi = pts.min(0), pts.max(0)
        # never narrower than a tenth of the region: degenerate keypoints must not zoom in on a point
        half = np.maximum((hi - lo) / 2, 0.05 * max(roi[2] - roi[0], roi[3] - roi[1]))
        mid = (lo + hi) / 2
        return (
            float(mid[0] - half[0]),
            float(mid[1] - half[1]),
            float(mid[0] + half[0]),
            float(mid[1] + half[1]),
        )

    def estimate(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
        import cv2

        m = _box_transform(self._box(box), self._size, self.settings.padding)
        crop = cv2.warpAffine(rgb, m, self._size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        x = ((crop.astype(np.float32) - self._mean) * self._inv_std).transpose(2, 0, 1)[None]
        outs = self._session.run(None, {self._input: np.ascontiguousarray(x)})
        if self._kind == "heatmap":
            maps = np.asarray(outs[0][0], np.float32)
            xy, scores = _decode_heatmaps(maps)
            # heatmap pixel centres -> input pixel centres
            xy = (xy + 0.5) * np.array(
                [self._size[0] / maps.shape[2], self._size[1] / maps.shape[1]], np.float32
            ) - 0.5
        else:
            sx, sy = np.asarray(outs[0][0], np.float32), np.asarray(outs[1][0], np.float32)
            xy = np.stack([sx.argmax(1), sy.argmax(1)], 1).astype(np.float32) / self.settings.simcc_split
            scores = np.minimum(sx.max(1), sy.max(1)).astype(np.float32)
        # input pixels -> frame pixels (inverse of the crop's scale and shift)
        scale, tx, ty = m[0, 0], m[0, 2], m[1, 2]
        pose = np.empty((N_KEYPOINTS, 3), np.float32)
        pose[:, 0] = (xy[:, 0] - tx) / scale
        pose[:, 1] = (xy[:, 1] - ty) / scale
        pose[:, 2] = scores
        if float(scores.mean()) < self.settings.min_score:
            self._previous = None
            return None
        self._previous = pose
        return pose

    def close(self) -> None:
        self._session = None
