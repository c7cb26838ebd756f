"""Promotion of a checkpoint to ``artifact/``, under the user's decision rules.

:func:`promote` looks the file up in the ledger (:mod:`sconet.experiments`), re-evaluates it
standalone (:func:`sconet.evaluation.evaluate_checkpoint`: the full test set of its split, the
recipe's in-run evaluation length, width cut and batch size) and promotes it only if

- **(a) beats the promoted**: its full-test macro-F1 is strictly above the currently promoted
  checkpoint's for the same split key (:func:`sconet.experiments.split_key`: dataset, split name and
  test ids); the first promotion for a split passes;
- **(b) standalone = in-run**: the standalone test accuracy and macro P/R/F1 equal the in-run
  metrics the ledger recorded for that file (same sha256, evaluated at the file's own
  iteration) within ``tolerance``. A file no recorded run ever saved fails (b) ("never saved by
  a recorded run"), as does a ``last.pt`` whose stored metrics come from an earlier evaluation;
- **(c) integrity**: the file's sha256 is one the ledger recorded for a saved checkpoint, and
  equals the latest sha256 recorded for this path (a changed / tampered file is caught).

A promotion copies the file (atomically, verified by its hash) to
``<artifact>/<split key>/run<id>-<name>-<sha8>.pt`` with a ``.json`` record beside it (metrics,
rule evidence, sha256, source run), updates ``<artifact>/promoted.json`` (the current promoted
checkpoint of each split key) and appends one line to ``<artifact>/CHANGELOG.md``. Refused or
accepted, the decision and the standalone evaluation are recorded in the ledger. Concurrent
promotions are serialised by a lock file in the artifact folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sconet._io import atomic_write_json, atomic_write_text
from sconet.experiments.artifacts import (
    CHANGELOG,
    DEFAULT_ARTIFACT_DIR,
    INDEX,
    PromotionError,
    _copy_verified,
    _locked,
    _read_index,
    _slug,
    current_promoted,
)
from sconet.experiments.evidence import apply_significance, compare_with_promoted
from sconet.experiments.ledger import Ledger, LedgerError, open_ledger
from sconet.experiments.recording import record_evaluation
from sconet.experiments.records import CheckpointRecord, file_sha256, split_key

__all__ = [
    "DEFAULT_ARTIFACT_DIR",
    "INDEX",
    "CHANGELOG",
    "PromotionError",
    "Rule",
    "PromotionResult",
    "promote",
    "current_promoted",
]

TOLERANCE = 1e-3
_COMPARED = ("accuracy", "precision", "recall", "f1")


@dataclass
class Rule:
    """One decision rule: ``name`` ``a`` / ``b`` / ``c``, ``passed`` (``None``: not checked)."""

    name: str
    title: str
    passed: bool | None
    detail: str

    def line(self) -> str:
        verdict = {True: "pass", False: "FAIL", None: "not checked"}[self.passed]
        return f"rule ({self.name}) {self.title}: {verdict}: {self.detail}"


@dataclass
class PromotionResult:
    """What :func:`promote` decided. ``to_dict()`` is the ``--json`` document."""

    checkpoint: Path
    sha256: str
    promoted: bool
    rules: list[Rule]
    split_key: str | None = None
    metrics: dict[str, Any] | None = None
    run_id: int | None = None
    previous: dict[str, Any] | None = None
    artifact: Path | None = None
    record: Path | None = None
    notes: list[str] = field(default_factory=list)
    comparison: dict[str, Any] | None = None

    @property
    def failed(self) -> list[Rule]:
        return [r for r in self.rules if r.passed is False]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checkpoint": str(self.checkpoint),
            "sha256": self.sha256,
            "promoted": self.promoted,
            "split_key": self.split_key,
            "run_id": self.run_id,
            "rules": [asdict(r) for r in self.rules],
            "metrics": self.metrics,
            "previous": self.previous,
            "artifact": str(self.artifact) if self.artifact else None,
            "record": str(self.record) if self.record else None,
            "notes": self.notes,
            "comparison": self.comparison,
        }

    def format(self) -> str:
        lines = [f"checkpoint: {self.checkpoint} (sha256 {self.sha256[:12]})"]
        if self.split_key:
            lines.append(f"split: {self.split_key}")
        if self.metrics:
            m = self.metrics
            lines.append(
                f"standalone full test: accuracy {100 * m['accuracy']:.2f}  macro P/R/F1 "
                f"{100 * m['precision']:.2f} / {100 * m['recall']:.2f} / {100 * m['f1']:.2f}  "
                f"({m.get('num_samples')} sequences)"
            )
        if self.comparison:
            c = self.comparison
            lines.append(f"against the promoted ({c['common_ids']} common sequences, paired bootstrap):")
            for k, d in c["differences"].items():
                lines.append(
                    f"  {k:<12} {100 * d['estimate']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"
                )
            mc = c["mcnemar"]
            lines.append(
                f"  McNemar ({mc['method']}): {mc['a_only']} vs {mc['b_only']} discordant, "
                f"p = {mc['p_value']:.3g}"
            )
        lines.extend(r.line() for r in self.rules)
        lines.extend(f"note: {n}" for n in self.notes)
        if self.promoted:
            lines.append(f"promoted: {self.artifact}")
        else:
            lines.append("refused: " + ", ".join(f"rule ({r.name}) {r.title}" for r in self.failed))
        return "\n".join(lines)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.2f}"


# ----------------------------------------------------------------------------------------------
# the rules
# ----------------------------------------------------------------------------------------------


def _integrity(ledger: Ledger, path: Path, digest: str) -> tuple[Rule, list[CheckpointRecord]]:
    """Rule (c), and the ledger records of this content."""
    same = ledger.checkpoints(sha256=digest)
    at_path = ledger.checkpoints(path=path)
    title = "file integrity"
    if at_path and at_path[-1].sha256 != digest:
        rec = at_path[-1]
        return Rule(
            "c",
            title,
            False,
            f"sha256 of the file is {digest[:12]} but the ledger recorded {rec.sha256[:12]} for {path} "
            f"(run #{rec.run_id}, iteration {rec.iteration}, saved {rec.saved_at}): the file was "
            "changed after it was saved",
        ), same
    if not same:
        return Rule("c", title, None, f"sha256 {digest[:12]} is not in the ledger (see rule b)"), same
    rec = next((r for r in reversed(same) if Path(r.path) == path), same[-1])
    where = "" if Path(rec.path) == path else f" (saved as {rec.path})"
    return Rule(
        "c",
        title,
        True,
        f"sha256 {digest[:12]} matches the ledger's record of run #{rec.run_id}, "
        f"iteration {rec.iteration}{where}",
    ), same


def _in_run_record(records: list[CheckpointRecord]) -> CheckpointRecord | None:
    """A record whose stored metrics were measured on this file's own weights, with test metrics."""
    good = [r for r in records if r.metrics_iteration == r.iteration and "test_f1" in (r.metrics or {})]
    return good[-1] if good else None


def _consistency(
    records: list[CheckpointRecord], metrics: dict[str, Any] | None, tol: float
) -> tuple[Rule, CheckpointRecord | None]:
    title = "standalone = in-run"
    if not records:
        return Rule(
            "b",
            title,
            False,
            "never saved by a recorded run: the ledger has no checkpoint with this "
            "sha256, so there are no in-run metrics to confirm",
        ), None
    rec = _in_run_record(records)
    if rec is None:
        r = records[-1]
        why = (
            "the run did not evaluate on the test set"
            if r.metrics_iteration == r.iteration
            else f"the metrics stored with it were measured at iteration {r.metrics_iteration}, "
            f"not at its own iteration {r.iteration}"
        )
        return Rule(
            "b", title, False, f"no in-run test evaluation of these weights was recorded ({why})"
        ), None
    if metrics is None:
        return Rule("b", title, None, "no standalone evaluation"), rec
    diffs = []
    for k in _COMPARED:
        a, b = float(metrics[k]), rec.metrics.get(f"test_{k}")
        if b is None:
            continue
        diffs.append((k, a, float(b), abs(a - float(b))))
    worst = max(diffs, key=lambda d: d[3]) if diffs else None
    text = ", ".join(f"{k} {a:.4f} vs {b:.4f}" for k, a, b, _ in diffs)
    if worst is not None and worst[3] > tol:
        bad = [d for d in diffs if d[3] > tol]
        return Rule(
            "b",
            title,
            False,
            f"standalone vs in-run (iteration {rec.iteration}, run #{rec.run_id}): {text}; "
            f"|difference| above {tol:g}: {', '.join(f'{k} {d:.4f}' for k, _, _, d in bad)}",
        ), rec
    return Rule(
        "b",
        title,
        True,
        f"standalone vs in-run (iteration {rec.iteration}, run #{rec.run_id}): {text} "
        f"(max |difference| {worst[3] if worst else 0:.2g} <= {tol:g})",
    ), rec


def _beats(f1: float, previous: dict[str, Any] | None, key: str, digest: str) -> Rule:
    title = "beats the promoted"
    if previous is None:
        return Rule("a", title, True, f"first promotion for split {key} (full-test macro-F1 {_pct(f1)})")
    if previous.get("sha256") == digest:
        return Rule("a", title, False, f"this file is already the promoted one for split {key}")
    prev_f1 = float(previous["metrics"]["f1"])
    ident = f"{Path(previous.get('artifact', '?')).name}, run #{previous.get('source', {}).get('run_id')}"
    if f1 > prev_f1:
        return Rule(
            "a", title, True, f"full-test macro-F1 {_pct(f1)} > {_pct(prev_f1)} of the promoted ({ident})"
        )
    return Rule(
        "a",
        title,
        False,
        f"full-test macro-F1 {_pct(f1)} does not beat {_pct(prev_f1)} of the promoted ({ident})",
    )


# ----------------------------------------------------------------------------------------------
# promote
# ----------------------------------------------------------------------------------------------


def promote(
    checkpoint: str | Path,
    *,
    ledger: str | Path | None = None,
    artifact_dir: str | Path = DEFAULT_ARTIFACT_DIR,
    tolerance: float = TOLERANCE,
    device: str = "auto",
    cache: str | Path | None = None,
    dry_run: bool = False,
    require_significant: bool = False,
    resamples: int = 2000,
    log: Callable[[str], None] | None = None,
) -> PromotionResult:
    """Decide (and, unless refused or ``dry_run``, carry out) the promotion of ``checkpoint``.

    ``ledger``: ledger path (default ``$SCONET_LEDGER`` / ``runs/ledger.sqlite``; required);
    ``artifact_dir``: where promoted files go; ``tolerance``: rule (b)'s largest allowed
    difference per metric; ``cache``: the cache store to evaluate on (default: found from the
    checkpoint's render settings). Rule (a) also reports the paired comparison with the promoted
    checkpoint (:mod:`sconet.experiments.evidence`, ``resamples`` bootstrap resamples); with
    ``require_significant`` it passes only when the interval of the macro-F1 gain lies above 0.
    """
    from sconet.checkpoint import read_checkpoint
    from sconet.evaluation import evaluate_checkpoint

    say = log or (lambda _m: None)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise PromotionError(f"{path}: no such checkpoint file")
    path = path.resolve()
    db = open_ledger(ledger, must_exist=True)
    if db is None:
        raise PromotionError(
            "the ledger is disabled (--ledger none / $SCONET_LEDGER=none); promotion needs it"
        )
    folder = Path(artifact_dir).expanduser().resolve()
    digest = file_sha256(path)
    rule_c, records = _integrity(db, path, digest)
    result = PromotionResult(checkpoint=path, sha256=digest, promoted=False, rules=[])
    if rule_c.passed is False:  # a changed file: nothing it claims can be trusted, evaluate nothing
        result.rules = [
            Rule("a", "beats the promoted", None, "not checked (rule c failed)"),
            Rule("b", "standalone = in-run", None, "not checked (rule c failed)"),
            rule_c,
        ]
        _record(db, result, None)
        return result
    if not records:
        rule_b, _ = _consistency(records, None, tolerance)
        result.rules = [Rule("a", "beats the promoted", None, "not checked (rule b failed)"), rule_b, rule_c]
        _record(db, result, None)
        return result

    ckpt = read_checkpoint(path)
    key = split_key(ckpt.dataset, ckpt.split.get("name"), ckpt.split.get("test_ids", []))
    result.split_key = key
    result.run_id = records[-1].run_id
    recipe_data = (ckpt.recipe or {}).get("data", {})
    max_frames = int(recipe_data.get("eval_max_frames", 720))
    batch = int(recipe_data.get("eval_batch", 8))
    say(f"re-evaluating {path.name} on the full test set of {key} (first {max_frames} frames, as in-run)")
    ev = evaluate_checkpoint(
        path, cache=cache, subset="test", device=device, max_frames=max_frames, batch_size=batch, log=say
    )
    if file_sha256(path) != digest:
        raise PromotionError(f"{path}: the file changed during the evaluation; try again")
    record_evaluation(ev, db, purpose="promote", sha256=digest)
    metrics = ev.metrics.to_dict()
    result.metrics = metrics
    result.notes.extend(ev.notes)
    rule_b, in_run = _consistency(records, metrics, tolerance)
    if in_run is not None:
        result.run_id = in_run.run_id

    with _locked(folder):
        index = _read_index(folder)
        previous = index["current"].get(key)
        result.previous = previous
        rule_a = _beats(float(metrics["f1"]), previous, key, digest)
        if previous is not None and previous.get("sha256") != digest:
            comparison, why_not = compare_with_promoted(ev, previous, db, device=device, cache=cache,
                                                        resamples=resamples, log=say)  # fmt: skip
            rule_a = apply_significance(rule_a, comparison, why_not, require_significant)
            result.comparison = comparison.to_dict() if comparison is not None else None
        result.rules = [rule_a, rule_b, rule_c]
        if result.failed or dry_run:
            if dry_run and not result.failed:
                result.notes.append("dry run: every rule passed; nothing was copied")
            _record(db, result, None)
            return result
        _carry_out(db, result, folder, index, ckpt, ev, in_run, key)
    return result


def _carry_out(
    db: Ledger,
    result: PromotionResult,
    folder: Path,
    index: dict[str, Any],
    ckpt: Any,
    ev: Any,
    in_run: CheckpointRecord | None,
    key: str,
) -> None:
    run = db.run_row(result.run_id) if result.run_id is not None else None
    sub = folder / _slug(key.replace("/", "-"))
    sub.mkdir(parents=True, exist_ok=True)
    name = f"run{result.run_id}-{_slug(result.checkpoint.stem)}-{result.sha256[:8]}.pt"
    dst = sub / name
    _copy_verified(result.checkpoint, dst, result.sha256)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    m = result.metrics or {}
    record = {
        "format": "sconet-promotion",
        "promoted_at": stamp,
        "split_key": key,
        "split": ckpt.split.get("name"),
        "dataset": ckpt.dataset,
        "sha256": result.sha256,
        "artifact": str(dst),
        "source": {
            "path": str(result.checkpoint),
            "run_id": result.run_id,
            "iteration": ckpt.iteration,
            "run_out": run.get("out") if run else None,
            "recipe": run.get("recipe") if run else None,
            "representation": run.get("representation") if run else None,
            "git_commit": run.get("git_commit") if run else None,
            "cache_fingerprint": ckpt.cache_fingerprint,
        },
        "metrics": m,
        "in_run_metrics": in_run.metrics if in_run else None,
        "evaluation": {
            "set": "test",
            "max_frames": ev.max_frames,
            "device": ev.device,
            "cache": str(ev.cache),
            "seconds": round(ev.seconds, 3),
        },
        "rules": [asdict(r) for r in result.rules],
        "comparison": result.comparison,
        "previous": {k: result.previous.get(k) for k in ("sha256", "artifact", "metrics", "promoted_at")}
        if result.previous
        else None,
    }
    record_path = dst.with_suffix(".json")
    atomic_write_json(record_path, record)
    index["current"][key] = record
    atomic_write_json(folder / INDEX, index)
    src = record["source"]
    prev = (
        f"previous F1 {_pct(result.previous['metrics']['f1'])}" if result.previous else "first for this split"
    )
    line = (
        f"- {stamp} {key}: promoted `{name}` "
        f"(run #{src['run_id']}, {src['recipe']}, {src['representation']}, iteration {src['iteration']}): "
        f"full test acc {_pct(m.get('accuracy'))} / P {_pct(m.get('precision'))} / "
        f"R {_pct(m.get('recall'))} / F1 {_pct(m.get('f1'))} ({m.get('num_samples')} sequences; {prev}); "
        f"standalone = in-run; sha256 {result.sha256[:12]}\n"
    )
    log_path = folder / CHANGELOG
    old = (
        log_path.read_text()
        if log_path.is_file()
        else (
            "# Promoted checkpoints\n\nWritten by `sconet promote`, one line per promotion, newest last. "
            "A checkpoint is promoted only if it beats the promoted one on full-test macro-F1 and a "
            "standalone re-evaluation of the saved file reproduces its in-run metrics.\n\n"
        )
    )
    atomic_write_text(log_path, old + line)
    result.promoted = True
    result.artifact = dst
    result.record = record_path
    _record(db, result, str(dst))


def _record(db: Ledger, result: PromotionResult, artifact: str | None) -> None:
    try:
        db.add_promotion(
            split_key=result.split_key or "?",
            sha256=result.sha256,
            source_path=str(result.checkpoint),
            artifact_path=artifact,
            run_id=result.run_id,
            accepted=result.promoted,
            metrics=result.metrics,
            evidence=[asdict(r) for r in result.rules],
            comparison=result.comparison,
        )
    except LedgerError as exc:
        result.notes.append(f"the decision was not recorded in the ledger ({exc})")
