"""What a standalone evaluation found: :class:`EvalResult` (metrics, intervals, per-sequence outputs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sconet.classes import CLASSES
from sconet.evaluation.metrics import Metrics
from sconet.evaluation.stats import METRICS, Interval

if TYPE_CHECKING:
    from sconet.evaluation.evaluate import Predictions
    from sconet.evaluation.explain import Explanations
    from sconet.evaluation.maps import CheckpointMaps
    from sconet.experiments.compare import PredictionSet

__all__ = ["EvalResult", "probabilities", "format_intervals"]

_NAMES = {"accuracy": "accuracy", "precision": "macro precision", "recall": "macro recall", "f1": "macro F1",
          "sensitivity": "sensitivity", "specificity": "specificity"}  # fmt: skip


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of part-averaged logits (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    if x.size == 0:
        return x.reshape(len(x), -1)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def format_intervals(intervals: dict[str, Interval], resamples: int, seed: int) -> str:
    """The interval block of ``sconet eval``'s text output."""
    level = next(iter(intervals.values())).level if intervals else 0.95
    lines = [f"{100 * level:.0f} % intervals (%) (bootstrap over sequences, stratified by class, "
             f"{resamples} resamples, seed {seed})"]  # fmt: skip
    for name in METRICS:
        if name in intervals:
            iv = intervals[name]
            lines.append(
                f"  {_NAMES[name]:<16}{100 * iv.estimate:7.2f}  [{100 * iv.low:6.2f}, {100 * iv.high:6.2f}]"
            )
    return "\n".join(lines)


@dataclass
class EvalResult:
    """What :func:`sconet.evaluation.evaluate_checkpoint` found. ``to_dict()`` is the ``--json``
    document; ``intervals`` the bootstrap intervals of :data:`sconet.evaluation.stats.METRICS`
    (empty with ``resamples=0``)."""

    checkpoint: Path
    kind: str
    iteration: int
    subset: str
    cache: Path
    split: str
    metrics: Metrics
    predictions: Predictions
    max_frames: int
    seconds: float
    device: str
    notes: list[str] = field(default_factory=list)
    explain: Explanations | None = None
    intervals: dict[str, Interval] = field(default_factory=dict)
    resamples: int = 0
    ci_seed: int = 0
    dataset: str | None = None
    split_key: str | None = None
    maps: CheckpointMaps | None = None  # the render settings of the checkpoint's maps, and their source

    @property
    def probabilities(self) -> np.ndarray:
        return probabilities(self.predictions.logits)

    def to_dict(self) -> dict[str, Any]:
        p = self.predictions
        probs = self.probabilities
        doc: dict[str, Any] = {
            "checkpoint": str(self.checkpoint),
            "kind": self.kind,
            "render": self.maps.to_dict() if self.maps is not None else None,
            "iteration": self.iteration,
            "set": self.subset,
            "cache": str(self.cache),
            "dataset": self.dataset,
            "split": self.split,
            "split_key": self.split_key,
            "max_frames": self.max_frames,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics.to_dict(),
            "intervals": {k: v.to_dict() for k, v in self.intervals.items()},
            "bootstrap": {"resamples": self.resamples, "seed": self.ci_seed, "stratified": True},
            "predictions": [
                {
                    "id": sid,
                    "label": CLASSES[int(t)],
                    "pred": CLASSES[int(q)],
                    "logits": [round(float(v), 6) for v in lg],
                    "probabilities": [round(float(v), 6) for v in pr],
                }
                for sid, t, q, lg, pr in zip(p.ids, p.labels, p.pred, p.logits, probs, strict=True)
            ],
            "notes": list(self.notes),
        }
        if self.explain is not None:
            doc["explain"] = self.explain.header()
            for entry, extra in zip(doc["predictions"], self.explain.per_sequence(), strict=True):
                entry.update(extra)
        return doc

    def format(self) -> str:
        from sconet.evaluation.maps import describe_render

        render = (
            f"render: {describe_render(self.maps.render)} ({self.maps.source})\n"
            if self.maps is not None
            else ""
        )
        head = (
            f"checkpoint: {self.checkpoint} ({self.kind}, iteration {self.iteration})\n"
            f"cache: {self.cache}\n{render}set: {self.subset} of split {self.split or '?'} "
            f"({self.metrics.num_samples} sequences, first {self.max_frames} frames)\n"
        )
        notes = "".join((n if n.startswith("warning: ") else f"note: {n}") + "\n" for n in self.notes)
        text = head + notes + "\n" + self.metrics.format_table()
        if self.intervals:
            text += "\n\n" + format_intervals(self.intervals, self.resamples, self.ci_seed)
        if self.explain is not None:
            text += "\n\n" + self.explain.format()
        return text

    def prediction_set(self, name: str | None = None) -> PredictionSet:
        """The per-sequence predictions as a :class:`sconet.experiments.compare.PredictionSet`."""
        from sconet.experiments.compare import PredictionSet

        return PredictionSet(
            name=name or str(self.checkpoint), ids=list(self.predictions.ids), labels=self.predictions.labels,
            probs=self.probabilities, dataset=self.dataset, split=self.split, subset=self.subset,
            max_frames=self.max_frames, source={"path": str(self.checkpoint), "iteration": self.iteration},
        )  # fmt: skip

    def ledger_predictions(self) -> dict[str, Any]:
        """The compact per-sequence document the ledger stores."""
        return self.prediction_set().to_json()
