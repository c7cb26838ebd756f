"""What training and evaluation write into the ledger: a run's recorder and standalone evaluations."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sconet.experiments.ledger import Ledger, open_ledger
from sconet.experiments.records import file_sha256, sconet_commit, split_key

# the trainer's side
# ----------------------------------------------------------------------------------------------


LAUNCHER_ENV = "SCONET_LAUNCHER"


def _init_sha256(path: str | None) -> str | None:
    """sha256 of the warm-start file (``None`` without one or when it cannot be read)."""
    if not path:
        return None
    try:
        return file_sha256(Path(path).expanduser())
    except OSError:
        return None


def _overrides(config: Any) -> list[str] | None:
    """``section.key=value`` for every value that differs from the named recipe (``None``: the
    recipe is not a shipped name or file that can be reloaded)."""
    from sconet.training import ConfigError, load_recipe

    try:
        base = load_recipe(config.name).to_dict()
    except (ConfigError, OSError):
        return None
    now = config.to_dict()
    out = []
    for section, values in now.items():
        if isinstance(values, dict):
            for k, v in values.items():
                if base.get(section, {}).get(k) != v:
                    out.append(f"{section}.{k}={json.dumps(v)}")
        elif base.get(section) != values:
            out.append(f"{section}={json.dumps(values)}")
    return out


class RunRecorder:
    """Writes one training run into the ledger; every failure is a warning (the run goes on).

    A recorder without a ledger (disabled, other ranks) does nothing.
    """

    MAX_FAILURES = 3

    def __init__(self, ledger: Ledger | None, run_id: int | None, log: Callable[[str], None]):
        self.ledger, self.run_id, self._log = ledger, run_id, log
        self.failures = 0

    @property
    def active(self) -> bool:
        return self.ledger is not None and self.run_id is not None

    def _guard(self, what: str, fn: Callable[[Ledger, int], Any]) -> Any:
        """``fn(ledger, run_id)`` when recording; a failure is a warning and counts towards giving up."""
        ledger, run_id = self.ledger, self.run_id
        if ledger is None or run_id is None:
            return None
        try:
            return fn(ledger, run_id)
        except Exception as exc:  # noqa: BLE001 - the ledger must never kill a run
            self.failures += 1
            self._log(f"warning: ledger {ledger.path}: could not record {what} ({exc})")
            if self.failures >= self.MAX_FAILURES:
                self._log("warning: ledger: giving up recording this run")
                self.run_id = None
            return None

    def evaluation(
        self, iteration: int, values: Mapping[str, Any], predictions: Mapping[str, Any] | None = None
    ) -> None:
        self._guard(
            f"the evaluation at iteration {iteration}",
            lambda ledger, run_id: ledger.add_run_eval(run_id, iteration, values, predictions),
        )

    def checkpoint(
        self,
        path: Path,
        iteration: int,
        metrics: Mapping[str, Any],
        metrics_iteration: int | None,
        role: str = "last",
        metric: str | None = None,
        sha256: str | None = None,
    ) -> str | None:
        """Record a written checkpoint; returns its sha256 (``None`` when nothing was recorded)."""
        rec = self._guard(
            f"checkpoint {path}",
            lambda ledger, run_id: ledger.add_checkpoint(
                run_id,
                path,
                iteration,
                sha256=sha256,
                role=role,
                metric=metric,
                metrics=metrics,
                metrics_iteration=metrics_iteration,
            ),
        )
        return rec.sha256 if rec is not None else None

    def kept(self, entries: Sequence[Any], iteration: int, metrics: Mapping[str, Any]) -> None:
        """Record the checkpoints :meth:`sconet.checkpoint.CheckpointKeeper.offer` just wrote
        (one payload under several names: hashed once)."""
        digest = None
        for e in entries:
            digest = (
                self.checkpoint(
                    e.path, iteration, metrics, iteration, role="best", metric=e.metric, sha256=digest
                )
                or digest
            )

    def end(
        self,
        status: str,
        iteration: int | None,
        error: str | None = None,
        stop_evidence: Mapping[str, Any] | None = None,
    ) -> None:
        self._guard(
            "the end of the run",
            lambda ledger, run_id: ledger.end_run(run_id, status, iteration, error, stop_evidence),
        )


def open_run(
    config: Any,
    data: Any,
    *,
    start: int,
    out: Path,
    device: Any,
    world_size: int = 1,
    group: str | None = None,
    log: Callable[[str], None] = print,
) -> RunRecorder:
    """Record the start of a training run (``config``: :class:`sconet.training.TrainConfig`,
    ``data``: :class:`sconet.training.DataSetup`; ``group``: the ``--seeds`` group it belongs to);
    returns its :class:`RunRecorder`. ``$SCONET_LAUNCHER`` (set by a detached start) is recorded."""
    try:
        ledger = open_ledger(getattr(config.run, "ledger", None))
    except Exception as exc:  # noqa: BLE001
        log(f"warning: ledger: {exc}")
        return RunRecorder(None, None, log)
    if ledger is None:
        return RunRecorder(None, None, log)
    recorder = RunRecorder(ledger, None, log)

    def start_run() -> int:
        from sconet import __version__
        from sconet.training import to_toml

        info = data.cache_info()
        render = info.get("render") or {}
        rep = render.get("representation")
        rep_name = rep.get("name") if isinstance(rep, Mapping) else rep
        out_abs = str(Path(out).expanduser().resolve())
        previous = None
        if start > 0:
            with ledger._tx(write=False) as con:
                row = con.execute("SELECT MAX(id) FROM runs WHERE out = ?", (out_abs,)).fetchone()
                previous = row[0] if row else None
        return ledger.start_run(
            out=out_abs,
            recipe=config.name,
            recipe_toml=to_toml(config),
            overrides=_overrides(config),
            representation=rep_name or config.data.representation,
            arch=config.model.arch,
            cache_fingerprint=info.get("fingerprint"),
            cache_path=info.get("path"),
            dataset=info.get("dataset"),
            render=render,
            renderer_version=info.get("renderer_version"),
            split=data.split_name,
            split_key=split_key(info.get("dataset"), data.split_name, data.ids(data.test)),
            n_train=len(data.train),
            n_val=len(data.val),
            n_test=len(data.test),
            seed=config.run.seed,
            iters=config.run.iters,
            start_iteration=start,
            iteration=start,
            resumed_from=previous,
            git_commit=sconet_commit(),
            sconet_version=__version__,
            host=socket.gethostname(),
            pid=os.getpid(),
            device=str(device),
            world_size=world_size,
            group_name=group,
            init_sha256=_init_sha256(config.run.init_from),
            launcher=os.environ.get(LAUNCHER_ENV),
        )

    try:
        recorder.run_id = start_run()
    except Exception as exc:  # noqa: BLE001 - the ledger must never kill a run
        log(
            f"warning: ledger {ledger.path}: could not record the start of the run; it is not recorded "
            f"({exc})"
        )
    return recorder


# ----------------------------------------------------------------------------------------------
# standalone evaluations
# ----------------------------------------------------------------------------------------------


def record_evaluation(
    result: Any, ledger: Ledger | None, *, purpose: str = "eval", sha256: str | None = None
) -> int:
    """Record a :class:`sconet.evaluation.EvalResult` (raises :class:`LedgerError` on failure)."""
    if ledger is None:
        return 0
    return ledger.add_evaluation(
        sha256=sha256 or file_sha256(result.checkpoint),
        path=str(Path(result.checkpoint).resolve()),
        kind=result.kind,
        iteration=result.iteration,
        split=result.split,
        subset=result.subset,
        max_frames=result.max_frames,
        cache_path=str(result.cache),
        device=result.device,
        purpose=purpose,
        metrics=result.metrics.to_dict(),
        seconds=round(result.seconds, 3),
        git_commit=sconet_commit(),
        dataset=getattr(result, "dataset", None),
        split_key=getattr(result, "split_key", None),
        intervals={k: v.to_dict() for k, v in getattr(result, "intervals", {}).items()} or None,
        predictions=result.ledger_predictions() if hasattr(result, "ledger_predictions") else None,
        render=result.maps.to_dict() if getattr(result, "maps", None) is not None else None,
    )


def try_record_evaluation(
    result: Any, value: str | os.PathLike[str] | None = None, purpose: str = "eval"
) -> str | None:
    """:func:`record_evaluation` into the ledger named by ``value`` (default: env / ``runs/``);
    returns a warning text instead of raising (an evaluation never fails for its record)."""
    try:
        ledger = open_ledger(value)
        if ledger is not None:
            record_evaluation(result, ledger, purpose=purpose)
    except Exception as exc:  # noqa: BLE001
        return f"the evaluation was not recorded in the ledger ({exc})"
    return None
