"""Estimator allowlist, parameter validation messages, and the pipeline's preprocessing."""

from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from kubeloop.trainer.errors import InvalidParameter
from kubeloop.trainer.model import estimator_class, make_estimator, scales_numbers


def test_allowlisted_names_map_to_sklearn_classes() -> None:
    assert estimator_class("LogisticRegression") is LogisticRegression
    assert estimator_class("RandomForestClassifier") is RandomForestClassifier
    with pytest.raises(InvalidParameter, match="'SVC' is not in the allowlist"):
        estimator_class("SVC")


def test_seed_becomes_random_state() -> None:
    forest = make_estimator("RandomForestClassifier", {"n_estimators": 5}, seed=11)
    assert forest.get_params()["random_state"] == 11
    assert forest.get_params()["n_estimators"] == 5


def test_unknown_parameter_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(InvalidParameter) as caught:
        make_estimator("Ridge", {"alpah": 1.0}, seed=0)
    assert str(caught.value) == (
        "Ridge does not accept parameter 'alpah' (allowed: alpha, fit_intercept, solver, tol)"
    )
    assert caught.value.reason == "InvalidParameter"


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("LogisticRegression", {"C": -1.0}, "The 'C' parameter of LogisticRegression must be"),
        ("RandomForestClassifier", {"max_depth": "deep"}, "The 'max_depth' parameter"),
        ("HistGradientBoostingClassifier", {"learning_rate": 0}, "'learning_rate' parameter"),
        ("Ridge", {"solver": "magic"}, "The 'solver' parameter of Ridge must be a str among"),
        ("RandomForestRegressor", {"n_estimators": 2.5}, "'n_estimators' parameter"),
    ],
)
def test_invalid_values_get_sklearns_own_message(
    name: str, params: dict[str, object], expected: str
) -> None:
    with pytest.raises(InvalidParameter, match=f"invalid parameter for {name}: ") as caught:
        make_estimator(name, params, seed=0)  # type: ignore[arg-type]
    assert expected in str(caught.value)
    assert "Got" in str(caught.value)  # the offending value is shown


def test_only_linear_models_scale_numbers() -> None:
    assert scales_numbers("LogisticRegression")
    assert scales_numbers("Ridge")
    assert scales_numbers("LinearRegression")
    assert not scales_numbers("RandomForestClassifier")
    assert not scales_numbers("HistGradientBoostingRegressor")
    assert not scales_numbers("GradientBoostingClassifier")
