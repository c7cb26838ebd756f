"""The statistical evidence of a promotion: the candidate against the promoted checkpoint.

:func:`compare_with_promoted` pairs the candidate's standalone full-test predictions with the
promoted checkpoint's on the same test ids (:func:`sconet.experiments.compare.compare_sets`): the
promoted one's predictions come from its latest ledger evaluation with predictions (same frames),
else its artifact file is evaluated now. :func:`apply_significance` adds the result to rule (a)'s
detail and, with ``require_significant``, fails rule (a) unless the paired interval of the
macro-F1 gain lies above 0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sconet.experiments.compare import CompareError, Comparison, PredictionSet, compare_sets

__all__ = ["compare_with_promoted", "apply_significance"]


def _promoted_predictions(
    previous: dict[str, Any], db: Any, max_frames: int, *, device: str, cache: Any, log: Callable[[str], None]
) -> PredictionSet:
    from sconet.experiments.sources import evaluation_prediction_set

    sha = previous.get("sha256")
    for record in reversed(db.evaluations([sha], with_predictions=True) if sha else []):
        if record.subset == "test" and record.max_frames == max_frames and record.predictions:
            return evaluation_prediction_set(
                record, name=f"promoted {Path(previous.get('artifact', '?')).name}"
            )
    artifact = Path(str(previous.get("artifact", "")))
    if not artifact.is_file():
        raise CompareError(
            f"the promoted checkpoint {artifact} is gone and the ledger holds no predictions of it"
        )
    from sconet.evaluation import evaluate_checkpoint
    from sconet.experiments.recording import record_evaluation

    log(
        f"evaluating the promoted {artifact.name} for the paired comparison (no ledger predictions of it yet)"
    )
    ev = evaluate_checkpoint(
        artifact, cache=cache, subset="test", device=device, max_frames=max_frames, log=log
    )
    record_evaluation(ev, db, purpose="promote-reference", sha256=sha)
    return ev.prediction_set(f"promoted {artifact.name}")


def compare_with_promoted(
    ev: Any, previous: dict[str, Any] | None, db: Any, *, device: str = "auto", cache: Any = None,
    resamples: int = 2000, log: Callable[[str], None] = lambda _m: None,
) -> tuple[Comparison | None, str]:  # fmt: skip
    """``(comparison, "")`` of the candidate (``ev``: its :class:`sconet.evaluation.EvalResult`)
    with the promoted checkpoint, or ``(None, why not)``."""
    if previous is None:
        return None, "nothing promoted for this split yet"
    try:
        other = _promoted_predictions(previous, db, ev.max_frames, device=device, cache=cache, log=log)
        mine = ev.prediction_set(f"candidate {Path(ev.checkpoint).name}")
        return compare_sets(mine, other, n_resamples=resamples), ""
    except (CompareError, ValueError, OSError) as exc:
        return None, str(exc)


def apply_significance(rule: Any, comparison: Comparison | None, why_not: str, require: bool) -> Any:
    """Rule (a) with the paired evidence in its detail; failed under ``require`` without a
    significant macro-F1 gain."""
    if comparison is not None:
        d, mc = comparison.differences["f1"], comparison.mcnemar
        rule.detail += (f"; paired macro-F1 gain {d.format(signed=True)} ({100 * d.level:.0f} % interval, "
                        f"{comparison.n} sequences), McNemar p = {mc.p_value:.3g}")  # fmt: skip
    elif why_not and require:
        rule.detail += f"; no paired comparison ({why_not})"
    if require and rule.passed:
        if comparison is None and why_not != "nothing promoted for this split yet":
            rule.passed = False
            rule.detail += "; --require-significant needs the paired comparison"
        elif comparison is not None and not comparison.significant("f1"):
            rule.passed = False
            rule.detail += (
                "; the gain is not significant: its interval does not lie above 0 (--require-significant)"
            )
    return rule
