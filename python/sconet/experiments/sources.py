"""Where a comparison's predictions come from: a ledger evaluation id or a checkpoint file.

:func:`load_prediction_set` accepts ``12`` / ``eval:12`` (a standalone evaluation recorded in the
ledger with its per-sequence predictions) or a checkpoint path. A checkpoint reuses the latest
ledger evaluation of the same file content (sha256) on its full test set with the frames its
recipe evaluates on; without one (or with ``reevaluate``) it is evaluated now and the evaluation
is recorded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sconet.experiments.compare import CompareError, PredictionSet

__all__ = ["load_prediction_set", "evaluation_prediction_set"]

_EVAL_ID = re.compile(r"^(?:eval:)?(\d+)$")


def evaluation_prediction_set(record: Any, name: str | None = None) -> PredictionSet:
    """A :class:`PredictionSet` from a ledger :class:`~sconet.experiments.ledger.EvaluationRecord`."""
    if not record.predictions:
        raise CompareError(
            f"evaluation #{record.id} ({record.path}) has no per-sequence predictions in the ledger "
            "(recorded by an older sconet): compare the checkpoint file instead"
        )
    return PredictionSet.from_json(
        record.predictions,
        name=name or f"evaluation #{record.id} ({Path(record.path or '?').name})",
        dataset=record.dataset,
        split=record.split,
        subset=record.subset or "test",
        max_frames=record.max_frames,
        source={"evaluation_id": record.id, "path": record.path, "sha256": record.sha256},
    )


def load_prediction_set(
    text: str,
    *,
    ledger: str | None = None,
    device: str = "auto",
    reevaluate: bool = False,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> PredictionSet:
    """The predictions named by ``text`` (see the module docstring)."""
    from sconet.experiments.ledger import file_sha256, open_ledger

    match = _EVAL_ID.match(text.strip())
    path = Path(text).expanduser()
    if match and not path.is_file():
        db = open_ledger(ledger, must_exist=True)
        if db is None:
            raise CompareError(
                "the ledger is disabled (--ledger none / $SCONET_LEDGER=none): give checkpoint files"
            )
        record = db.evaluation(int(match.group(1)))
        if record is None:
            raise CompareError(f"{db.path}: no evaluation with id {match.group(1)}")
        return evaluation_prediction_set(record)
    if not path.is_file():
        raise CompareError(f"{path}: no such checkpoint file (and not an evaluation id)")
    from sconet.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)
    data = (ckpt.recipe or {}).get("data", {}) if ckpt.is_sconet else {}
    max_frames = int(data.get("eval_max_frames", 720))
    digest = file_sha256(path)
    name = f"{path} (sha256 {digest[:8]})"
    db = open_ledger(ledger)
    if db is not None and db.path.is_file() and not reevaluate:
        for record in reversed(db.evaluations([digest], with_predictions=True)):
            if record.subset == "test" and record.max_frames == max_frames and record.predictions:
                if log:
                    log(f"{path.name}: reusing ledger evaluation #{record.id} ({record.at})")
                return evaluation_prediction_set(record, name)
    from sconet.evaluation import evaluate_checkpoint

    ev = evaluate_checkpoint(
        path,
        subset="test",
        device=device,
        max_frames=max_frames,
        batch_size=int(data.get("eval_batch", 8)),
        log=log,
        progress=progress,
    )
    if db is not None:
        from sconet.experiments.recording import try_record_evaluation

        warning = try_record_evaluation(ev, ledger, purpose="compare")
        if warning and log:
            log(f"warning: {warning}")
    return ev.prediction_set(name)
