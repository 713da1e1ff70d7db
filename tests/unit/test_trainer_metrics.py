"""Metric, fairness and latency math against values computed by hand (in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kubeloop.trainer import metrics


def test_positive_label_is_the_last_in_sorted_order() -> None:
    assert metrics.positive_label(["1", "0"]) == "1"
    assert metrics.positive_label(["true", "false"]) == "true"
    assert metrics.positive_label(["yes", "no"]) == "yes"


def test_binary_metrics_are_those_of_the_positive_class() -> None:
    y_true = ["no", "no", "yes", "yes", "yes", "no", "yes", "no"]
    y_pred = ["no", "yes", "yes", "no", "yes", "no", "yes", "yes"]
    # positive "yes": TP = rows 2, 4, 6 (3); FN = row 3 (1); FP = rows 1, 7 (2); TN = rows 0, 5 (2)
    result = metrics.classification_metrics(y_true, y_pred, None, ["no", "yes"])
    assert result["accuracy"] == pytest.approx(5 / 8)
    assert result["precision"] == pytest.approx(3 / 5)
    assert result["recall"] == pytest.approx(3 / 4)
    assert result["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))  # 0.6667
    assert "roc_auc" not in result  # no probabilities given


def test_binary_roc_auc_and_log_loss() -> None:
    y_true = ["n", "n", "y", "y"]
    p_yes = np.array([0.1, 0.4, 0.35, 0.8])
    proba = np.column_stack([1 - p_yes, p_yes])
    y_pred = ["n", "n", "n", "y"]
    result = metrics.classification_metrics(y_true, y_pred, proba, ["n", "y"])
    # Pairs (positive score > negative score): 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1, 0.8>0.4 → 3/4
    assert result["roc_auc"] == pytest.approx(0.75)
    # -mean(ln 0.9, ln 0.6, ln 0.35, ln 0.8)
    expected = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert result["log_loss"] == pytest.approx(expected)


def test_multiclass_metrics_are_macro_averages() -> None:
    y_true = ["a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "b", "b", "b", "c", "a"]
    # a: TP 1, FP 1, FN 1 → P .5 R .5 F .5
    # b: TP 2, FP 1, FN 0 → P 2/3 R 1 F .8
    # c: TP 1, FP 0, FN 1 → P 1 R .5 F 2/3
    result = metrics.classification_metrics(y_true, y_pred, None, ["a", "b", "c"])
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert result["recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert result["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_multiclass_roc_auc_is_one_vs_rest_over_present_classes() -> None:
    labels = ["a", "b", "c"]
    y_true = np.array(["a", "a", "b", "b"])  # "c" absent: its AUC does not exist
    proba = np.array(
        [
            [0.7, 0.2, 0.1],  # a
            [0.3, 0.4, 0.3],  # a
            [0.4, 0.5, 0.1],  # b
            [0.1, 0.8, 0.1],  # b
        ]
    )
    # a vs rest: a-scores .7, .3 vs rest .4, .1 → pairs .7>.4 .7>.1 .3>.1, .3<.4 → 3/4
    # b vs rest: b-scores .5, .8 vs rest .2, .4 → all 4 pairs → 1
    assert metrics.roc_auc(y_true, proba, labels) == pytest.approx((0.75 + 1.0) / 2)
    assert metrics.roc_auc(np.array(["a", "a"]), proba[:2], labels) is None  # one class only


def test_confusion_matrix_rows_are_true_labels() -> None:
    matrix = metrics.confusion(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    assert matrix == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_regression_metrics() -> None:
    result = metrics.regression_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    # errors 0, 1, -1, 0: MSE .5; MAE .5; SS_res 2, SS_tot 5 (mean 2.5) → R² 1 - 2/5
    assert result == pytest.approx({"rmse": math.sqrt(0.5), "mae": 0.5, "r2": 0.6})


def test_undefined_metrics_are_left_out() -> None:
    assert "r2" not in metrics.regression_metrics([3.0, 3.0], [2.0, 4.0])  # constant target
    assert "r2" not in metrics.regression_metrics([3.0], [2.0])  # one row
    assert metrics.regression_metrics([], []) == {}
    assert metrics.classification_metrics([], [], None, ["a", "b"]) == {}


# --- fairness --------------------------------------------------------------------------------

GROUPS = np.array(["A"] * 4 + ["B"] * 4)
PREDICTED = np.array([1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
ACTUAL = np.array([1, 0, 1, 0, 1, 0, 1, 1], dtype=bool)


def test_selection_and_true_positive_rates() -> None:
    assert metrics.selection_rates(PREDICTED, GROUPS) == {"A": 0.5, "B": 0.25}
    # A: positives rows 0 (predicted), 2 (not) → 1/2; B: rows 4 (predicted), 6, 7 → 1/3
    assert metrics.true_positive_rates(ACTUAL, PREDICTED, GROUPS) == pytest.approx(
        {"A": 0.5, "B": 1 / 3}
    )


def test_fairness_headline_numbers() -> None:
    assert metrics.demographic_parity_difference(PREDICTED, GROUPS) == pytest.approx(0.25)
    assert metrics.disparate_impact_ratio(PREDICTED, GROUPS) == pytest.approx(0.5)
    assert metrics.equal_opportunity_difference(ACTUAL, PREDICTED, GROUPS) == pytest.approx(1 / 6)


def test_fairness_edge_cases() -> None:
    nobody = np.zeros(8, dtype=bool)
    assert metrics.disparate_impact_ratio(nobody, GROUPS) is None  # 0 / 0
    assert metrics.demographic_parity_difference(nobody, GROUPS) == 0.0
    one_group = np.array(["A"] * 8)
    assert metrics.demographic_parity_difference(PREDICTED, one_group) == 0.0
    # Only group A has positives: no second rate to compare with.
    only_a = np.array([1, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    assert metrics.equal_opportunity_difference(only_a, PREDICTED, GROUPS) is None


def test_fairness_block_uses_the_positive_class_of_a_binary_model() -> None:
    y_true = np.where(ACTUAL, "yes", "no")
    y_pred = np.where(PREDICTED, "yes", "no")
    block = metrics.fairness(y_true, y_pred, GROUPS, ["no", "yes"])
    assert block["positiveClasses"] == ["yes"]
    assert block["groups"] == {"A": 4, "B": 4}
    assert block["metrics"] == pytest.approx(
        {
            "demographic_parity_difference": 0.25,
            "disparate_impact_ratio": 0.5,
            "equal_opportunity_difference": 1 / 6,
        }
    )
    assert block["perClass"]["yes"]["selectionRate"] == {"A": 0.5, "B": 0.25}


def test_fairness_of_a_multiclass_model_reports_the_worst_class() -> None:
    groups = np.array(["A", "A", "B", "B"])
    y_true = np.array(["x", "y", "z", "x"])
    y_pred = np.array(["x", "x", "z", "y"])
    block = metrics.fairness(y_true, y_pred, groups, ["x", "y", "z"])
    # selection rates  x: A 1.0, B 0.0 (gap 1); y: A 0, B .5 (gap .5); z: A 0, B .5 (gap .5)
    assert block["metrics"]["demographic_parity_difference"] == pytest.approx(1.0)
    # ratios: x 0/1 = 0 is the worst (y, z also 0)
    assert block["metrics"]["disparate_impact_ratio"] == pytest.approx(0.0)
    assert block["positiveClasses"] == ["x", "y", "z"]


def test_latency_percentiles_in_milliseconds() -> None:
    samples = [i / 1000 for i in range(1, 101)]  # 1 ms ... 100 ms
    result = metrics.latency_percentiles(samples)
    # numpy's linear interpolation: p50 between 50 and 51, p99 = 99 + 0.01 x (100 - 99)
    assert result == pytest.approx({"latency_p50_ms": 50.5, "latency_p99_ms": 99.01})
    assert metrics.latency_percentiles([]) == {}
