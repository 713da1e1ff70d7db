"""Estimator parameter values: the generated table is scikit-learn's, and judges as it does.

The admission policy's CEL is checked against the real API server in
``tests/cluster/test_estimator_params.py``; here the Python side is checked against
scikit-learn itself, so the three agree: scikit-learn, offline validation, the API server.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.api.estimator_constraints import CONSTRAINTS
from kubeloop.api.estimators import ESTIMATORS, Interval, ParamConstraint
from kubeloop.api.kinds import KINDS_BY_NAME
from kubeloop.api.meta import ParamValue
from kubeloop.api.params import (
    PARAMS_MESSAGE,
    SPACE_MESSAGE,
    describe,
    describe_interval,
    param_problems,
    range_ok,
    value_ok,
    wire_type,
)
from kubeloop.api.trainingrun import TrainingRunSpec
from kubeloop.api.validation import ManifestError, validate_manifest
from kubeloop.crdgen.estimator_constraints import (
    MODULE_PATH,
    UnsupportedConstraint,
    read_constraint,
    read_constraints,
    render_module,
)
from kubeloop.crdgen.policy import build_policies
from kubeloop.crdgen.render import render_crds

REPO = Path(__file__).resolve().parents[2]

# Values a manifest can hold, around every bound scikit-learn declares for these estimators.
PROBES: list[ParamValue] = [
    -1, 0, 1, 2, 3, 254, 255, 256, 10**6,
    -0.5, 0.0, 1e-9, 0.5, 0.999, 1.0, 1.5, 2.0, 255.5,
    True, False,
    "", "many", "auto", "balanced", "balanced_subsample", "sqrt", "log2", "gini", "entropy",
    "log_loss", "lbfgs", "saga", "svd", "squared_error", "absolute_error", "huber", "poisson",
    "magic", "None",
]  # fmt: skip


def _sklearn_class(name: str) -> Any:
    module_name, _, class_name = ESTIMATORS[name].sklearn_class.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def _sklearn_accepts(name: str, param: str, value: ParamValue) -> bool:
    estimator = _sklearn_class(name)()
    estimator.set_params(**{param: value})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator._validate_params()
    except (TypeError, ValueError):
        return False
    return True


def _as_on_the_wire(value: ParamValue) -> ParamValue:
    """What the API server (and so the trainer) gets: JSON writes 2.0 as 2."""
    return int(value) if wire_type(value) == "int" and isinstance(value, float) else value


# --- the table -------------------------------------------------------------------------------


def test_committed_table_matches_the_installed_scikit_learn() -> None:
    committed = (REPO / MODULE_PATH).read_text()
    assert committed == render_module(read_constraints()), (
        f"{MODULE_PATH} differs from scikit-learn's _parameter_constraints: run make manifests"
    )


def test_the_api_models_do_not_import_scikit_learn() -> None:
    code = "import sys, kubeloop.api, kubeloop.api.params; print('sklearn' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "False"


def test_table_covers_exactly_the_allowlist() -> None:
    assert {name: set(params) for name, params in CONSTRAINTS.items()} == {
        name: set(info.params) for name, info in ESTIMATORS.items()
    }


def test_unknown_constraints_and_unreachable_params_are_errors() -> None:
    with pytest.raises(UnsupportedConstraint, match="not understood"):
        read_constraint("X.p", ["nan"])
    with pytest.raises(UnsupportedConstraint, match="no value a manifest can hold"):
        read_constraint("X.p", [dict, None])
    assert read_constraint("X.p", ["boolean", None, dict]) == ParamConstraint(boolean=True)


# --- Python judges as scikit-learn does ----------------------------------------------------------

CASES = [
    (name, param, value)
    for name, info in ESTIMATORS.items()
    for param in info.params
    for value in PROBES
]


@pytest.mark.parametrize(
    ("name", "param", "value"), CASES, ids=[f"{n}.{p}={v!r}" for n, p, v in CASES]
)
def test_value_check_agrees_with_scikit_learn(name: str, param: str, value: ParamValue) -> None:
    ours = value_ok(CONSTRAINTS[name][param], value)
    if isinstance(value, bool) and not CONSTRAINTS[name][param].boolean:
        # scikit-learn takes True for an integer (bool is an int in Python); JSON does not.
        assert not ours
        return
    assert ours == _sklearn_accepts(name, param, _as_on_the_wire(value))


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "bool"), (3, "int"), (2.0, "int"), (2.5, "float"), (1e300, "float"), ("2", "string")],
)
def test_wire_type(value: ParamValue, kind: str) -> None:
    assert wire_type(value) == kind


def _draws(low: float, high: float, integer: bool) -> list[ParamValue]:
    if integer:
        return list(range(math.ceil(low), math.floor(high) + 1))
    # Floats in [low, high): the ends and points in between; high itself is never drawn.
    return [low, *(low + (high - low) * f for f in (0.001, 0.25, 0.5, 0.75, 0.999999))]


RANGES = [
    (low, high, integer)
    for low, high in [
        (-1.0, 3.0), (0.0, 1.0), (0.0, 5.0), (0.5, 1.0), (0.5, 4.5), (1.0, 10.0), (1.5, 10.0),
        (2.0, 255.0), (2.0, 255.5), (2.0, 256.0), (1e-6, 0.3), (0.01, 0.99), (0.3, 2.0),
    ]
    for integer in (False, True)
    if not integer or math.ceil(low) <= math.floor(high)
]  # fmt: skip
RANGE_CASES = [
    (name, param, *bounds)
    for name, info in ESTIMATORS.items()
    for param in info.params
    for bounds in RANGES
]


@pytest.mark.parametrize(
    ("name", "param", "low", "high", "integer"),
    RANGE_CASES,
    ids=[f"{n}.{p}[{lo},{hi}{',int' if i else ''}]" for n, p, lo, hi, i in RANGE_CASES],
)
def test_range_check_accepts_exactly_the_ranges_whose_draws_all_pass(
    name: str, param: str, low: float, high: float, integer: bool
) -> None:
    constraint = CONSTRAINTS[name][param]
    expected = all(value_ok(constraint, value) for value in _draws(low, high, integer))
    if not integer and expected:
        # Float draws are only ever floats: a float range fits an interval of floats.
        expected = any(i.kind != "integer" for i in constraint.intervals)
    assert range_ok(constraint, low, high, integer) == expected


# --- words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "words"),
    [
        (Interval("integer", 1, None, "left"), "an integer >= 1"),
        (Interval("number", 0, None, "neither"), "a number > 0"),
        (Interval("float", 0.0, 1.0, "right"), "a float in (0.0, 1.0]"),
        (Interval("integer", 2, 255, "both"), "an integer in [2, 255]"),
        (Interval("number", None, 1, "neither"), "a number < 1"),
        (Interval("number", None, None, "neither"), "a number"),
    ],
)
def test_interval_words(interval: Interval, words: str) -> None:
    assert describe_interval(interval) == words


def test_constraint_words() -> None:
    forest = CONSTRAINTS["RandomForestClassifier"]
    assert describe(forest["max_features"]) == (
        "an integer >= 1, a float in (0.0, 1.0] or one of 'log2', 'sqrt'"
    )
    assert describe(forest["bootstrap"]) == "a boolean"
    assert describe(CONSTRAINTS["HistGradientBoostingClassifier"]["early_stopping"]) == (
        "'auto' or a boolean"
    )


def _spec(estimator: dict[str, Any], search: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "iris"},
        "modelName": "iris",
        "estimator": estimator,
    }
    if search is not None:
        spec["search"] = search
    return {"apiVersion": "kubeloop.io/v1alpha1", "kind": "TrainingRun", "spec": spec}


def _errors(manifest: dict[str, Any]) -> str:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest)
    return "\n".join(caught.value.errors)


def test_every_bad_value_is_named_in_name_order() -> None:
    errors = _errors(
        _spec(
            {
                "name": "RandomForestClassifier",
                "params": {"n_estimators": "many", "bootstrap": "yes", "max_depth": 4},
            }
        )
    )
    assert errors == (
        f'spec: Invalid value: "object": {PARAMS_MESSAGE}: '
        "spec.estimator.params.bootstrap must be a boolean (RandomForestClassifier); "
        "spec.estimator.params.n_estimators must be an integer >= 1 (RandomForestClassifier)"
    )


def test_whole_floats_are_integers_and_integers_are_numbers() -> None:
    # kubectl sends 2.0 as 2; a float parameter takes an integer.
    spec = TrainingRunSpec.model_validate(
        _spec(
            {
                "name": "GradientBoostingClassifier",
                "params": {"max_depth": 2.0, "learning_rate": 1, "subsample": 1},
            }
        )["spec"]
    )
    assert param_problems(spec.estimator.name, spec.estimator.params or {}) == []
    # ... and so min_samples_split: 1.0 is the integer 1, which is too few samples.
    errors = _errors(
        _spec({"name": "RandomForestClassifier", "params": {"min_samples_split": 1.0}})
    )
    assert "spec.estimator.params.min_samples_split must be an integer >= 2 or a float" in errors


def test_unknown_params_are_reported_by_the_name_rule_first() -> None:
    errors = _errors(_spec({"name": "LogisticRegression", "params": {"n_estimators": "many"}}))
    assert "estimator.params names a parameter this estimator does not accept" in errors
    assert PARAMS_MESSAGE not in errors


def test_search_values_then_ranges_are_named() -> None:
    errors = _errors(
        _spec(
            {"name": "RandomForestClassifier"},
            {
                "metric": "accuracy",
                "space": {
                    "n_estimators": {"range": {"min": 10, "max": 100}},
                    "max_depth": {"values": [3, "deep"]},
                    "criterion": {"values": ["gini", "entropy"]},
                    "min_samples_leaf": {"range": {"min": 1, "max": 8, "integer": True}},
                },
            },
        )
    )
    assert errors == (
        f'spec: Invalid value: "object": {SPACE_MESSAGE}: '
        "each of spec.search.space.max_depth.values must be an integer >= 1 "
        "(RandomForestClassifier); every value drawn from spec.search.space.n_estimators.range "
        "must be an integer >= 1 (RandomForestClassifier; a range draws integers with "
        "integer: true, floats otherwise)"
    )


# --- the policy ------------------------------------------------------------------------------


def test_policy_declares_the_variables_its_rules_read() -> None:
    policy = build_policies(KINDS_BY_NAME["TrainingRun"])[0]
    variables = {variable["name"] for variable in policy["spec"]["variables"]}
    used: set[str] = set()
    for validation in policy["spec"]["validations"]:
        for text in (validation["expression"], validation.get("messageExpression", "")):
            used |= set(re.findall(r"\bvariables\.([A-Za-z]+)", text))
    assert (
        used
        == variables
        == {
            "estimatorParamProblems",
            "searchValuesProblems",
            "searchRangeProblems",
        }
    )
    messages = {v["message"]: v for v in policy["spec"]["validations"]}
    assert messages[PARAMS_MESSAGE]["messageExpression"].startswith(f'"{PARAMS_MESSAGE}: " + ')
    assert messages[SPACE_MESSAGE]["messageExpression"].startswith(f'"{SPACE_MESSAGE}: " + ')


def test_every_constraint_and_its_words_reach_the_committed_policy() -> None:
    documents = yaml.safe_load_all(render_crds()["admission-policies.yaml"])
    policy = next(d for d in documents if d["metadata"]["name"] == "kubeloop-trainingrun-rules")
    spec = policy["spec"]
    text = " ".join(v["expression"] for v in spec["variables"] + spec["validations"])
    for constraints in CONSTRAINTS.values():
        for constraint in constraints.values():
            for option in constraint.options:
                assert json.dumps(option) in text
            assert json.dumps(describe(constraint)) in text
