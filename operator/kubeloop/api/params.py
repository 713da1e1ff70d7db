"""Estimator parameter values against scikit-learn's constraints: in Python and as CEL.

The constraints come from :data:`~kubeloop.api.estimator_constraints.CONSTRAINTS` (generated
from scikit-learn). This module turns them into two things that must say the same words:

* :func:`param_problems` / :func:`space_problems` for offline validation (and the trainer's
  own parsing of the spec), and
* :func:`cel_params_ok` / :func:`cel_params_message` (and the ``space`` pair), the CEL of the
  ValidatingAdmissionPolicy the API server evaluates. Parameter values are free-form in the
  CRD, so only an admission policy can read them; its ``messageExpression`` builds the same
  message the Python side does.

Values are judged as JSON carries them: JSON has one number type, so a YAML ``2.0`` reaches the
API server as ``2`` (kubectl writes whole floats without the fraction) and is an integer there;
offline, a whole float is judged as that integer too. Booleans are never numbers. Messages name
the field, the expected values and the estimator, e.g. ``spec.estimator.params.n_estimators
must be an integer >= 1 (RandomForestClassifier)``. Problems are listed in parameter-name order,
which both sides can produce (the API server does not keep map key order).

A range (``search.space[*].range``) draws integers in ``[ceil(min), floor(max)]`` with
``integer: true`` and floats in ``[min, max)`` otherwise (see ``kubeloop.trainer.search``); it
is accepted when everything it can draw fits one interval of the parameter. The bounds are
turned into constant thresholds on ``min`` and ``max`` once (:func:`range_thresholds`), and both
sides compare against the same thresholds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Literal, Protocol

from kubeloop.api.estimator_constraints import CONSTRAINTS
from kubeloop.api.estimators import ESTIMATORS, Interval, ParamConstraint
from kubeloop.api.meta import ParamValue

PARAMS_MESSAGE = "estimator.params has a value this estimator does not accept"
SPACE_MESSAGE = "search.space has a value this estimator does not accept"
RANGE_NOTE = "a range draws integers with integer: true, floats otherwise"

# Every allowlisted parameter name, sorted: the order problems are reported in.
PARAM_NAMES: tuple[str, ...] = tuple(
    sorted({p for info in ESTIMATORS.values() for p in info.params})
)

WireType = Literal["bool", "int", "float", "string"]
_INT64 = 2**63


# --- words ---------------------------------------------------------------------------------


def _join_alternatives(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def describe_interval(interval: Interval) -> str:
    """``an integer >= 1``, ``a float in (0.0, 1.0]``, ``a number > 0``."""
    noun = {"integer": "an integer", "number": "a number", "float": "a float"}[interval.kind]
    left_closed = interval.closed in ("left", "both")
    right_closed = interval.closed in ("right", "both")
    left, right = interval.left, interval.right
    if left is None and right is None:
        return noun
    if right is None:
        return f"{noun} {'>=' if left_closed else '>'} {left!r}"
    if left is None:
        return f"{noun} {'<=' if right_closed else '<'} {right!r}"
    opening, closing = "[" if left_closed else "(", "]" if right_closed else ")"
    return f"{noun} in {opening}{left!r}, {right!r}{closing}"


def describe(constraint: ParamConstraint) -> str:
    """What the parameter must be, e.g. ``an integer >= 1 or a float in (0.0, 1.0]``."""
    parts = [describe_interval(interval) for interval in constraint.intervals]
    if len(constraint.options) == 1:
        parts.append(f"'{constraint.options[0]}'")
    elif constraint.options:
        parts.append("one of " + ", ".join(f"'{option}'" for option in constraint.options))
    if constraint.boolean:
        parts.append("a boolean")
    return _join_alternatives(parts)


def param_message(estimator: str, name: str) -> str:
    """The problem with a value of ``spec.estimator.params.<name>``."""
    return f"spec.estimator.params.{name} must be {describe(CONSTRAINTS[estimator][name])} ({estimator})"


def values_message(estimator: str, name: str) -> str:
    """The problem with a value of ``spec.search.space.<name>.values``."""
    expected = describe(CONSTRAINTS[estimator][name])
    return f"each of spec.search.space.{name}.values must be {expected} ({estimator})"


def range_message(estimator: str, name: str) -> str:
    """The problem with ``spec.search.space.<name>.range``."""
    expected = describe(CONSTRAINTS[estimator][name])
    return (
        f"every value drawn from spec.search.space.{name}.range must be {expected} "
        f"({estimator}; {RANGE_NOTE})"
    )


# --- Python ------------------------------------------------------------------------------------


def wire_type(value: ParamValue) -> WireType:
    """The JSON type the API server sees for ``value`` (a whole float is an integer there)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        whole = math.isfinite(value) and value.is_integer() and abs(value) < _INT64
        return "int" if whole else "float"
    return "string"


_KIND_TYPES: dict[str, frozenset[WireType]] = {
    "integer": frozenset({"int"}),
    "number": frozenset({"int", "float"}),
    "float": frozenset({"float"}),
}


def _in_interval(interval: Interval, value: float) -> bool:
    left_closed = interval.closed in ("left", "both")
    right_closed = interval.closed in ("right", "both")
    if interval.left is not None and not (
        value >= interval.left if left_closed else value > interval.left
    ):
        return False
    return interval.right is None or (
        value <= interval.right if right_closed else value < interval.right
    )


def value_ok(constraint: ParamConstraint, value: ParamValue) -> bool:
    """Whether ``value`` meets one of the constraint's alternatives."""
    kind = wire_type(value)
    if kind == "bool":
        return constraint.boolean
    if kind == "string":
        return value in constraint.options
    number = float(value)
    return any(
        kind in _KIND_TYPES[interval.kind] and _in_interval(interval, number)
        for interval in constraint.intervals
    )


Threshold = tuple[Literal["min", "max"], Literal[">", ">=", "<", "<="], float]


def range_thresholds(interval: Interval, integer: bool) -> list[Threshold] | None:
    """Conditions on ``range.min`` / ``range.max`` under which every draw fits ``interval``.

    ``None`` when the range cannot fit at all (integer draws for a floats-only interval, or
    float draws for an integers-only one). Integer draws are ``ceil(min) .. floor(max)``:
    ``ceil(min) >= L`` is ``min > ceil(L) - 1`` and ``ceil(min) > L`` is ``min > floor(L)``
    (and the mirror for ``max``). Float draws are ``[min, max)``, so ``max`` may equal even an
    open right bound.
    """
    if integer and interval.kind == "float":
        return None
    if not integer and interval.kind == "integer":
        return None
    left_closed = interval.closed in ("left", "both")
    right_closed = interval.closed in ("right", "both")
    thresholds: list[Threshold] = []
    left, right = interval.left, interval.right
    if integer:
        if left is not None:
            low = math.ceil(left) - 1 if left_closed else math.floor(left)
            thresholds.append(("min", ">", float(low)))
        if right is not None:
            high = math.floor(right) + 1 if right_closed else math.ceil(right)
            thresholds.append(("max", "<", float(high)))
    else:
        if left is not None:
            thresholds.append(("min", ">=" if left_closed else ">", float(left)))
        if right is not None:
            thresholds.append(("max", "<=", float(right)))
    return thresholds


def _holds(threshold: Threshold, low: float, high: float) -> bool:
    field, op, bound = threshold
    value = low if field == "min" else high
    return {
        ">": value > bound,
        ">=": value >= bound,
        "<": value < bound,
        "<=": value <= bound,
    }[op]


def range_ok(constraint: ParamConstraint, low: float, high: float, integer: bool) -> bool:
    """Whether a range's draws all fit one interval of the constraint."""
    for interval in constraint.intervals:
        thresholds = range_thresholds(interval, integer)
        if thresholds is not None and all(_holds(t, low, high) for t in thresholds):
            return True
    return False


class RangeLike(Protocol):
    """What :func:`space_problems` reads of a ``ParamRange``."""

    min: float
    max: float
    integer: bool


class SpaceLike(Protocol):
    """What :func:`space_problems` reads of a ``ParamSpace``."""

    @property
    def values(self) -> list[ParamValue] | None: ...

    @property
    def range(self) -> RangeLike | None: ...


def param_problems(estimator: str, params: Mapping[str, ParamValue]) -> list[str]:
    """One message per parameter whose value the estimator does not accept, by name."""
    constraints = CONSTRAINTS[estimator]
    return [
        param_message(estimator, name)
        for name in sorted(params)
        if name in constraints and not value_ok(constraints[name], params[name])
    ]


def space_problems(estimator: str, space: Mapping[str, SpaceLike]) -> list[str]:
    """Messages for search values the estimator does not accept, then for ranges, by name."""
    constraints = CONSTRAINTS[estimator]
    names = [name for name in sorted(space) if name in constraints]
    values = [
        values_message(estimator, name)
        for name in names
        if (entry := space[name]).values is not None
        and not all(value_ok(constraints[name], value) for value in entry.values)
    ]
    ranges = [
        range_message(estimator, name)
        for name in names
        if (bounds := space[name].range) is not None
        and not range_ok(constraints[name], bounds.min, bounds.max, bounds.integer)
    ]
    return values + ranges


def explain(summary: str, problems: list[str]) -> str:
    """The full message: the rule's summary, then every problem."""
    return f"{summary}: " + "; ".join(problems)


# --- CEL -----------------------------------------------------------------------------------------


def _cel_string(text: str) -> str:
    # JSON string syntax is valid CEL for these texts (double quotes, backslash escapes).
    return json.dumps(text)


def _cel_list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_cel_string(item) for item in items) + "]"


def _cel_number(value: float) -> str:
    return repr(float(value))


def _cel_interval(interval: Interval, value: str) -> str:
    types = {
        "integer": f"type({value}) == int",
        "number": f"(type({value}) == int || type({value}) == double)",
        "float": f"type({value}) == double",
    }[interval.kind]
    left_closed = interval.closed in ("left", "both")
    right_closed = interval.closed in ("right", "both")
    # double() of an int or a double is exact for every bound here; int() of a double is not.
    number = f"double({value})"
    clauses = [types]
    if interval.left is not None:
        clauses.append(f"{number} {'>=' if left_closed else '>'} {_cel_number(interval.left)}")
    if interval.right is not None:
        clauses.append(f"{number} {'<=' if right_closed else '<'} {_cel_number(interval.right)}")
    return "(" + " && ".join(clauses) + ")"


def cel_value_ok(constraint: ParamConstraint, value: str) -> str:
    """CEL that holds when the (free-form) ``value`` meets the constraint."""
    alternatives = [_cel_interval(interval, value) for interval in constraint.intervals]
    if constraint.options:
        alternatives.append(
            f"(type({value}) == string && {value} in {_cel_list(constraint.options)})"
        )
    if constraint.boolean:
        alternatives.append(f"type({value}) == bool")
    return "(" + " || ".join(alternatives) + ")"


def cel_range_ok(constraint: ParamConstraint, bounds: str) -> str:
    """CEL that holds when every draw of the range at ``bounds`` meets the constraint."""

    def fits(integer: bool) -> str:
        options: list[str] = []
        for interval in constraint.intervals:
            thresholds = range_thresholds(interval, integer)
            if thresholds is None:
                continue
            clauses = [f"double({bounds}.{f}) {op} {_cel_number(b)}" for f, op, b in thresholds]
            options.append("(" + (" && ".join(clauses) or "true") + ")")
        return "(" + (" || ".join(options) or "false") + ")"

    integers, floats = fits(True), fits(False)
    if integers == floats:
        return integers
    return f"((has({bounds}.integer) && {bounds}.integer) ? {integers} : {floats})"


def constraint_groups() -> list[tuple[ParamConstraint, list[str]]]:
    """Each distinct constraint with the ``Estimator.param`` pairs it applies to.

    Keyed by the words too: ``0 == 0.0`` in Python, but "a number >= 0" and "a number >= 0.0"
    are different messages, and the API server must say the one offline validation says.
    """
    groups: dict[tuple[str, ParamConstraint], list[str]] = {}
    for estimator, constraints in CONSTRAINTS.items():
        for name, constraint in constraints.items():
            groups.setdefault((describe(constraint), constraint), []).append(f"{estimator}.{name}")
    return [(constraint, pairs) for (_, constraint), pairs in groups.items()]


def _dispatch(branches: list[str], otherwise: str) -> str:
    """CEL choosing, by the pair ``p`` (``Estimator.param``), the branch of its constraint."""
    expression = otherwise
    for (_, pairs), branch in reversed(list(zip(constraint_groups(), branches, strict=True))):
        expression = f"p in {_cel_list(pairs)} ? {branch} : {expression}"
    return f"({expression})"


# CEL has no let: a one-element list's all()/map() binds a name to a value.
def _bind(name: str, value: str, body: str) -> str:
    return f"[{value}].all({name}, {body})"


def _pair(estimator: str, key: str) -> str:
    return f'{estimator} + "." + {key}'


def cel_param_value_ok(estimator: str, key: str, value: str) -> str:
    """CEL that holds when ``value`` is acceptable for parameter ``key`` of ``estimator``.

    Parameters the estimator does not have hold here: another rule refuses their names.
    """
    checks = [cel_value_ok(constraint, "v") for constraint, _ in constraint_groups()]
    return _bind("v", value, _bind("p", _pair(estimator, key), _dispatch(checks, "true")))


def cel_param_range_ok(estimator: str, key: str, bounds: str) -> str:
    """CEL that holds when the range at ``bounds`` only draws acceptable values for ``key``."""
    checks = [cel_range_ok(constraint, "r") for constraint, _ in constraint_groups()]
    return _bind("r", bounds, _bind("p", _pair(estimator, key), _dispatch(checks, "true")))


def cel_expected(estimator: str, key: str) -> str:
    """CEL string: what parameter ``key`` of ``estimator`` must be (see :func:`describe`)."""
    words = [_cel_string(describe(constraint)) for constraint, _ in constraint_groups()]
    choice = _dispatch(words, '""')
    return f"[{_pair(estimator, key)}].map(p, {choice})[0]"


PARAMS_VARIABLE = "estimatorParamProblems"
VALUES_VARIABLE = "searchValuesProblems"
RANGE_VARIABLE = "searchRangeProblems"


def cel_param_problems(spec: str) -> str:
    """CEL list of :func:`param_problems` for the spec at ``spec`` (``object.spec``)."""
    params, estimator = f"{spec}.estimator.params", f"{spec}.estimator.name"
    ok = cel_param_value_ok(estimator, "k", f"{params}[k]")
    problem = (
        f'"spec.estimator.params." + k + " must be " + {cel_expected(estimator, "k")}'
        f' + " (" + {estimator} + ")"'
    )
    return (
        f"{_cel_list(PARAM_NAMES)}.filter(k, has({params}) && k in {params} && !{ok})"
        f".map(k, {problem})"
    )


def cel_values_problems(spec: str) -> str:
    """CEL list of the ``values`` messages of :func:`space_problems`."""
    space, estimator = f"{spec}.search.space", f"{spec}.estimator.name"
    values = f"{space}[k].values"
    ok = f"{values}.all(v, {cel_param_value_ok(estimator, 'k', 'v')})"
    problem = (
        f'"each of spec.search.space." + k + ".values must be " + {cel_expected(estimator, "k")}'
        f' + " (" + {estimator} + ")"'
    )
    return (
        f"{_cel_list(PARAM_NAMES)}"
        f".filter(k, has({spec}.search) && k in {space} && has({values}) && !{ok})"
        f".map(k, {problem})"
    )


def cel_range_problems(spec: str) -> str:
    """CEL list of the ``range`` messages of :func:`space_problems`."""
    space, estimator = f"{spec}.search.space", f"{spec}.estimator.name"
    bounds = f"{space}[k].range"
    ok = cel_param_range_ok(estimator, "k", bounds)
    problem = (
        f'"every value drawn from spec.search.space." + k + ".range must be " + '
        f'{cel_expected(estimator, "k")} + " (" + {estimator} + '
        f"{_cel_string('; ' + RANGE_NOTE + ')')}"
    )
    return (
        f"{_cel_list(PARAM_NAMES)}"
        f".filter(k, has({spec}.search) && k in {space} && has({bounds}) && !{ok})"
        f".map(k, {problem})"
    )


def cel_rule(*variables: str) -> str:
    """The policy rule over problem-list variables: it holds when they are all empty."""
    return " + ".join(f"size(variables.{name})" for name in variables) + " == 0"


def cel_message(summary: str, *variables: str) -> str:
    """The message expression: :func:`explain` of the summary and the problem lists."""
    problems = " + ".join(f"variables.{name}" for name in variables)
    if len(variables) > 1:
        problems = f"({problems})"
    return f'{_cel_string(summary + ": ")} + {problems}.join("; ")'
