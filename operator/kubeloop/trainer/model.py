"""The estimator and the one scikit-learn ``Pipeline`` a trial fits and exports.

The estimator comes from the allowlist in :mod:`kubeloop.api.estimators` only: its class is
imported from the path written there, never from a name the user typed. Parameter names are
checked against the allowlist and values against scikit-learn's own constraints
(``_validate_params``), whose messages already name the parameter, the rule and the value.

Preprocessing lives inside the pipeline, so the exported ONNX model takes raw columns:

* numeric: ``SimpleImputer(median)`` then ``StandardScaler`` — the scaler only for linear
  models. Trees are invariant to scaling, and for them it is harmful: ONNX computes the scaled
  value in float32 while scikit-learn computes it in float64, and a value one rounding step
  away from a split threshold (thresholds often *equal* training values) lands on the other
  side. Imputation alone keeps the values trees see bit-identical in both runtimes;
* categorical and boolean: ``SimpleImputer(most_frequent)`` on ``""`` (the missing marker, see
  ``data.py``) then ``OneHotEncoder(handle_unknown="ignore")``, dense, because the histogram
  gradient boosting estimators refuse sparse input.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kubeloop.api.estimators import ESTIMATORS
from kubeloop.api.meta import ParamValue
from kubeloop.trainer.data import MISSING_CATEGORY, Columns
from kubeloop.trainer.errors import InvalidParameter

ESTIMATOR_STEP = "estimator"
PREPROCESS_STEP = "preprocess"
# Tree ensembles: scale-invariant, and exported without a scaler (see the module docstring).
_TREE_ESTIMATORS = frozenset(
    name for name, info in ESTIMATORS.items() if info.sklearn_class.startswith("sklearn.ensemble.")
)


def estimator_class(name: str) -> type[BaseEstimator]:
    """The scikit-learn class of an allowlisted estimator name."""
    info = ESTIMATORS.get(name)
    if info is None:
        allowed = ", ".join(sorted(ESTIMATORS))
        raise InvalidParameter(f"estimator {name!r} is not in the allowlist ({allowed})")
    module_name, _, class_name = info.sklearn_class.rpartition(".")
    if not module_name.startswith("sklearn."):  # pragma: no cover - allowlist invariant
        raise InvalidParameter(f"estimator {name!r} does not map to a scikit-learn class")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):  # pragma: no cover
        raise InvalidParameter(f"{info.sklearn_class} is not a scikit-learn estimator")
    return cls


def make_estimator(name: str, params: Mapping[str, ParamValue], seed: int) -> BaseEstimator:
    """Build and validate the estimator; ``InvalidParameter`` names what is wrong.

    ``random_state`` is set to the run's seed when the estimator has one, so a trial is
    reproducible; it is not a user parameter (the allowlist does not list it).
    """
    cls = estimator_class(name)
    allowed = ESTIMATORS[name].params
    for key in params:
        if key not in allowed:
            raise InvalidParameter(
                f"{name} does not accept parameter {key!r} (allowed: {', '.join(allowed)})"
            )
    estimator = cls()
    try:
        estimator.set_params(**dict(params))
        if "random_state" in estimator.get_params():
            estimator.set_params(random_state=seed)
        # scikit-learn checks these constraints at fit time; checking now gives the message
        # before any data is read.
        estimator._validate_params()
    except (TypeError, ValueError) as exc:  # InvalidParameterError is both
        raise InvalidParameter(f"invalid parameter for {name}: {exc}") from exc
    return estimator


def scales_numbers(estimator_name: str) -> bool:
    """Whether numeric features are standardised for this estimator (linear models only)."""
    return estimator_name not in _TREE_ESTIMATORS


def build_pipeline(columns: Columns, estimator: BaseEstimator, *, scale: bool) -> Pipeline:
    """Preprocessing (see the module docstring) followed by ``estimator``."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if columns.numeric:
        numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if scale:
            numeric_steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(numeric_steps), columns.numeric))
    if columns.categorical:
        categorical = Pipeline(
            [
                (
                    "impute",
                    SimpleImputer(strategy="most_frequent", missing_values=MISSING_CATEGORY),
                ),
                ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, columns.categorical))
    preprocess = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    return Pipeline([(PREPROCESS_STEP, preprocess), (ESTIMATOR_STEP, estimator)])


def seen_categories(pipeline: Pipeline) -> dict[str, list[str]]:
    """Categories the fitted encoder knows, per categorical column (the missing marker left out)."""
    preprocess = pipeline.named_steps[PREPROCESS_STEP]
    if "categorical" not in preprocess.named_transformers_:
        return {}
    encoder = preprocess.named_transformers_["categorical"].named_steps["encode"]
    names = preprocess.transformers_[[t[0] for t in preprocess.transformers_].index("categorical")][
        2
    ]
    return {
        str(name): sorted(str(v) for v in categories if str(v) != MISSING_CATEGORY)
        for name, categories in zip(names, encoder.categories_, strict=True)
    }
