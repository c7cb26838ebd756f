"""Uncertainty of classification metrics: bootstrap intervals, paired comparisons, McNemar, stop rule.

* :func:`bootstrap_intervals`: percentile 95 % intervals for accuracy, macro precision / recall /
  F1 and screening sensitivity / specificity. Sequences are resampled with replacement *within
  each true class* (stratified: every resample keeps the test set's class counts, as a fixed split
  does), ``n_resamples`` times from a seeded generator. All resamples are scored at once from
  their confusion matrices (one ``bincount``) by :func:`sconet.evaluation.metrics.confusion_rates`,
  the code :func:`~sconet.evaluation.metrics.evaluate_predictions` uses (macro over present
  classes, zero_division=0).
* :func:`paired_bootstrap`: the same resamples applied to two prediction sets on the same ids;
  the interval of each metric's difference ``A - B``.
* :func:`mcnemar`: McNemar's test on per-sequence correctness. With fewer than
  :data:`MCNEMAR_EXACT_BELOW` discordant sequences it is the exact two-sided binomial test
  (``method = "exact binomial"``), otherwise the chi-square statistic with continuity correction
  ``(|b - c| - 1)^2 / (b + c)`` on one degree of freedom (``method = "chi-square (continuity
  corrected)"``).
* :func:`stop_rule`: the seed's "stop a branch if it is clearly below the baseline and its later
  checkpoints are not trending upward", made precise: stop when the upper bound of the
  candidate's test macro-F1 interval was below the baseline's macro-F1 at each of the last
  ``patience`` evaluations and the least-squares slope of the candidate's macro-F1 over those
  evaluations is not positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sconet.classes import CLASSES
from sconet.evaluation.metrics import _as_index_array, confusion_rates, evaluate_predictions

__all__ = [
    "METRICS",
    "DEFAULT_RESAMPLES",
    "MCNEMAR_EXACT_BELOW",
    "Interval",
    "McNemarResult",
    "StopDecision",
    "stratified_resamples",
    "batched_confusion",
    "metrics_from_confusion",
    "bootstrap_intervals",
    "paired_bootstrap",
    "pooled_intervals",
    "mcnemar",
    "stop_rule",
]

METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1", "sensitivity", "specificity")
"""The metrics given an interval (names as in :meth:`sconet.evaluation.metrics.Metrics.to_dict`)."""

DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95
MCNEMAR_EXACT_BELOW = 25
"""McNemar: exact binomial test below this many discordant sequences, chi-square from there on."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval (fractions, like the metrics)."""

    estimate: float
    low: float
    high: float
    level: float = DEFAULT_LEVEL

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interval:
        return cls(
            float(data["estimate"]),
            float(data["low"]),
            float(data["high"]),
            float(data.get("level", DEFAULT_LEVEL)),
        )

    def format(self, percent: bool = True, digits: int = 2, signed: bool = False) -> str:
        scale = 100.0 if percent else 1.0
        sign = "+" if signed else ""
        return (
            f"{scale * self.estimate:{sign}.{digits}f} "
            f"[{scale * self.low:{sign}.{digits}f}, {scale * self.high:{sign}.{digits}f}]"
        )


# ----------------------------------------------------------------------------------------------
# resampling and batched scoring
# ----------------------------------------------------------------------------------------------


def stratified_resamples(labels: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """``[n_resamples, N]`` int64 positions into ``labels``: each row draws, for every class, as
    many positions of that class (with replacement) as the class has."""
    labels = np.asarray(labels)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    blocks = []
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        blocks.append(where[rng.integers(0, where.size, size=(n_resamples, where.size))])
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((n_resamples, 0), np.int64)


def batched_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, positions: np.ndarray, num_classes: int
) -> np.ndarray:
    """``[B, K, K]`` confusion matrices (rows true, columns predicted) of each row of ``positions``."""
    k2 = num_classes * num_classes
    cell = (y_true * num_classes + y_pred)[positions]  # [B, N]
    cell = cell + (np.arange(positions.shape[0], dtype=np.int64) * k2)[:, None]
    counts = np.bincount(cell.ravel(), minlength=positions.shape[0] * k2)
    return counts.reshape(positions.shape[0], num_classes, num_classes)


def metrics_from_confusion(
    confusion: np.ndarray, class_names: Sequence[str] = CLASSES, macro_over: str = "present"
) -> dict[str, np.ndarray]:
    """:data:`METRICS` of ``[..., K, K]`` confusion matrices (arrays ``[...]``), computed by
    :func:`sconet.evaluation.metrics.confusion_rates`, the code behind every reported metric."""
    rates = confusion_rates(confusion, class_names, macro_over)
    return {k: rates[k] for k in METRICS if k in rates}


def _prepare(
    y_true: Any, preds: Sequence[Any], class_names: Sequence[str]
) -> tuple[np.ndarray, list[np.ndarray]]:
    k = len(class_names)
    t = _as_index_array(y_true, k, "y_true", class_names)
    ps = [_as_index_array(p, k, "y_pred", class_names) for p in preds]
    for p in ps:
        if p.shape != t.shape:
            raise ValueError(f"y_true has {t.size} entries but a prediction set has {p.size}")
    if t.size == 0:
        raise ValueError("no predictions to evaluate")
    return t, ps


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"the interval level must be in (0, 1), got {level}")


# ----------------------------------------------------------------------------------------------
# intervals
# ----------------------------------------------------------------------------------------------


def bootstrap_intervals(
    y_true: Any,
    y_pred: Any,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    class_names: Sequence[str] = CLASSES,
    macro_over: str = "present",
) -> dict[str, Interval]:
    """Stratified bootstrap intervals of :data:`METRICS` (estimates: the metrics on all sequences)."""
    _check_level(level)
    class_names = tuple(class_names)
    t, (p,) = _prepare(y_true, [y_pred], class_names)
    point = evaluate_predictions(t, p, len(class_names), class_names, macro_over).to_dict()
    positions = stratified_resamples(t, n_resamples, seed)
    samples = metrics_from_confusion(
        batched_confusion(t, p, positions, len(class_names)), class_names, macro_over
    )
    return {
        name: Interval(float(point[name]), *_percentiles(values, level), level)
        for name, values in samples.items()
        if point.get(name) is not None
    }


def paired_bootstrap(
    y_true: Any,
    pred_a: Any,
    pred_b: Any,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    class_names: Sequence[str] = CLASSES,
    macro_over: str = "present",
) -> dict[str, Interval]:
    """Intervals of ``metric(A) - metric(B)`` for two prediction sets on the same sequences, both
    scored on the very same resamples (so what they share cancels)."""
    _check_level(level)
    class_names = tuple(class_names)
    k = len(class_names)
    t, (a, b) = _prepare(y_true, [pred_a, pred_b], class_names)
    point_a = evaluate_predictions(t, a, k, class_names, macro_over).to_dict()
    point_b = evaluate_predictions(t, b, k, class_names, macro_over).to_dict()
    positions = stratified_resamples(t, n_resamples, seed)
    sa = metrics_from_confusion(batched_confusion(t, a, positions, k), class_names, macro_over)
    sb = metrics_from_confusion(batched_confusion(t, b, positions, k), class_names, macro_over)
    out = {}
    for name in sa:
        if point_a.get(name) is None:
            continue
        diff = float(point_a[name]) - float(point_b[name])
        out[name] = Interval(diff, *_percentiles(sa[name] - sb[name], level), level)
    return out


def pooled_intervals(
    y_true: Any,
    preds: Sequence[Any],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    class_names: Sequence[str] = CLASSES,
    macro_over: str = "present",
) -> dict[str, Interval]:
    """Intervals of the mean metric over several prediction sets on the same sequences (e.g. one
    recipe trained with several seeds): each resample scores every set and averages them."""
    _check_level(level)
    if not preds:
        raise ValueError("no prediction sets to pool")
    class_names = tuple(class_names)
    k = len(class_names)
    t, ps = _prepare(y_true, list(preds), class_names)
    positions = stratified_resamples(t, n_resamples, seed)
    points = [evaluate_predictions(t, p, k, class_names, macro_over).to_dict() for p in ps]
    samples = [
        metrics_from_confusion(batched_confusion(t, p, positions, k), class_names, macro_over) for p in ps
    ]
    out = {}
    for name in samples[0]:
        if points[0].get(name) is None:
            continue
        mean = np.mean([s[name] for s in samples], axis=0)
        estimate = float(np.mean([float(pt[name]) for pt in points]))
        out[name] = Interval(estimate, *_percentiles(mean, level), level)
    return out


# ----------------------------------------------------------------------------------------------
# McNemar
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemarResult:
    """``a_only``: sequences A classifies correctly and B does not; ``b_only``: the reverse."""

    a_only: int
    b_only: int
    both_right: int
    both_wrong: int
    statistic: float
    p_value: float
    method: str

    @property
    def discordant(self) -> int:
        return self.a_only + self.b_only

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "discordant": self.discordant}

    def format(self) -> str:
        return (
            f"McNemar ({self.method}): A right / B wrong {self.a_only}, A wrong / B right {self.b_only} "
            f"(both right {self.both_right}, both wrong {self.both_wrong}); p = {self.p_value:.4g}"
        )


def _binomial_two_sided(k: int, n: int) -> float:
    """Two-sided exact p of ``min(b, c) = k`` among ``n`` discordant pairs under p = 1/2."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


def mcnemar(y_true: Any, pred_a: Any, pred_b: Any, class_names: Sequence[str] = CLASSES) -> McNemarResult:
    """McNemar's test of "A and B are equally often right" on the same sequences."""
    t, (a, b) = _prepare(y_true, [pred_a, pred_b], tuple(class_names))
    ra, rb = a == t, b == t
    a_only, b_only = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    n = a_only + b_only
    if n < MCNEMAR_EXACT_BELOW:
        statistic, p_value, method = (
            float(min(a_only, b_only)),
            _binomial_two_sided(min(a_only, b_only), n),
            "exact binomial",
        )
    else:
        statistic = (abs(a_only - b_only) - 1.0) ** 2 / n
        p_value = math.erfc(math.sqrt(statistic / 2.0))  # chi-square, 1 degree of freedom
        method = "chi-square (continuity corrected)"
    return McNemarResult(
        a_only=a_only,
        b_only=b_only,
        both_right=int(np.sum(ra & rb)),
        both_wrong=int(np.sum(~ra & ~rb)),
        statistic=float(statistic),
        p_value=float(p_value),
        method=method,
    )


# ----------------------------------------------------------------------------------------------
# stop rule
# ----------------------------------------------------------------------------------------------


@dataclass
class StopDecision:
    """What :func:`stop_rule` found; ``evidence`` holds the evaluations it looked at."""

    stop: bool
    reason: str
    baseline_f1: float
    patience: int
    slope_per_1k: float | None = None
    evidence: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _slope(x: Sequence[float], y: Sequence[float]) -> float:
    xs, ys = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dx = xs - xs.mean()
    den = float(np.sum(dx * dx))
    return float(np.sum(dx * (ys - ys.mean())) / den) if den > 0 else 0.0


def stop_rule(history: Sequence[Mapping[str, float]], baseline_f1: float, patience: int = 3) -> StopDecision:
    """Decide whether a candidate run should stop.

    ``history``: the candidate's evaluations so far, oldest first, each with ``iteration``,
    ``f1`` and ``f1_high`` (upper bound of its macro-F1 interval). Stop when each of the last
    ``patience`` evaluations has ``f1_high < baseline_f1`` and the least-squares slope of ``f1``
    against ``iteration`` over them is ``<= 0``.
    """
    if patience < 2:
        raise ValueError(f"patience must be >= 2 (a trend needs two evaluations), got {patience}")
    recent = [
        {"iteration": float(h["iteration"]), "f1": float(h["f1"]), "f1_high": float(h["f1_high"])}
        for h in list(history)[-patience:]
    ]
    decision = StopDecision(False, "", float(baseline_f1), patience, evidence=recent)
    if len(recent) < patience:
        decision.reason = f"only {len(recent)} of the {patience} evaluations the rule needs"
        return decision
    above = [h for h in recent if h["f1_high"] >= baseline_f1]
    slope = _slope([h["iteration"] for h in recent], [h["f1"] for h in recent])
    decision.slope_per_1k = slope * 1000.0
    base = f"{100 * baseline_f1:.2f}"
    if above:
        its = ", ".join(str(int(h["iteration"])) for h in above)
        decision.reason = f"the F1 upper bound reached the baseline's {base} at iteration {its}"
    elif slope > 0:
        decision.reason = (
            f"F1 upper bound below the baseline's {base} at the last {patience} evaluations, "
            f"but trending upward ({100 * decision.slope_per_1k:+.2f} F1 points per 1k iterations)"
        )
    else:
        decision.stop = True
        decision.reason = (
            f"F1 upper bound below the baseline's {base} at the last {patience} evaluations "
            f"(iterations {', '.join(str(int(h['iteration'])) for h in recent)}) and not trending upward "
            f"({100 * decision.slope_per_1k:+.2f} F1 points per 1k iterations)"
        )
    return decision
