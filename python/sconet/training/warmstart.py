"""Warm starts (weights from a sconet or OpenGait checkpoint) and freezing parts of the model for a while."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sconet.checkpoint import (
    CheckpointError,
    infer_model_config,
    read_checkpoint,
)
from sconet.models import CheckpointMismatchError, LoadReport, ScoNetMT, load_opengait_state_dict

if TYPE_CHECKING:  # config imports this module (FREEZE_MODES)
    from sconet.cache import CacheStore
    from sconet.render.spec import RenderSpec
    from sconet.training.config import TrainConfig


def init_from(
    model: ScoNetMT,
    path: str | Path,
    class_order: str = "2025",
    log: Callable[[str], None] = print,
    *,
    stated: RenderSpec | None = None,
    store: CacheStore | None = None,
) -> LoadReport:
    """Warm start ``model`` from a sconet or OpenGait checkpoint (weights and BN statistics only).

    Strict: every entry of the model's state dict must come from the file with the same name and
    shape, except that a DRF model may start from a ScoNet-MT(-ske) file without any ``PGA.*``
    entry (the PGA parameters then keep their initialisation; a file with only some of them is
    refused). Any other missing, unexpected or mis-shaped entry raises :class:`CheckpointError`
    naming the file and listing the entries; nothing is loaded then. A sconet file's own class
    order is used, ``class_order`` applies to foreign files.

    An OpenGait file records no render settings: ``stated`` (the recipe's ``data.preset`` /
    ``[data.render]``) must say how its training maps were made, and must agree with the run's
    ``store`` when that store's settings are known; otherwise :class:`CheckpointError` says what
    to state.
    """
    ckpt = read_checkpoint(path)
    for note in ckpt.notes:
        log(f"note: {note}")
    if not ckpt.is_sconet:
        _check_foreign_maps(ckpt.path, stated, store, log)
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


SHAPE_KEYS = ("in_channels", "width", "parts", "embed_dim", "num_classes", "pav_pairs", "pav_metrics")
"""The model settings that decide tensor shapes: a warm start takes them from its checkpoint."""


def checkpoint_shape(path: str | Path) -> dict[str, Any]:
    """The :data:`SHAPE_KEYS` values of a checkpoint's model: recorded in a sconet file, read off
    the tensors of a foreign one."""
    ckpt = read_checkpoint(path)
    if ckpt.is_sconet and ckpt.model_config:
        found = dict(ckpt.model_config)
    else:
        found = infer_model_config(ckpt.path, ckpt.state_dict)
    return {k: found[k] for k in SHAPE_KEYS if k in found}


def adopt_init_shape(
    config: TrainConfig, fixed: Iterable[str] = (), log: Callable[[str], None] = print
) -> TrainConfig:
    """``config`` with the model shape of its ``run.init_from`` checkpoint, except for the
    ``model.*`` keys in ``fixed`` (those the user set: they stay, and a mismatch is then an error
    at the warm start). Logs what it took; ``config`` itself when nothing changes."""
    if not config.run.init_from:
        return config
    fixed = set(fixed)
    shape = checkpoint_shape(config.run.init_from)
    model = config.model
    changes = {k: v for k, v in shape.items() if f"model.{k}" not in fixed and getattr(model, k) != v}
    if not changes:
        return config
    try:
        new_model = model.replace(**changes)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config.run.init_from}: unusable model shape {changes} ({exc})") from None
    said = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changes.items())
    log(
        f"model shape from the --init-from checkpoint {config.run.init_from}: {said} "
        f"(--set model.KEY=VALUE to choose otherwise)"
    )
    new = dataclasses.replace(config)
    new.model = new_model
    return new


def _check_foreign_maps(
    path: Path, stated: RenderSpec | None, store: CacheStore | None, log: Callable[[str], None]
) -> None:
    from sconet.evaluation.maps import describe_render

    if stated is None or not stated.stated:
        raise CheckpointError(
            f"{path}: an OpenGait checkpoint records no render settings; state how the maps it was "
            "trained on were made: --preset NAME (e.g. opengait, opengait-sigma15-joint8) or [data.render] "
            "keys (--set data.render.KEY=VALUE); the run trains on maps with those settings"
        )
    said = stated.resolve().to_dict()
    have = store.attrs.get("render") if store is not None else None
    if store is not None and have is None:
        log(f"note: {store.path} holds imported maps of unknown settings, not checked against the statement")
    elif store is not None and json.dumps(have, sort_keys=True) != json.dumps(said, sort_keys=True):
        raise CheckpointError(
            f"{path}: its maps were stated as [{describe_render(said)}] ({stated.describe()}) but the cache "
            f"{store.path} holds [{describe_render(have)}]: train on a cache with the checkpoint's settings"
        )
    log(f"OpenGait checkpoint {path}: its maps taken to be [{describe_render(said)}] ({stated.describe()})")


FREEZE: dict[str, Callable[[ScoNetMT], list[torch.nn.Module]]] = {
    "none": lambda model: [],
    "backbone": lambda model: [model.Backbone],
    "backbone+fcs": lambda model: [model.Backbone, model.FCs],
}
"""``run.freeze`` -> the submodules held fixed for the first ``run.freeze_iters`` iterations."""

FREEZE_MODES: tuple[str, ...] = tuple(FREEZE)


def frozen_modules(model: ScoNetMT, mode: str) -> list[torch.nn.Module]:
    """The submodules ``run.freeze`` holds fixed: none, ``[Backbone]`` or ``[Backbone, FCs]``."""
    if mode not in FREEZE:
        raise ValueError(f"unknown freeze mode {mode!r}")
    return FREEZE[mode](model)


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
