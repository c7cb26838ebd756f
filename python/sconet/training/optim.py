"""Optimisers and learning-rate schedules, each a registry entry: adding one is a function and a name."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from sconet.training.config import OptimConfig, ScheduleConfig, TrainConfig


def _sgd(params: list[torch.nn.Parameter], o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
    )


def _adamw(params: list[torch.nn.Parameter], o: OptimConfig) -> torch.optim.Optimizer:
    betas = (float(o.betas[0]), float(o.betas[1]))
    return torch.optim.AdamW(params, lr=o.lr, betas=betas, eps=o.eps, weight_decay=o.weight_decay)


OPTIMIZERS: dict[str, Callable[[list[torch.nn.Parameter], OptimConfig], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}
"""``optim.name`` -> factory ``(trainable parameters, OptimConfig) -> optimiser``."""


def _cosine(step: int, total: int, s: ScheduleConfig) -> float:
    """From 1 down to ``min_lr_ratio`` over the iterations after the warm-up."""
    span = max(1, total - s.warmup_iters)
    progress = min(1.0, max(0.0, (step - s.warmup_iters) / span))
    return s.min_lr_ratio + (1.0 - s.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _multistep(step: int, total: int, s: ScheduleConfig) -> float:
    """Times ``gamma`` at each milestone reached."""
    return s.gamma ** bisect_right(list(s.milestones), step)


def _constant(step: int, total: int, s: ScheduleConfig) -> float:
    return 1.0


SCHEDULES: dict[str, Callable[[int, int, ScheduleConfig], float]] = {
    "cosine": _cosine,
    "multistep": _multistep,
    "constant": _constant,
}
"""``schedule.name`` -> ``(step, total iterations, ScheduleConfig) -> learning-rate factor`` (pre warm-up)."""


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based), warm-up included."""
    s = config.schedule
    f = SCHEDULES[s.name](step, config.run.iters, s)
    if s.warmup_iters and step < s.warmup_iters:
        f *= s.warmup_start + (1.0 - s.warmup_start) * step / s.warmup_iters
    return f


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the parameters that need a gradient now."""
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS[config.optim.name](params, config.optim)


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepping through :func:`lr_factor` (its state dict goes into checkpoints)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
