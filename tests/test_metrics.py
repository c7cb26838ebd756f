"""Metrics against hand-computed values (scikit-learn semantics, zero_division=0)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sconet.classes import CLASSES
from sconet.evaluation import evaluate_predictions

# negative=0, neutral=1, positive=2 ; neutral is never predicted
Y_TRUE = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 2, 0, 2, 2, 2, 2, 0, 2]


def test_hand_case_with_never_predicted_class():
    m = evaluate_predictions(Y_TRUE, Y_PRED)
    assert m.confusion == ((3, 0, 1), (0, 0, 2), (1, 0, 3))
    np.testing.assert_array_equal(m.confusion_matrix, [[3, 0, 1], [0, 0, 2], [1, 0, 3]])
    assert m.accuracy == pytest.approx(0.6)
    neg, neu, pos = m.per_class
    assert (neg.name, neu.name, pos.name) == CLASSES
    # precision: 3/4, 0/0 -> 0 (zero division), 3/6
    assert (neg.precision, neu.precision, pos.precision) == pytest.approx((0.75, 0.0, 0.5))
    assert (neg.recall, neu.recall, pos.recall) == pytest.approx((0.75, 0.0, 0.75))
    # F1 = 2tp / (2tp + fp + fn): 6/8, 0/2, 6/10
    assert (neg.f1, neu.f1, pos.f1) == pytest.approx((0.75, 0.0, 0.6))
    assert (neg.support, neu.support, pos.support) == (4, 2, 4)
    assert m.precision == pytest.approx(1.25 / 3)
    assert m.recall == pytest.approx(0.5)
    assert m.f1 == pytest.approx(0.45)
    # screening: {neutral, positive} vs negative
    assert m.sensitivity == pytest.approx(5 / 6)
    assert m.specificity == pytest.approx(0.75)
    assert m.num_samples == 10 and m.macro_classes == CLASSES


def test_class_absent_from_truth_and_predictions():
    y_true, y_pred = [0, 0, 2, 2], [0, 2, 2, 2]
    m = evaluate_predictions(y_true, y_pred)  # scikit-learn default: macro over present classes
    assert m.macro_classes == ("negative", "positive")
    assert m.precision == pytest.approx((1.0 + 2 / 3) / 2)
    assert m.recall == pytest.approx((0.5 + 1.0) / 2)
    assert m.f1 == pytest.approx((2 / 3 + 0.8) / 2)
    assert m.per_class[1].support == 0 and m.per_class[1].f1 == 0.0
    assert m.sensitivity == pytest.approx(1.0) and m.specificity == pytest.approx(0.5)
    every = evaluate_predictions(y_true, y_pred, macro_over="all")
    assert every.precision == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    assert every.accuracy == m.accuracy == pytest.approx(0.75)


def test_class_absent_from_truth_but_predicted_counts_in_macro():
    m = evaluate_predictions([0, 0, 2], [0, 1, 2])
    assert m.macro_classes == CLASSES
    assert m.precision == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert m.recall == pytest.approx((0.5 + 0.0 + 1.0) / 3)


def test_perfect_and_names_input():
    m = evaluate_predictions(["negative", "Neutral", "positive"], np.array([0, 1, 2]))
    assert (m.accuracy, m.precision, m.recall, m.f1, m.sensitivity, m.specificity) == (1, 1, 1, 1, 1, 1)


def test_no_negatives_gives_zero_specificity_by_zero_division():
    m = evaluate_predictions([2, 2], [2, 0])
    assert m.specificity == 0.0 and m.sensitivity == 0.5


def test_to_dict_is_json_friendly_and_table_renders():
    m = evaluate_predictions(Y_TRUE, Y_PRED)
    d = json.loads(json.dumps(m.to_dict()))
    assert d["accuracy"] == pytest.approx(0.6)
    assert d["confusion"] == [[3, 0, 1], [0, 0, 2], [1, 0, 3]]
    assert d["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    table = m.format_table()
    assert "60.00" in table and "neutral" in table and "sensitivity" in table
    assert "0.6000" in m.format_table(percent=False)


def test_custom_classes_without_negative():
    m = evaluate_predictions([0, 1], [0, 0], num_classes=2, class_names=("a", "b"))
    assert m.sensitivity is None and m.specificity is None
    assert "n/a" not in m.format_table()


def test_input_errors():
    with pytest.raises(ValueError, match="outside"):
        evaluate_predictions([0, 3], [0, 1])
    with pytest.raises(ValueError, match="2 entries"):
        evaluate_predictions([0, 1], [0])
    with pytest.raises(ValueError, match="unknown class name"):
        evaluate_predictions(["healthy"], [0])
    with pytest.raises(ValueError, match="no predictions"):
        evaluate_predictions([], [])
    with pytest.raises(ValueError, match="class names"):
        evaluate_predictions([0], [0], num_classes=2)


def test_metrics_module_does_not_import_torch():
    code = "import sys, sconet.evaluation, sconet.classes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
