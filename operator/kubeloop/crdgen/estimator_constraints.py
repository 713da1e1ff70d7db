"""Read scikit-learn's ``_parameter_constraints`` into the table ``kubeloop.api`` keeps.

The API models must not import scikit-learn (the operator never trains), so the parameter
constraints of the allowlisted estimators are copied into a generated module,
``kubeloop/api/estimator_constraints.py``, which ``python -m kubeloop.crdgen`` rewrites and a
test compares with the installed scikit-learn. Only what a manifest can hold survives: an
``Interval``, string options and ``"boolean"``. ``None``, dicts, lists, arrays, classes and
hidden constraints are things no parameter value of a manifest can be, so they are left out;
any other constraint is an error, so a new scikit-learn cannot slip one past unread.
"""

from __future__ import annotations

import importlib
import json
import math
from numbers import Integral, Real
from typing import Any

from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    RealNotInt,
    StrOptions,
)
from sklearn.utils._param_validation import (
    Interval as SklearnInterval,
)

from kubeloop.api.estimators import ESTIMATORS, Interval, IntervalKind, ParamConstraint

MODULE_PATH = "operator/kubeloop/api/estimator_constraints.py"
# Constraints that describe values no manifest can hold.
_UNREPRESENTABLE_NAMES = frozenset({"array-like", "sparse matrix"})


class UnsupportedConstraint(ValueError):
    """scikit-learn declared a constraint this generator does not know how to read."""


def _interval_kind(interval: SklearnInterval) -> IntervalKind:
    if interval.type is RealNotInt:
        return "float"
    if interval.type is Integral:
        return "integer"
    if interval.type is Real:
        return "number"
    raise UnsupportedConstraint(f"Interval of {interval.type!r}")


def _bound(value: Any) -> int | float | None:
    if value is None or (isinstance(value, float) and math.isinf(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UnsupportedConstraint(f"interval bound {value!r}")
    return value


def read_constraint(where: str, declared: list[Any]) -> ParamConstraint:
    """The representable part of one parameter's declared constraints."""
    intervals: list[Interval] = []
    options: list[str] = []
    boolean = False
    for constraint in declared:
        if isinstance(constraint, SklearnInterval):
            intervals.append(
                Interval(
                    kind=_interval_kind(constraint),
                    left=_bound(constraint.left),
                    right=_bound(constraint.right),
                    closed=constraint.closed,
                )
            )
        elif isinstance(constraint, StrOptions):
            options += sorted(constraint.options)
        elif constraint == "boolean":
            boolean = True
        elif constraint == "random_state":
            intervals.append(Interval("integer", 0, 2**32 - 1, "both"))
        elif (
            constraint is None
            or isinstance(constraint, type | Hidden | HasMethods)
            or (isinstance(constraint, str) and constraint in _UNREPRESENTABLE_NAMES)
            or callable(constraint)
        ):
            continue
        else:
            raise UnsupportedConstraint(f"{where}: constraint {constraint!r} is not understood")
    if not (intervals or options or boolean):
        raise UnsupportedConstraint(
            f"{where}: no value a manifest can hold meets {declared!r}; drop it from the allowlist"
        )
    return ParamConstraint(intervals=tuple(intervals), options=tuple(options), boolean=boolean)


def read_constraints() -> dict[str, dict[str, ParamConstraint]]:
    """Estimator name to parameter name to constraint, for every allowlisted parameter."""
    table: dict[str, dict[str, ParamConstraint]] = {}
    for name, info in ESTIMATORS.items():
        module_name, _, class_name = info.sklearn_class.rpartition(".")
        declared = getattr(importlib.import_module(module_name), class_name)._parameter_constraints
        table[name] = {
            param: read_constraint(f"{name}.{param}", declared[param]) for param in info.params
        }
    return table


def _q(text: str) -> str:
    return json.dumps(text)


def _interval_source(interval: Interval) -> str:
    bounds = f"{interval.left!r}, {interval.right!r}"
    return f"Interval({_q(interval.kind)}, {bounds}, {_q(interval.closed)})"


def _tuple_source(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _constraint_source(constraint: ParamConstraint) -> str:
    parts: list[str] = []
    if constraint.intervals:
        parts.append(
            "intervals=" + _tuple_source([_interval_source(i) for i in constraint.intervals])
        )
    if constraint.options:
        parts.append("options=" + _tuple_source([_q(o) for o in constraint.options]))
    if constraint.boolean:
        parts.append("boolean=True")
    return "ParamConstraint(" + ", ".join(parts) + ")"


_MODULE_HEADER = '''"""scikit-learn's parameter constraints of the allowlisted estimators, as manifests can meet them.

Generated by `python -m kubeloop.crdgen` (make manifests) from the installed scikit-learn's
``_parameter_constraints`` (see ``kubeloop.crdgen.estimator_constraints``).
DO NOT EDIT: a test fails when this table differs from scikit-learn.
"""

from kubeloop.api.estimators import Interval, ParamConstraint

# fmt: off
CONSTRAINTS: dict[str, dict[str, ParamConstraint]] = {
'''


def render_module(table: dict[str, dict[str, ParamConstraint]]) -> str:
    """The source of ``kubeloop/api/estimator_constraints.py`` for ``table``."""
    lines = [_MODULE_HEADER.rstrip("\n")]
    for name, params in table.items():
        lines.append(f"    {_q(name)}: {{")
        lines += [
            f"        {_q(param)}: {_constraint_source(constraint)},"
            for param, constraint in params.items()
        ]
        lines.append("    },")
    lines += ["}", "# fmt: on", ""]
    return "\n".join(lines)
