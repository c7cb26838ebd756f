"""Classification and screening metrics (numpy only).

Protocol of OpenGait's ``evaluate_scoliosis`` / the DRF paper: overall accuracy and macro
precision, recall and F1 computed as scikit-learn does with ``average="macro", zero_division=0``.
Like scikit-learn called without ``labels=``, the macro average runs over the classes that occur
in ``y_true`` or ``y_pred`` (a class absent from both is left out of the mean);
``macro_over="all"`` averages over every class instead. Per-class values use zero_division=0
(0/0 -> 0); F1 = 2 tp / (2 tp + fp + fn).

Extras: per-class precision/recall/F1/support, the confusion matrix (rows = true class,
columns = predicted class) and screening sensitivity / specificity with {positive, neutral}
(every class except ``negative``) as a finding and ``negative`` as healthy.

All values are fractions in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sconet.classes import CLASSES, NEGATIVE

__all__ = ["ClassMetrics", "Metrics", "evaluate_predictions", "confusion_matrix", "confusion_rates"]


@dataclass(frozen=True)
class ClassMetrics:
    name: str
    precision: float
    recall: float
    f1: float
    support: int  # number of true samples of this class

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
        }


@dataclass(frozen=True)
class Metrics:
    """Result of :func:`evaluate_predictions`.

    ``sensitivity`` / ``specificity`` are ``None`` when the class names contain no ``negative``.
    ``macro_classes`` lists the classes the macro averages ran over.
    """

    accuracy: float
    precision: float  # macro
    recall: float  # macro
    f1: float  # macro
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows true, columns predicted
    sensitivity: float | None
    specificity: float | None
    num_samples: int
    class_names: tuple[str, ...]
    macro_classes: tuple[str, ...]

    @property
    def confusion_matrix(self) -> np.ndarray:
        return np.array(self.confusion, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (plain floats, ints, lists, strings)."""
        return {
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "num_samples": self.num_samples,
            "class_names": list(self.class_names),
            "macro_classes": list(self.macro_classes),
            "per_class": {
                c.name: {k: v for k, v in c.to_dict().items() if k != "name"} for c in self.per_class
            },
            "confusion": [list(row) for row in self.confusion],
        }

    def format_table(self, percent: bool = True, digits: int = 2) -> str:
        """A plain-text summary for the terminal (percentages by default)."""

        def fmt(v: float | None) -> str:
            if v is None:
                return "n/a"
            return f"{100 * v:.{digits}f}" if percent else f"{v:.{digits + 2}f}"

        unit = " (%)" if percent else ""
        names = self.class_names
        w = max(10, *(len(n) for n in names)) + 2
        lines = [
            f"samples: {self.num_samples}",
            f"accuracy{unit}: {fmt(self.accuracy)}   macro P/R/F1{unit}: "
            f"{fmt(self.precision)} / {fmt(self.recall)} / {fmt(self.f1)}",
        ]
        if self.sensitivity is not None:
            findings = "+".join(n for n in names if n.lower() != NEGATIVE)
            lines.append(
                f"screening ({findings} vs {NEGATIVE}) sensitivity{unit}: {fmt(self.sensitivity)}"
                f"   specificity{unit}: {fmt(self.specificity)}"
            )
        lines.append("")
        lines.append(f"{'class':<{w}}{'precision':>11}{'recall':>11}{'f1':>11}{'support':>9}")
        for c in self.per_class:
            lines.append(
                f"{c.name:<{w}}{fmt(c.precision):>11}{fmt(c.recall):>11}{fmt(c.f1):>11}{c.support:>9}"
            )
        lines.append("")
        lines.append("confusion (rows: true, columns: predicted)")
        cw = max(9, *(len(n) + 1 for n in names))
        lines.append(" " * w + "".join(f"{n:>{cw}}" for n in names))
        for name, row in zip(names, self.confusion, strict=True):
            lines.append(f"{name:<{w}}" + "".join(f"{v:>{cw}}" for v in row))
        return "\n".join(lines)


def _as_index_array(values: Any, num_classes: int, what: str, class_names: Sequence[str]) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind in "US" or arr.dtype == object:
        lookup = {n.lower(): i for i, n in enumerate(class_names)}
        try:
            arr = np.array([lookup[str(v).lower()] for v in arr], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(
                f"{what} contains unknown class name {exc.args[0]!r}; known: {tuple(class_names)}"
            ) from None
    elif arr.dtype.kind == "f":
        if arr.size and not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{what} must hold class indices, got non-integer values")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    else:
        raise ValueError(f"{what} must hold class indices or class names, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{what} has class indices outside [0, {num_classes}): range [{arr.min()}, {arr.max()}]"
        )
    return arr


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` int64 counts, rows = true class, columns = predicted class."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _div(num: Any, den: Any) -> np.ndarray:
    """num / den elementwise with 0 where den == 0 (zero_division=0)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def confusion_rates(
    confusion: np.ndarray, class_names: Sequence[str] = CLASSES, macro_over: str = "present"
) -> dict[str, np.ndarray]:
    """Every rate of :class:`Metrics` from confusion matrices ``[..., K, K]`` (rows true), batched.

    Returns arrays of shape ``[...]`` for ``accuracy``, ``precision``, ``recall``, ``f1`` (macro)
    and, when a class is ``negative``, ``sensitivity`` / ``specificity``; ``[..., K]`` for
    ``class_precision``, ``class_recall``, ``class_f1`` and ``macro_mask`` (the classes averaged).
    :func:`evaluate_predictions` scores one matrix with it, the bootstrap thousands at once.
    """
    if macro_over not in ("present", "all"):
        raise ValueError(f"macro_over must be 'present' or 'all', got {macro_over!r}")
    cm = np.asarray(confusion, dtype=np.int64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(-1), cm.sum(-2)
    out = {
        "class_precision": _div(tp, predicted),
        "class_recall": _div(tp, support),
        "class_f1": _div(2 * tp, support + predicted),  # 2tp + fp + fn = support + predicted
        "macro_mask": np.ones(support.shape, bool)
        if macro_over == "all"
        else (support > 0) | (predicted > 0),
        "accuracy": _div(tp.sum(-1), cm.sum((-2, -1))),
    }
    n_macro = out["macro_mask"].sum(-1)
    for name in ("precision", "recall", "f1"):
        out[name] = _div((out[f"class_{name}"] * out["macro_mask"]).sum(-1), n_macro)
    lower = [n.lower() for n in class_names]
    if NEGATIVE in lower:
        neg = lower.index(NEGATIVE)
        finding = [k for k in range(len(class_names)) if k != neg]
        found = cm[..., finding, :][..., :, finding].sum((-2, -1))
        out["sensitivity"] = _div(found, cm[..., finding, :].sum((-2, -1)))
        out["specificity"] = _div(cm[..., neg, neg], cm[..., neg, :].sum(-1))
    return out


def evaluate_predictions(
    y_true: Any,
    y_pred: Any,
    num_classes: int = 3,
    class_names: Sequence[str] = CLASSES,
    macro_over: str = "present",
) -> Metrics:
    """Metrics for class predictions (indices in ``class_names`` order, or the names themselves).

    ``macro_over``: ``"present"`` (scikit-learn's default: classes in ``y_true`` or ``y_pred``)
    or ``"all"`` (every class).
    """
    class_names = tuple(class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}")
    if macro_over not in ("present", "all"):
        raise ValueError(f"macro_over must be 'present' or 'all', got {macro_over!r}")
    t = _as_index_array(y_true, num_classes, "y_true", class_names)
    p = _as_index_array(y_pred, num_classes, "y_pred", class_names)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("no predictions to evaluate")

    cm = confusion_matrix(t, p, num_classes)
    rates = confusion_rates(cm, class_names, macro_over)
    support = cm.sum(1)
    per_class = tuple(
        ClassMetrics(
            name=name,
            precision=float(rates["class_precision"][k]),
            recall=float(rates["class_recall"][k]),
            f1=float(rates["class_f1"][k]),
            support=int(support[k]),
        )
        for k, name in enumerate(class_names)
    )
    macro_idx = np.flatnonzero(rates["macro_mask"])
    screening = "sensitivity" in rates
    return Metrics(
        accuracy=float(rates["accuracy"]),
        precision=float(rates["precision"]),
        recall=float(rates["recall"]),
        f1=float(rates["f1"]),
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in cm),
        sensitivity=float(rates["sensitivity"]) if screening else None,
        specificity=float(rates["specificity"]) if screening else None,
        num_samples=int(t.size),
        class_names=class_names,
        macro_classes=tuple(class_names[k] for k in macro_idx),
    )
