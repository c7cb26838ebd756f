"""ScoNet-MT(-ske) and DRF: configuration, the network, construction and OpenGait's initialisation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sconet.models.layers import (
    BASE_CHANNELS,
    PAVGuidedAttention,
    ResNet9,
    SeparateBNNecks,
    SeparateFCs,
    SetBlockWrapper,
    _as_lengths,
    horizontal_pool,
    predict,
    temporal_max_pool,
)

ARCHS = ("sconet", "drf")
PGA_MODES = ("both", "channel", "part", "none")
STATE_DICT_ENTRIES = 79
"""State-dict entries of ScoNet-MT (40 parameters + 39 BatchNorm buffers incl. num_batches_tracked)."""


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
            raise ValueError(f"ModelConfig.pga_align_corners must be a bool, got {self.pga_align_corners!r}")

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
        raise ValueError(
            f"expected [N, C, T, H, W] or packed [sum T, C, H, W] input, got shape {tuple(x.shape)}"
        )

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
