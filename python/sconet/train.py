"""The training loop: ``train(config) -> RunResult``.

Read top to bottom: set up (device, DDP, seeds), data (cache, split, RAM banks, batch stream),
model / optimiser / schedule / loss, optional resume or warm start, then the loop, which every
``eval_iter`` iterations evaluates (test ids, and validation ids when carved), keeps the best
``keep_n`` checkpoints per metric, and every ``save_iter`` iterations writes ``last.pt``.

The run folder holds ``config.toml`` (resolved recipe), ``split.json`` (train / val / test ids),
``metrics.jsonl`` (one JSON object per log or evaluation), ``tb/`` (TensorBoard scalars),
``last.pt``, ``iter-0001000-test_f1-0.8870.pt`` ... and ``best.json``.

Several GPUs / processes: ``torchrun --nproc_per_node N -m sconet.train [train options]`` (or
``sconet train`` under torchrun). Each rank draws its ``P / N`` ids of every batch from the
same shared-seed permutation (:class:`sconet.stream.TripletBatches`), so the global batch is the
same P x K as on one device. The triplet loss sees the embeddings of all ranks: they are
all-gathered with :func:`sconet.losses.gather_for_triplet` (other ranks' embeddings enter as
constants, this rank's slice keeps its gradient; the loss is multiplied by the world size to undo
DDP's gradient averaging, OpenGait's convention), which gives exactly the gradient of the global
triplet loss. Cross-entropy is local (DDP averages it). Rank 0 evaluates, logs and writes every
file; the others wait at a barrier.

Reproducibility: the same config and seed give the same losses on CPU (batches are a pure
function of ``(seed, step, rank)``; weights are initialised from the seed); ``--resume``
restores model, optimiser, scheduler and RNG states and continues the batch stream at the saved
step, so 3 + 3 iterations equal 6.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sconet import __version__
from sconet import ledger as run_ledger
from sconet.cache import CacheStore, open_cache
from sconet.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    CheckpointKeeper,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from sconet.classes import CLASSES
from sconet.config import TrainConfig, to_toml
from sconet.evaluate import autocast, evaluate_model, resolve_device
from sconet.losses import ScoNetLoss, gather_for_triplet, inverse_frequency_weights
from sconet.model import CheckpointMismatchError, LoadReport, ScoNetMT, load_opengait_state_dict
from sconet.stream import FrameBank, PavNormalizer, TripletBatches, make_loader, pav_reference, to_device, tune_malloc

__all__ = [
    "RunResult",
    "TrainError",
    "DataSetup",
    "prepare_data",
    "train",
    "lr_factor",
    "carve_validation",
    "init_from",
    "frozen_modules",
    "set_frozen",
]

LAST = "last.pt"
METRICS_LOG = "metrics.jsonl"
KEEP_METRICS = ("test_f1", "test_accuracy", "val_f1", "val_accuracy")


class TrainError(ValueError):
    """A run that cannot start or continue (bad folder, missing cache or split, ...)."""


@dataclass
class RunResult:
    """What :func:`train` did (on this rank)."""

    out: Path
    iterations: int
    start_iteration: int
    losses: list[float]
    evals: list[dict[str, Any]]
    final_metrics: dict[str, float]
    best: dict[str, list[dict[str, Any]]]
    last_checkpoint: Path
    seconds: float
    train_seconds: float
    it_per_s: float
    rank: int = 0
    world_size: int = 1
    cache: Path | None = None


# ----------------------------------------------------------------------------------------------
# setup helpers
# ----------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_name: str) -> tuple[_Dist, torch.device]:
    """Detect torchrun (``WORLD_SIZE`` > 1) and join the process group (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), resolve_device(device_name)
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    here = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        here = True
    return _Dist(rank, world, local, here), device


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate for optimiser step ``step`` (0-based)."""
    s, total = config.schedule, config.run.iters
    warm = s.warmup_iters
    if s.name == "cosine":
        span = max(1, total - warm)
        progress = min(1.0, max(0.0, (step - warm) / span))
        f = s.min_lr_ratio + (1.0 - s.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif s.name == "multistep":
        f = s.gamma ** bisect_right(list(s.milestones), step)
    else:
        f = 1.0
    if warm and step < warm:
        f *= s.warmup_start + (1.0 - s.warmup_start) * step / warm
    return f


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def carve_validation(
    train_indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sconet.poses.carve_validation` on store indices (``labels``: class index per store
    sequence). Returns sorted ``(train, val)`` store indices."""
    from sconet.poses import carve_validation as carve

    keys = [str(int(i)) for i in train_indices]
    tr, va = carve(keys, [CLASSES[int(labels[i])] for i in train_indices], fraction, seed)
    as_array = lambda xs: np.array(sorted(int(x) for x in xs), dtype=np.int64)  # noqa: E731
    return as_array(tr), as_array(va)


@dataclass
class DataSetup:
    """The cache and the three id sets (store indices) of a run."""

    store: CacheStore
    split_name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    messages: list[str] = field(default_factory=list)

    def ids(self, which: np.ndarray) -> list[str]:
        return [self.store.ids[i] for i in which]

    def cache_info(self) -> dict[str, Any]:
        a = self.store.attrs
        return {
            "fingerprint": self.store.fingerprint,
            "render": a.get("render"),
            "renderer_version": a.get("renderer_version"),
            "dataset": self.store.dataset,
            "path": str(self.store.path),
        }

    def split_info(self) -> dict[str, Any]:
        return {
            "name": self.split_name,
            "train_ids": self.ids(self.train),
            "val_ids": self.ids(self.val),
            "test_ids": self.ids(self.test),
        }


def _find_or_build_cache(config: TrainConfig, log: Callable[[str], None], build: bool) -> Path:
    from sconet.cache import CacheConfig, build_cache, find_cache
    from sconet.render import RenderConfig, get_representation

    d = config.data
    if d.cache:
        return Path(d.cache).expanduser()
    render = RenderConfig(representation=get_representation(d.representation))
    found = find_cache(render, poses=d.poses)
    if found is not None:
        return found
    if d.poses is not None:
        raise TrainError(
            f"no cache of {d.poses} with representation {render.representation.name!r} (default render "
            f"settings) was found: build it with `sconet cache --poses {d.poses} --representation "
            f"{d.representation}` or give --cache"
        )
    if not build:
        raise TrainError("the synthetic cache is being built by rank 0 but was not found after the barrier")
    log(
        f"no cache of the built-in synthetic data with representation {render.representation.name!r} yet: "
        "building it now (once; later runs reuse it)"
    )
    result = build_cache(CacheConfig(poses=None, render=render))
    log(f"built {result.path} ({result.n_sequences} sequences, {result.n_frames} frames, {result.seconds:.0f} s)")
    return result.path


def _load_split(config: TrainConfig, store: CacheStore) -> tuple[str, list[str], list[str]]:
    from sconet.poses import load_split

    path = config.data.split
    if path is None:
        if store.dataset != "synthetic":
            raise TrainError(
                f"the cache {store.path} holds dataset {store.dataset!r}, not the built-in synthetic one: "
                "give --split (an OpenGait split JSON)"
            )
        from sconet.synth import ensure_synthetic

        path = str(Path(ensure_synthetic()) / "Scoliosis1K_112.json")
    split = load_split(Path(path).expanduser())
    return str(split.name), [str(x) for x in split.train_ids], [str(x) for x in split.test_ids]


def prepare_data(config: TrainConfig, log: Callable[[str], None] = print, build: bool = True) -> DataSetup:
    """Open (or, for the built-in synthetic data, build) the cache and resolve the split."""
    from sconet.cache import CacheError

    path = _find_or_build_cache(config, log, build)
    try:
        store = open_cache(path)
    except CacheError as exc:
        raise TrainError(str(exc)) from None
    name, train_ids, test_ids = _load_split(config, store)
    train = store.indices_of(train_ids)
    test = store.indices_of(test_ids)
    messages = []
    for what, ids, idx in (("training", train_ids, train), ("test", test_ids, test)):
        if len(idx) == 0:
            raise TrainError(f"none of the {len(ids)} {what} ids of split {name!r} are in the cache {store.path}")
        found = {store.ids[i] for i in idx}
        if len(found) < len(set(ids)):
            messages.append(f"{len(set(ids)) - len(found)} {what} ids of split {name!r} are not in the cache")
    train, val = carve_validation(train, store.labels, config.data.val_fraction, config.run.seed)
    return DataSetup(store, name, train, val, test, messages)


def init_from(model: ScoNetMT, path: str | Path, class_order: str = "2025", log: Callable[[str], None] = print) -> LoadReport:
    """Warm start ``model`` from a sconet or OpenGait checkpoint (weights and BN statistics only).

    Strict: every entry of the model's state dict must come from the file with the same name and
    shape, except that a DRF model may start from a ScoNet-MT(-ske) file without any ``PGA.*``
    entry (the PGA parameters then keep their initialisation; a file with only some of them is
    refused). Any other missing, unexpected or mis-shaped entry raises :class:`CheckpointError`
    naming the file and listing the entries; nothing is loaded then. A sconet file's own class
    order is used, ``class_order`` applies to foreign files.
    """
    ckpt = read_checkpoint(path)
    order = tuple(ckpt.class_order) if ckpt.is_sconet and ckpt.class_order else class_order
    try:
        report = load_opengait_state_dict(
            model,
            ckpt.state_dict,
            class_order=order,
            rename={"attention_layer.": "PGA."},
            allow_missing_pga=model.config.arch == "drf",
        )
    except (CheckpointMismatchError, ValueError) as exc:
        hint = ""
        if ckpt.is_sconet and ckpt.model_config:
            mc = ckpt.model_config
            hint = (
                f" (the file holds arch={mc.get('arch')!r}, in_channels={mc.get('in_channels')}, "
                f"width={mc.get('width')}: set model.* to match)"
            )
        raise CheckpointError(f"{ckpt.path}: cannot warm-start from this file{hint}: {exc}") from None
    restored = len(model.state_dict()) - len(report.initialised)
    extra = f"; new (initialised) entries: {', '.join(report.initialised)}" if report.initialised else ""
    log(
        f"initialised the weights from {ckpt.path} ({ckpt.kind}, iteration {ckpt.iteration}, class order "
        f"{'/'.join(order) if not isinstance(order, str) else order}): restored {restored} of "
        f"{len(model.state_dict())} state-dict entries{extra}"
    )
    return report


_init_from = init_from  # the name used before it was public


def frozen_modules(model: ScoNetMT, mode: str) -> list[torch.nn.Module]:
    """The submodules ``run.freeze`` holds fixed: none, ``[Backbone]`` or ``[Backbone, FCs]``."""
    if mode == "none":
        return []
    if mode == "backbone":
        return [model.Backbone]
    if mode == "backbone+fcs":
        return [model.Backbone, model.FCs]
    raise ValueError(f"unknown freeze mode {mode!r}")


def set_frozen(modules: list[torch.nn.Module], frozen: bool) -> None:
    """(Un)freeze: ``requires_grad`` off / on for every parameter of ``modules``, and their
    BatchNorm layers in eval mode (running statistics fixed) / back in training mode. Call it
    again after any ``model.train()`` while frozen."""
    for module in modules:
        for param in module.parameters():
            param.requires_grad_(not frozen)
        for sub in module.modules():
            if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                sub.train(not frozen)


# ----------------------------------------------------------------------------------------------
# logging
# ----------------------------------------------------------------------------------------------


class _Logger:
    """metrics.jsonl + TensorBoard (rank 0 only)."""

    def __init__(self, out: Path, start: int, enabled: bool):
        self.enabled = enabled
        self.writer = None
        self.path = out / METRICS_LOG
        if not enabled:
            return
        if start > 0 and self.path.exists():  # drop entries past the resumed iteration
            keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("iter", 0) <= start]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        elif start == 0 and self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tb"), purge_step=start if start > 0 else None)
        except Exception:  # pragma: no cover - tensorboard missing or broken
            self.writer = None

    def log(self, kind: str, iteration: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"kind": kind, "iter": iteration, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.writer.add_scalar(f"{kind}/{k}" if kind == "train" else k.replace("_", "/", 1), v, iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


class _Progress:
    """rich progress bar (it/s and latest metrics) on a terminal; plain lines otherwise."""

    def __init__(self, total: int, start: int, enabled: bool, live: bool, log: Callable[[str], None]):
        self.enabled, self.total, self.log = enabled, total, log
        self.bar = None
        self.t0, self.n0 = time.perf_counter(), start
        self.text = ""
        if enabled and live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                transient=False,
            )
            self.task = self.bar.add_task("train", total=total, completed=start, speed="", info="")
            self.bar.start()

    def update(self, done: int, it_per_s: float, info: str | None = None) -> None:
        if not self.enabled:
            return
        if info is not None:
            self.text = info
        if self.bar is not None:
            self.bar.update(self.task, completed=done, speed=f"{it_per_s:.2f} it/s", info=self.text)

    def line(self, done: int, it_per_s: float, info: str) -> None:
        if self.enabled and self.bar is None:
            self.log(f"iter {done}/{self.total}  {it_per_s:.2f} it/s  {info}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def _default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
    stop_at: int | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Train with a resolved :class:`TrainConfig` (see the module docstring).

    ``config.run.out`` is the run folder (required). ``resume``: continue from its ``last.pt``
    (model, optimiser, scheduler, RNG and batch-stream states). ``progress``: rich progress bar
    (default: when stderr is a terminal; plain lines otherwise). ``log``: message sink (stderr).
    ``stop_at``: stop after this iteration (writing ``last.pt``), as an interrupted run would;
    ``resume`` continues it exactly (the schedule still spans ``run.iters``).
    ``overwrite``: start afresh in a folder that already holds a run (its run files are deleted;
    other files are left alone).
    """
    t_start = time.perf_counter()
    config.validate()
    log = log or _default_log
    if not config.run.out:
        raise TrainError("no run folder: set run.out (--out)")
    if config.run.require_init and not config.run.init_from and not resume:
        raise TrainError(
            f"recipe {config.name!r} is a warm start (run.require_init): give the checkpoint to start from "
            "with --init-from CKPT (e.g. a ScoNet-MT-ske best checkpoint), or --set run.require_init=false "
            "to train from scratch"
        )
    out = Path(config.run.out).expanduser()
    ddp, device = _setup_distributed(config.run.device)
    say = log if ddp.main else (lambda _msg: None)
    try:
        if overwrite and not resume and ddp.main:
            _clear_run(out, say)
        _barrier(ddp)
        return _train(config, out, resume, progress, say, ddp, device, t_start, stop_at)
    finally:
        if ddp.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


RUN_FILES = (LAST, METRICS_LOG, "config.toml", "split.json", CheckpointKeeper.INDEX)


def _clear_run(out: Path, log: Callable[[str], None]) -> None:
    """Delete the files a previous run left in ``out`` (nothing else)."""
    if not out.is_dir():
        return
    import re
    import shutil

    removed = 0
    for p in out.iterdir():
        if p.name in RUN_FILES or re.match(r"^iter-\d+-\w+-.*\.pt$", p.name):
            p.unlink()
            removed += 1
    if (out / "tb").is_dir():
        shutil.rmtree(out / "tb")
        removed += 1
    if removed:
        log(f"--overwrite: removed the previous run's files from {out}")


def _barrier(ddp: _Dist) -> None:
    if ddp.world_size > 1:
        dist.barrier()


def _train(
    config: TrainConfig,
    out: Path,
    resume: bool,
    progress: bool | None,
    log: Callable[[str], None],
    ddp: _Dist,
    device: torch.device,
    t_start: float,
    stop_at: int | None = None,
) -> RunResult:
    r, d = config.run, config.data

    # -- the run folder --------------------------------------------------------------------------
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

    if device.type == "cpu":
        tune_malloc()

    # -- seeds -----------------------------------------------------------------------------------
    torch.manual_seed(r.seed)
    np.random.seed(r.seed % 2**32)
    import random

    random.seed(r.seed)

    # -- data ------------------------------------------------------------------------------------
    if ddp.main:
        data = prepare_data(config, log, build=True)
    _barrier(ddp)
    if not ddp.main:
        data = prepare_data(config, log, build=False)
    store = data.store
    for m in data.messages:
        log(f"warning: {m}")
    if resume_ckpt is not None:  # the saved split wins (it is what the run trained on)
        if resume_ckpt.cache_fingerprint and resume_ckpt.cache_fingerprint != store.fingerprint:
            raise TrainError(
                f"{last_path}: the run was trained on cache fingerprint {resume_ckpt.cache_fingerprint[:12]} "
                f"but {store.path} has {store.fingerprint[:12]}; resume with the same cache (--cache)"
            )
        s = resume_ckpt.split
        data.split_name = str(s.get("name", data.split_name))
        data.train = store.indices_of(s.get("train_ids", []))
        data.val = store.indices_of(s.get("val_ids", []))
        data.test = store.indices_of(s.get("test_ids", []))
    if config.model.in_channels != store.frames.shape[1]:
        raise TrainError(
            f"model.in_channels={config.model.in_channels} but the cache holds {store.frames.shape[1]}-channel maps"
        )
    budget = int(d.max_ram_gb * 2**30)
    cut = d.cut_pixels if d.cut else 0
    bank = FrameBank(store, data.train, cut_pixels=cut, max_ram_bytes=budget, shared=d.num_workers > 0)
    budget = max(0, budget - (bank.nbytes if bank.in_ram else 0))
    log(
        f"cache {store.path.name}: {len(data.train)} train / {len(data.val)} val / {len(data.test)} test "
        f"sequences (split {data.split_name}); training frames "
        + (f"in RAM ({_size(bank.nbytes)} uint8)" if bank.in_ram else "streamed from Zarr (over max_ram_gb)")
    )
    eval_banks: dict[str, FrameBank] = {}
    if ddp.main:
        sets = ([("test", data.test)] if r.eval_test else []) + ([("val", data.val)] if len(data.val) else [])
        for name, idx in sets:
            eb = FrameBank(store, idx, cut_pixels=cut, max_frames=d.eval_max_frames, max_ram_bytes=budget)
            budget = max(0, budget - (eb.nbytes if eb.in_ram else 0))
            eval_banks[name] = eb
    pav_norm = None
    if config.model.arch == "drf":  # min-max statistics of the training ids only (never val / test)
        if resume_ckpt is not None and "pav_norm" in resume_ckpt.raw:
            pav_norm = PavNormalizer.from_state_dict(resume_ckpt.raw["pav_norm"])
        else:
            pav_norm = PavNormalizer.fit(store.pav[data.train])

    # -- model, optimiser, schedule, loss --------------------------------------------------------
    model = ScoNetMT(config.model, seed=r.seed).to(device)
    if r.init_from and resume_ckpt is None:
        init_from(model, r.init_from, r.init_class_order, log)
    optimizer = _optimizer(model, config)  # over every parameter, frozen ones included (no grad = no step)
    to_freeze = frozen_modules(model, r.freeze) if r.freeze_iters > 0 else []
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    l = config.loss
    weights = None
    if l.class_weights == "inverse":
        weights = inverse_frequency_weights(store.labels[data.train], len(CLASSES))
    elif isinstance(l.class_weights, list):
        weights = torch.tensor(l.class_weights, dtype=torch.float32)
    loss_fn = ScoNetLoss(
        l.triplet_weight, l.ce_weight, l.margin, l.scale, l.label_smoothing, weights, l.include_self_pairs
    ).to(device)

    start = 0
    if resume_ckpt is not None:
        raw = resume_ckpt.raw
        try:
            load_opengait_state_dict(model, resume_ckpt.state_dict)
        except (CheckpointMismatchError, ValueError) as exc:
            raise CheckpointError(f"{last_path}: {exc}") from None
        optimizer.load_state_dict(raw["optimizer"])
        scheduler.load_state_dict(raw["scheduler"])
        set_rng_state(raw.get("rng", {}))
        start = int(raw["iteration"])
        log(f"resuming {out} at iteration {start}")
    if start >= r.iters:
        log(f"nothing to do: the run is at iteration {start} of {r.iters}")

    frozen = bool(to_freeze) and start < r.freeze_iters
    if frozen:
        set_frozen(to_freeze, True)
        n_frozen = sum(p.numel() for m in to_freeze for p in m.parameters())
        log(f"freezing the {r.freeze} ({n_frozen:,} parameters, BatchNorm statistics included) "
            f"until iteration {r.freeze_iters}")

    def wrap() -> torch.nn.Module:
        if ddp.world_size <= 1:
            return model
        return torch.nn.parallel.DistributedDataParallel(  # registers the parameters that need grad now
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.model.arch == "drf",
        )

    net = wrap()

    stream = TripletBatches(
        bank, d.p, d.k, d.frames, seed=r.seed, rank=ddp.rank, world_size=ddp.world_size,
        start_step=start, pav_normalizer=pav_norm,
    )

    # -- bookkeeping -----------------------------------------------------------------------------
    keeper = CheckpointKeeper(out, r.keep_n, KEEP_METRICS) if ddp.main else None
    logger = _Logger(out, start, ddp.main)
    if ddp.main:
        (out / "config.toml").write_text(to_toml(config))
        split_doc = {"name": data.split_name, "TRAIN_SET": data.ids(data.train), "VAL_SET": data.ids(data.val),
                     "TEST_SET": data.ids(data.test)}
        (out / "split.json").write_text(json.dumps(split_doc, indent=1))

    pav_stats = pav_reference(store.pav[data.train], store.labels[data.train])

    def payload(done: int, metrics: dict[str, float] | None = None) -> dict[str, Any]:
        p = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model.state_dict(),
            "model_config": config.model.to_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "iteration": done,
            "recipe": config.to_dict(),
            "cache": data.cache_info(),
            "class_order": list(CLASSES),
            "split": data.split_info(),
            "sconet_version": __version__,
            "rng": rng_state(stream.state_dict(done)),
            "metrics": dict(metrics or {}),
        }
        if pav_norm is not None:
            p["pav_norm"] = pav_norm.state_dict()
        p["pav_stats"] = pav_stats  # training PAV reference (sconet predict's read-out)
        return p

    evals: list[dict[str, Any]] = []
    final_metrics: dict[str, float] = {}

    def evaluate(done: int) -> dict[str, float]:
        values: dict[str, float] = {}
        extra: dict[str, Any] = {}
        for name, eb in eval_banks.items():
            t0 = time.perf_counter()
            m, _ = evaluate_model(model, eb, device, batch_size=d.eval_batch, amp=r.amp, pav_normalizer=pav_norm)
            values.update({f"{name}_accuracy": m.accuracy, f"{name}_precision": m.precision,
                           f"{name}_recall": m.recall, f"{name}_f1": m.f1})
            if m.sensitivity is not None:
                values[f"{name}_sensitivity"] = m.sensitivity
                values[f"{name}_specificity"] = m.specificity
            extra[f"{name}_confusion"] = [list(row) for row in m.confusion]
            extra[f"{name}_seconds"] = round(time.perf_counter() - t0, 3)
        logger.log("eval", done, {**values, **extra})
        if values:
            ledger_run.evaluation(done, values)  # ledger
        if keeper is not None and values:
            kept = keeper.offer(done, values, payload(done, values))
            ledger_run.kept(kept, done, values)  # ledger
        evals.append({"iter": done, **values})
        return values

    # -- the loop --------------------------------------------------------------------------------
    losses: list[float] = []
    pending: list[torch.Tensor] = []
    window: dict[str, list[torch.Tensor]] = {}
    train_seconds = 0.0
    loader = make_loader(stream, d.num_workers)
    amp = r.amp and device.type == "cuda"
    net.train()
    log(
        f"training {config.name} on {device}{f' x {ddp.world_size} ranks' if ddp.world_size > 1 else ''}: "
        f"iterations {start}..{r.iters}, P x K = {d.p} x {d.k}, {d.frames} frames, "
        f"width {config.model.width}, {sum(p.numel() for p in model.parameters()):,} parameters"
    )
    live = progress if progress is not None else sys.stderr.isatty()
    bar = _Progress(r.iters, start, ddp.main, bool(live), log)
    it_per_s = 0.0
    last_info = ""
    # ledger: record the run (rank 0 only; a ledger failure is a warning, never the end of the run)
    ledger_run = (
        run_ledger.open_run(config, data, start=start, out=out, device=device, world_size=ddp.world_size, log=log)
        if ddp.main else run_ledger.RunRecorder(None, None, log)
    )
    ledger_status, ledger_error, done = "failed", None, start
    try:
        for step in range(start, r.iters):
            t0 = time.perf_counter()
            if frozen and step >= r.freeze_iters:
                frozen = False
                set_frozen(to_freeze, False)
                net = wrap()  # DDP again, now with the unfrozen parameters
                log(f"iteration {step}: unfroze the {r.freeze}; training every parameter from here")
            if frozen:
                set_frozen(to_freeze, True)  # BN eval mode again after an evaluation's model.train()
            batch = next(loader)
            x, lengths = to_device(batch, device)
            labels = batch.labels.to(device, non_blocking=True)
            seq_ids = batch.seq_ids.to(device, non_blocking=True)
            pav = batch.pav.to(device) if batch.pav.numel() else None
            with autocast(device, amp):
                outputs = net(x, lengths.tolist(), pav=pav)
            loss, stats = _loss(loss_fn, outputs, seq_ids, labels, ddp.world_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip > 0:
                stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip).detach()
            optimizer.step()
            scheduler.step()
            done = step + 1
            pending.append(stats["loss"])
            for k, v in stats.items():
                window.setdefault(k, []).append(v)
            train_seconds += time.perf_counter() - t0
            it_per_s = (done - start) / train_seconds if train_seconds > 0 else 0.0

            if done % r.log_iter == 0 or done == r.iters:
                losses.extend(float(v) for v in pending)
                pending.clear()
                values = {k.replace("/", "_"): float(torch.stack(v).float().mean()) for k, v in window.items()}
                window.clear()
                values["lr"] = optimizer.param_groups[0]["lr"]
                values["it_per_s"] = it_per_s
                logger.log("train", done, values)
                last_info = f"loss {values['loss']:.4f}"
                bar.update(done, it_per_s, _info(last_info, final_metrics))
            else:
                bar.update(done, it_per_s)

            if done % r.eval_iter == 0 or done == r.iters:
                if ddp.main:
                    bar.update(done, it_per_s, _info(last_info, final_metrics) + "  (evaluating...)")
                    final_metrics = evaluate(done)
                    info = _info(last_info, final_metrics)
                    bar.update(done, it_per_s, info)
                    bar.line(done, it_per_s, info)
                _barrier(ddp)
            elif done % max(r.log_iter, r.iters // 20) == 0:
                bar.line(done, it_per_s, _info(last_info, final_metrics))
            stopping = stop_at is not None and done >= stop_at
            if done % r.save_iter == 0 or done == r.iters or stopping:
                if ddp.main:
                    save_checkpoint(payload(done, final_metrics), last_path)
                    ledger_run.checkpoint(last_path, done, final_metrics, evals[-1]["iter"] if evals else None)  # ledger
                _barrier(ddp)
            if stopping:
                log(f"stopped at iteration {done} (stop_at); continue with --resume")
                break
        ledger_status = "finished" if done >= r.iters else "interrupted"  # ledger
    except KeyboardInterrupt:
        ledger_status = "interrupted"  # ledger
        raise
    except BaseException as exc:
        ledger_error = f"{type(exc).__name__}: {exc}"  # ledger
        raise
    finally:
        bar.close()
        logger.close()
        ledger_run.end(ledger_status, done, ledger_error)  # ledger
    losses.extend(float(v) for v in pending)
    if ddp.main and start >= r.iters and not last_path.exists():  # pragma: no cover
        save_checkpoint(payload(start), last_path)
    seconds = time.perf_counter() - t_start
    result = RunResult(
        out=out,
        iterations=max(start, min(r.iters, stop_at)) if stop_at is not None else max(start, r.iters),
        start_iteration=start,
        losses=losses,
        evals=evals,
        final_metrics=final_metrics,
        best=keeper.summary() if keeper is not None else {},
        last_checkpoint=last_path,
        seconds=seconds,
        train_seconds=train_seconds,
        it_per_s=it_per_s,
        rank=ddp.rank,
        world_size=ddp.world_size,
        cache=store.path,
    )
    if ddp.world_size > 1:
        digest = parameter_digest(model)
        print(f"rank {ddp.rank}/{ddp.world_size}: trained iterations {start}..{r.iters}, parameters {digest}",
              file=sys.stderr, flush=True)
        digests: list[Any] = [None] * ddp.world_size
        dist.all_gather_object(digests, digest)
        if len(set(digests)) > 1:
            log(f"WARNING: the {ddp.world_size} ranks ended with different parameters ({', '.join(digests)}): "
                "DDP did not keep the replicas in step; only rank 0's weights were saved")
    return result


def parameter_digest(model: torch.nn.Module) -> str:
    """Short hash of a model's parameter names and values (DDP replicas must agree on it)."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def _info(loss_text: str, metrics: dict[str, float]) -> str:
    parts = [loss_text] if loss_text else []
    for key in ("test_f1", "test_accuracy", "val_f1", "val_accuracy"):
        if key in metrics:
            parts.append(f"{key} {100 * metrics[key]:.2f}")
    return "  ".join(parts)


def _loss(
    loss_fn: ScoNetLoss, outputs: Any, seq_ids: torch.Tensor, labels: torch.Tensor, world_size: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """ScoNetLoss; under DDP the triplet term runs on all ranks' embeddings (x world size)."""
    if world_size <= 1:
        return loss_fn(outputs.embeddings, outputs.logits, seq_ids, labels)
    total = outputs.logits.new_zeros((), dtype=torch.float32)
    reported = total.detach().clone()  # the loss value itself (without the gradient factor)
    stats: dict[str, torch.Tensor] = {}
    if loss_fn.triplet_weight:
        emb, ids = gather_for_triplet(outputs.embeddings, seq_ids)
        t_loss, t_stats = loss_fn.triplet(emb, ids)
        total = total + loss_fn.triplet_weight * world_size * t_loss
        reported = reported + loss_fn.triplet_weight * t_loss.detach()
        stats.update({f"triplet/{k}": v for k, v in t_stats.items()})
    if loss_fn.ce_weight:
        c_loss, c_stats = loss_fn.ce(outputs.logits, labels)
        total = total + loss_fn.ce_weight * c_loss
        reported = reported + loss_fn.ce_weight * c_loss.detach()
        stats.update({f"ce/{k}": v for k, v in c_stats.items()})
    stats["loss"] = reported
    return total, stats


def main(argv: list[str] | None = None) -> None:
    """``python -m sconet.train [options]`` = ``sconet train [options]`` (for torchrun)."""
    from sconet.cli import app

    app(args=["train", *(sys.argv[1:] if argv is None else argv)], prog_name="sconet")


if __name__ == "__main__":
    main()
