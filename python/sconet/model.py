"""ScoNet-MT (ScoNet-MT-ske on 2-channel skeleton maps) and DRF (ScoNet-MT-ske + PAV-guided attention).

Architecture (``/work/shared/spec/models.md``), for N sequences of T frames of ``C x 64 x 44``:

====================  =====================================================  ====================
stage                 op                                                     output
====================  =====================================================  ====================
stem                  3x3 conv (no bias) C->64, BN, ReLU, no max-pool         N*T, 64, 64, 44
layer1..layer4        one BasicBlock each: 64 s1, 128 s2, 256 s2, 512 s1       N*T, 512, 16, 11
temporal pooling      max over each sequence's frames (variable length)       N, 512, 16, 11
horizontal pooling    16 strips, mean + max per strip                         N, 512, 16
separate FCs          16 x (512 -> 256), no bias                               N, 256, 16 (embeddings)
[DRF] PGA             channel gate N,256,1 and part gate N,1,16 (multiplied)   N, 256, 16
BNNeck                BN1d over 256*16, cosine classifier per part             N, 3, 16 (logits)
====================  =====================================================  ====================

The backbone runs frame-wise (frames folded into the batch). Prediction is the argmax over
classes of the part-averaged logits (:func:`predict`).

State-dict keys are OpenGait's (``Backbone.forward_block.conv1.conv.weight``,
``Backbone.forward_block.layer1.0.conv1.weight`` ..., ``FCs.fc_bin``, ``BNNecks.bn1d.*``,
``BNNecks.fc_bin``), so an OpenGait ScoNet checkpoint loads with ``strict=True`` after
:func:`load_opengait_state_dict` strips a ``module.`` prefix (and remaps a 2024 class order).

Counts at width 1.0: 7,014,592 parameters with ``in_channels=1``, 7,015,168 with 2.
The 79 state-dict entries are 40 parameter tensors plus 39 BatchNorm buffers
(13 BatchNorm layers x ``running_mean``, ``running_var``, ``num_batches_tracked``).
DRF adds 4 entries / 6,404 parameters (``PGA.channel_attention`` Linear 24->256,
``PGA.spatial_attention`` Conv1d 3->1, kernel 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .classes import CLASSES, class_permutation, resolve_class_order

__all__ = [
    "ARCHS",
    "PGA_MODES",
    "BASE_CHANNELS",
    "STATE_DICT_ENTRIES",
    "ModelConfig",
    "ModelOutput",
    "ScoNetMT",
    "PAVGuidedAttention",
    "CheckpointMismatchError",
    "LoadReport",
    "build_model",
    "count_parameters",
    "init_weights",
    "horizontal_pool",
    "temporal_max_pool",
    "predict",
    "load_opengait_state_dict",
]

ARCHS = ("sconet", "drf")
PGA_MODES = ("both", "channel", "part", "none")
BASE_CHANNELS = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 1)
STATE_DICT_ENTRIES = 79
"""State-dict entries of ScoNet-MT (40 parameters + 39 BatchNorm buffers incl. num_batches_tracked)."""

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP / DataParallel, torch.compile


# ----------------------------------------------------------------------------------------------
# configuration and output
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """Model hyper-parameters (JSON-friendly via :meth:`to_dict` / :meth:`from_dict`).

    - ``in_channels``: 2 for skeleton maps (limb, joint), 1 for silhouettes.
    - ``width``: multiplier on the backbone channels 64/128/256/512 (1.0 = paper; small values
      for CPU demos and tests). ``embed_dim`` is not scaled.
    - ``parts``: horizontal strips (16); the feature-map height (input height / 4) must be
      divisible by it.
    - ``arch``: ``"sconet"`` (ScoNet-MT) or ``"drf"`` (adds PAV-guided attention, ``PGA.*``).
    - ``pga``: which DRF gates are applied: ``"both"``, ``"channel"``, ``"part"`` or ``"none"``
      (ignored for ``arch="sconet"``). The PGA parameters exist for ``arch="drf"`` whatever
      the mode, so checkpoints stay interchangeable; with ``"none"`` DRF computes exactly
      ScoNet-MT.
    - ``pav_pairs`` x ``pav_metrics``: PAV shape (8 x 3).
    - ``pga_align_corners``: ``align_corners`` of the linear 8 -> 16 interpolation of the part
      gate. ``True`` (default) maps the first/last pair (eyes/ankles) exactly onto the first/last
      part; the public OpenGait-style DRF reimplementation uses ``False`` (set it to load and
      reproduce that code's checkpoints exactly).
    """

    in_channels: int = 2
    width: float = 1.0
    parts: int = 16
    embed_dim: int = 256
    num_classes: int = 3
    arch: str = "sconet"
    pga: str = "both"
    pav_pairs: int = 8
    pav_metrics: int = 3
    pga_align_corners: bool = True

    def __post_init__(self) -> None:
        for name in ("in_channels", "parts", "embed_dim", "num_classes", "pav_pairs", "pav_metrics"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.width, (int, float)) or isinstance(self.width, bool) or not self.width > 0:
            raise ValueError(f"ModelConfig.width must be a positive number, got {self.width!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.pga not in PGA_MODES:
            raise ValueError(f"ModelConfig.pga must be one of {PGA_MODES}, got {self.pga!r}")
        if not isinstance(self.pga_align_corners, bool):
            raise ValueError(
                f"ModelConfig.pga_align_corners must be a bool, got {self.pga_align_corners!r}"
            )

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """Backbone channels after the width multiplier."""
        return tuple(max(1, int(round(c * self.width))) for c in BASE_CHANNELS)  # type: ignore[return-value]

    @property
    def use_channel_gate(self) -> bool:
        return self.arch == "drf" and self.pga in ("both", "channel")

    @property
    def use_part_gate(self) -> bool:
        return self.arch == "drf" and self.pga in ("both", "part")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known: {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class ModelOutput:
    """What :meth:`ScoNetMT.forward` returns.

    - ``embeddings`` ``[N, embed_dim, parts]``: features entering the BNNeck (after the separate
      FCs and, for DRF, after the enabled gates); the triplet loss uses these.
    - ``logits`` ``[N, num_classes, parts]``: cosine logits in [-1, 1] (scale them in the loss).
    - ``channel_gate`` ``[N, embed_dim, 1]`` and ``part_gate`` ``[N, 1, parts]``: DRF gates in
      (0, 1) when enabled, else ``None``.
    """

    embeddings: Tensor
    logits: Tensor
    channel_gate: Tensor | None = None
    part_gate: Tensor | None = None

    def predict(self) -> Tensor:
        return predict(self.logits)


# ----------------------------------------------------------------------------------------------
# building blocks (names follow OpenGait / torchvision so checkpoints load)
# ----------------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """OpenGait's ``BasicConv2d``: a bias-free conv stored as ``.conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)

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

    def __init__(self, in_channels: int, channels: Sequence[int], strides: Sequence[int] = STRIDES):
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, channels[0], 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        inplanes = channels[0]
        for i, (planes, stride) in enumerate(zip(channels, strides), start=1):
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

    def __init__(self, channels: int, parts: int, pairs: int = 8, metrics: int = 3, align_corners: bool = True):
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

    def forward(self, pav: Tensor, channel: bool = True, part: bool = True) -> tuple[Tensor | None, Tensor | None]:
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
            raise TypeError(f"seq_lengths must be a sequence of ints, got {type(seq_lengths).__name__}") from exc
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
            f"feature-map height {h} is not divisible by parts={parts} (input height must be a multiple of {4 * parts})"
        )
    z = x.reshape(n, c, parts, (h // parts) * w)
    return z.mean(-1) + z.max(-1)[0]


def predict(logits: Tensor) -> Tensor:
    """Class index per sequence: argmax over classes of the mean over parts. ``[N, K, P] -> [N]``."""
    if logits.dim() != 3:
        raise ValueError(f"expected logits [N, classes, parts], got shape {tuple(logits.shape)}")
    return logits.mean(-1).argmax(-1)


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------


class ScoNetMT(nn.Module):
    """ScoNet-MT / ScoNet-MT-ske, and DRF when ``config.arch == "drf"``.

    ``forward(x, seq_lengths=None, pav=None)`` takes either

    - ``x`` ``[N, C, T, H, W]`` (equal-length sequences, OpenGait's ``[n, c, s, h, w]``), or
    - ``x`` packed ``[sum T, C, H, W]`` with ``seq_lengths`` (N ints, any positive lengths);

    ``pav`` ``[N, 8, 3]`` (dataset-normalised PAV) is required for DRF when a gate is enabled.
    Weights are initialised as OpenGait does, from ``generator`` or ``seed`` if given
    (else the global RNG). ``ScoNetMT(cfg, seed=s)`` and the DRF model built with the same seed
    share every non-PGA weight.
    """

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.config = config = config if config is not None else ModelConfig()
        ch = config.channels
        self.Backbone = SetBlockWrapper(ResNet9(config.in_channels, ch))
        self.FCs = SeparateFCs(config.parts, ch[3], config.embed_dim)
        self.BNNecks = SeparateBNNecks(config.parts, config.embed_dim, config.num_classes)
        self.PGA: PAVGuidedAttention | None = None
        if config.arch == "drf":  # registered last: initialised after the shared weights
            self.PGA = PAVGuidedAttention(
                config.embed_dim, config.parts, config.pav_pairs, config.pav_metrics, config.pga_align_corners
            )
        if generator is None and seed is not None:
            generator = torch.Generator().manual_seed(int(seed))
        init_weights(self, generator)

    # -- input handling ---------------------------------------------------------------------
    def _fold(self, x: Tensor, seq_lengths: Any) -> tuple[Tensor, list[int]]:
        c = self.config.in_channels
        if x.dim() == 5:
            n, cx, t, h, w = x.shape
            if cx != c:
                raise ValueError(f"expected [N, C={c}, T, H, W] input, got shape {tuple(x.shape)}")
            if seq_lengths is not None:
                raise ValueError("seq_lengths is only for packed [sum T, C, H, W] input; got a 5-D input")
            if t < 1 or n < 1:
                raise ValueError(f"empty input of shape {tuple(x.shape)}")
            return x.transpose(1, 2).reshape(n * t, c, h, w), [t] * n
        if x.dim() == 4:
            if x.shape[1] != c:
                raise ValueError(f"expected packed [sum T, C={c}, H, W] input, got shape {tuple(x.shape)}")
            if seq_lengths is None:
                raise ValueError("packed [sum T, C, H, W] input needs seq_lengths (frames per sequence)")
            return x, _as_lengths(seq_lengths, x.shape[0])
        raise ValueError(f"expected [N, C, T, H, W] or packed [sum T, C, H, W] input, got shape {tuple(x.shape)}")

    def _check_pav(self, pav: Any, n: int, like: Tensor) -> Tensor:
        cfg = self.config
        if pav is None:
            raise ValueError(
                f"arch='drf' with pga={cfg.pga!r} needs pav=[N, {cfg.pav_pairs}, {cfg.pav_metrics}] "
                "(the dataset-normalised postural asymmetry vector of each sequence)"
            )
        pav = torch.as_tensor(pav)
        if tuple(pav.shape) != (n, cfg.pav_pairs, cfg.pav_metrics):
            raise ValueError(
                f"pav must have shape [N={n}, {cfg.pav_pairs}, {cfg.pav_metrics}], got {tuple(pav.shape)}"
            )
        assert self.PGA is not None
        return pav.to(device=like.device, dtype=self.PGA.channel_attention.weight.dtype)

    # -- forward ----------------------------------------------------------------------------
    def features(self, x: Tensor, seq_lengths: Any = None) -> Tensor:
        """Embeddings after the separate FCs (before any gate): ``[N, embed_dim, parts]``."""
        frames, lengths = self._fold(x, seq_lengths)
        fmap = self.Backbone(frames)  # [sum T, 512, h, w]
        pooled = temporal_max_pool(fmap, lengths)  # [N, 512, h, w]
        return self.FCs(horizontal_pool(pooled, self.config.parts))

    def forward(self, x: Tensor, seq_lengths: Any = None, pav: Any = None) -> ModelOutput:
        emb = self.features(x, seq_lengths)
        channel_gate = part_gate = None
        cfg = self.config
        if self.PGA is not None and (cfg.use_channel_gate or cfg.use_part_gate):
            pav_t = self._check_pav(pav, emb.shape[0], emb)
            channel_gate, part_gate = self.PGA(pav_t, cfg.use_channel_gate, cfg.use_part_gate)
            if channel_gate is not None:
                emb = emb * channel_gate
            if part_gate is not None:
                emb = emb * part_gate
        logits = self.BNNecks(emb)
        return ModelOutput(embeddings=emb, logits=logits, channel_gate=channel_gate, part_gate=part_gate)

    @staticmethod
    def predict(logits: Tensor) -> Tensor:
        return predict(logits)


def build_model(config: ModelConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> ScoNetMT:
    """``ScoNetMT`` from a config object or dict (``seed=`` / ``generator=`` passed through)."""
    if isinstance(config, Mapping):
        config = ModelConfig.from_dict(config)
    return ScoNetMT(config, **kwargs)


def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """OpenGait's initialisation, in module registration order.

    Xavier-uniform for conv / linear weights and the per-part matrices (``fc_bin``, a 3-D
    Xavier as in OpenGait: fan_in = dim1 * dim2, fan_out = dim0 * dim2), biases 0, BatchNorm
    weight ~ N(1, 0.02) and bias 0. Running statistics are reset.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                module.reset_running_stats()
                if module.affine:
                    nn.init.normal_(module.weight, 1.0, 0.02, generator=generator)
                    module.bias.zero_()
            elif isinstance(module, (SeparateFCs, SeparateBNNecks)):
                nn.init.xavier_uniform_(module.fc_bin, generator=generator)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------------------------
# OpenGait checkpoints
# ----------------------------------------------------------------------------------------------


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the model; lists every missing, unexpected or mis-shaped key."""

    def __init__(
        self,
        missing: Sequence[str],
        unexpected: Sequence[str],
        mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
        context: str = "",
    ):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        lines = [f"checkpoint does not match the model{(' (' + context + ')') if context else ''}:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): " + ", ".join(self.missing))
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        for key, got, want in self.mismatched:
            lines.append(f"  shape mismatch for {key}: checkpoint {list(got)} vs model {list(want)}")
        super().__init__("\n".join(lines))


@dataclass
class LoadReport:
    """What :func:`load_opengait_state_dict` did."""

    class_order: tuple[str, ...]
    permutation: tuple[int, ...] | None  # applied to the last axis of BNNecks.fc_bin, or None
    stripped_prefixes: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)  # model keys left at their init (PGA warm start)


def _strip_wrappers(sd: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    stripped: list[str] = []
    changed = True
    while changed and sd:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                stripped.append(prefix)
                changed = True
    return sd, stripped


def load_opengait_state_dict(
    model: ScoNetMT,
    state_dict: Mapping[str, Any],
    class_order: str | Sequence[str] = "2025",
    *,
    rename: Mapping[str, str] | None = None,
    allow_missing_pga: bool = False,
) -> LoadReport:
    """Load an OpenGait ScoNet (or DRF) state dict into ``model``, strictly.

    - ``state_dict``: a state dict, or a whole OpenGait checkpoint (``{"model": ..., ...}``).
      A ``module.`` (DDP) or ``_orig_mod.`` (torch.compile) prefix on every key is stripped.
    - ``class_order``: the checkpoint's class order, ``"2025"`` (negative, neutral, positive:
      current OpenGait, no change) or ``"2024"`` (negative, positive, neutral: the 2024 release and
      the DRF authors' checkpoint), or an explicit tuple; the last axis of ``BNNecks.fc_bin`` is
      permuted into sconet's order so predictions keep their meaning.
    - ``rename``: key-prefix renames applied after stripping, e.g.
      ``{"attention_layer.": "PGA."}`` for the DRF authors' checkpoint.
    - ``allow_missing_pga``: for a DRF model, accept a checkpoint without any ``PGA.*`` key
      (warm start from ScoNet-MT-ske); those parameters keep their initialisation. A checkpoint
      holding only some of them is still a mismatch.

    Raises :class:`CheckpointMismatchError` listing every missing, unexpected and mis-shaped key
    (nothing is loaded then). Returns a :class:`LoadReport`.
    """
    if "model" in state_dict and isinstance(state_dict["model"], Mapping) and not any(
        isinstance(v, Tensor) for v in state_dict.values()
    ):
        state_dict = state_dict["model"]
    sd = {str(k): v for k, v in state_dict.items()}
    sd, stripped = _strip_wrappers(sd)
    renamed: list[tuple[str, str]] = []
    if rename:
        out: dict[str, Any] = {}
        for key, value in sd.items():
            new = key
            for old_prefix, new_prefix in rename.items():
                if key.startswith(old_prefix):
                    new = new_prefix + key[len(old_prefix) :]
                    break
            if new != key:
                renamed.append((key, new))
            out[new] = value
        sd = out

    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    initialised: list[str] = []
    if allow_missing_pga and model.PGA is not None and not any(k.startswith("PGA.") for k in sd):
        initialised = [k for k in missing if k.startswith("PGA.")]  # all of them, or none (partial PGA = error)
        missing = [k for k in missing if not k.startswith("PGA.")]
    mismatched = [
        (k, tuple(torch.as_tensor(v).shape), tuple(own[k].shape))
        for k, v in sd.items()
        if k in own and tuple(torch.as_tensor(v).shape) != tuple(own[k].shape)
    ]
    context = f"model arch={model.config.arch!r}, in_channels={model.config.in_channels}, width={model.config.width}"
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(missing, unexpected, mismatched, context)

    order = resolve_class_order(class_order)
    perm: tuple[int, ...] | None = None
    if model.config.num_classes != len(order):
        raise ValueError(
            f"class order {order} has {len(order)} classes but the model has num_classes={model.config.num_classes}"
        )
    if order != tuple(CLASSES):
        perm = class_permutation(order, CLASSES)
        sd["BNNecks.fc_bin"] = torch.as_tensor(sd["BNNecks.fc_bin"])[..., list(perm)].clone()
    result = model.load_state_dict(sd, strict=not initialised)
    if result is not None and (result.unexpected_keys or set(result.missing_keys) - set(initialised)):
        raise CheckpointMismatchError(result.missing_keys, result.unexpected_keys, [], context)
    return LoadReport(order, perm, stripped, renamed, initialised)
