"""Paired comparison of two models on the same test sequences.

:func:`compare_sets` takes the per-sequence predictions of A and B (:class:`PredictionSet`),
refuses sets from different splits, datasets or id sets (``train`` vs ``test``), keeps the ids both
hold, and reports each model's metrics with its bootstrap interval, the paired-bootstrap interval
of every difference ``A - B`` (the same resamples score both, so what they share cancels) and
McNemar's test on per-sequence correctness (:mod:`sconet.evaluation.stats`). A gain is
*significant* when the interval of the macro-F1 difference lies above 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from sconet.classes import CLASSES
from sconet.evaluation.stats import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    METRICS,
    Interval,
    McNemarResult,
    bootstrap_intervals,
    mcnemar,
    paired_bootstrap,
)

__all__ = ["CompareError", "PredictionSet", "Comparison", "compare_sets"]

_NAMES = {
    "accuracy": "accuracy",
    "precision": "macro precision",
    "recall": "macro recall",
    "f1": "macro F1",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}


class _Settings(TypedDict):
    n_resamples: int
    level: float
    seed: int
    class_names: tuple[str, ...]


class CompareError(ValueError):
    """Two prediction sets that cannot be compared (different splits, no common ids ...)."""


@dataclass
class PredictionSet:
    """One model's predictions on a set of sequences: ``probs`` float ``[N, classes]`` (softmax of
    the part-averaged logits), ``labels`` int ``[N]`` (class indices in ``class_names`` order)."""

    name: str
    ids: list[str]
    labels: np.ndarray
    probs: np.ndarray
    dataset: str | None = None
    split: str | None = None
    subset: str = "test"
    max_frames: int | None = None
    source: dict[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = CLASSES

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.probs = np.asarray(self.probs, dtype=np.float64).reshape(len(self.labels), -1)
        if len(self.ids) != len(self.labels):
            raise CompareError(f"{self.name}: {len(self.ids)} ids but {len(self.labels)} labels")

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(-1)

    def to_json(self) -> dict[str, Any]:
        """The compact document the ledger stores (probabilities to 5 decimals)."""
        return {
            "ids": list(self.ids),
            "labels": self.labels.tolist(),
            "probs": np.round(self.probs, 5).tolist(),
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], **meta: Any) -> PredictionSet:
        names = tuple(doc.get("class_names") or CLASSES)
        return cls(
            ids=[str(i) for i in doc["ids"]],
            labels=np.asarray(doc["labels"]),
            probs=np.asarray(doc["probs"]),
            class_names=names,
            **meta,
        )

    def where(self) -> str:
        return f"{self.subset} ids of split {self.split or '?'} of dataset {self.dataset or '?'}"


@dataclass
class Comparison:
    """What :func:`compare_sets` found (intervals are fractions; differences are ``A - B``)."""

    a: str
    b: str
    n: int
    only_a: int
    only_b: int
    metrics_a: dict[str, Interval]
    metrics_b: dict[str, Interval]
    differences: dict[str, Interval]
    mcnemar: McNemarResult
    level: float
    resamples: int
    notes: list[str] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def significant(self, metric: str = "f1") -> bool:
        """The interval of A's gain in ``metric`` lies above 0."""
        return self.differences[metric].low > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "common_ids": self.n,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "level": self.level,
            "resamples": self.resamples,
            "metrics_a": {k: v.to_dict() for k, v in self.metrics_a.items()},
            "metrics_b": {k: v.to_dict() for k, v in self.metrics_b.items()},
            "differences": {k: v.to_dict() for k, v in self.differences.items()},
            "f1_gain_significant": self.significant("f1"),
            "mcnemar": self.mcnemar.to_dict(),
            "notes": list(self.notes),
            "sources": self.sources,
        }

    def format(self) -> str:
        pct = f"{100 * self.level:.0f} %"
        lines = [
            f"A: {self.a}",
            f"B: {self.b}",
            f"{self.n} common sequences"
            + (
                f" (only in A: {self.only_a}, only in B: {self.only_b})" if self.only_a or self.only_b else ""
            ),
            "",
            f"{'metric (%)':<18}{'A [' + pct + ']':>24}{'B [' + pct + ']':>24}{'A - B [' + pct + ']':>26}",
        ]
        for m in METRICS:
            if m not in self.differences:
                continue
            lines.append(
                f"{_NAMES[m]:<18}{self.metrics_a[m].format():>24}{self.metrics_b[m].format():>24}"
                f"{self.differences[m].format(signed=True):>26}"
            )
        lines.append("")
        lines.append(self.mcnemar.format())
        d = self.differences["f1"]
        verdict = (
            "A is better: the macro-F1 gain's interval lies above 0"
            if d.low > 0
            else "B is better: the macro-F1 difference's interval lies below 0"
            if d.high < 0
            else "no significant macro-F1 difference: the interval contains 0"
        )
        lines.append(f"verdict: {verdict} (paired bootstrap, {self.resamples} resamples stratified by class)")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def compare_sets(
    a: PredictionSet,
    b: PredictionSet,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> Comparison:
    """Compare A and B on the ids both hold (see the module docstring)."""
    for attr, what in (("dataset", "datasets"), ("split", "splits"), ("subset", "id sets")):
        va, vb = getattr(a, attr), getattr(b, attr)
        if va and vb and va != vb:
            raise CompareError(
                f"refused: A and B were evaluated on different {what}: A on the {a.where()}, "
                f"B on the {b.where()}"
            )
    if tuple(a.class_names) != tuple(b.class_names):
        raise CompareError(f"refused: different class orders {a.class_names} and {b.class_names}")
    index_b = {sid: i for i, sid in enumerate(b.ids)}
    common = [(i, index_b[sid]) for i, sid in enumerate(a.ids) if sid in index_b]
    if not common:
        raise CompareError(f"refused: A ({a.name}) and B ({b.name}) share no sequence ids")
    ia = np.array([i for i, _ in common])
    ib = np.array([j for _, j in common])
    y = a.labels[ia]
    if not np.array_equal(y, b.labels[ib]):
        bad = int(np.sum(y != b.labels[ib]))
        raise CompareError(f"refused: {bad} common ids carry different true classes in A and B")
    pa, pb = a.pred[ia], b.pred[ib]
    names = tuple(a.class_names)
    notes = []
    if a.max_frames and b.max_frames and a.max_frames != b.max_frames:
        notes.append(f"A used the first {a.max_frames} frames of each sequence, B the first {b.max_frames}")
    if len(common) < max(len(a.ids), len(b.ids)):
        notes.append(
            f"compared on the {len(common)} ids both were evaluated on "
            f"(A has {len(a.ids)}, B has {len(b.ids)})"
        )
    settings = _Settings(n_resamples=n_resamples, level=level, seed=seed, class_names=names)
    return Comparison(
        a=a.name,
        b=b.name,
        n=len(common),
        only_a=len(a.ids) - len(common),
        only_b=len(b.ids) - len(common),
        metrics_a=bootstrap_intervals(y, pa, **settings),
        metrics_b=bootstrap_intervals(y, pb, **settings),
        differences=paired_bootstrap(y, pa, pb, **settings),
        mcnemar=mcnemar(y, pa, pb, names),
        level=level,
        resamples=n_resamples,
        notes=notes,
        sources={"a": a.source, "b": b.source},
    )


def softmax(logits: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)
