"""Runs of one configuration with several seeds (``sconet train --seeds N``): their spread.

The runs of one ``--seeds`` call share a ledger ``group_name``. :func:`group_summaries` gives,
per group, each run's final in-run test metrics, their mean and sample standard deviation, and the
*pooled interval*: the stratified bootstrap interval of the seeds' mean macro-F1 (and accuracy),
every resample scoring all seeds' final predictions on the same test sequences
(:func:`sconet.evaluation.stats.pooled_intervals`). The standard deviation shows how much the seed
moves the result; the pooled interval how precisely the test set pins down the mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from sconet.evaluation.stats import DEFAULT_RESAMPLES, Interval, pooled_intervals
from sconet.experiments.records import RunSummary

__all__ = ["GroupSummary", "summarise_group", "group_summaries", "results_summary"]


@dataclass
class GroupSummary:
    """One ``--seeds`` group: ``runs`` (ids), ``seeds``, the final test F1 / accuracy of each run,
    their mean and standard deviation, and the pooled intervals of the mean (``None`` until every
    run has a final evaluation with predictions)."""

    name: str
    runs: list[int]
    seeds: list[int | None]
    statuses: list[str]
    f1: list[float | None]
    accuracy: list[float | None]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    pooled: dict[str, Interval] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pooled"] = {k: v.to_dict() for k, v in self.pooled.items()}
        return d

    def line(self) -> str:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.2f}"

        text = f"group {self.name}: {len(self.runs)} runs (#{', #'.join(map(str, self.runs))}; seeds "
        text += f"{', '.join(str(s) for s in self.seeds)})"
        if "f1" in self.mean:
            text += f"  final test F1 {pct(self.mean['f1'])} +- {pct(self.std.get('f1'))} (mean +- std)"
        if "f1" in self.pooled:
            iv = self.pooled["f1"]
            text += f", pooled {100 * iv.level:.0f} % interval [{pct(iv.low)}, {pct(iv.high)}]"
        return text + (f"  ({self.note})" if self.note else "")


def summarise_group(
    name: str, members: list[dict[str, Any]], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> GroupSummary:
    """Summary of a group from its members: dicts with ``run`` (id), ``seed``, ``status``, ``final``
    (the last in-run metrics, or ``None``) and ``predictions`` (that evaluation's test predictions
    as the ledger stores them, or ``None``)."""
    finals = [m.get("final") or {} for m in members]
    g = GroupSummary(
        name=name, runs=[m.get("run") or 0 for m in members], seeds=[m.get("seed") for m in members],
        statuses=[m.get("status") or "?" for m in members],
        f1=[f.get("test_f1") for f in finals], accuracy=[f.get("test_accuracy") for f in finals],
    )  # fmt: skip
    for key, values in (("f1", g.f1), ("accuracy", g.accuracy)):
        got = [float(v) for v in values if v is not None]
        if got:
            g.mean[key] = float(np.mean(got))
            g.std[key] = float(np.std(got, ddof=1)) if len(got) > 1 else 0.0
    predictions = [m.get("predictions") for m in members]
    if not predictions or any(p is None for p in predictions):
        g.note = "pooled interval once every run has a final evaluation with predictions"
        return g
    docs = [p for p in predictions if p is not None]
    if any(d["ids"] != docs[0]["ids"] for d in docs):
        g.note = "the runs were evaluated on different test ids: no pooled interval"
        return g
    labels = np.asarray(docs[0]["labels"])
    preds = [np.asarray(d["probs"]).argmax(-1) for d in docs]
    pooled = pooled_intervals(labels, preds, n_resamples=n_resamples, seed=seed)
    g.pooled = {k: pooled[k] for k in ("f1", "accuracy")}
    return g


def group_summaries(ledger: Any, runs: list[RunSummary] | None = None) -> list[GroupSummary]:
    """Every group of the ledger (or among ``runs``), oldest first."""
    runs = ledger.runs() if runs is None else runs
    groups: dict[str, list[RunSummary]] = {}
    for r in runs:
        if r.group_name:
            groups.setdefault(r.group_name, []).append(r)
    out = []
    for name, group in groups.items():
        members = []
        for r in group:
            final = ledger.final_predictions(r.id)
            same = final is not None and r.final is not None and final[0] == r.final["iteration"]
            members.append({"run": r.id, "seed": r.seed, "status": r.status, "final": r.final,
                            "predictions": final[2] if same and final is not None else None})  # fmt: skip
        out.append(summarise_group(name, members))
    return out


def results_summary(name: str, results: list[Any]) -> GroupSummary:
    """The summary of :func:`sconet.training.seeds.train_seeds`' results (no ledger needed)."""
    members = [{"run": r.run_id, "seed": r.seed, "status": "stopped" if r.stopped else "finished",
                "final": r.evals[-1] if r.evals else None, "predictions": r.final_predictions}
               for r in results]  # fmt: skip
    return summarise_group(name, members)
