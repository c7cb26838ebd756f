"""One configuration trained with several seeds (``sconet train --seeds N``).

Seeds ``run.seed``, ``run.seed + 1``, ... train one after the other in ``<out>/seed-<s>``; the
ledger records them under one group name (the run folder's name), which ``sconet runs``
summarises (:mod:`sconet.experiments.groups`): mean and standard deviation of the final test
metrics, and the pooled interval of the mean.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sconet.training.config import TrainConfig
from sconet.training.loop import RunResult, train
from sconet.training.recipes import apply_overrides

__all__ = ["seed_configs", "train_seeds"]


def seed_configs(config: TrainConfig, seeds: int) -> list[TrainConfig]:
    """``seeds`` copies of ``config`` with consecutive seeds, each in ``<run.out>/seed-<s>``."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if not config.run.out:
        raise ValueError("no run folder: set run.out (--out)")
    base = Path(config.run.out)
    return [
        apply_overrides(config, [("run", "seed", s), ("run", "out", str(base / f"seed-{s}"))])
        for s in range(config.run.seed, config.run.seed + seeds)
    ]


def train_seeds(
    config: TrainConfig, seeds: int, *, group: str | None = None, log: Callable[[str], None] | None = None,
    **train_kw: Any,
) -> list[RunResult]:  # fmt: skip
    """Train every seed of :func:`seed_configs` (the ledger group: ``group`` or the folder's name)."""
    group = group or Path(config.run.out or "runs").name
    results = []
    for i, cfg in enumerate(seed_configs(config, seeds), 1):
        if log:
            log(f"seed {cfg.run.seed} ({i} of {seeds}): {cfg.run.out}")
        results.append(train(cfg, group=group, log=log, **train_kw))
    return results
