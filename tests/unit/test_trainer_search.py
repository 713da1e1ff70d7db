"""The search plan: grid order and truncation, seeded random draws, ranges, merging."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
from typing import Any

import pytest

from kubeloop.api.trainingrun import TrainingRunSpec
from kubeloop.trainer.search import (
    grid_size,
    search_direction,
    search_metric,
    trial_count,
    trial_params,
)


def spec(
    search: dict[str, Any] | None = None,
    *,
    estimator: str = "RandomForestClassifier",
    params: dict[str, Any] | None = None,
    seed: int = 7,
) -> TrainingRunSpec:
    body: dict[str, Any] = {
        "datasetRef": {"name": "churn"},
        "modelName": "churn",
        "estimator": {"name": estimator, "params": params or {}},
        "seed": seed,
    }
    if search is not None:
        body["search"] = search
    return TrainingRunSpec.model_validate(body)


GRID = {
    "strategy": "grid",
    # Written out of order on purpose: the plan sorts parameter names.
    "space": {
        "n_estimators": {"values": [100, 300]},
        "max_depth": {"values": [3, 5, 8]},
        "criterion": {"values": ["gini", "entropy"]},
    },
    "trials": 12,
    "parallelism": 2,
    "metric": "f1",
}


def test_grid_is_the_cartesian_product_in_sorted_name_order() -> None:
    run = spec(GRID)
    plan = [trial_params(run, i) for i in range(trial_count(run))]
    expected = [
        {"criterion": c, "max_depth": d, "n_estimators": n}
        for c, d, n in itertools.product(["gini", "entropy"], [3, 5, 8], [100, 300])
    ]
    assert plan == expected
    assert grid_size(run.search) == 12  # type: ignore[arg-type]


def test_grid_order_does_not_depend_on_how_the_manifest_lists_parameters() -> None:
    reordered = {**GRID, "space": dict(reversed(list(GRID["space"].items())))}  # type: ignore[attr-defined]
    assert [trial_params(spec(reordered), i) for i in range(12)] == [
        trial_params(spec(GRID), i) for i in range(12)
    ]


def test_grid_is_truncated_to_trials_and_larger_trials_stop_at_the_grid() -> None:
    truncated = spec({**GRID, "trials": 4})
    assert trial_count(truncated) == 4
    assert trial_params(truncated, 3) == {"criterion": "gini", "max_depth": 5, "n_estimators": 300}
    with pytest.raises(ValueError, match="out of range: the grid search has 4 trials"):
        trial_params(truncated, 4)
    assert trial_count(spec({**GRID, "trials": 50, "parallelism": 2})) == 12


RANDOM = {
    "strategy": "random",
    "space": {
        "learning_rate": {"range": {"min": 0.001, "max": 1.0, "log": True}},
        "max_leaf_nodes": {"range": {"min": 15, "max": 63, "integer": True}},
        "l2_regularization": {"range": {"min": 0.0, "max": 2.0}},
        "max_depth": {"range": {"min": 2, "max": 200, "integer": True, "log": True}},
        "early_stopping": {"values": [True, False]},
    },
    "trials": 300,
    "parallelism": 4,
    "metric": "roc_auc",
}


def random_spec(**changes: Any) -> TrainingRunSpec:
    return spec(
        {**RANDOM, **changes},
        estimator="HistGradientBoostingClassifier",
        params={"max_iter": 50, "learning_rate": 0.5},
    )


def test_random_plan_is_deterministic_per_seed_and_index() -> None:
    first = [trial_params(random_spec(), i) for i in range(20)]
    again = [trial_params(random_spec(), i) for i in range(20)]
    assert first == again
    assert len({repr(p) for p in first}) == 20  # distinct trials
    other_seed = spec(
        RANDOM, estimator="HistGradientBoostingClassifier", params={"max_iter": 50}, seed=8
    )
    assert trial_params(other_seed, 0) != first[0]


def test_every_pod_computes_the_same_plan_whatever_its_hash_seed() -> None:
    code = (
        "from tests.unit.test_trainer_search import random_spec;"
        "from kubeloop.trainer.search import trial_params;"
        "print([trial_params(random_spec(), i) for i in range(5)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        ).stdout
        for hash_seed in ("1", "2", "3")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([trial_params(random_spec(), i) for i in range(5)])


def test_search_values_override_estimator_params() -> None:
    params = trial_params(random_spec(), 0)
    assert params["max_iter"] == 50  # fixed parameter kept
    assert params["learning_rate"] != 0.5  # searched parameter wins


def numbers(plan: list[dict[str, Any]], name: str, kind: type) -> list[float]:
    """The values of one parameter, after checking their exact Python type."""
    values = [p[name] for p in plan]
    assert all(type(v) is kind for v in values), name
    return [float(v) for v in values]


def test_random_ranges_respect_bounds_types_and_scale() -> None:
    plan = [trial_params(random_spec(), i) for i in range(300)]
    rates = numbers(plan, "learning_rate", float)
    assert all(0.001 <= r < 1.0 for r in rates)
    # Log-uniform: half the draws fall below the geometric mean of the bounds (0.0316).
    below = sum(r < math.sqrt(0.001 * 1.0) for r in rates) / len(rates)
    assert 0.4 < below < 0.6
    assert all(float(f"{r:.6g}") == r for r in rates)  # rounded to 6 significant digits

    leaves = numbers(plan, "max_leaf_nodes", int)
    assert all(15 <= v <= 63 for v in leaves)
    assert {15, 63} <= set(leaves)  # both ends are reachable

    depths = numbers(plan, "max_depth", int)
    assert all(2 <= v <= 200 for v in depths)
    # Log-uniform over [2, 201): about half below the geometric mean 20 (uniform: 9%).
    assert 0.4 < sum(d < 20 for d in depths) / len(depths) < 0.6

    l2 = numbers(plan, "l2_regularization", float)
    assert all(0.0 <= v < 2.0 for v in l2)
    assert 0.8 < sum(l2) / len(l2) < 1.2  # uniform: mean near the middle

    stops = [p["early_stopping"] for p in plan]
    assert all(type(v) is bool for v in stops)  # booleans stay booleans, not 0/1
    assert set(stops) == {True, False}


def test_adding_a_parameter_does_not_change_the_others() -> None:
    smaller = dict(RANDOM["space"])  # type: ignore[call-overload]
    del smaller["max_depth"]
    without = [trial_params(random_spec(space=smaller), i) for i in range(10)]
    with_all = [trial_params(random_spec(), i) for i in range(10)]
    for a, b in zip(without, with_all, strict=True):
        assert {k: v for k, v in b.items() if k != "max_depth"} == a


def test_random_index_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="300 trials"):
        trial_params(random_spec(), 300)


def test_no_search_is_one_trial_with_the_fixed_params() -> None:
    run = spec(params={"n_estimators": 10})
    assert trial_count(run) == 1
    assert trial_params(run, 0) == {"n_estimators": 10}
    with pytest.raises(ValueError, match="1 trial"):
        trial_params(run, 1)


def test_metric_and_direction_defaults() -> None:
    assert (search_metric(spec()), search_direction(spec())) == ("f1", "maximize")
    ridge = spec(estimator="Ridge")
    assert (search_metric(ridge), search_direction(ridge)) == ("rmse", "minimize")
    logloss = spec({**GRID, "metric": "log_loss"})
    assert search_direction(logloss) == "minimize"
    forced = spec({**GRID, "metric": "log_loss", "direction": "maximize"})
    assert search_direction(forced) == "maximize"
