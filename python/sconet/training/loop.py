"""The training loop: ``train(config) -> RunResult``.

Read top to bottom: set up (device, DDP, seeds), data (cache, split, RAM banks, batch stream),
model / optimiser / schedule / loss, optional resume or warm start, then the loop, which every
``eval_iter`` iterations evaluates (test ids, and validation ids when carved), keeps the best
``keep_n`` checkpoints per metric, and every ``save_iter`` iterations writes ``last.pt``.

The run folder holds ``config.toml`` (resolved recipe), ``split.json`` (train / val / test ids),
``metrics.jsonl`` (one JSON object per log or evaluation), ``tb/`` (TensorBoard scalars),
``last.pt``, ``iter-0001000-test_f1-0.8870.pt`` ... and ``best.json``.

Several GPUs / processes: ``torchrun --nproc_per_node N -m sconet.training [train options]`` (or
``sconet train`` under torchrun). Each rank draws its ``P / N`` ids of every batch from the
same shared-seed permutation (:class:`sconet.stream.TripletBatches`), so the global batch is the
same P x K as on one device. With ``run.sync_bn`` (OpenGait's ``sync_BN``) every BatchNorm is
synchronised across the ranks (:mod:`sconet.training.syncbn`), so its statistics are those of that
global batch too. The triplet loss sees the embeddings of all ranks: they are
all-gathered with :func:`sconet.models.gather_for_triplet` (other ranks' embeddings enter as
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

import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sconet import experiments as run_ledger
from sconet._procs import sigterm_as_interrupt
from sconet.checkpoint import (
    CheckpointKeeper,
    save_checkpoint,
)
from sconet.classes import CLASSES
from sconet.evaluation import Predictions
from sconet.evaluation.result import probabilities
from sconet.experiments.background import Heartbeat
from sconet.models import (
    ScoNetMT,
)
from sconet.runtime import autocast
from sconet.stream import (
    TripletBatches,
    make_loader,
    to_device,
    tune_malloc,
)
from sconet.training.config import TrainConfig, TrainError
from sconet.training.distributed import Dist, barrier, parameter_digest, setup_distributed
from sconet.training.monitor import METRICS_LOG, MetricsLog, ProgressDisplay, progress_info
from sconet.training.runfolder import RunLock, check_run_folder
from sconet.training.setup import (
    LAST,
    Log,
    build_parts,
    checkpoint_payload,
    ddp_wrap,
    evaluate_sets,
    load_data,
    open_run_folder,
    seed_everything,
    write_run_files,
)
from sconet.training.syncbn import convert_sync_batchnorm
from sconet.training.warmstart import set_frozen

KEEP_METRICS = ("test_f1", "test_accuracy", "val_f1", "val_accuracy")
EvalHook = Callable[[int, dict[str, float], dict[str, Predictions]], Any]
"""``on_evaluate(iteration, values, predictions)`` -> a stop decision (``.stop``) or ``None``."""
RUN_FILES = (LAST, METRICS_LOG, "config.toml", "split.json", CheckpointKeeper.INDEX)


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
    run_id: int | None = None
    stopped: dict[str, Any] | None = None
    seed: int | None = None
    final_predictions: dict[str, Any] | None = None


def _default_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    progress: bool | None = None,
    log: Log | None = None,
    stop_at: int | None = None,
    overwrite: bool = False,
    on_evaluate: EvalHook | None = None,
    group: str | None = None,
) -> RunResult:
    """Train with a resolved :class:`TrainConfig` (see the module docstring).

    ``config.run.out`` is the run folder (required). ``resume``: continue from its ``last.pt``
    (model, optimiser, scheduler, RNG and batch-stream states). ``progress``: rich progress bar
    (default: when stderr is a terminal; plain lines otherwise). ``log``: message sink (stderr).
    ``stop_at``: stop after this iteration (writing ``last.pt``), as an interrupted run would;
    ``resume`` continues it exactly (the schedule still spans ``run.iters``).
    ``overwrite``: start afresh in a folder that already holds a run (its run files are deleted;
    other files are left alone).
    ``on_evaluate(iteration, values, predictions)``: called on rank 0 after every evaluation
    (``predictions``: set name -> :class:`sconet.evaluation.Predictions`); a returned object with
    a true ``stop`` (:class:`sconet.evaluation.stats.StopDecision`) ends the run there: ``last.pt``
    is written, the ledger records status ``stopped`` with the decision as evidence, and
    ``RunResult.stopped`` holds it. ``group``: the ledger group of a ``--seeds`` call.
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
    check_run_folder(out)
    ddp, device = setup_distributed(config.run.device)
    say = log if ddp.main else (lambda _msg: None)
    lock = RunLock(out) if ddp.main else None  # one run per folder (rank 0 holds it for all ranks)
    try:
        with sigterm_as_interrupt():  # SIGTERM ends the run as Ctrl-C does: recorded as interrupted
            if lock is not None:
                lock.acquire()
            if overwrite and not resume and ddp.main:
                _clear_run(out, say)
            barrier(ddp)
            return _run(config, out, resume, progress, say, ddp, device, t_start, stop_at, on_evaluate, group)
    finally:
        if lock is not None:
            lock.release()
        if ddp.initialised_here and dist.is_initialized():
            dist.destroy_process_group()


def _clear_run(out: Path, log: Log) -> None:
    """Delete the files a previous run left in ``out`` (nothing else)."""
    if not out.is_dir():
        return
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


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def _run(
    config: TrainConfig,
    out: Path,
    resume: bool,
    progress: bool | None,
    log: Log,
    ddp: Dist,
    device: torch.device,
    t_start: float,
    stop_at: int | None = None,
    on_evaluate: EvalHook | None = None,
    group: str | None = None,
) -> RunResult:
    r, d = config.run, config.data
    resume_ckpt = open_run_folder(out, resume, ddp)
    if device.type == "cpu":
        tune_malloc()
    seed_everything(r.seed)
    data = load_data(config, ddp, log, resume_ckpt)
    parts = build_parts(config, data, device, log, resume_ckpt)
    model, optimizer, start = parts.model, parts.optimizer, parts.start
    if ddp.world_size > 1 and r.sync_bn:
        n_bn = convert_sync_batchnorm(model, device)
        log(f"synchronised BatchNorm across the {ddp.world_size} ranks ({n_bn} layers; run.sync_bn)")

    frozen = bool(parts.to_freeze) and start < r.freeze_iters
    if frozen:
        set_frozen(parts.to_freeze, True)
        n_frozen = sum(p.numel() for m in parts.to_freeze for p in m.parameters())
        log(f"freezing the {r.freeze} ({n_frozen:,} parameters, BatchNorm statistics included) "
            f"until iteration {r.freeze_iters}")  # fmt: skip
    net = ddp_wrap(model, config, ddp, device)
    stream = TripletBatches(
        data.bank, d.p, d.k, d.frames, seed=r.seed, rank=ddp.rank, world_size=ddp.world_size,
        start_step=start, pav_normalizer=data.pav_norm,
    )  # fmt: skip

    # bookkeeping: best checkpoints, metrics log, run files, ledger (rank 0 writes everything)
    last_path = out / LAST
    keeper = CheckpointKeeper(out, r.keep_n, KEEP_METRICS) if ddp.main else None
    logger = MetricsLog(out, start, ddp.main)
    if ddp.main:
        write_run_files(out, config, data.setup)
    ledger_run = (
        run_ledger.open_run(config, data.setup, start=start, out=out, device=device,
                            world_size=ddp.world_size, group=group, log=log)
        if ddp.main else run_ledger.RunRecorder(None, None, log)
    )  # fmt: skip
    stop_decision: Any = None
    final_predictions: dict[str, Any] | None = None
    evals: list[dict[str, Any]] = []
    final_metrics: dict[str, float] = {}

    def evaluate(done: int) -> dict[str, float]:
        nonlocal stop_decision, final_predictions
        values, extra, predictions = evaluate_sets(config, data, model, device)
        logger.log("eval", done, {**values, **extra})
        if values:
            test = predictions.get("test")
            final_predictions = _ledger_predictions(test) if test is not None else None
            ledger_run.evaluation(done, values, final_predictions)
        if keeper is not None and values:
            kept = keeper.offer(done, values, checkpoint_payload(config, data, parts, stream, done, values))
            ledger_run.kept(kept, done, values)
        evals.append({"iter": done, **values})
        if on_evaluate is not None:
            decision = on_evaluate(done, values, predictions)
            if decision is not None and getattr(decision, "stop", False):
                stop_decision = decision
        return values

    # the loop
    losses: list[float] = []
    pending: list[torch.Tensor] = []
    window: dict[str, list[torch.Tensor]] = {}
    train_seconds, it_per_s, last_info = 0.0, 0.0, ""
    loader = make_loader(stream, d.num_workers)
    amp = r.amp and device.type == "cuda"
    net.train()
    log(
        f"training {config.name} on {device}{f' x {ddp.world_size} ranks' if ddp.world_size > 1 else ''}: "
        f"iterations {start}..{r.iters}, P x K = {d.p} x {d.k}, {d.frames} frames, "
        f"width {config.model.width}, {sum(p.numel() for p in model.parameters()):,} parameters"
    )
    live = progress if progress is not None else sys.stderr.isatty()
    bar = ProgressDisplay(r.iters, start, ddp.main, bool(live), log)
    status, error, done, ruled = "failed", None, start, False
    heartbeat = Heartbeat(out, total=r.iters, run_id=ledger_run.run_id).start() if ddp.main else None
    try:
        for step in range(start, r.iters):
            t0 = time.perf_counter()
            if frozen and step >= r.freeze_iters:
                frozen = False
                set_frozen(parts.to_freeze, False)
                net = ddp_wrap(model, config, ddp, device)  # DDP again, now with the unfrozen parameters
                log(f"iteration {step}: unfroze the {r.freeze}; training every parameter from here")
            if frozen:
                set_frozen(parts.to_freeze, True)  # BN eval mode again after an evaluation's model.train()

            # forward, backward, step
            batch = next(loader)
            x, lengths = to_device(batch, device)
            labels = batch.labels.to(device, non_blocking=True)
            seq_ids = batch.seq_ids.to(device, non_blocking=True)
            pav = batch.pav.to(device) if batch.pav.numel() else None
            with autocast(device, amp):
                outputs = net(x, lengths.tolist(), pav=pav)
            loss, stats = parts.loss_fn(outputs.embeddings, outputs.logits, seq_ids, labels, ddp.world_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip > 0:
                stats["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), config.optim.grad_clip
                ).detach()
            optimizer.step()
            parts.scheduler.step()
            done = step + 1
            if heartbeat is not None:
                heartbeat.update(done)
            pending.append(stats["loss"])
            for k, v in stats.items():
                window.setdefault(k, []).append(v)
            train_seconds += time.perf_counter() - t0
            it_per_s = (done - start) / train_seconds if train_seconds > 0 else 0.0

            # log
            if done % r.log_iter == 0 or done == r.iters:
                losses.extend(float(v) for v in pending)
                pending.clear()
                values = {
                    k.replace("/", "_"): float(torch.stack(v).float().mean()) for k, v in window.items()
                }
                window.clear()
                values["lr"] = optimizer.param_groups[0]["lr"]
                values["it_per_s"] = it_per_s
                logger.log("train", done, values)
                last_info = f"loss {values['loss']:.4f}"
                bar.update(done, it_per_s, progress_info(last_info, final_metrics))
            else:
                bar.update(done, it_per_s)

            # evaluate
            if done % r.eval_iter == 0 or done == r.iters:
                if ddp.main:
                    bar.update(done, it_per_s, progress_info(last_info, final_metrics) + "  (evaluating...)")
                    final_metrics = evaluate(done)
                    info = progress_info(last_info, final_metrics)
                    bar.update(done, it_per_s, info)
                    bar.line(done, it_per_s, info)
                barrier(ddp)
            elif done % max(r.log_iter, r.iters // 20) == 0:
                bar.line(done, it_per_s, progress_info(last_info, final_metrics))

            # save
            evaluated = done % r.eval_iter == 0 or done == r.iters
            ruled = evaluated and _broadcast_stop(stop_decision is not None, ddp)
            stopping = (stop_at is not None and done >= stop_at) or ruled
            if done % r.save_iter == 0 or done == r.iters or stopping:
                if ddp.main:
                    save_checkpoint(
                        checkpoint_payload(config, data, parts, stream, done, final_metrics), last_path
                    )
                    ledger_run.checkpoint(
                        last_path, done, final_metrics, evals[-1]["iter"] if evals else None
                    )
                barrier(ddp)
            if ruled:
                reason = getattr(stop_decision, "reason", "") if stop_decision is not None else ""
                log(f"stopped by rule at iteration {done}: {reason}")
                break
            if stopping:
                log(f"stopped at iteration {done} (stop_at); continue with --resume")
                break
        if ruled:
            status = "stopped"
        else:
            status = "finished" if done >= r.iters else "interrupted"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        logger.close()
        evidence = stop_decision.to_dict() if stop_decision is not None else None
        ledger_run.end(status, done, error, evidence)
        if heartbeat is not None:
            heartbeat.stop(status, done, error)

    # teardown
    losses.extend(float(v) for v in pending)
    if ddp.main and start >= r.iters and not last_path.exists():  # pragma: no cover
        save_checkpoint(checkpoint_payload(config, data, parts, stream, start), last_path)
    if ddp.world_size > 1:
        _check_replicas(model, ddp, start, r.iters, log)
    return RunResult(
        out=out,
        iterations=done
        if ruled
        else (max(start, min(r.iters, stop_at)) if stop_at is not None else max(start, r.iters)),
        start_iteration=start,
        losses=losses,
        evals=evals,
        final_metrics=final_metrics,
        best=keeper.summary() if keeper is not None else {},
        last_checkpoint=last_path,
        seconds=time.perf_counter() - t_start,
        train_seconds=train_seconds,
        it_per_s=it_per_s,
        rank=ddp.rank,
        world_size=ddp.world_size,
        cache=data.setup.store.path,
        run_id=ledger_run.run_id,
        seed=r.seed,
        final_predictions=final_predictions,
        stopped=stop_decision.to_dict() if stop_decision is not None else None,
    )


def _ledger_predictions(preds: Predictions) -> dict[str, Any]:
    """The compact per-sequence document of an in-run evaluation (ids, labels, probabilities)."""
    probs = probabilities(preds.logits)
    return {"ids": list(preds.ids), "labels": preds.labels.tolist(), "probs": np.round(probs, 5).tolist(),
            "class_names": list(CLASSES)}  # fmt: skip


def _broadcast_stop(stop: bool, ddp: Dist) -> bool:
    """Rank 0's stop decision, known to every rank."""
    if ddp.world_size <= 1:
        return stop
    flag = [stop]
    dist.broadcast_object_list(flag, src=0)
    return bool(flag[0])


def _check_replicas(model: ScoNetMT, ddp: Dist, start: int, iters: int, log: Log) -> None:
    """Every rank reports a digest of its final parameters; rank 0 warns when they differ."""
    digest = parameter_digest(model)
    print(f"rank {ddp.rank}/{ddp.world_size}: trained iterations {start}..{iters}, parameters {digest}",
          file=sys.stderr, flush=True)  # fmt: skip
    digests: list[Any] = [None] * ddp.world_size
    dist.all_gather_object(digests, digest)
    if len(set(digests)) > 1:
        log(f"WARNING: the {ddp.world_size} ranks ended with different parameters ({', '.join(digests)}): "
            "DDP did not keep the replicas in step; only rank 0's weights were saved")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``python -m sconet.training [options]`` = ``sconet train [options]`` (for torchrun)."""
    from sconet.cli import app

    app(args=["train", *(sys.argv[1:] if argv is None else argv)], prog_name="sconet")
