"""The estimator allowlist and the metrics each task reports.

Only estimators named here can be trained: the trainer maps each name to one scikit-learn
class, and the API server refuses any other name and any parameter the estimator does not
accept (the CEL rules are generated from :data:`ESTIMATORS`). Parameter *values* are checked
at admission against scikit-learn's own ``_parameter_constraints``, as far as JSON values can
meet them (:class:`ParamConstraint`, the generated table in
:mod:`kubeloop.api.estimator_constraints`, the rules in :mod:`kubeloop.api.params`); the
trainer checks them once more with scikit-learn itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Task = Literal["classification", "regression"]

EstimatorName = Literal[
    "LogisticRegression",
    "RandomForestClassifier",
    "HistGradientBoostingClassifier",
    "GradientBoostingClassifier",
    "RandomForestRegressor",
    "HistGradientBoostingRegressor",
    "GradientBoostingRegressor",
    "Ridge",
    "LinearRegression",
]

ClassificationMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
RegressionMetric = Literal["rmse", "mae", "r2"]
MetricName = Literal[ClassificationMetric, RegressionMetric]
# Reported for every task, so any gate may bound them: ONNX single-row latency and the
# fairness measures over the Dataset's sensitive columns (classification only; a regression
# run reports none, and a gate on a metric that was not measured fails).
GeneralMetric = Literal[
    "latency_p50_ms",
    "latency_p99_ms",
    "demographic_parity_difference",
    "disparate_impact_ratio",
    "equal_opportunity_difference",
]
GateMetric = Literal[MetricName, GeneralMetric]

CLASSIFICATION_METRICS: tuple[str, ...] = get_args(ClassificationMetric)
REGRESSION_METRICS: tuple[str, ...] = get_args(RegressionMetric)
GENERAL_METRICS: tuple[str, ...] = get_args(GeneralMetric)
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss", "rmse", "mae"})


# scikit-learn's Interval types as JSON sees them: Integral, Real (integers and floats) and
# RealNotInt (floats only).
IntervalKind = Literal["integer", "number", "float"]
Closed = Literal["left", "right", "both", "neither"]


@dataclass(frozen=True)
class Interval:
    """Numbers between two bounds: scikit-learn's ``Interval`` constraint (``None`` is unbounded)."""

    kind: IntervalKind
    left: int | float | None
    right: int | float | None
    closed: Closed


@dataclass(frozen=True)
class ParamConstraint:
    """The values one estimator parameter accepts, any alternative will do.

    Only what a manifest can hold (numbers, strings, booleans) is kept from scikit-learn's
    constraints: ``None``, dicts, arrays and Python objects are no parameter values here.
    """

    intervals: tuple[Interval, ...] = ()
    options: tuple[str, ...] = ()
    boolean: bool = False


@dataclass(frozen=True)
class EstimatorInfo:
    """What kubeloop allows for one estimator."""

    task: Task
    sklearn_class: str
    params: tuple[str, ...]


_FOREST = (
    "n_estimators",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "max_features",
    "bootstrap",
    "criterion",
)
_HIST = (
    "learning_rate",
    "max_iter",
    "max_leaf_nodes",
    "max_depth",
    "min_samples_leaf",
    "l2_regularization",
    "max_bins",
    "early_stopping",
)
_GBM = (
    "n_estimators",
    "learning_rate",
    "max_depth",
    "subsample",
    "min_samples_split",
    "min_samples_leaf",
    "max_features",
)

ESTIMATORS: dict[str, EstimatorInfo] = {
    "LogisticRegression": EstimatorInfo(
        "classification",
        "sklearn.linear_model.LogisticRegression",
        ("C", "l1_ratio", "max_iter", "class_weight", "tol", "solver", "fit_intercept"),
    ),
    "RandomForestClassifier": EstimatorInfo(
        "classification", "sklearn.ensemble.RandomForestClassifier", (*_FOREST, "class_weight")
    ),
    "HistGradientBoostingClassifier": EstimatorInfo(
        "classification",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        (*_HIST, "class_weight"),
    ),
    "GradientBoostingClassifier": EstimatorInfo(
        "classification", "sklearn.ensemble.GradientBoostingClassifier", _GBM
    ),
    "RandomForestRegressor": EstimatorInfo(
        "regression", "sklearn.ensemble.RandomForestRegressor", _FOREST
    ),
    "HistGradientBoostingRegressor": EstimatorInfo(
        "regression", "sklearn.ensemble.HistGradientBoostingRegressor", (*_HIST, "loss")
    ),
    "GradientBoostingRegressor": EstimatorInfo(
        "regression", "sklearn.ensemble.GradientBoostingRegressor", (*_GBM, "loss", "alpha")
    ),
    "Ridge": EstimatorInfo(
        "regression", "sklearn.linear_model.Ridge", ("alpha", "fit_intercept", "solver", "tol")
    ),
    "LinearRegression": EstimatorInfo(
        "regression", "sklearn.linear_model.LinearRegression", ("fit_intercept", "positive")
    ),
}


def estimator_task(name: str) -> Task:
    """The task an allowlisted estimator solves."""
    return ESTIMATORS[name].task


def metrics_for(task: Task) -> tuple[str, ...]:
    """The metric names a run of this task reports."""
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def _cel_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(f"'{value}'" for value in values) + "]"


def cel_param_allowed(name_expr: str, key_expr: str) -> str:
    """CEL that holds when ``key_expr`` is a parameter of the estimator named ``name_expr``."""
    clauses = [
        f"({name_expr} == '{name}' && {key_expr} in {_cel_list(info.params)})"
        for name, info in ESTIMATORS.items()
    ]
    return "(" + " || ".join(clauses) + ")"


def cel_is_classifier(name_expr: str) -> str:
    """CEL that holds when the estimator named ``name_expr`` is a classifier."""
    classifiers = [name for name, info in ESTIMATORS.items() if info.task == "classification"]
    return f"({name_expr} in {_cel_list(classifiers)})"


def cel_is_classification_metric(metric_expr: str) -> str:
    """CEL that holds when ``metric_expr`` names a classification metric."""
    return f"({metric_expr} in {_cel_list(CLASSIFICATION_METRICS)})"


def cel_is_general_metric(metric_expr: str) -> str:
    """CEL that holds when ``metric_expr`` names a metric every task reports."""
    return f"({metric_expr} in {_cel_list(GENERAL_METRICS)})"
