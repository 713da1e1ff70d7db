"""Metrics of a trial: quality, per-slice quality, fairness and latency, as pure functions.

Everything here takes arrays and returns plain Python numbers, so it is unit-tested against
hand-computed values and reused for validation, test and every slice alike. A metric that is
undefined for the data it is given (ROC AUC of a one-class set, R² of one row, a disparate
impact ratio when nobody is selected) is *left out* rather than reported as NaN: metrics
travel as JSON and into ``ModelVersion.spec.metrics`` (floats only), and a gate on a missing
metric must fail visibly rather than compare against NaN.

Conventions:

* labels are strings, in sorted order (the order of the ONNX ``probabilities`` columns);
* **binary** precision, recall and F1 are those of the *positive class*, which is the last
  label in sorted order (``"1"`` of ``"0"/"1"``, ``"true"`` of ``"false"/"true"``, ``"yes"``
  of ``"no"/"yes"``); **multiclass** ones are macro averages. ROC AUC is binary on the
  positive class, or one-vs-rest macro over the classes present in the data;
* **fairness** compares the groups of one sensitive column on the positive class: selection
  rate P(ŷ=pos | group), true-positive rate P(ŷ=pos | y=pos, group). Demographic parity
  difference = max - min selection rate; disparate impact ratio = min / max selection rate;
  equal opportunity difference = max - min true-positive rate over groups that have positives.
  For multiclass models each class is taken as the positive class in turn and the worst
  value is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

Array = Any  # numpy arrays; sklearn and numpy stubs are too loose to be worth more precision


def positive_label(labels: Sequence[str]) -> str:
    """The class whose precision/recall/F1 a binary model reports: the last in sorted order."""
    return sorted(labels)[-1]


def classification_metrics(
    y_true: Array, y_pred: Array, proba: Array | None, labels: Sequence[str]
) -> dict[str, float]:
    """accuracy, precision, recall, f1, roc_auc and log_loss (those defined for the data).

    ``labels`` are all classes the model knows, in the column order of ``proba``.
    """
    if len(y_true) == 0:
        return {}
    labels = list(labels)
    # scikit-learn's metrics sort string arrays on every call; integer codes are many times
    # faster and give the same numbers.
    true_codes, pred_codes = encode(y_true, labels), encode(y_pred, labels)
    codes = list(range(len(labels)))
    averaging: dict[str, Any] = (
        {"average": "binary", "pos_label": labels.index(positive_label(labels))}
        if len(labels) == 2
        else {"average": "macro", "labels": codes}
    )
    result = {
        "accuracy": float(accuracy_score(true_codes, pred_codes)),
        "precision": float(precision_score(true_codes, pred_codes, zero_division=0, **averaging)),
        "recall": float(recall_score(true_codes, pred_codes, zero_division=0, **averaging)),
        "f1": float(f1_score(true_codes, pred_codes, zero_division=0, **averaging)),
    }
    if proba is not None:
        proba = np.asarray(proba, dtype=np.float64)
        # Models fitted on float32 inputs return rows that sum to 1 only within ~1e-7, which
        # log_loss warns about; renormalising changes no digit that matters.
        totals = proba.sum(axis=1, keepdims=True)
        proba = np.divide(proba, totals, out=proba.copy(), where=totals > 0)
        auc = roc_auc(y_true, proba, labels)
        if auc is not None:
            result["roc_auc"] = auc
        result["log_loss"] = float(log_loss(true_codes, proba, labels=codes))
    return result


def encode(values: Array, labels: Sequence[str]) -> Array:
    """Position of every value in ``labels`` (-1 for values that are not labels)."""
    return np.asarray(
        pd.Categorical(np.asarray(values, dtype=object), categories=list(labels)).codes
    )


def roc_auc(y_true: Array, proba: Array, labels: Sequence[str]) -> float | None:
    """Binary ROC AUC of the positive class, or one-vs-rest macro AUC; None if undefined.

    One-vs-rest skips classes absent from ``y_true`` (their AUC does not exist) instead of
    failing, and is None when fewer than two classes are present.
    """
    labels = list(labels)
    codes = encode(y_true, labels)
    present = [index for index in range(len(labels)) if np.any(codes == index)]
    if len(present) < 2:
        return None
    if len(labels) == 2:
        positive = labels.index(positive_label(labels))
        return float(roc_auc_score(codes == positive, proba[:, positive]))
    scores = [float(roc_auc_score(codes == index, proba[:, index])) for index in present]
    return float(np.mean(scores))


def confusion(y_true: Array, y_pred: Array, labels: Sequence[str]) -> list[list[int]]:
    """Confusion matrix as nested lists: row = true label, column = predicted label."""
    codes = list(range(len(labels)))
    matrix = confusion_matrix(encode(y_true, labels), encode(y_pred, labels), labels=codes)
    return [[int(cell) for cell in row] for row in matrix]


def regression_metrics(y_true: Array, y_pred: Array) -> dict[str, float]:
    """rmse, mae and r2 (r2 only with at least two rows and a non-constant target)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if len(y_true) == 0:
        return {}
    result = {
        "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
    }
    if len(y_true) >= 2 and float(np.var(y_true)) > 0:
        result["r2"] = float(r2_score(y_true, y_pred))
    return result


# --- fairness --------------------------------------------------------------------------------


def selection_rates(predicted_positive: Array, groups: Array) -> dict[str, float]:
    """P(ŷ = positive | group) for every group."""
    predicted_positive = np.asarray(predicted_positive, dtype=bool)
    groups = np.asarray(groups, dtype=object)
    return {
        str(group): float(predicted_positive[groups == group].mean())
        for group in _sorted_groups(groups)
    }


def true_positive_rates(
    actual_positive: Array, predicted_positive: Array, groups: Array
) -> dict[str, float]:
    """P(ŷ = positive | y = positive, group) for every group that has positives."""
    actual_positive = np.asarray(actual_positive, dtype=bool)
    predicted_positive = np.asarray(predicted_positive, dtype=bool)
    groups = np.asarray(groups, dtype=object)
    rates: dict[str, float] = {}
    for group in _sorted_groups(groups):
        mask = (groups == group) & actual_positive
        if mask.any():
            rates[str(group)] = float(predicted_positive[mask].mean())
    return rates


def demographic_parity_difference(predicted_positive: Array, groups: Array) -> float | None:
    """max - min selection rate over groups (0 with one group, None without rows)."""
    rates = list(selection_rates(predicted_positive, groups).values())
    return max(rates) - min(rates) if rates else None


def disparate_impact_ratio(predicted_positive: Array, groups: Array) -> float | None:
    """min / max selection rate over groups; None when no group is ever selected."""
    rates = list(selection_rates(predicted_positive, groups).values())
    if not rates or max(rates) == 0:
        return None
    return min(rates) / max(rates)


def equal_opportunity_difference(
    actual_positive: Array, predicted_positive: Array, groups: Array
) -> float | None:
    """max - min true-positive rate over groups with positives; None with fewer than two."""
    rates = list(true_positive_rates(actual_positive, predicted_positive, groups).values())
    return max(rates) - min(rates) if len(rates) >= 2 else None


def fairness(y_true: Array, y_pred: Array, groups: Array, labels: Sequence[str]) -> dict[str, Any]:
    """The fairness block of one sensitive column (see the module docstring).

    Returns the three headline numbers (those that are defined), the positive class(es) used,
    and per group: rows, selection rate and true-positive rate.
    """
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    groups = np.asarray(groups, dtype=object)
    labels = sorted(labels)
    positives = [positive_label(labels)] if len(labels) == 2 else labels
    worst: dict[str, float] = {}
    per_class: dict[str, dict[str, Any]] = {}
    for positive in positives:
        actual, predicted = y_true == positive, y_pred == positive
        values = {
            "demographic_parity_difference": demographic_parity_difference(predicted, groups),
            "disparate_impact_ratio": disparate_impact_ratio(predicted, groups),
            "equal_opportunity_difference": equal_opportunity_difference(actual, predicted, groups),
        }
        per_class[positive] = {
            "metrics": {name: value for name, value in values.items() if value is not None},
            "selectionRate": selection_rates(predicted, groups),
            "truePositiveRate": true_positive_rates(actual, predicted, groups),
        }
        for name, value in values.items():
            if value is None:
                continue
            # Worst case: the largest gap, the smallest ratio.
            better_is_lower = name != "disparate_impact_ratio"
            current = worst.get(name)
            if current is None or (value > current if better_is_lower else value < current):
                worst[name] = value
    counts = {str(group): int((groups == group).sum()) for group in _sorted_groups(groups)}
    return {
        "metrics": worst,
        "positiveClasses": positives,
        "groups": counts,
        "perClass": per_class,
    }


def _sorted_groups(groups: Array) -> list[Any]:
    return sorted(set(groups.tolist()), key=str)


# --- latency ---------------------------------------------------------------------------------


def latency_percentiles(samples_seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (linear interpolation between order statistics)."""
    if not samples_seconds:
        return {}
    millis = np.asarray(samples_seconds, dtype=np.float64) * 1000.0
    return {
        "latency_p50_ms": float(np.percentile(millis, 50)),
        "latency_p99_ms": float(np.percentile(millis, 99)),
    }
