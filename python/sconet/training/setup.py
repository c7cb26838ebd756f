"""Setting a run up, one phase per function in the order :func:`sconet.training.train` calls them.

Run folder, seeds, data (cache, split, frame banks, PAV normaliser), model / optimiser / schedule /
loss (restored when resuming), the DDP wrapper, the run files, checkpoint payloads and evaluations.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sconet import __version__
from sconet._io import atomic_write_text
from sconet.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    rng_state,
    set_rng_state,
)
from sconet.classes import CLASSES
from sconet.evaluation import Predictions, evaluate_model
from sconet.evaluation.evaluate import NO_PAV
from sconet.evaluation.stats import bootstrap_intervals
from sconet.models import (
    CheckpointMismatchError,
    ScoNetLoss,
    ScoNetMT,
    inverse_frequency_weights,
    load_opengait_state_dict,
)
from sconet.stream import (
    FrameBank,
    PavNormalizer,
    TripletBatches,
    pav_reference,
)
from sconet.training.config import TrainConfig, TrainError
from sconet.training.data import DataSetup, prepare_data
from sconet.training.distributed import Dist, barrier
from sconet.training.monitor import human_size
from sconet.training.optim import build_optimizer, build_scheduler
from sconet.training.recipes import to_toml
from sconet.training.warmstart import frozen_modules, init_from

LAST = "last.pt"
Log = Callable[[str], None]


def open_run_folder(out: Path, resume: bool, ddp: Dist) -> Checkpoint | None:
    """The run folder: a fresh one, or ``last.pt`` of the run to resume."""
    last_path = out / LAST
    resume_ckpt = None
    if resume:
        if not last_path.is_file():
            raise TrainError(f"{out}: nothing to resume (no {LAST})")
        resume_ckpt = read_checkpoint(last_path)
        if not resume_ckpt.is_sconet:
            raise TrainError(f"{last_path}: not a sconet checkpoint")
    elif last_path.exists():
        raise TrainError(
            f"{out}: already holds a run ({LAST}); pass --resume to continue it, --overwrite to start "
            "afresh, or choose another --out"
        )
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
    return resume_ckpt


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@dataclass
class RunData:
    """The run's data: the split over the cache, the frame banks and the PAV normaliser (DRF)."""

    setup: DataSetup
    bank: FrameBank
    eval_banks: dict[str, FrameBank]
    pav_norm: PavNormalizer | None
    pav_stats: dict[str, Any]


def load_data(config: TrainConfig, ddp: Dist, log: Log, resume_ckpt: Checkpoint | None) -> RunData:
    """Cache and split (rank 0 builds a missing synthetic cache first), then frames into RAM."""
    r, d = config.run, config.data
    if ddp.main:
        data = prepare_data(config, log, build=True)
    barrier(ddp)
    if not ddp.main:
        data = prepare_data(config, log, build=False)
    store = data.store
    for m in data.messages:
        log(f"warning: {m}")
    if resume_ckpt is not None:  # the saved split wins (it is what the run trained on)
        if resume_ckpt.cache_fingerprint and resume_ckpt.cache_fingerprint != store.fingerprint:
            raise TrainError(
                f"{resume_ckpt.path}: the run was trained on cache fingerprint "
                f"{resume_ckpt.cache_fingerprint[:12]} "
                f"but {store.path} has {store.fingerprint[:12]}; resume with the same cache (--cache)"
            )
        s = resume_ckpt.split
        data.split_name = str(s.get("name", data.split_name))
        data.train = store.indices_of(s.get("train_ids", []))
        data.val = store.indices_of(s.get("val_ids", []))
        data.test = store.indices_of(s.get("test_ids", []))
    if config.model.in_channels != store.frames.shape[1]:
        raise TrainError(
            f"model.in_channels={config.model.in_channels} but the cache holds "
            f"{store.frames.shape[1]}-channel maps"
        )
    if r.memory_check:
        _check_memory(config, data, ddp)
    budget = int(d.max_ram_gb * 2**30)
    cut = d.cut_pixels if d.cut else 0
    bank = FrameBank(store, data.train, cut_pixels=cut, max_ram_bytes=budget, shared=d.num_workers > 0)
    budget = max(0, budget - (bank.nbytes if bank.in_ram else 0))
    log(
        f"cache {store.path.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test "
        f"sequences (split {data.split_name}); training frames "
        + (
            f"in RAM ({human_size(bank.nbytes)} uint8)"
            if bank.in_ram
            else "streamed from Zarr (over max_ram_gb)"
        )
    )
    eval_banks: dict[str, FrameBank] = {}
    if ddp.main:
        sets = ([("test", data.test)] if r.eval_test else []) + ([("val", data.val)] if len(data.val) else [])
        for name, idx in sets:
            eb = FrameBank(store, idx, cut_pixels=cut, max_frames=d.eval_max_frames, max_ram_bytes=budget)
            budget = max(0, budget - (eb.nbytes if eb.in_ram else 0))
            eval_banks[name] = eb
    pav_norm = None
    if config.model.arch == "drf" and not store.pav_available:
        raise TrainError(f"{store.path}: {NO_PAV}; DRF (model.arch = drf) trains on the PAV")
    if config.model.arch == "drf":  # min-max statistics of the training ids only (never val / test)
        if resume_ckpt is not None and "pav_norm" in resume_ckpt.raw:
            pav_norm = PavNormalizer.from_state_dict(resume_ckpt.raw["pav_norm"])
        else:
            pav_norm = PavNormalizer.fit(store.pav[data.train])
    pav_stats = pav_reference(store.pav[data.train], store.labels[data.train]) if store.pav_available else {}
    return RunData(data, bank, eval_banks, pav_norm, pav_stats)


def _check_memory(config: TrainConfig, data: DataSetup, ddp: Dist) -> None:
    """Refuse a run that clearly will not fit in memory, before any frame is loaded."""
    from sconet.runtime import resolve_device
    from sconet.training.memory import check_memory

    store = data.store
    sets = {"train": data.train, "val": data.val if ddp.main else data.val[:0]}
    if config.run.eval_test and ddp.main:
        sets["test"] = data.test
    device = resolve_device(config.run.device).type
    check_memory(config, store.offsets, sets, store.frames.shape[1:], device, ddp.world_size)


@dataclass
class RunParts:
    """Model, optimiser, schedule and loss, restored to ``start`` when resuming."""

    model: ScoNetMT
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: ScoNetLoss
    start: int
    to_freeze: list[torch.nn.Module] = field(default_factory=list)


def build_parts(
    config: TrainConfig, data: RunData, device: torch.device, log: Log, resume_ckpt: Checkpoint | None
) -> RunParts:
    r, store = config.run, data.setup.store
    model = ScoNetMT(config.model, seed=r.seed).to(device)
    if r.init_from and resume_ckpt is None:
        init_from(model, r.init_from, r.init_class_order, log, stated=config.data.render_spec(), store=store)
    optimizer = build_optimizer(model, config)  # every parameter, frozen ones included (no grad = no step)
    to_freeze = frozen_modules(model, r.freeze) if r.freeze_iters > 0 else []
    scheduler = build_scheduler(optimizer, config)
    weights = None
    if config.loss.class_weights == "inverse":
        weights = inverse_frequency_weights(store.labels[data.setup.train], len(CLASSES))
    elif isinstance(config.loss.class_weights, list):
        weights = torch.tensor(config.loss.class_weights, dtype=torch.float32)
    loss_fn = ScoNetLoss.from_config(config.loss, weights).to(device)
    start = 0
    if resume_ckpt is not None:
        raw = resume_ckpt.raw
        try:
            load_opengait_state_dict(model, resume_ckpt.state_dict)
        except (CheckpointMismatchError, ValueError) as exc:
            raise CheckpointError(f"{resume_ckpt.path}: {exc}") from None
        optimizer.load_state_dict(raw["optimizer"])
        scheduler.load_state_dict(raw["scheduler"])
        set_rng_state(raw.get("rng", {}))
        start = int(raw["iteration"])
        for note in resume_ckpt.notes:
            log(f"note: {note}")
        log(f"resuming {resume_ckpt.path.parent} at iteration {start}")
    if start >= r.iters:
        log(f"nothing to do: the run is at iteration {start} of {r.iters}")
    return RunParts(model, optimizer, scheduler, loss_fn, start, to_freeze)


def ddp_wrap(model: ScoNetMT, config: TrainConfig, ddp: Dist, device: torch.device) -> torch.nn.Module:
    """The module the loop calls: the model itself, or DDP over the parameters that need a grad now."""
    if ddp.world_size <= 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=config.model.arch == "drf",
    )


def write_run_files(out: Path, config: TrainConfig, setup: DataSetup) -> None:
    atomic_write_text(out / "config.toml", to_toml(config), fsync=False)
    split_doc = {
        "name": setup.split_name,
        "TRAIN_SET": setup.ids(setup.train),
        "VAL_SET": setup.ids(setup.val),
        "TEST_SET": setup.ids(setup.test),
    }
    atomic_write_text(out / "split.json", json.dumps(split_doc, indent=1), fsync=False)


def checkpoint_payload(
    config: TrainConfig,
    data: RunData,
    parts: RunParts,
    stream: TripletBatches,
    done: int,
    metrics: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A checkpoint's contents: weights, optimiser/schedule/RNG state, recipe, cache, split, PAV stats."""
    p = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": parts.model.state_dict(),
        "model_config": config.model.to_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "iteration": done,
        "recipe": config.to_dict(),
        "cache": data.setup.cache_info(),
        "class_order": list(CLASSES),
        "split": data.setup.split_info(),
        "sconet_version": __version__,
        "rng": rng_state(stream.state_dict(done)),
        "metrics": dict(metrics or {}),
    }
    if data.pav_norm is not None:
        p["pav_norm"] = data.pav_norm.state_dict()
    if data.pav_stats:
        p["pav_stats"] = data.pav_stats  # training PAV reference (sconet predict's read-out)
    return p


def evaluate_sets(
    config: TrainConfig, data: RunData, model: ScoNetMT, device: torch.device
) -> tuple[dict, dict, dict[str, Predictions]]:
    """Metrics of every evaluation set (``test_f1``, ``val_accuracy`` ...; with
    ``run.ci_resamples`` the test set's ``test_f1_low`` / ``_high`` and ``test_accuracy_low`` /
    ``_high``), their extras (confusion, time) and the per-sequence predictions of each set."""
    values: dict[str, float] = {}
    extra: dict[str, Any] = {}
    predictions: dict[str, Predictions] = {}
    for name, eb in data.eval_banks.items():
        t0 = time.perf_counter()
        m, preds = evaluate_model(
            model,
            eb,
            device,
            batch_size=config.data.eval_batch,
            amp=config.run.amp,
            pav_normalizer=data.pav_norm,
        )
        predictions[name] = preds
        values.update({f"{name}_accuracy": m.accuracy, f"{name}_precision": m.precision,
                       f"{name}_recall": m.recall, f"{name}_f1": m.f1})  # fmt: skip
        if m.sensitivity is not None:
            values[f"{name}_sensitivity"] = m.sensitivity
            values[f"{name}_specificity"] = m.specificity
        if name == "test" and config.run.ci_resamples > 0:
            iv = bootstrap_intervals(preds.labels, preds.pred, n_resamples=config.run.ci_resamples)
            for key in ("f1", "accuracy"):
                values[f"test_{key}_low"], values[f"test_{key}_high"] = iv[key].low, iv[key].high
        extra[f"{name}_confusion"] = [list(row) for row in m.confusion]
        extra[f"{name}_seconds"] = round(time.perf_counter() - t0, 3)
    return values, extra, predictions
