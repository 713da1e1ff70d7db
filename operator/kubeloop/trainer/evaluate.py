"""Evaluation of a fitted pipeline: metric blocks, slices, fairness, permutation importance.

Glue between the model and the pure functions of ``metrics.py``: it predicts, then hands
arrays over. Kept apart from ``train.py`` so the orchestration there reads as the list of
steps a trial takes. Permutation importance runs on the exported ONNX model
(:class:`OnnxPredictor`): several times cheaper than the scikit-learn pipeline per call,
and it explains the model that is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.inspection import permutation_importance
from sklearn.pipeline import Pipeline

from kubeloop.api.estimators import Task
from kubeloop.trainer import metrics
from kubeloop.trainer.data import Feature, group_labels, onnx_feeds

# Groups with fewer test rows than this are listed but flagged: their numbers are noise.
SMALL_GROUP_ROWS = 30


@dataclass
class Predictions:
    """What the model said about one set of rows."""

    labels: np.ndarray[Any, Any]  # class labels (classification) or values (regression)
    proba: np.ndarray[Any, Any] | None  # [rows, classes] for classification


def predict(pipeline: Pipeline, frame: pd.DataFrame, task: Task) -> Predictions:
    """Labels and probabilities (classification) or values (regression) for ``frame``."""
    if task == "classification":
        proba = np.asarray(pipeline.predict_proba(frame), dtype=np.float64)
        # The class of highest probability is what every allowlisted classifier's predict()
        # returns; taking it from the probabilities saves a second pass over the rows.
        classes = np.asarray(pipeline.classes_).astype(str).astype(object)
        return Predictions(classes[np.argmax(proba, axis=1)], proba)
    return Predictions(np.asarray(pipeline.predict(frame), dtype=np.float64), None)


def quality(
    y: np.ndarray[Any, Any], predictions: Predictions, task: Task, labels: list[str]
) -> dict[str, float]:
    """The task's metrics for one set of rows."""
    if task == "classification":
        return metrics.classification_metrics(y, predictions.labels, predictions.proba, labels)
    return metrics.regression_metrics(y, predictions.labels)


def slice_metrics(
    slices: dict[str, pd.Series],
    y: np.ndarray[Any, Any],
    predictions: Predictions,
    task: Task,
    labels: list[str],
) -> dict[str, list[dict[str, Any]]]:
    """Per column, per group: rows and the task's metrics on the test rows of that group."""
    result: dict[str, list[dict[str, Any]]] = {}
    for column, series in slices.items():
        groups = group_labels(series)
        rows: list[dict[str, Any]] = []
        for group in sorted(set(groups.tolist()), key=str):
            mask = groups == group
            subset = Predictions(
                predictions.labels[mask],
                predictions.proba[mask] if predictions.proba is not None else None,
            )
            count = int(mask.sum())
            rows.append(
                {
                    "group": str(group),
                    "rows": count,
                    "small": count < SMALL_GROUP_ROWS,
                    "metrics": quality(y[mask], subset, task, labels),
                }
            )
        result[column] = rows
    return result


def fairness_blocks(
    sensitive: dict[str, pd.Series],
    y: np.ndarray[Any, Any],
    predictions: Predictions,
    labels: list[str],
) -> dict[str, dict[str, Any]]:
    """The fairness block of every sensitive column (classification only)."""
    return {
        column: metrics.fairness(y, predictions.labels, group_labels(series), labels)
        for column, series in sensitive.items()
    }


def worst_fairness(blocks: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Headline fairness numbers across sensitive columns: largest gaps, smallest ratio."""
    worst: dict[str, float] = {}
    for block in blocks.values():
        for name, value in block["metrics"].items():
            current = worst.get(name)
            lower_is_worse = name == "disparate_impact_ratio"
            if current is None or (value < current if lower_is_worse else value > current):
                worst[name] = float(value)
    return worst


class OnnxPredictor(BaseEstimator):  # type: ignore[misc]  # sklearn is untyped here
    """The exported model behind scikit-learn's estimator interface (predict only).

    Permutation importance predicts the sample once per shuffled column and repeat. Through
    ONNX Runtime each of those predictions costs a fraction of the pipeline's (no pandas
    column selection, no Python per transformer), and the importance is that of the model
    that is actually served. ``fit`` exists because scikit-learn's scorers require it.
    """

    def __init__(
        self, session: Any, features: list[Feature], task: Task, labels: list[str]
    ) -> None:
        self.session = session
        self.features = features
        self.task = task
        self.labels = labels
        if task == "classification":
            self.classes_ = np.asarray(labels, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if self.task == "classification" else "regressor"
        return tags

    def fit(self, *_: object) -> OnnxPredictor:
        """Already fitted: the model is the exported one."""
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        """Labels (as strings) or values, from the model's first output."""
        first = np.asarray(self.session.run(None, onnx_feeds(frame, self.features))[0])
        if self.task == "classification":
            labels: np.ndarray[Any, Any] = first.astype(str).ravel()
            return labels
        values: np.ndarray[Any, Any] = first.astype(np.float64).ravel()
        return values


def importances(
    model: Any,
    frame: pd.DataFrame,
    y: np.ndarray[Any, Any],
    *,
    task: Task,
    rows: int,
    repeats: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Permutation importance of each input column on (a sample of) the test set.

    ``model`` is anything with ``predict`` (the trainer passes an :class:`OnnxPredictor`).
    Scored with accuracy or R², sorted by mean decrease. A sample keeps the cost bounded:
    every column is shuffled ``repeats`` times and each shuffle costs one prediction.
    """
    if rows <= 0 or len(frame) == 0:
        return []
    if len(frame) > rows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(frame), rows, replace=False))
        frame, y = frame.iloc[chosen], y[chosen]
    target = y.astype(str) if task == "classification" else y.astype(np.float64)
    found = permutation_importance(
        model,
        frame,
        target,
        scoring="accuracy" if task == "classification" else "r2",
        n_repeats=repeats,
        random_state=seed,
        n_jobs=1,
    )
    ranked: list[dict[str, Any]] = [
        {"feature": str(name), "mean": float(mean), "std": float(std)}
        for name, mean, std in zip(
            frame.columns, found.importances_mean, found.importances_std, strict=True
        )
    ]
    ranked.sort(key=lambda item: float(item["mean"]), reverse=True)
    return ranked
