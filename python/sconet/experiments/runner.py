"""``sconet experiment run PLAN.toml``: a baseline, then controlled candidates judged by fixed rules.

:func:`run_plan` reads the plan (:mod:`sconet.experiments.plan`) and checks every candidate's
changes before anything runs, then:

1. **Reference.** The baseline checkpoint (a path, or the one promoted for its split) is
   evaluated standalone on the full test set (metrics, bootstrap intervals, per-sequence
   predictions recorded in the ledger); a baseline given as a recipe is trained first (and
   promoted with ``promote = true``). The plan's *current best* starts as the baseline.
2. **Steps, in order.** A candidate's configuration is its base (the baseline's, or the current
   best's with ``from = "winner"``) with the step's ``set`` applied. Each seed trains in
   ``<out>/<step>[/seed-N]``; at every in-run evaluation the stop rule
   (:func:`sconet.evaluation.stats.stop_rule`) compares the upper bound of the candidate's test
   macro-F1 interval with the current best's standalone macro-F1; a stopped run ends with ledger
   status ``stopped`` and the rule's evidence. The step's checkpoint (the best-test-F1 checkpoint
   of its best seed, as the seed's notes pick it) is evaluated standalone and compared pairwise
   with the current best (:func:`sconet.experiments.compare.compare_sets`). With several seeds the
   success criterion uses the seeds' mean F1 and the pooled interval of the mean.
   ``success = "beats"``: higher full-test macro-F1; ``"significant"``: the paired interval of the
   gain lies above 0; ``"none"``: informational. A step that succeeds becomes the current best; a
   failing step with ``on_fail = "stop"`` ends the plan.
3. **Report** (:mod:`sconet.experiments.report`): ``<out>/report.md`` and ``<out>/curves.png``;
   then, when a candidate won and ``promote_winner``, the usual
   :func:`sconet.experiments.promote.promote` (with ``require_significant`` when the plan asks).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sconet.evaluation.metrics import evaluate_predictions
from sconet.evaluation.stats import Interval, StopDecision, bootstrap_intervals, pooled_intervals, stop_rule
from sconet.experiments.compare import PredictionSet, compare_sets
from sconet.experiments.plan import (
    Plan,
    PlanError,
    StepSpec,
    candidate_config,
    check_factors,
    config_changes,
    load_plan,
)

__all__ = ["Reference", "RunOutcome", "StepOutcome", "ExperimentResult", "run_plan"]

Log = Callable[[str], None]


@dataclass
class Reference:
    """A model the plan measures against: its checkpoint, configuration and standalone evaluation."""

    name: str
    checkpoint: Path
    config: Any  # TrainConfig
    metrics: dict[str, Any]
    intervals: dict[str, Interval]
    predictions: PredictionSet
    run_out: Path | None = None

    @property
    def f1(self) -> float:
        return float(self.metrics["f1"])


@dataclass
class RunOutcome:
    seed: int
    out: Path
    run_id: int | None
    iterations: int
    stopped: dict[str, Any] | None
    checkpoint: Path | None
    best_f1: float | None


@dataclass
class StepOutcome:
    name: str
    status: str = "skipped"
    base: str = "baseline"
    reference: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    runs: list[RunOutcome] = field(default_factory=list)
    checkpoint: Path | None = None
    metrics: dict[str, Any] | None = None
    intervals: dict[str, Interval] | None = None
    comparison: dict[str, Any] | None = None
    seeds: dict[str, Any] | None = None
    success: bool | None = None
    reason: str = ""


@dataclass
class ExperimentResult:
    plan: Plan
    baseline: Reference
    steps: list[StepOutcome]
    winner: str
    winner_checkpoint: Path
    promotion: dict[str, Any] | None = None
    report: Path | None = None
    curves: Path | None = None
    ended_early: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        from sconet.experiments.report import result_doc

        return result_doc(self)


def _run_settings(plan: Plan) -> list[tuple[str, str, Any]]:
    """The plan's device and ledger, for every run it trains."""
    extra: list[tuple[str, str, Any]] = [("run", "device", plan.device)]
    if plan.ledger is not None:
        extra.append(("run", "ledger", plan.ledger))
    return extra


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-").lower() or "step"


# ----------------------------------------------------------------------------------------------
# evaluations
# ----------------------------------------------------------------------------------------------


def _evaluate(
    path: Path, config: Any, plan: Plan, name: str, ledger: Any, log: Log, progress: bool | None
) -> tuple[dict[str, Any], dict[str, Interval], PredictionSet]:
    """Standalone full-test evaluation (the run's own protocol), recorded with its predictions."""
    from sconet.evaluation import evaluate_checkpoint
    from sconet.experiments.recording import record_evaluation

    ev = evaluate_checkpoint(
        path,
        subset="test",
        device=plan.device,
        max_frames=config.data.eval_max_frames,
        batch_size=config.data.eval_batch,
        resamples=plan.rule.resamples,
        level=plan.rule.level,
        log=log,
        progress=progress,
    )
    if ledger is not None:
        record_evaluation(ev, ledger, purpose="experiment")
    return ev.metrics.to_dict(), ev.intervals, ev.prediction_set(name)


def _resolve_baseline_checkpoint(plan: Plan) -> Path:
    from sconet.experiments.artifacts import _read_index

    spec = plan.baseline.checkpoint
    assert spec is not None
    if spec != "promoted":
        path = Path(spec).expanduser()
        if not path.is_absolute():
            path = (plan.path.parent / path) if (plan.path.parent / path).is_file() else path
        if not path.is_file():
            raise PlanError(f"{plan.path}: [baseline] checkpoint {spec}: no such file")
        return path
    current = _read_index(Path(plan.artifact_dir).expanduser()).get("current", {})
    key = plan.baseline.split_key
    if key is None and len(current) == 1:
        key = next(iter(current))
    if key is None or key not in current:
        known = ", ".join(current) or "none"
        raise PlanError(
            f'{plan.path}: [baseline] checkpoint = "promoted": name the split with split_key = '
            f'"..." (promoted split keys in {plan.artifact_dir}: {known})'
        )
    return Path(current[key]["artifact"])


def _baseline(
    plan: Plan, ledger: Any, train_kw: dict[str, Any], log: Log, progress: bool | None
) -> Reference:
    from sconet.checkpoint import read_checkpoint
    from sconet.training import apply_overrides, config_from_dict, load_recipe

    b = plan.baseline
    run_out = None
    if b.checkpoint is not None:
        path = _resolve_baseline_checkpoint(plan)
        ckpt = read_checkpoint(path)
        if b.recipe is not None:
            config = load_recipe(b.recipe)
        elif ckpt.is_sconet and ckpt.recipe:
            config = config_from_dict(ckpt.recipe)
        else:
            raise PlanError(f"{plan.path}: the baseline {path} records no recipe: give [baseline] recipe")
        config = apply_overrides(config, b.set)
        run_out = _run_folder_of(path, ledger)
        log(f"baseline: {path}")
    else:
        config = apply_overrides(load_recipe(b.recipe or ""), b.set)
        out = plan.out / "baseline"
        config = apply_overrides(config, [("run", "out", str(out)), *_run_settings(plan)])
        log(f"baseline: training {config.name} in {out}")
        run = _train(config, None, train_kw)
        path, run_out = run.checkpoint or out / "last.pt", out
    metrics, intervals, preds = _evaluate(path, config, plan, "baseline", ledger, log, progress)
    ref = Reference("baseline", Path(path), config, metrics, intervals, preds, run_out)
    if b.checkpoint is None and b.promote:
        from sconet.experiments.promote import promote

        res = promote(path, ledger=plan.ledger, artifact_dir=plan.artifact_dir, device=plan.device, log=log)
        log(f"baseline promotion: {'promoted ' + str(res.artifact) if res.promoted else 'refused'}")
    return ref


def _run_folder_of(path: Path, ledger: Any) -> Path | None:
    if ledger is None:
        return None
    from sconet.experiments.ledger import file_sha256

    try:
        recs = ledger.checkpoints(sha256=file_sha256(path))
        row = ledger.run_row(recs[-1].run_id) if recs else None
    except Exception:  # noqa: BLE001 - curves of the baseline are optional
        return None
    return Path(row["out"]) if row and row.get("out") else None


# ----------------------------------------------------------------------------------------------
# training a candidate
# ----------------------------------------------------------------------------------------------


def _train(
    config: Any, hook: Callable[..., StopDecision | None] | None, train_kw: dict[str, Any]
) -> RunOutcome:
    from sconet.training import train

    result = train(config, on_evaluate=hook, **train_kw)
    best = (result.best or {}).get("test_f1") or []
    checkpoint = Path(best[0]["path"]) if best else result.last_checkpoint
    f1s = [e["test_f1"] for e in result.evals if "test_f1" in e]
    return RunOutcome(
        config.run.seed,
        Path(result.out),
        result.run_id,
        result.iterations,
        result.stopped,
        checkpoint,
        max(f1s) if f1s else None,
    )


def _stop_hook(reference: Reference, plan: Plan, log: Log) -> Callable[..., StopDecision | None]:
    """The stop rule at every in-run evaluation: intervals of this evaluation's test predictions."""
    history: list[dict[str, float]] = []

    def hook(
        iteration: int, values: Mapping[str, Any], predictions: Mapping[str, Any]
    ) -> StopDecision | None:
        test = predictions.get("test")
        if test is None:
            return None
        iv = bootstrap_intervals(
            test.labels, test.pred, n_resamples=plan.rule.resamples, level=plan.rule.level
        )
        history.append({"iteration": iteration, "f1": iv["f1"].estimate, "f1_high": iv["f1"].high})
        decision = stop_rule(history, reference.f1, plan.rule.patience)
        if decision.stop:
            log(f"stop rule at iteration {iteration}: {decision.reason}")
            return decision
        return None

    return hook


def _run_step(
    step: StepSpec,
    base: Reference,
    best: Reference,
    baseline: Reference,
    plan: Plan,
    ledger: Any,
    train_kw: dict[str, Any],
    log: Log,
    progress: bool | None,
) -> tuple[StepOutcome, Reference | None]:
    from sconet.training import apply_overrides

    outcome = StepOutcome(step.name, base=base.name, reference=best.name)
    init = {
        "keep": None,
        "none": None,
        "baseline": str(baseline.checkpoint),
        "winner": str(best.checkpoint),
    }.get(step.init_from, step.init_from)
    config = candidate_config(base.config, step, init=init, where=f"{plan.path}: ")
    outcome.groups = check_factors(base.config, config, step, where=f"{plan.path}: ")
    outcome.changes = {k: list(v) for k, v in config_changes(base.config, config).items() if k != "run.out"}
    folder = plan.out / _slug(step.name)
    for i in range(step.seeds):
        seed = config.run.seed + i
        out = folder / f"seed-{seed}" if step.seeds > 1 else folder
        cfg = apply_overrides(config, [("run", "seed", seed), ("run", "out", str(out)), *_run_settings(plan)])
        log(f"step {step.name!r}: training {'seed ' + str(seed) + ' ' if step.seeds > 1 else ''}in {out}")
        hook = _stop_hook(best, plan, log) if step.stop_rule else None
        outcome.runs.append(_train(cfg, hook, train_kw))
    finished = [r for r in outcome.runs if r.stopped is None]
    if not finished:
        outcome.status, outcome.success = "stopped by rule", False
        outcome.reason = outcome.runs[-1].stopped["reason"] if outcome.runs[-1].stopped else ""
        return outcome, None
    chosen = max(finished, key=lambda r: -1.0 if r.best_f1 is None else r.best_f1)
    assert chosen.checkpoint is not None  # a finished run has saved last.pt at least
    outcome.checkpoint = chosen.checkpoint
    metrics, intervals, preds = _evaluate(chosen.checkpoint, config, plan, step.name, ledger, log, progress)
    outcome.metrics, outcome.intervals = metrics, intervals
    comparison = compare_sets(preds, best.predictions, n_resamples=plan.rule.resamples, level=plan.rule.level)
    outcome.comparison = comparison.to_dict()
    f1, gain_low = float(metrics["f1"]), comparison.differences["f1"].low
    if len(finished) > 1:
        outcome.seeds = _seed_summary(finished, config, plan, ledger, log, progress)
        f1 = outcome.seeds["mean"]["f1"]
        gain_low = outcome.seeds["pooled"]["f1"]["low"] - best.f1
    candidate = Reference(step.name, chosen.checkpoint, config, metrics, intervals, preds, chosen.out)
    if step.success == "none":
        outcome.status, outcome.success = "for information", None
        outcome.reason = (
            f"macro-F1 {100 * f1:.2f} vs {100 * best.f1:.2f} of {best.name} (no success criterion)"
        )
        return outcome, None
    passed = f1 > best.f1 if step.success == "beats" else gain_low > 0
    outcome.success = passed
    outcome.status = "won" if passed else "lost"
    verb = {
        ("beats", True): "beats",
        ("beats", False): "does not beat",
        ("significant", True): "significantly beats",
        ("significant", False): "does not significantly beat",
    }
    outcome.reason = (
        f"macro-F1 {100 * f1:.2f} {verb[step.success, passed]} {100 * best.f1:.2f} of {best.name}"
    )
    if step.success == "significant":
        outcome.reason += f" (lower bound of the gain {100 * gain_low:+.2f})"
    if len(outcome.runs) > len(finished):
        outcome.reason += f" ({len(outcome.runs) - len(finished)} seed(s) stopped by rule)"
    return outcome, candidate if passed else None


def _seed_summary(
    runs: list[RunOutcome], config: Any, plan: Plan, ledger: Any, log: Log, progress: bool | None
) -> dict[str, Any]:
    """Mean, standard deviation and pooled interval of the seeds' best checkpoints."""
    sets = [
        _evaluate(r.checkpoint, config, plan, f"seed {r.seed}", ledger, log, progress)[2]
        for r in runs
        if r.checkpoint is not None
    ]
    y = sets[0].labels
    pooled = pooled_intervals(
        y, [s.pred for s in sets], n_resamples=plan.rule.resamples, level=plan.rule.level
    )
    per = [float(evaluate_predictions(y, s.pred).f1) for s in sets]
    return {
        "n": len(sets),
        "mean": {k: v.estimate for k, v in pooled.items()},
        "std": {"f1": float(np.std(per, ddof=1)) if len(per) > 1 else 0.0},
        "pooled": {k: v.to_dict() for k, v in pooled.items()},
        "f1_per_seed": per,
    }


# ----------------------------------------------------------------------------------------------
# the plan
# ----------------------------------------------------------------------------------------------


def run_plan(
    plan: Plan | str | Path,
    *,
    device: str | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
    log: Log | None = None,
) -> ExperimentResult:
    """Run a plan (see the module docstring); returns what happened, with the report written."""
    from sconet.experiments.ledger import open_ledger
    from sconet.experiments.report import write_report

    t0 = time.perf_counter()
    say = log or print
    plan = plan if isinstance(plan, Plan) else load_plan(plan)
    if device is not None:
        plan.device = device
    ledger = open_ledger(plan.ledger)
    train_kw = {"progress": progress, "log": say, "overwrite": overwrite}
    check_plan(plan)
    baseline = _baseline(plan, ledger, train_kw, say, progress)
    say(f"baseline full-test macro-F1 {baseline.intervals['f1'].format()}")
    best = baseline
    outcomes: list[StepOutcome] = []
    ended = None
    for n, step in enumerate(plan.steps, 1):
        if not step.enabled:
            outcomes.append(StepOutcome(step.name, status="disabled", reason="enabled = false"))
            continue
        if ended is not None:
            outcomes.append(StepOutcome(step.name, status="skipped", reason=ended))
            continue
        say(f"[{n}/{len(plan.steps)}] step {step.name!r}")
        base = baseline if step.from_ == "baseline" else best
        outcome, winner = _run_step(step, base, best, baseline, plan, ledger, train_kw, say, progress)
        say(f"[{n}/{len(plan.steps)}] step {step.name!r}: {outcome.status}: {outcome.reason}")
        outcomes.append(outcome)
        if winner is not None:
            best = winner
        elif outcome.success is False and step.on_fail == "stop":
            ended = (
                f'the plan stopped after step {step.name!r} failed its success criterion (on_fail = "stop")'
            )
    result = ExperimentResult(plan, baseline, outcomes, best.name, best.checkpoint, ended_early=ended)
    if best is not baseline and plan.promote_winner:
        from sconet.experiments.promote import promote

        res = promote(
            best.checkpoint,
            ledger=plan.ledger,
            artifact_dir=plan.artifact_dir,
            device=plan.device,
            require_significant=plan.require_significant,
            log=say,
        )
        result.promotion = res.to_dict()
    result.seconds = time.perf_counter() - t0
    write_report(result)
    if ledger is not None:
        try:
            ledger.add_experiment(
                name=plan.name,
                plan_path=str(plan.path),
                out=str(plan.out),
                winner=result.winner,
                report=str(result.report),
                result=result.to_dict(),
            )
        except Exception as exc:  # noqa: BLE001 - the report is written; the record is a convenience
            say(f"warning: the experiment was not recorded in the ledger ({exc})")
    return result


def check_plan(plan: Plan) -> list[tuple[StepSpec, dict[str, list[str]]]]:
    """Every step's factor groups; :class:`PlanError` for a multi-factor candidate without
    ``allow_multi``, before anything trains (``from = "winner"`` steps are checked against the
    baseline here, and against the actual winner when they run)."""
    from sconet.checkpoint import read_checkpoint
    from sconet.training import apply_overrides, config_from_dict, load_recipe

    if plan.baseline.checkpoint is None:
        base = load_recipe(plan.baseline.recipe or "")
    elif plan.baseline.recipe is not None:
        base = load_recipe(plan.baseline.recipe)
    else:
        ckpt = read_checkpoint(_resolve_baseline_checkpoint(plan))
        if not (ckpt.is_sconet and ckpt.recipe):
            raise PlanError(
                f"{plan.path}: the baseline {ckpt.path} records no recipe: give [baseline] recipe"
            )
        base = config_from_dict(ckpt.recipe)
    base = apply_overrides(base, plan.baseline.set)
    out = []
    for step in plan.steps:
        init = None if step.init_from in ("keep", "none") else "<checkpoint>"
        cand = candidate_config(base, step, init=init, where=f"{plan.path}: ")
        out.append((step, check_factors(base, cand, step, where=f"{plan.path}: ") if step.enabled else {}))
    return out
