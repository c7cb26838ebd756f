"""The experiment report: ``<out>/report.md``, ``<out>/curves.png`` and ``<out>/result.json``.

The Markdown gives the plan, the reference (baseline) with its bootstrap intervals, one row per
step (what it changed and in which factor group, its runs, whether the stop rule ended them and
why, its standalone full-test metrics, the paired difference from the model it was measured
against with McNemar's test, and the decision), the winner and its promotion. The PNG has the
test macro-F1, test accuracy and training loss of every run against iterations, the reference's
macro-F1 and interval as a dashed line over a shaded band, and a cross where a run was stopped.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sconet._io import atomic_write_json, atomic_write_text
from sconet.experiments.curves import Panel, Series, plot_panels

if TYPE_CHECKING:
    from sconet.experiments.runner import ExperimentResult, StepOutcome

__all__ = ["write_report", "result_doc", "read_curves"]


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * float(v):.2f}"


def _iv(d: Any, signed: bool = False) -> str:
    if not d:
        return "-"
    if hasattr(d, "to_dict"):
        d = d.to_dict()
    s = "+" if signed else ""
    return f"{100 * d['estimate']:{s}.2f} [{100 * d['low']:{s}.2f}, {100 * d['high']:{s}.2f}]"


def read_curves(out: Path | None) -> dict[str, list[tuple[float, float]]]:
    """``test_f1``, ``test_accuracy`` and ``loss`` points of a run folder's ``metrics.jsonl``."""
    curves: dict[str, list[tuple[float, float]]] = {"test_f1": [], "test_accuracy": [], "loss": []}
    if out is None or not (Path(out) / "metrics.jsonl").is_file():
        return curves
    for line in (Path(out) / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for key in curves:
            if isinstance(row.get(key), (int, float)):
                curves[key].append((float(row["iter"]), float(row[key])))
    return curves


def _step_doc(s: StepOutcome) -> dict[str, Any]:
    return {
        "name": s.name,
        "status": s.status,
        "base": s.base,
        "reference": s.reference,
        "success": s.success,
        "reason": s.reason,
        "changes": s.changes,
        "groups": s.groups,
        "runs": [
            {
                "seed": r.seed,
                "out": str(r.out),
                "run_id": r.run_id,
                "iterations": r.iterations,
                "stopped": r.stopped,
                "checkpoint": str(r.checkpoint) if r.checkpoint else None,
                "best_in_run_f1": r.best_f1,
            }
            for r in s.runs
        ],
        "checkpoint": str(s.checkpoint) if s.checkpoint else None,
        "metrics": s.metrics,
        "intervals": {k: v.to_dict() for k, v in (s.intervals or {}).items()},
        "comparison": s.comparison,
        "seeds": s.seeds,
    }


def result_doc(result: ExperimentResult) -> dict[str, Any]:
    """The JSON document of an experiment (also stored in the ledger)."""
    b = result.baseline
    return {
        "plan": result.plan.to_dict(),
        "baseline": {
            "checkpoint": str(b.checkpoint),
            "recipe": b.config.name,
            "metrics": b.metrics,
            "intervals": {k: v.to_dict() for k, v in b.intervals.items()},
            "run_out": str(b.run_out) if b.run_out else None,
        },
        "steps": [_step_doc(s) for s in result.steps],
        "winner": result.winner,
        "winner_checkpoint": str(result.winner_checkpoint),
        "promotion": result.promotion,
        "ended_early": result.ended_early,
        "seconds": round(result.seconds, 1),
        "report": str(result.report) if result.report else None,
        "curves": str(result.curves) if result.curves else None,
    }


def _panels(result: ExperimentResult) -> list[Panel]:
    b = result.baseline
    f1 = Panel(
        "test macro-F1 (%)",
        reference=b.f1,
        band=(b.intervals["f1"].low, b.intervals["f1"].high),
        reference_label=f"baseline (standalone) {_iv(b.intervals['f1'])}",
        percent=True,
    )
    acc = Panel(
        "test accuracy (%)",
        reference=float(b.metrics["accuracy"]),
        percent=True,
        band=(b.intervals["accuracy"].low, b.intervals["accuracy"].high),
        reference_label="baseline",
    )
    loss = Panel("training loss")
    runs: list[tuple[str, Path | None, float | None]] = [("baseline", b.run_out, None)]
    for s in result.steps:
        for r in s.runs:
            label = s.name + (f" (seed {r.seed})" if len(s.runs) > 1 else "")
            stop = (
                float(r.stopped["evidence"][-1]["iteration"])
                if r.stopped and r.stopped.get("evidence")
                else None
            )
            runs.append((label, r.out, stop))
    for label, out, stop in runs:
        c = read_curves(out)
        if c["test_f1"]:
            f1.series.append(Series(label, c["test_f1"], stop))
        if c["test_accuracy"]:
            acc.series.append(Series(label, c["test_accuracy"], stop))
        if c["loss"]:
            loss.series.append(Series(label, c["loss"], stop))
    return [f1, acc, loss]


def _markdown(result: ExperimentResult) -> str:
    p, b = result.plan, result.baseline
    level = f"{100 * p.rule.level:.0f} %"
    lines = [
        f"# Experiment: {p.name}",
        "",
        *([p.description, ""] if p.description else []),
        f"- plan: `{p.path}`",
        f"- written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"took {result.seconds / 60:.1f} min on device `{p.device}`",
        f"- intervals: {level} stratified bootstrap over test sequences, {p.rule.resamples} resamples; "
        f"differences: paired bootstrap on the same resamples; McNemar on per-sequence correctness",
        "- stop rule: stop a candidate when the upper bound of its in-run test macro-F1 interval was below "
        f"the "
        f"current best's standalone macro-F1 at each of the last {p.rule.patience} evaluations and its "
        "macro-F1 was not trending upward over them",
        "",
        "## Baseline",
        "",
        f"`{b.checkpoint}` (recipe `{b.config.name}`), standalone on the full test set "
        f"({b.metrics.get('num_samples')} sequences):",
        "",
        "| metric | value [" + level + "] |",
        "|---|---|",
    ]
    for k in ("accuracy", "precision", "recall", "f1", "sensitivity", "specificity"):
        if k in b.intervals:
            lines.append(f"| {k} | {_iv(b.intervals[k])} |")
    lines += [
        "",
        "## Steps",
        "",
        "| # | step | changes (group) | status | test macro-F1 ["
        + level
        + "] | vs reference: F1 diff ["
        + level
        + "] | McNemar p | decision |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, s in enumerate(result.steps, 1):
        changes = "; ".join(
            f"{k}: {v[0]} -> {v[1]}" for k, v in s.changes.items() if not k.startswith("run.out")
        )
        groups = ", ".join(s.groups) or ("none (repeat)" if s.changes else "-")
        comp = s.comparison or {}
        mc = comp.get("mcnemar", {})
        lines.append(
            f"| {i} | {s.name} | {changes or '-'} ({groups}) | {s.status} | "
            f"{_iv((s.intervals or {}).get('f1'))} | {_iv(comp.get('differences', {}).get('f1'), True)} | "
            f"{'-' if not mc else format(mc['p_value'], '.3g')} | {s.reason} |"
        )
    for s in result.steps:
        if not s.runs:
            continue
        lines += ["", f"### {s.name}", "", f"Base: {s.base}; measured against: {s.reference}.", ""]
        for r in s.runs:
            state = "stopped by rule" if r.stopped else "finished"
            lines.append(
                f"- seed {r.seed}: run #{r.run_id} in `{r.out}`, {state} at iteration {r.iterations}; "
                f"best in-run test F1 {_pct(r.best_f1)}"
            )
            if r.stopped:
                lines.append(f"  - rule: {r.stopped['reason']}")
                ev = ", ".join(
                    f"iter {int(e['iteration'])}: F1 {_pct(e['f1'])} (upper {_pct(e['f1_high'])})"
                    for e in r.stopped.get("evidence", [])
                )
                lines.append(f"  - evidence (reference F1 {_pct(r.stopped['baseline_f1'])}): {ev}")
        if s.seeds:
            sd = s.seeds
            lines.append(
                f"- {sd['n']} seeds: macro-F1 mean {_pct(sd['mean']['f1'])}, std {_pct(sd['std']['f1'])}, "
                f"pooled interval of the mean {_iv(sd['pooled']['f1'])}"
            )
        if s.comparison:
            mc = s.comparison["mcnemar"]
            lines.append(
                f"- paired comparison with {s.reference} on {s.comparison['common_ids']} sequences: "
                + ", ".join(f"{k} {_iv(v, True)}" for k, v in s.comparison["differences"].items())
                + f"; McNemar ({mc['method']}) {mc['a_only']} vs {mc['b_only']} discordant, "
                f"p = {mc['p_value']:.3g}"
            )
    lines += ["", "## Outcome", "", f"Winner: **{result.winner}** (`{result.winner_checkpoint}`)."]
    if result.ended_early:
        lines.append(f"\n{result.ended_early}.")
    if result.promotion is not None:
        pr = result.promotion
        lines.append(
            "\nPromotion: " + (f"promoted to `{pr.get('artifact')}`" if pr.get("promoted") else "refused")
        )
        for r in pr.get("rules", []):
            verdict = {True: "pass", False: "FAIL", None: "not checked"}[r.get("passed")]
            lines.append(f"- rule ({r['name']}) {r['title']}: {verdict}: {r['detail']}")
    elif result.winner == "baseline":
        lines.append("\nNo candidate beat the baseline; nothing was promoted.")
    lines += ["", "![curves](curves.png)", ""]
    return "\n".join(lines)


def write_report(result: ExperimentResult) -> Path:
    """Write ``report.md``, ``curves.png`` and ``result.json`` into the plan's output folder."""
    out = Path(result.plan.out)
    out.mkdir(parents=True, exist_ok=True)
    result.curves = plot_panels(_panels(result), out / "curves.png", title=f"experiment {result.plan.name}")
    result.report = out / "report.md"
    atomic_write_text(result.report, _markdown(result))
    atomic_write_json(out / "result.json", result_doc(result))
    return result.report
