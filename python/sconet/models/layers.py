"""Building blocks of ScoNet-MT, pooling and prediction (OpenGait / torchvision names: checkpoints load)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BASE_CHANNELS = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 1)


# ----------------------------------------------------------------------------------------------
# building blocks (names follow OpenGait / torchvision so checkpoints load)
# ----------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """OpenGait's ``BasicConv2d``: a bias-free conv stored as ``.conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock`` (same parameter names and computation)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet9(nn.Module):
    """OpenGait's ``ResNet9`` with ``layers=[1,1,1,1]``, ``strides=[1,2,2,1]``, ``maxpool=False``."""

    # registered by name in __init__ (OpenGait's parameter names)
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, in_channels: int, channels: Sequence[int], strides: Sequence[int] = STRIDES):
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, channels[0], 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = channels[0]
        for i, (planes, stride) in enumerate(zip(channels, strides, strict=True), start=1):
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(inplanes, planes, stride)))
            inplanes = planes

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


class SetBlockWrapper(nn.Module):
    """Holds the frame-wise backbone as ``forward_block`` (OpenGait's key prefix).

    Unlike OpenGait's wrapper it takes frames already folded into the batch, ``[F, C, H, W]``.
    """

    def __init__(self, forward_block: nn.Module):
        super().__init__()
        self.forward_block = forward_block

    def forward(self, frames: Tensor) -> Tensor:
        return self.forward_block(frames)


class SeparateFCs(nn.Module):
    """One bias-free ``in -> out`` matrix per part: ``[N, in, P] -> [N, out, P]``."""

    def __init__(self, parts: int, in_channels: int, out_channels: int):
        super().__init__()
        self.fc_bin = nn.Parameter(torch.empty(parts, in_channels, out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = x.permute(2, 0, 1).matmul(self.fc_bin)  # [P, N, out]
        return out.permute(1, 2, 0).contiguous()


class SeparateBNNecks(nn.Module):
    """OpenGait ``SeparateBNNecks(parallel_BN1d=True, norm=True)``.

    BatchNorm1d over the flattened ``C*P`` vector, then per part the cosine between the
    L2-normalised feature and the L2-normalised class weights ``fc_bin [P, C, K]``:
    ``[N, C, P] -> logits [N, K, P]``.
    """

    def __init__(self, parts: int, in_channels: int, num_classes: int):
        super().__init__()
        self.fc_bin = nn.Parameter(torch.empty(parts, in_channels, num_classes))
        self.bn1d = nn.BatchNorm1d(in_channels * parts)

    def forward(self, x: Tensor) -> Tensor:
        n, c, p = x.shape
        feature = self.bn1d(x.reshape(n, c * p)).view(n, c, p)
        feature = F.normalize(feature.permute(2, 0, 1), dim=-1)  # [P, N, C]
        logits = feature.matmul(F.normalize(self.fc_bin, dim=1))  # [P, N, K]
        return logits.permute(1, 2, 0).contiguous()


class PAVGuidedAttention(nn.Module):
    """PAV-guided attention (PGA) of DRF, 6,404 parameters at the default sizes.

    - channel gate: ``sigmoid(Linear(pairs*metrics -> C)(flattened PAV))`` -> ``[N, C, 1]``;
    - part gate: ``Conv1d(metrics -> 1, kernel 1)`` over the pairs (PAV as ``[N, metrics, pairs]``)
      -> ``[N, 1, pairs]``, linearly interpolated to ``parts`` (``align_corners`` configurable),
      sigmoid -> ``[N, 1, parts]``.
    """

    def __init__(
        self, channels: int, parts: int, pairs: int = 8, metrics: int = 3, align_corners: bool = True
    ):
        super().__init__()
        self.parts = parts
        self.pairs = pairs
        self.metrics = metrics
        self.align_corners = align_corners
        self.channel_attention = nn.Linear(pairs * metrics, channels)
        self.spatial_attention = nn.Conv1d(metrics, 1, kernel_size=1)

    def channel_gate(self, pav: Tensor) -> Tensor:
        return torch.sigmoid(self.channel_attention(pav.flatten(1))).unsqueeze(-1)

    def part_gate(self, pav: Tensor) -> Tensor:
        z = self.spatial_attention(pav.transpose(1, 2))  # [N, 1, pairs]
        if z.shape[-1] != self.parts:
            z = F.interpolate(z, size=self.parts, mode="linear", align_corners=self.align_corners)
        return torch.sigmoid(z)

    def forward(
        self, pav: Tensor, channel: bool = True, part: bool = True
    ) -> tuple[Tensor | None, Tensor | None]:
        return (self.channel_gate(pav) if channel else None, self.part_gate(pav) if part else None)


# ----------------------------------------------------------------------------------------------
# pooling and prediction
# ----------------------------------------------------------------------------------------------


def _as_lengths(seq_lengths: Any, total: int) -> list[int]:
    if isinstance(seq_lengths, Tensor):
        lengths = [int(v) for v in seq_lengths.detach().flatten().cpu().tolist()]
    else:
        try:
            lengths = [int(v) for v in seq_lengths]
        except TypeError as exc:
            raise TypeError(
                f"seq_lengths must be a sequence of ints, got {type(seq_lengths).__name__}"
            ) from exc
    if not lengths:
        raise ValueError("seq_lengths is empty")
    if min(lengths) < 1:
        raise ValueError(f"every sequence needs at least one frame, got seq_lengths={lengths}")
    if sum(lengths) != total:
        raise ValueError(f"seq_lengths sum to {sum(lengths)} but the packed input has {total} frames")
    return lengths


def temporal_max_pool(frames: Tensor, seq_lengths: Sequence[int]) -> Tensor:
    """Max over each sequence's frames: packed ``[sum T, ...]`` -> ``[N, ...]``.

    Equal lengths use a reshape; variable lengths gather a ``[N, T_max, ...]`` view whose
    padding repeats each sequence's last frame (so no fill value, and gradients flow exactly as
    with ``torch.max`` per sequence), then one ``max``.
    """
    lengths = list(seq_lengths)
    n, t_max = len(lengths), max(lengths)
    if all(t == t_max for t in lengths):
        return frames.reshape(n, t_max, *frames.shape[1:]).max(dim=1)[0]
    device = frames.device
    lens = torch.tensor(lengths, device=device)
    starts = torch.cumsum(lens, 0) - lens
    steps = torch.arange(t_max, device=device)
    index = starts[:, None] + torch.minimum(steps[None, :], lens[:, None] - 1)  # [N, T_max]
    gathered = frames.index_select(0, index.reshape(-1)).view(n, t_max, *frames.shape[1:])
    return gathered.max(dim=1)[0]


def horizontal_pool(x: Tensor, parts: int) -> Tensor:
    """OpenGait ``HorizontalPoolingPyramid(bin_num=[parts])``: ``[N, C, H, W] -> [N, C, parts]``,
    mean + max over each horizontal strip of ``H / parts`` rows."""
    n, c, h, w = x.shape
    if h % parts:
        raise ValueError(
            f"feature-map height {h} is not divisible by parts={parts} (input height must be a multiple of "
            f"{4 * parts})"
        )
    z = x.reshape(n, c, parts, (h // parts) * w)
    return z.mean(-1) + z.max(-1)[0]


def predict(logits: Tensor) -> Tensor:
    """Class index per sequence: argmax over classes of the mean over parts. ``[N, K, P] -> [N]``."""
    if logits.dim() != 3:
        raise ValueError(f"expected logits [N, classes, parts], got shape {tuple(logits.shape)}")
    return logits.mean(-1).argmax(-1)
