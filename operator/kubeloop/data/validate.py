"""Validation of one Dataset version: pure functions from an Arrow table to ``ValidationFailure``s.

Nothing here does I/O, so every rule is unit-tested with small hand-made tables. The entry
point is :func:`validate`; it first *conforms* the table (every column converted to the
canonical Arrow type of its logical type, see :mod:`kubeloop.data.logical`) and then checks:

* the declared schema (``spec.columns``): presence, type, ``nullable``, ``minimum`` /
  ``maximum``, ``allowedValues``;
* the schema pinned by the first Ready version, for columns the declared schema does not
  cover: a pinned column that disappeared, or whose values no longer fit its pinned type, is a
  failure. A declaration overrides the pin because it is the user's explicit, editable
  contract; the pin only protects what nobody wrote down;
* ``minRows``, ``maxMissingFraction`` (global) and ``columnMaxMissingFraction`` (per column),
  ``uniqueKey``, and the target column being present with at least one value.

Every failure names its column and rule in the message, in the words the Dataset's status
shows, e.g. ``column 'age': type changed from integer to category (pinned by the first
version)``. Rule names are the spec's field names, plus ``type``, ``pinnedSchema``,
``columnPresent``, ``uniqueColumnNames``, ``supportedType`` and ``target``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.api.dataset import (
    ColumnSchema,
    ColumnType,
    DatasetSpec,
    ObservedColumn,
    ValidationFailure,
    ValidationRules,
)
from kubeloop.data.logical import (
    Coercion,
    canonical,
    coerce,
    examples,
    is_supported,
    show_value,
)

_PLURAL: Final[dict[ColumnType, str]] = {
    "integer": "integers",
    "number": "numbers",
    "boolean": "booleans",
    "category": "categories",
}
_MAX_ALLOWED_SHOWN: Final = 5


@dataclass(frozen=True)
class Conformed:
    """A table whose columns all have canonical Arrow types, their logical types, and what
    went wrong on the way (duplicate or unsupported columns, values that do not fit)."""

    table: pa.Table
    types: dict[str, ColumnType]
    failures: list[ValidationFailure] = field(default_factory=list)


@dataclass(frozen=True)
class Validated:
    """The outcome of :func:`validate`: the conformed table and every failed rule."""

    table: pa.Table
    types: dict[str, ColumnType]
    columns: list[ObservedColumn]
    failures: list[ValidationFailure]

    @property
    def passed(self) -> bool:
        """Whether every rule passed."""
        return not self.failures


def validate(
    table: pa.Table, spec: DatasetSpec, pinned: Sequence[ObservedColumn] | None = None
) -> Validated:
    """Conform ``table`` to the declared and pinned schema, then check every rule of ``spec``."""
    declared = spec.columns or []
    conformed = conform(table, declared, pinned or [])
    failures = [
        *check_min_rows(conformed.table.num_rows, spec.validation),
        *conformed.failures,
        *check_declared(conformed, declared),
        *check_missing(conformed.table, spec.validation),
        *check_unique_key(conformed.table, spec.validation.unique_key),
        *check_target(conformed.table, spec.target),
    ]
    return Validated(
        conformed.table, conformed.types, observed_columns(conformed, declared), failures
    )


def conform(
    table: pa.Table, declared: Sequence[ColumnSchema], pinned: Sequence[ObservedColumn]
) -> Conformed:
    """Convert every column to the declared type, else the pinned type, else the inferred one.

    A column whose values do not fit its declared (rule ``type``) or pinned (rule
    ``pinnedSchema``) type keeps its inferred type and yields a failure; so does a declared or
    pinned column that is absent. Duplicate column names keep the first column, unsupported
    (nested, binary) columns are dropped; both are failures too.
    """
    declared_types = {column.name: column.type for column in declared}
    pinned_types = {
        column.name: column.type for column in pinned if column.name not in declared_types
    }
    failures: list[ValidationFailure] = []
    seen: set[str] = set()
    names: list[str] = []
    arrays: list[pa.ChunkedArray] = []
    types: dict[str, ColumnType] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        if name in seen:
            failures.append(_duplicate_column(name))
            continue
        seen.add(name)
        if not is_supported(column.type):
            failures.append(_unsupported(name, column.type))
            continue
        expected = declared_types.get(name) or pinned_types.get(name)
        if expected is not None:
            fitted = coerce(column, expected)
            if fitted.column is not None:
                names.append(name)
                arrays.append(fitted.column)
                types[name] = expected
                continue
            converted, observed = canonical(column)
            if name in declared_types:
                failures.append(_declared_type_mismatch(name, expected, observed, fitted))
            else:
                failures.append(_pinned_type_changed(name, expected, observed, fitted))
        else:
            converted, observed = canonical(column)
        names.append(name)
        arrays.append(converted)
        types[name] = observed
    for name, declared_type in declared_types.items():
        if name not in types:
            failures.append(
                _failure(
                    name,
                    "columnPresent",
                    "missing",
                    declared_type,
                    "declared in the schema but not in the data",
                )
            )
    for name, pinned_type in pinned_types.items():
        if name not in types:
            failures.append(
                _failure(
                    name,
                    "pinnedSchema",
                    "missing",
                    pinned_type,
                    f"disappeared (pinned as {pinned_type} by the first version)",
                )
            )
    conformed = pa.Table.from_arrays(arrays, names=names) if names else _empty(table.num_rows)
    return Conformed(conformed, types, failures)


def check_min_rows(rows: int, rules: ValidationRules) -> list[ValidationFailure]:
    """``minRows``: the version has at least that many rows."""
    if rows >= rules.min_rows:
        return []
    return [
        ValidationFailure(
            column=None,
            rule="minRows",
            observed=str(rows),
            expected=f">= {rules.min_rows}",
            message=f"minRows: the data has {rows} row(s), fewer than the minimum {rules.min_rows}",
        )
    ]


def check_declared(
    conformed: Conformed, declared: Sequence[ColumnSchema]
) -> list[ValidationFailure]:
    """``nullable``, ``minimum``, ``maximum`` and ``allowedValues`` of declared columns.

    Skipped for a column that is absent or whose values did not fit its declared type: that
    has been reported already, and its values are not of the type these rules talk about.
    """
    failures: list[ValidationFailure] = []
    for schema in declared:
        if conformed.types.get(schema.name) != schema.type:
            continue
        column = conformed.table.column(schema.name)
        missing = column.null_count
        if not schema.nullable and missing:
            failures.append(
                _failure(
                    schema.name,
                    "nullable",
                    f"{missing} missing",
                    "no missing values",
                    f"{missing} missing value(s), but the column is declared not nullable",
                )
            )
        if schema.minimum is not None:
            failures.extend(_bound(schema.name, column, schema.minimum, below=True))
        if schema.maximum is not None:
            failures.extend(_bound(schema.name, column, schema.maximum, below=False))
        if schema.allowed_values is not None:
            failures.extend(_allowed(schema.name, column, schema.allowed_values))
    return failures


def check_missing(table: pa.Table, rules: ValidationRules) -> list[ValidationFailure]:
    """``maxMissingFraction`` for every column, unless ``columnMaxMissingFraction`` overrides it.

    A column named in ``columnMaxMissingFraction`` that is not in the data is a failure too:
    a rule that silently checks nothing is how typos hide.
    """
    per_column = rules.column_max_missing_fraction or {}
    failures: list[ValidationFailure] = []
    rows = table.num_rows
    for name in table.column_names:
        own = name in per_column
        limit = per_column[name] if own else rules.max_missing_fraction
        missing = table.column(name).null_count
        fraction = missing / rows if rows else 0.0
        if fraction <= limit:
            continue
        rule = "columnMaxMissingFraction" if own else "maxMissingFraction"
        failures.append(
            _failure(
                name,
                rule,
                f"{fraction:.4g}",
                f"<= {limit:g}",
                f"{fraction:.1%} missing ({missing} of {rows} rows), more than {rule} {limit:g}",
            )
        )
    for name in per_column:
        if name not in table.column_names:
            failures.append(
                _failure(
                    name,
                    "columnMaxMissingFraction",
                    "missing column",
                    "the column exists",
                    "named in columnMaxMissingFraction but not in the data",
                )
            )
    return failures


def check_unique_key(table: pa.Table, key: str | None) -> list[ValidationFailure]:
    """``uniqueKey``: the key column exists, has a value in every row, and no value twice."""
    if key is None:
        return []
    if key not in table.column_names:
        return [
            _failure(
                key,
                "uniqueKey",
                "missing column",
                "unique values",
                "the uniqueKey column is not in the data",
            )
        ]
    column = table.column(key)
    failures: list[ValidationFailure] = []
    if column.null_count:
        failures.append(
            _failure(
                key,
                "uniqueKey",
                f"{column.null_count} missing",
                "a key in every row",
                f"{column.null_count} row(s) have no uniqueKey value",
            )
        )
    present = len(column) - column.null_count
    distinct = int(pc.count_distinct(column, mode="only_valid").as_py())
    if distinct < present:
        counts = pc.value_counts(column).flatten()
        repeated = pc.filter(counts[0], pc.and_(pc.greater(counts[1], 1), pc.is_valid(counts[0])))
        shown = examples(repeated)
        failures.append(
            _failure(
                key,
                "uniqueKey",
                f"{present - distinct} duplicate(s)",
                "unique values",
                f"{present - distinct} duplicate uniqueKey value(s), e.g. {', '.join(shown)}",
            )
        )
    return failures


def check_target(table: pa.Table, target: str) -> list[ValidationFailure]:
    """The target column exists and has at least one value: there is something to learn."""
    if target not in table.column_names:
        return [
            _failure(
                target,
                "target",
                "missing column",
                "present",
                "the target column is not in the data",
            )
        ]
    column = table.column(target)
    if len(column) - column.null_count == 0:
        return [
            _failure(
                target,
                "target",
                "no values",
                "at least one value",
                "the target column has no values",
            )
        ]
    return []


def observed_columns(
    conformed: Conformed, declared: Sequence[ColumnSchema]
) -> list[ObservedColumn]:
    """The schema as status reports it: a declared column is nullable as declared, any other
    column is nullable when it has missing values."""
    nullable = {column.name: column.nullable for column in declared}
    return [
        ObservedColumn(
            name=name,
            type=conformed.types[name],
            nullable=nullable.get(name, conformed.table.column(name).null_count > 0),
        )
        for name in conformed.table.column_names
    ]


def _bound(
    name: str, column: pa.ChunkedArray, bound: float, *, below: bool
) -> list[ValidationFailure]:
    outside = pc.less(column, bound) if below else pc.greater(column, bound)
    count = int(pc.sum(outside).as_py() or 0)
    if count == 0:
        return []
    extremes = pc.min_max(column).as_py()
    extreme = extremes["min"] if below else extremes["max"]
    rule, side, word = ("minimum", ">=", "below") if below else ("maximum", "<=", "above")
    return [
        _failure(
            name,
            rule,
            show_value(extreme),
            f"{side} {bound:g}",
            f"{count} value(s) {word} the {rule} {bound:g} "
            f"({'smallest' if below else 'largest'}: {show_value(extreme)})",
        )
    ]


def _allowed(name: str, column: pa.ChunkedArray, allowed: list[str]) -> list[ValidationFailure]:
    outside = pc.and_(pc.invert(pc.is_in(column, value_set=pa.array(allowed))), pc.is_valid(column))
    count = int(pc.sum(outside).as_py() or 0)
    if count == 0:
        return []
    shown = examples(pc.filter(column, outside))
    allowed_shown = ", ".join(show_value(value) for value in allowed[:_MAX_ALLOWED_SHOWN])
    if len(allowed) > _MAX_ALLOWED_SHOWN:
        allowed_shown += f", ... ({len(allowed)} values)"
    return [
        _failure(
            name,
            "allowedValues",
            ", ".join(shown),
            f"one of {allowed_shown}",
            f"{count} value(s) outside allowedValues, e.g. {', '.join(shown)}",
        )
    ]


def _declared_type_mismatch(
    name: str, declared: ColumnType, observed: ColumnType, fitted: Coercion
) -> ValidationFailure:
    return _failure(
        name,
        "type",
        observed,
        declared,
        f"declared {declared} but the data is {observed}{_misfits(declared, fitted)}",
    )


def _pinned_type_changed(
    name: str, pinned: ColumnType, observed: ColumnType, fitted: Coercion
) -> ValidationFailure:
    return _failure(
        name,
        "pinnedSchema",
        observed,
        pinned,
        f"type changed from {pinned} to {observed} (pinned by the first version)"
        f"{_misfits(pinned, fitted)}",
    )


def _misfits(expected: ColumnType, fitted: Coercion) -> str:
    if not fitted.bad:
        return ""
    example_text = f", e.g. {', '.join(fitted.examples)}" if fitted.examples else ""
    return f": {fitted.bad} value(s) are not {_PLURAL[expected]}{example_text}"


def _duplicate_column(name: str) -> ValidationFailure:
    return _failure(
        name,
        "uniqueColumnNames",
        "duplicate",
        "unique column names",
        "appears more than once in the header (only the first is kept)",
    )


def _unsupported(name: str, data_type: pa.DataType) -> ValidationFailure:
    return _failure(
        name,
        "supportedType",
        str(data_type),
        "number, integer, category or boolean",
        f"has type {data_type}, which is not a flat number, integer, category or boolean",
    )


def _failure(
    column: str, rule: str, observed: str, expected: str, detail: str
) -> ValidationFailure:
    return ValidationFailure(
        column=column,
        rule=rule,
        observed=observed,
        expected=expected,
        message=f"column {column!r}: {detail}",
    )


def _empty(rows: int) -> pa.Table:
    # A table with rows but no (usable) columns: keep the row count, which minRows reads.
    return pa.table({"__rows__": pa.nulls(rows)}).drop_columns(["__rows__"])
