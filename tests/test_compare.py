"""Paired comparison of prediction sets (sconet.experiments.compare)."""

from __future__ import annotations

import numpy as np
import pytest

from sconet.evaluation.metrics import evaluate_predictions
from sconet.evaluation.stats import mcnemar
from sconet.experiments.compare import CompareError, PredictionSet, compare_sets, softmax


def _set(name, ids, labels, pred, **meta):
    probs = np.full((len(pred), 3), 0.1)
    probs[np.arange(len(pred)), pred] = 0.8
    return PredictionSet(
        name,
        [str(i) for i in ids],
        np.asarray(labels),
        probs,
        **{"dataset": "synthetic", "split": "Scoliosis1K_112", **meta},
    )


def _data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    good = np.where(rng.random(n) < 0.9, y, (y + 1) % 3)
    bad = np.where(rng.random(n) < 0.5, y, (y + 2) % 3)
    return y, good, bad


def test_identical_checkpoints_differ_by_exactly_zero():
    y, good, _ = _data()
    c = compare_sets(_set("a", range(120), y, good), _set("b", range(120), y, good.copy()), n_resamples=300)
    for iv in c.differences.values():
        assert iv.contains(0.0) and (iv.low, iv.high) == (0.0, 0.0)
    assert not c.significant() and c.mcnemar.discordant == 0 and c.mcnemar.p_value == 1.0
    assert "no significant macro-F1 difference" in c.format()


def test_a_clearly_better_model_is_significant_and_the_numbers_agree():
    y, good, bad = _data(1)
    c = compare_sets(_set("good", range(120), y, good), _set("bad", range(120), y, bad), n_resamples=400)
    assert c.significant("f1") and c.differences["accuracy"].low > 0
    assert c.metrics_a["f1"].estimate == pytest.approx(evaluate_predictions(y, good).f1)
    assert c.differences["f1"].estimate == pytest.approx(
        evaluate_predictions(y, good).f1 - evaluate_predictions(y, bad).f1
    )
    assert c.mcnemar == mcnemar(y, good, bad)
    doc = c.to_dict()
    assert doc["f1_gain_significant"] is True and doc["common_ids"] == 120
    assert "A is better" in c.format()
    assert (
        compare_sets(_set("bad", range(120), y, bad), _set("good", range(120), y, good), n_resamples=400)
        .differences["f1"]
        .high
        < 0
    )


def test_intersection_of_ids_in_any_order():
    y, good, bad = _data(2)
    a = _set("a", range(120), y, good)
    order = np.arange(10, 120)[::-1]  # B holds 110 of the ids, reversed
    b = _set("b", order, y[order], bad[order])
    c = compare_sets(a, b, n_resamples=200)
    assert (c.n, c.only_a, c.only_b) == (110, 10, 0)
    ref = compare_sets(
        _set("a", range(10, 120), y[10:], good[10:]),
        _set("b", range(10, 120), y[10:], bad[10:]),
        n_resamples=200,
    )
    assert c.differences == ref.differences
    assert any("110 ids both" in n for n in c.notes)


@pytest.mark.parametrize(
    ("meta_b", "message"),
    [
        ({"split": "Scoliosis1K_118"}, "different splits"),
        ({"dataset": "Scoliosis1K"}, "different datasets"),
        ({"subset": "val"}, "different id sets"),
    ],
)
def test_different_splits_are_refused(meta_b, message):
    y, good, bad = _data(3)
    with pytest.raises(CompareError, match=message):
        compare_sets(_set("a", range(120), y, good), _set("b", range(120), y, bad, **meta_b))


def test_no_common_ids_or_conflicting_labels_are_refused():
    y, good, bad = _data(4)
    with pytest.raises(CompareError, match="share no sequence ids"):
        compare_sets(_set("a", range(120), y, good), _set("b", range(200, 320), y, bad))
    with pytest.raises(CompareError, match="different true classes"):
        compare_sets(_set("a", range(120), y, good), _set("b", range(120), (y + 1) % 3, bad))


def test_json_round_trip_and_softmax():
    y, good, _ = _data(5, 10)
    a = _set("a", range(10), y, good)
    back = PredictionSet.from_json(a.to_json(), name="a", dataset="synthetic", split="Scoliosis1K_112")
    np.testing.assert_array_equal(back.pred, a.pred)
    assert back.ids == a.ids and back.labels.tolist() == a.labels.tolist()
    p = softmax([[0.0, 0.0, 0.0], [1000.0, 0.0, -1000.0]])
    np.testing.assert_allclose(p.sum(1), 1.0)
    np.testing.assert_allclose(p[0], 1 / 3)
    assert p[1, 0] == pytest.approx(1.0)
