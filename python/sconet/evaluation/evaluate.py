"""Evaluation: predictions of a model over whole sequences, and standalone checkpoint evaluation.

* :func:`predict` runs a model over a :class:`sconet.stream.FrameBank` (whole sequences in
  order, the first ``max_frames`` frames of each, ``batch_size`` sequences per packed batch) and
  returns the part-averaged logits and predicted classes. In eval mode BatchNorm uses its running
  statistics, so the batch size changes speed and memory only, never the results.
* :func:`evaluate_model` adds :func:`sconet.evaluation.evaluate_predictions` (used by the trainer).
* :func:`evaluate_checkpoint` needs nothing but the checkpoint file: the render settings stored
  in it find the matching cache (:func:`sconet.cache.find_cache`), and its split ids pick the
  sequences. A checkpoint whose render settings or renderer version differ from the cache's is
  refused (:class:`RenderMismatchError`); truncated or hostile files raise
  :class:`sconet.checkpoint.CheckpointError`. An OpenGait checkpoint records no render settings:
  they must be stated (``render=``, the CLI's ``--preset`` / render flags; see
  :mod:`sconet.evaluation.maps`), and are recorded with the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sconet.checkpoint import Checkpoint, CheckpointError, infer_model_config, read_checkpoint
from sconet.classes import CLASSES, resolve_class_order
from sconet.evaluation.maps import (
    CheckpointMaps,
    RenderMismatchError,
    check_render_match,
    checkpoint_maps,
    describe_render,
    find_store,
)
from sconet.evaluation.metrics import Metrics, evaluate_predictions
from sconet.evaluation.result import EvalResult
from sconet.evaluation.stats import DEFAULT_RESAMPLES, bootstrap_intervals
from sconet.experiments.records import split_key
from sconet.models import CheckpointMismatchError, ModelConfig, ScoNetMT, load_opengait_state_dict
from sconet.runtime import autocast, resolve_device
from sconet.stream import FrameBank, PavNormalizer, eval_batches, to_device, tune_malloc

if TYPE_CHECKING:
    from sconet.render.spec import RenderSpec

__all__ = [
    "SUBSETS",
    "CheckpointMaps",
    "EvalResult",
    "Predictions",
    "RenderMismatchError",
    "describe_render",
    "evaluate_checkpoint",
    "evaluate_model",
    "load_model",
    "predict",
    "resolve_device",
    "autocast",
]

SUBSETS = ("test", "val", "train")

NO_PAV = (
    "the store holds no PAV (OpenGait heatmaps imported without --poses; re-import them with --poses DIR)"
)


@dataclass
class Predictions:
    """Per-sequence outputs in bank order: ``logits`` float32 ``[N, classes]`` (part-averaged),
    ``pred`` / ``labels`` int64 ``[N]``, ``ids``, ``store_indices``; with ``gates=True`` the DRF
    gates the model applied, float32 ``channel_gate [N, embed_dim]`` and ``part_gate [N, parts]``
    (``None`` when that gate is off or the model has no PGA)."""

    logits: np.ndarray
    pred: np.ndarray
    labels: np.ndarray
    ids: list[str]
    store_indices: np.ndarray
    channel_gate: np.ndarray | None = None
    part_gate: np.ndarray | None = None


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    bank: FrameBank,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 8,
    amp: bool = False,
    pav_normalizer: PavNormalizer | None = None,
    gates: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> Predictions:
    """Part-averaged logits and argmax predictions for every sequence of ``bank`` (and the DRF
    gates with ``gates=True``); ``on_batch(sequences done)`` after each batch."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    logits_all: list[np.ndarray] = []
    gate_parts: dict[str, list[np.ndarray]] = {"channel_gate": [], "part_gate": []}
    try:
        for batch in eval_batches(bank, batch_size, pav_normalizer):
            x, lengths = to_device(batch, device)
            pav = batch.pav.to(device) if batch.pav.numel() else None
            with autocast(device, amp):
                out = model(x, lengths.tolist(), pav=pav)
            logits_all.append(out.logits.float().mean(-1).cpu().numpy())
            if on_batch is not None:
                on_batch(sum(len(lg) for lg in logits_all))
            if gates:
                for name in gate_parts:
                    g = getattr(out, name, None)
                    if g is not None:
                        gate_parts[name].append(g.float().reshape(g.shape[0], -1).cpu().numpy())
    finally:
        model.train(was_training)
    logits = np.concatenate(logits_all) if logits_all else np.zeros((0, 3), np.float32)
    found = {k: np.concatenate(v).astype(np.float32) if v else None for k, v in gate_parts.items()}
    return Predictions(
        logits=logits.astype(np.float32),
        pred=logits.argmax(-1).astype(np.int64),
        labels=bank.labels.copy(),
        ids=list(bank.ids),
        store_indices=bank.store_indices.copy(),
        channel_gate=found["channel_gate"],
        part_gate=found["part_gate"],
    )


def evaluate_model(
    model: torch.nn.Module,
    bank: FrameBank,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 8,
    amp: bool = False,
    pav_normalizer: PavNormalizer | None = None,
) -> tuple[Metrics, Predictions]:
    """:func:`predict` + accuracy, macro P/R/F1, per-class metrics, confusion, screening."""
    preds = predict(model, bank, device, batch_size=batch_size, amp=amp, pav_normalizer=pav_normalizer)
    return evaluate_predictions(
        preds.labels, preds.pred, num_classes=len(CLASSES), class_names=CLASSES
    ), preds


# ----------------------------------------------------------------------------------------------
# checkpoints -> model
# ----------------------------------------------------------------------------------------------


def load_model(
    ckpt: Checkpoint, class_order: str | Sequence[str] | None = None, device: torch.device | str = "cpu"
) -> ScoNetMT:
    """A :class:`ScoNetMT` with the checkpoint's weights (classes in sconet's order).

    sconet checkpoints record their model config and class order (``class_order`` must then be
    ``None`` or the same); for foreign OpenGait files the config is read off the tensor shapes
    and ``class_order`` (default ``"2025"``) says how their classes are ordered; a DRF file's
    ``attention_layer.*`` keys are renamed to ``PGA.*``.
    """
    path = ckpt.path
    rename = None
    if ckpt.is_sconet:
        stored = tuple(ckpt.class_order or CLASSES)
        if class_order is not None and resolve_class_order(class_order) != stored:
            raise CheckpointError(
                f"{path}: the checkpoint records class order {stored}; --class-order is only for "
                "foreign (OpenGait) checkpoints"
            )
        order: str | Sequence[str] = stored
        try:
            config = ModelConfig.from_dict(ckpt.model_config or {})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad model_config ({exc})") from None
    else:
        order = class_order if class_order is not None else "2025"
        config = ModelConfig.from_dict(infer_model_config(path, ckpt.state_dict))
        if any(k.startswith("attention_layer.") for k in ckpt.state_dict):
            rename = {"attention_layer.": "PGA."}
    model = ScoNetMT(config)
    try:
        load_opengait_state_dict(model, ckpt.state_dict, class_order=order, rename=rename)
    except CheckpointMismatchError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return model.to(device)


def _split_ids(ckpt: Checkpoint, split: str | Path | None, subset: str) -> tuple[str, list[str]]:
    if subset not in SUBSETS:
        raise ValueError(f"unknown set {subset!r}: use one of {', '.join(SUBSETS)}")
    if split is not None:
        from sconet.data import load_split

        s = load_split(split)
        chosen = s.subset(subset)
        if not chosen:
            raise ValueError(f"{Path(split).expanduser()}: the split file lists no {subset} ids")
        return s.name, list(chosen)
    if not ckpt.split:
        raise CheckpointError(f"{ckpt.path}: the checkpoint records no split: give --split")
    ids = ckpt.split.get(f"{subset}_ids")
    if not ids:
        extra = " (the run had no validation set: train with --val-fraction)" if subset == "val" else ""
        raise ValueError(f"{ckpt.path}: the checkpoint records no {subset} ids{extra}")
    return str(ckpt.split.get("name", "")), [str(x) for x in ids]


# ----------------------------------------------------------------------------------------------
# standalone evaluation
# ----------------------------------------------------------------------------------------------


def evaluate_checkpoint(
    path: str | Path,
    *,
    cache: str | Path | None = None,
    split: str | Path | None = None,
    subset: str = "test",
    device: str = "auto",
    max_frames: int | None = None,
    class_order: str | Sequence[str] | None = None,
    batch_size: int = 8,
    cut_pixels: int | None = None,
    max_ram_gb: float = 0.0,
    explain: bool = False,
    explain_dir: str | Path | None = None,
    render: RenderSpec | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = 0.95,
    ci_seed: int = 0,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> EvalResult:
    """Evaluate a checkpoint file on the ``subset`` ids (``test``, ``val`` or ``train``).

    - ``cache``: store to use (default: the one matching the checkpoint's render settings).
    - ``split``: an OpenGait split JSON instead of the ids stored in the checkpoint.
    - ``class_order``: for foreign checkpoints only (``"2024"`` or ``"2025"``).
    - ``max_frames``: first frames of each sequence (default: the checkpoint's recipe
      ``data.eval_max_frames``, as evaluated during its run; else 720).
    - ``cut_pixels``: width cut per side (default: the checkpoint's recipe, else 10).
    - ``max_ram_gb``: frames held in RAM up to this size (0 = stream batch by batch).
    - ``explain``: also report per sequence the PAV (raw and normalised) and the DRF gates
      (:class:`sconet.evaluation.Explanations`, ``result.explain``); ``explain_dir``: write one
      PNG per sequence there as well (implies ``explain``).
    - ``render``: how an OpenGait checkpoint's training maps were made (required for those,
      see :mod:`sconet.evaluation.maps`; for a sconet checkpoint it must agree with the file).
    - ``resamples``: bootstrap resamples of the intervals (0 = none), at ``level``, seeded
      with ``ci_seed`` (:func:`sconet.evaluation.stats.bootstrap_intervals`).
    - ``progress``: a progress bar on a terminal (``None``), forced (``True``) or plain lines
      (``False``); written through ``log`` when plain.
    """
    t0 = time.perf_counter()
    ckpt = read_checkpoint(path)
    notes: list[str] = list(ckpt.notes)
    model = load_model(ckpt, class_order)
    maps = checkpoint_maps(ckpt, render)
    store = find_store(ckpt, maps, cache)
    notes.extend(check_render_match(ckpt, maps, store))
    if ckpt.is_sconet and ckpt.cache_fingerprint and ckpt.cache_fingerprint != store.fingerprint:
        notes.append(
            "the cache's fingerprint differs from the one the checkpoint was trained with "
            "(same render settings, other inputs or build)"
        )
    split_name, ids = _split_ids(ckpt, split, subset)
    if split is not None and subset != "train" and ckpt.split:
        seen = set(ckpt.split.get("train_ids", [])) | set(ckpt.split.get("val_ids", []))
        overlap = sorted(set(ids) & seen)
        if overlap:
            notes.append(
                f"warning: {len(overlap)} of the {len(set(ids))} {subset} ids of {split} were training "
                f"or validation ids of the checkpoint's run (e.g. {overlap[0]}): these are not held-out "
                "metrics"
            )
    indices = store.indices_of(ids)
    if len(indices) == 0:
        raise ValueError(f"none of the {len(ids)} {subset} ids are in the cache {store.path}")
    if len(set(store.ids[i] for i in indices)) < len(set(ids)):
        missing = len(set(ids)) - len(set(store.ids[i] for i in indices))
        notes.append(f"{missing} of the {len(set(ids))} {subset} ids are not in the cache")
    data = (ckpt.recipe or {}).get("data", {}) if ckpt.is_sconet else {}
    if max_frames is None:
        max_frames = int(data.get("eval_max_frames", 720))
    if cut_pixels is None:
        cut_pixels = int(data.get("cut_pixels", 10)) if data.get("cut", True) else 0
    if model.config.in_channels != store.frames.shape[1]:
        raise CheckpointError(
            f"{ckpt.path}: the model takes {model.config.in_channels} input channel(s) but the cache "
            f"holds {store.frames.shape[1]}-channel skeleton maps"
        )
    explain = explain or explain_dir is not None
    gated = model.config.use_channel_gate or model.config.use_part_gate
    if (gated or explain) and not store.pav_available:
        if gated:
            raise ValueError(f"{store.path}: {NO_PAV}; the DRF checkpoint {ckpt.path} needs it")
        notes.append(f"{NO_PAV}: the PAV read-out is zeros")
    pav_norm = None
    if gated or explain:
        if "pav_norm" in ckpt.raw:
            pav_norm = PavNormalizer.from_state_dict(ckpt.raw["pav_norm"])
        else:
            try:
                _, train_ids = _split_ids(ckpt, split, "train")
            except ValueError:
                if gated:
                    raise
                train_ids = []  # --explain of a plain ScoNet file without a split: raw PAV only
            train_idx = store.indices_of(train_ids)
            if len(train_idx):
                pav_norm = PavNormalizer.fit(store.pav[train_idx])
                notes.append("PAV normalisation fitted on the split's training ids (not stored in the file)")
            elif gated:
                raise ValueError(
                    f"{ckpt.path}: none of the split's training ids are in {store.path}: cannot normalise "
                    "the PAV"
                )
    dev = resolve_device(device)
    if dev.type == "cpu":
        tune_malloc()
    model.to(dev)
    bank = FrameBank(
        store,
        indices,
        cut_pixels=cut_pixels,
        max_frames=max_frames,
        max_ram_bytes=int(max_ram_gb * 2**30),
    )
    if log:
        log(f"evaluating {len(bank)} {subset} sequences of {store.path.name} on {dev}")
    amp = dev.type == "cuda"
    from sconet.progress import Progress

    with Progress("eval", len(bank), "seq", live=progress, log=log, enabled=log is not None) as bar:
        preds = predict(
            model,
            bank,
            dev,
            batch_size=batch_size,
            amp=amp,
            pav_normalizer=pav_norm if gated else None,
            gates=explain,
            on_batch=bar.update,
        )
    metrics = evaluate_predictions(preds.labels, preds.pred, num_classes=len(CLASSES), class_names=CLASSES)
    intervals = (
        bootstrap_intervals(preds.labels, preds.pred, n_resamples=resamples, level=level, seed=ci_seed)
        if resamples > 0
        else {}
    )
    explanation = None
    if explain:
        from sconet.evaluation.explain import Explanations, write_pngs

        explanation = Explanations.from_predictions(preds, bank, pav_norm, model.config)
        if explain_dir is not None:
            written = write_pngs(explanation, bank, explain_dir)
            explanation.png_dir = Path(explain_dir)
            if log:
                log(f"wrote {len(written)} explanation PNGs to {explain_dir}")
    return EvalResult(
        checkpoint=ckpt.path,
        kind=ckpt.kind,
        iteration=ckpt.iteration,
        subset=subset,
        cache=store.path,
        split=split_name,
        metrics=metrics,
        predictions=preds,
        max_frames=max_frames,
        seconds=time.perf_counter() - t0,
        device=str(dev),
        notes=notes,
        explain=explanation,
        maps=maps,
        intervals=intervals,
        resamples=resamples,
        ci_seed=ci_seed,
        dataset=store.dataset,
        split_key=split_key(store.dataset, split_name, [store.ids[i] for i in indices]),
    )
