"""Bootstrap intervals, paired differences, McNemar and the stop rule (sconet.evaluation.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sconet.classes import CLASSES
from sconet.evaluation.metrics import evaluate_predictions
from sconet.evaluation.stats import (
    MCNEMAR_EXACT_BELOW,
    Interval,
    batched_confusion,
    bootstrap_intervals,
    mcnemar,
    metrics_from_confusion,
    paired_bootstrap,
    pooled_intervals,
    stop_rule,
    stratified_resamples,
)


def _classifier(
    rng: np.random.Generator, counts: tuple[int, ...], acc: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with fixed class counts; each sequence right with its class's probability, else one of
    the other classes at random."""
    y = np.concatenate([np.full(n, k) for k, n in enumerate(counts)])
    right = rng.random(y.size) < np.asarray(acc)[y]
    wrong = (y + rng.integers(1, len(counts), y.size)) % len(counts)
    return y, np.where(right, y, wrong)


@pytest.mark.parametrize("macro_over", ["present", "all"])
def test_batched_scoring_equals_evaluate_predictions(macro_over):
    rng = np.random.default_rng(3)
    cases = [
        ([0, 0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 0, 2, 0, 2, 2, 2, 2, 0, 2]),
        ([0, 0, 2, 2], [0, 2, 2, 2]),
        ([0, 0, 2], [0, 1, 2]),
    ]
    cases += [tuple(rng.integers(0, 3, (2, n))) for n in (1, 5, 40, 200)]
    for y, p in cases:
        ref = evaluate_predictions(y, p, macro_over=macro_over)
        got = metrics_from_confusion(np.array(ref.confusion), CLASSES, macro_over)
        for name, value in got.items():
            assert float(value) == pytest.approx(getattr(ref, name), abs=1e-12), (name, y, p)


def test_stratified_resamples_keep_class_counts_and_follow_the_seed():
    labels = np.array([2, 0, 0, 1, 2, 2, 0, 2])
    pos = stratified_resamples(labels, 50, seed=7)
    assert pos.shape == (50, 8)
    for row in pos:
        np.testing.assert_array_equal(np.bincount(labels[row], minlength=3), np.bincount(labels, minlength=3))
    np.testing.assert_array_equal(pos, stratified_resamples(labels, 50, seed=7))
    assert not np.array_equal(pos, stratified_resamples(labels, 50, seed=8))
    # resamples do vary (a bug returning the identity permutation would pass the count check)
    assert len({tuple(r) for r in pos}) > 40


def test_batched_confusion_matches_per_row_confusion():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
    pos = stratified_resamples(y, 6, seed=1)
    cms = batched_confusion(y, p, pos, 3)
    for row, cm in zip(pos, cms, strict=True):
        np.testing.assert_array_equal(cm, evaluate_predictions(y[row], p[row]).confusion_matrix)


def test_intervals_bracket_the_estimates_and_follow_settings():
    rng = np.random.default_rng(1)
    y, p = _classifier(rng, (40, 15, 60), (0.9, 0.4, 0.8))
    ci = bootstrap_intervals(y, p, n_resamples=500, seed=4)
    ref = evaluate_predictions(y, p)
    assert set(ci) == {"accuracy", "precision", "recall", "f1", "sensitivity", "specificity"}
    for name, iv in ci.items():
        assert iv.estimate == pytest.approx(getattr(ref, name))
        assert iv.low < iv.estimate < iv.high, name
        assert iv.level == 0.95
    assert ci == bootstrap_intervals(y, p, n_resamples=500, seed=4)  # seeded
    assert ci["f1"] != bootstrap_intervals(y, p, n_resamples=500, seed=5)["f1"]
    narrow = bootstrap_intervals(y, p, n_resamples=500, seed=4, level=0.5)["f1"]
    assert ci["f1"].low < narrow.low < narrow.high < ci["f1"].high
    # the same classifier on 10x the sequences: a much narrower interval
    y10, p10 = _classifier(rng, (400, 150, 600), (0.9, 0.4, 0.8))
    wide, tight = ci["accuracy"], bootstrap_intervals(y10, p10, n_resamples=500)["accuracy"]
    assert (tight.high - tight.low) < 0.5 * (wide.high - wide.low)
    # class names accepted, bad input named
    named = bootstrap_intervals([CLASSES[i] for i in y], [CLASSES[i] for i in p], n_resamples=500, seed=4)
    assert named == ci
    with pytest.raises(ValueError, match="y_true has 3 entries"):
        bootstrap_intervals([0, 1, 2], [0, 1], n_resamples=10)
    with pytest.raises(ValueError, match="level"):
        bootstrap_intervals(y, p, level=1.5)


def test_no_negative_class_leaves_out_screening():
    names = ("a", "b", "c")
    ci = bootstrap_intervals([0, 1, 2, 1], [0, 1, 1, 1], n_resamples=50, class_names=names)
    assert "sensitivity" not in ci and "f1" in ci


def test_bootstrap_coverage_of_a_known_accuracy():
    """A classifier with known per-class accuracy on a fixed-class-count test set: the 95 %
    interval must contain the true accuracy in about 95 % of simulated test sets."""
    rng = np.random.default_rng(2026)
    counts, acc = (60, 30, 110), (0.9, 0.5, 0.8)
    truth = float(np.dot(counts, acc) / sum(counts))
    sims, hits, widths = 300, 0, []
    for i in range(sims):
        y, p = _classifier(rng, counts, acc)
        iv = bootstrap_intervals(y, p, n_resamples=500, seed=i)["accuracy"]
        hits += iv.contains(truth)
        widths.append(iv.high - iv.low)
    coverage = hits / sims
    print(f"coverage {coverage:.3f}, mean width {np.mean(widths):.4f}")
    assert 0.91 <= coverage <= 0.98, coverage
    # binomial standard error of the accuracy: the width is about 2 x 1.96 x se
    se = math.sqrt(sum(n * a * (1 - a) for n, a in zip(counts, acc, strict=True))) / sum(counts)
    assert float(np.mean(widths)) == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_paired_interval_of_identical_predictions_is_zero():
    rng = np.random.default_rng(5)
    y, p = _classifier(rng, (30, 10, 50), (0.8, 0.5, 0.7))
    diff = paired_bootstrap(y, p, p.copy(), n_resamples=300)
    for name, iv in diff.items():
        assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0), name
        assert iv.contains(0.0)


def test_paired_interval_finds_a_real_difference_and_its_sign():
    rng = np.random.default_rng(6)
    y, good = _classifier(rng, (100, 40, 160), (0.95, 0.8, 0.95))
    bad = good.copy()
    flip = rng.random(y.size) < 0.3
    bad[flip] = (y[flip] + 1) % 3  # B is wrong on 30 % more sequences
    d = paired_bootstrap(y, good, bad, n_resamples=500)
    assert d["accuracy"].low > 0 and d["f1"].low > 0
    assert d["accuracy"].estimate == pytest.approx(
        evaluate_predictions(y, good).accuracy - evaluate_predictions(y, bad).accuracy
    )
    r = paired_bootstrap(y, bad, good, n_resamples=500)
    assert r["f1"].high < 0
    # pairing matters: the paired interval is narrower than the two marginal ones added up
    ma, mb = bootstrap_intervals(y, good, n_resamples=500), bootstrap_intervals(y, bad, n_resamples=500)
    marginal = (ma["f1"].high - ma["f1"].low) + (mb["f1"].high - mb["f1"].low)
    assert d["f1"].high - d["f1"].low < marginal


def test_pooled_interval_averages_the_sets():
    rng = np.random.default_rng(8)
    y, p1 = _classifier(rng, (40, 10, 50), (0.9, 0.5, 0.8))
    _, p2 = _classifier(rng, (40, 10, 50), (0.7, 0.3, 0.6))
    pooled = pooled_intervals(y, [p1, p2], n_resamples=400)
    f1s = [evaluate_predictions(y, p).f1 for p in (p1, p2)]
    assert pooled["f1"].estimate == pytest.approx(np.mean(f1s))
    assert pooled["f1"].low < pooled["f1"].estimate < pooled["f1"].high
    one = pooled_intervals(y, [p1], n_resamples=400)
    assert one == bootstrap_intervals(y, p1, n_resamples=400)
    with pytest.raises(ValueError, match="no prediction sets"):
        pooled_intervals(y, [])


def test_mcnemar_exact_hand_case():
    # 10 sequences, all of class 0; A right on 0..7, B right on 0, 1, 8, 9 -> b = 6 (A only), c = 2
    y = np.zeros(10, int)
    a = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    b = np.array([0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
    r = mcnemar(y, a, b)
    assert (r.a_only, r.b_only, r.both_right, r.both_wrong, r.discordant) == (6, 2, 2, 0, 8)
    assert r.method == "exact binomial"
    # P(X <= 2 | n=8, 1/2) = (1 + 8 + 28) / 256; two-sided 74 / 256
    assert r.p_value == pytest.approx(74 / 256)
    assert mcnemar(y, b, a).p_value == pytest.approx(74 / 256)
    same = mcnemar(y, a, a)
    assert same.discordant == 0 and same.p_value == 1.0


def test_mcnemar_chi_square_hand_case():
    # b = 30 (A only), c = 12 (B only), 8 both right, 0 both wrong
    y = np.zeros(50, int)
    a = np.r_[np.zeros(30), np.ones(12), np.zeros(8)].astype(int)
    b = np.r_[np.ones(30), np.zeros(12), np.zeros(8)].astype(int)
    r = mcnemar(y, a, b)
    assert r.discordant == 42 >= MCNEMAR_EXACT_BELOW
    assert r.method == "chi-square (continuity corrected)"
    assert r.statistic == pytest.approx((18 - 1) ** 2 / 42)  # 6.881
    assert r.p_value == pytest.approx(0.008711, rel=1e-3)  # chi-square(1) upper tail at 6.881
    assert r.to_dict()["discordant"] == 42


def _hist(f1s, highs, start=1000, step=1000):
    pairs = enumerate(zip(f1s, highs, strict=True))
    return [{"iteration": start + i * step, "f1": f, "f1_high": h} for i, (f, h) in pairs]


def test_stop_rule_stops_a_flat_branch_below_the_baseline():
    d = stop_rule(_hist([0.50, 0.52, 0.51, 0.50], [0.70, 0.72, 0.71, 0.69]), baseline_f1=0.80, patience=3)
    assert d.stop and d.slope_per_1k is not None and d.slope_per_1k < 0
    assert [e["iteration"] for e in d.evidence] == [2000, 3000, 4000]
    assert d.to_dict()["baseline_f1"] == 0.80
    # the reason is the evidence a reader of the report and the ledger sees: every figure in it
    assert d.reason == (
        "F1 upper bound below the baseline's 80.00 at the last 3 evaluations (iterations 2000, 3000, "
        "4000) and not trending upward (-1.00 F1 points per 1k iterations)"
    )


def test_stop_rule_keeps_a_branch_that_trends_upward():
    d = stop_rule(_hist([0.40, 0.45, 0.50], [0.60, 0.65, 0.70]), baseline_f1=0.80, patience=3)
    assert not d.stop and d.slope_per_1k == pytest.approx(0.05)
    assert d.reason == (
        "F1 upper bound below the baseline's 80.00 at the last 3 evaluations, "
        "but trending upward (+5.00 F1 points per 1k iterations)"
    )


def test_stop_rule_keeps_a_branch_whose_bound_reaches_the_baseline():
    d = stop_rule(_hist([0.70, 0.69, 0.68], [0.79, 0.80, 0.78]), baseline_f1=0.80, patience=3)
    assert not d.stop and d.reason == "the F1 upper bound reached the baseline's 80.00 at iteration 2000"
    two = stop_rule(_hist([0.70, 0.69, 0.68], [0.81, 0.80, 0.78]), baseline_f1=0.80, patience=3)
    assert not two.stop and two.reason.endswith("at iteration 1000, 2000")


def test_stop_rule_waits_for_patience_evaluations():
    d = stop_rule(_hist([0.3, 0.3], [0.4, 0.4]), baseline_f1=0.8, patience=3)
    assert not d.stop and "only 2 of the 3" in d.reason
    assert stop_rule(_hist([0.3, 0.3], [0.4, 0.4]), baseline_f1=0.8, patience=2).stop
    with pytest.raises(ValueError, match="patience"):
        stop_rule([], 0.8, patience=1)


def test_interval_round_trip_and_format():
    iv = Interval(0.5, 0.4, 0.6)
    assert Interval.from_dict(iv.to_dict()) == iv
    assert iv.format() == "50.00 [40.00, 60.00]"
    assert Interval(0.01, -0.02, 0.03).format(signed=True) == "+1.00 [-2.00, +3.00]"
