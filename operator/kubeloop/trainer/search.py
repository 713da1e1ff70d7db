"""The hyper-parameter search plan: the parameters of trial *i*, computed, never stored.

Every pod of a TrainingRun's Indexed Job calls :func:`trial_params` with the same spec and its
own completion index and gets its share of one plan, with no coordination: the plan is a pure
function of (spec, seed, index). That also makes a run reproducible from its spec alone.

* **grid** — the cartesian product of every parameter's ``values``. Parameters are taken in
  sorted name order (the API server does not keep map key order, so sorting is what makes the
  plan independent of how the manifest was written); the first name varies slowest, exactly
  like ``itertools.product``. Values keep the order they were listed in. The plan is truncated
  to ``trials`` points; index *i* is decoded directly (mixed radix), so huge grids are never
  materialised.
* **random** — each parameter of each trial is drawn from its own generator seeded with
  (seed, trial index, parameter name), so adding a parameter to the space does not change the
  values drawn for the others. ``values`` are chosen uniformly; ``range`` is uniform on
  [min, max) or, with ``log``, uniform in log space; ``integer`` draws whole numbers in
  [ceil(min), floor(max)] (both ends included; with ``log`` the draw is log-uniform over
  that interval). Drawn floats are rounded to 6 significant digits so they read well in
  ``kubectl get`` output; that keeps them in the interval.

Search values override ``estimator.params`` of the same name.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

from kubeloop.api.estimators import LOWER_IS_BETTER, estimator_task
from kubeloop.api.meta import ParamValue
from kubeloop.api.trainingrun import ParamRange, ParamSpace, SearchSpec, TrainingRunSpec

# When there is no search, a single trial still reports a score on this metric.
DEFAULT_METRIC = {"classification": "f1", "regression": "rmse"}


def trial_count(spec: TrainingRunSpec) -> int:
    """How many trials the run has: ``trials`` for random search, at most the grid size for grid.

    The operator uses this as the Job's ``completions``: a grid smaller than ``trials`` has
    no further distinct points, and repeating one would only burn compute.
    """
    search = spec.search
    if search is None:
        return 1
    if search.strategy == "grid":
        return min(search.trials, grid_size(search))
    return search.trials


def grid_size(search: SearchSpec) -> int:
    """Number of points of the full grid (the product of the value-list lengths)."""
    size = 1
    for space in search.space.values():
        size *= len(_grid_values(space))
    return size


def search_metric(spec: TrainingRunSpec) -> str:
    """The metric that scores a trial on the validation set."""
    if spec.search is not None:
        return spec.search.metric
    return DEFAULT_METRIC[estimator_task(spec.estimator.name)]


def search_direction(spec: TrainingRunSpec) -> str:
    """``maximize`` or ``minimize``: the declared direction, else the metric's natural one."""
    if spec.search is not None and spec.search.direction is not None:
        return spec.search.direction
    return "minimize" if search_metric(spec) in LOWER_IS_BETTER else "maximize"


def trial_params(spec: TrainingRunSpec, index: int) -> dict[str, ParamValue]:
    """The estimator parameters of trial ``index``: ``estimator.params`` overridden by the plan."""
    params: dict[str, ParamValue] = dict(spec.estimator.params or {})
    if spec.search is not None:
        params.update(search_point(spec.search, spec.seed, index))
    elif index != 0:
        raise ValueError(f"trial index {index} is out of range: a run without a search has 1 trial")
    return params


def search_point(search: SearchSpec, seed: int, index: int) -> dict[str, ParamValue]:
    """The searched parameters of trial ``index`` (only those named in ``search.space``)."""
    if search.strategy == "grid":
        return grid_point(search, index)
    if not 0 <= index < search.trials:
        raise ValueError(
            f"trial index {index} is out of range: the search has {search.trials} trials"
        )
    return {
        name: sample_space(name, search.space[name], seed, index) for name in sorted(search.space)
    }


def grid_point(search: SearchSpec, index: int) -> dict[str, ParamValue]:
    """Point ``index`` of the grid, in ``itertools.product`` order over sorted parameter names."""
    count = min(search.trials, grid_size(search))
    if not 0 <= index < count:
        raise ValueError(
            f"trial index {index} is out of range: the grid search has {count} trials "
            f"(grid of {grid_size(search)} points, trials={search.trials})"
        )
    names = sorted(search.space)
    point: dict[str, ParamValue] = {}
    remainder = index
    # The last name varies fastest: decode the index from the least significant digit up.
    for name in reversed(names):
        values = _grid_values(search.space[name])
        remainder, digit = divmod(remainder, len(values))
        point[name] = values[digit]
    return {name: point[name] for name in names}


def sample_space(name: str, space: ParamSpace, seed: int, index: int) -> ParamValue:
    """Draw one value of parameter ``name`` for trial ``index`` (see the module docstring)."""
    # String seeding is stable across Python versions and processes (no hash randomisation).
    rng = random.Random(f"kubeloop-search:{seed}:{index}:{name}")  # noqa: S311 - not crypto
    if space.values is not None:
        return space.values[rng.randrange(len(space.values))]
    if space.range is None:
        raise ValueError(f"search parameter {name!r} has neither values nor range")
    return sample_range(space.range, rng, name)


def sample_range(bounds: ParamRange, rng: random.Random, name: str = "parameter") -> ParamValue:
    """Draw from a range with ``rng`` (uniform, log-uniform, integer)."""
    low, high = bounds.min, bounds.max
    if bounds.log and low <= 0:
        raise ValueError(f"search parameter {name!r}: a log range needs min > 0 (got {low})")
    if bounds.integer:
        first, last = math.ceil(low), math.floor(high)
        if first > last:
            raise ValueError(f"search parameter {name!r}: no whole number in [{low}, {high}]")
        if not bounds.log:
            return rng.randint(first, last)
        # Log-uniform over [first, last + 1), floored: every integer is reachable, small ones
        # proportionally more often, as a log scale means.
        drawn = math.exp(rng.uniform(math.log(first), math.log(last + 1)))
        return max(first, min(last, math.floor(drawn)))
    if bounds.log:
        value = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        value = rng.uniform(low, high)
    rounded = float(f"{value:.6g}")
    # Rounding must not leave the interval (max is exclusive for floats).
    return rounded if low <= rounded < high else value


def _grid_values(space: ParamSpace) -> list[ParamValue]:
    if space.values is None:
        raise ValueError("grid search needs explicit values for every parameter")
    return list(space.values)


def describe_params(params: Mapping[str, ParamValue]) -> str:
    """``a=1, b='x'`` in sorted order, for messages and reports."""
    return ", ".join(f"{name}={params[name]!r}" for name in sorted(params))
