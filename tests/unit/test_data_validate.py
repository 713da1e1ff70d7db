"""Every validation rule of a Dataset version, on small hand-made tables."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from kubeloop.api.dataset import DatasetSpec, ObservedColumn, ValidationFailure
from kubeloop.data.validate import (
    check_missing,
    check_target,
    check_unique_key,
    conform,
    validate,
)


def spec(**fields: Any) -> DatasetSpec:
    return DatasetSpec.model_validate(
        {"source": {"uri": "s3://data/churn.csv"}, "target": "churn", **fields}
    )


def frame(**columns: list[Any]) -> pa.Table:
    return pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)


def rules(failures: list[ValidationFailure]) -> list[tuple[str | None, str]]:
    return [(failure.column, failure.rule) for failure in failures]


def test_a_clean_table_passes_with_inferred_types() -> None:
    table = frame(id=[1, 2, 3], age=[30.5, None, 41.0], plan=["a", "b", None], churn=[0, 1, 0])
    result = validate(table, spec())
    assert result.passed
    assert result.types == {
        "id": "integer",
        "age": "number",
        "plan": "category",
        "churn": "integer",
    }
    assert [(c.name, c.type, c.nullable) for c in result.columns] == [
        ("id", "integer", False),
        ("age", "number", True),
        ("plan", "category", True),
        ("churn", "integer", False),
    ]


def test_min_rows() -> None:
    result = validate(frame(churn=[1, 0]), spec(validation={"minRows": 3}))
    [failure] = result.failures
    assert (failure.column, failure.rule, failure.observed, failure.expected) == (
        None,
        "minRows",
        "2",
        ">= 3",
    )
    assert "minRows" in failure.message
    assert "fewer than the minimum 3" in failure.message


def test_declared_type_that_fits_is_applied() -> None:
    declared = spec(
        columns=[
            {"name": "zip", "type": "category"},
            {"name": "age", "type": "integer"},
            {"name": "churn", "type": "boolean"},
        ]
    )
    result = validate(frame(zip=[1234, 5678], age=[30.0, 40.0], churn=[0, 1]), declared)
    assert result.passed
    assert result.types == {"zip": "category", "age": "integer", "churn": "boolean"}
    assert result.table.column("churn").to_pylist() == [False, True]


def test_declared_type_that_does_not_fit() -> None:
    declared = spec(
        columns=[{"name": "age", "type": "integer"}, {"name": "churn", "type": "integer"}]
    )
    result = validate(frame(age=["30", "old", "x"], churn=[0, 1, 0]), declared)
    [failure] = result.failures
    assert (failure.column, failure.rule, failure.observed, failure.expected) == (
        "age",
        "type",
        "category",
        "integer",
    )
    assert failure.message == (
        "column 'age': declared integer but the data is category: 2 value(s) are not "
        "integers, e.g. 'old', 'x'"
    )
    assert result.types["age"] == "category"  # keeps what it really is


def test_declared_column_missing() -> None:
    declared = spec(
        columns=[{"name": "age", "type": "integer"}, {"name": "churn", "type": "integer"}]
    )
    [failure] = validate(frame(churn=[0, 1]), declared).failures
    assert (failure.column, failure.rule, failure.observed) == ("age", "columnPresent", "missing")
    assert failure.message == "column 'age': declared in the schema but not in the data"


def test_nullable_minimum_maximum_allowed_values() -> None:
    declared = spec(
        columns=[
            {"name": "age", "type": "integer", "nullable": False, "minimum": 0, "maximum": 120},
            {"name": "plan", "type": "category", "allowedValues": ["basic", "pro"]},
            {"name": "churn", "type": "integer"},
        ]
    )
    table = frame(
        age=[-4.0, 30.0, None, 150.0, -1.0],
        plan=["basic", "gold", "pro", None, "gold"],
        churn=[0, 1, 0, 1, 0],
    )
    failures = validate(table, declared).failures
    assert rules(failures) == [
        ("age", "nullable"),
        ("age", "minimum"),
        ("age", "maximum"),
        ("plan", "allowedValues"),
    ]
    nullable, minimum, maximum, allowed = failures
    assert nullable.observed == "1 missing"
    assert (minimum.observed, minimum.expected) == ("-4", ">= 0")
    assert minimum.message == "column 'age': 2 value(s) below the minimum 0 (smallest: -4)"
    assert (maximum.observed, maximum.expected) == ("150", "<= 120")
    assert maximum.message == "column 'age': 1 value(s) above the maximum 120 (largest: 150)"
    assert (allowed.observed, allowed.expected) == ("'gold'", "one of 'basic', 'pro'")
    assert allowed.message == "column 'plan': 2 value(s) outside allowedValues, e.g. 'gold'"


def test_value_rules_are_skipped_for_a_column_of_the_wrong_type() -> None:
    declared = spec(
        columns=[
            {"name": "age", "type": "number", "minimum": 0},
            {"name": "churn", "type": "integer"},
        ]
    )
    assert rules(validate(frame(age=["x", "-1"], churn=[0, 1]), declared).failures) == [
        ("age", "type")
    ]


def test_pinned_type_change_names_the_column_and_the_pin() -> None:
    pinned = [
        ObservedColumn(name="age", type="integer", nullable=False),
        ObservedColumn(name="churn", type="integer", nullable=False),
    ]
    result = validate(frame(age=["30", "unknown"], churn=[0, 1]), spec(), pinned)
    [failure] = result.failures
    assert (failure.column, failure.rule, failure.observed, failure.expected) == (
        "age",
        "pinnedSchema",
        "category",
        "integer",
    )
    assert failure.message.startswith(
        "column 'age': type changed from integer to category (pinned by the first version)"
    )
    assert "'unknown'" in failure.message


def test_pinned_column_that_disappeared() -> None:
    pinned = [
        ObservedColumn(name="age", type="integer", nullable=False),
        ObservedColumn(name="churn", type="integer", nullable=False),
    ]
    [failure] = validate(frame(churn=[0, 1]), spec(), pinned).failures
    assert (failure.column, failure.rule, failure.observed, failure.expected) == (
        "age",
        "pinnedSchema",
        "missing",
        "integer",
    )
    assert failure.message == "column 'age': disappeared (pinned as integer by the first version)"


def test_values_that_still_fit_the_pin_are_no_change() -> None:
    # Integers are numbers; whole floats (pandas writes integer columns with gaps as float)
    # are integers; an integer-looking category stays a category.
    pinned = [
        ObservedColumn(name="price", type="number", nullable=False),
        ObservedColumn(name="count", type="integer", nullable=True),
        ObservedColumn(name="zip", type="category", nullable=False),
        ObservedColumn(name="churn", type="integer", nullable=False),
    ]
    table = frame(price=[1, 2], count=[3.0, None], zip=[1234, 5678], churn=[0, 1])
    result = validate(table, spec(), pinned)
    assert result.passed
    assert result.types == {
        "price": "number",
        "count": "integer",
        "zip": "category",
        "churn": "integer",
    }
    # A new column is fine: the pin protects what existed, it does not forbid growth.
    assert validate(table.append_column("new", pa.array([1, 2])), spec(), pinned).passed


def test_a_declaration_overrides_the_pin() -> None:
    pinned = [ObservedColumn(name="age", type="integer", nullable=False)]
    declared = spec(
        columns=[{"name": "age", "type": "category"}, {"name": "churn", "type": "integer"}]
    )
    result = validate(frame(age=["30", "old"], churn=[0, 1]), declared, pinned)
    assert result.passed
    assert result.types["age"] == "category"


def test_max_missing_fraction_global_and_per_column() -> None:
    table = frame(
        a=[1.0, None, None, 4.0],  # 50 % missing
        b=[1.0, None, 3.0, 4.0],  # 25 %
        c=[None, None, None, 1.0],  # 75 %, but allowed for c
        churn=[0, 1, 0, 1],
    )
    validation = spec(
        validation={"maxMissingFraction": 0.3, "columnMaxMissingFraction": {"c": 0.8, "b": 0.1}}
    ).validation
    failures = check_missing(table, validation)
    assert rules(failures) == [("a", "maxMissingFraction"), ("b", "columnMaxMissingFraction")]
    assert (failures[0].observed, failures[0].expected) == ("0.5", "<= 0.3")
    assert (
        failures[0].message
        == "column 'a': 50.0% missing (2 of 4 rows), more than maxMissingFraction 0.3"
    )
    assert (
        failures[1].message
        == "column 'b': 25.0% missing (1 of 4 rows), more than columnMaxMissingFraction 0.1"
    )


def test_per_column_missing_limit_for_an_absent_column_is_reported() -> None:
    validation = spec(validation={"columnMaxMissingFraction": {"ghost": 0.1}}).validation
    [failure] = check_missing(frame(churn=[1]), validation)
    assert (failure.column, failure.rule, failure.observed) == (
        "ghost",
        "columnMaxMissingFraction",
        "missing column",
    )


def test_missing_fraction_counts_empty_text_and_nan() -> None:
    result = validate(
        frame(plan=["", "a", None, "b"], x=[float("nan"), 1.0, 2.0, 3.0], churn=[0, 1, 0, 1]),
        spec(validation={"maxMissingFraction": 0.25}),
    )
    assert rules(result.failures) == [("plan", "maxMissingFraction")]


def test_unique_key() -> None:
    assert check_unique_key(frame(id=[1, 2, 3]), "id") == []
    [duplicates] = check_unique_key(frame(id=[1, 2, 2, 3, 3, 3]), "id")
    assert (duplicates.column, duplicates.rule, duplicates.observed) == (
        "id",
        "uniqueKey",
        "3 duplicate(s)",
    )
    assert duplicates.message == "column 'id': 3 duplicate uniqueKey value(s), e.g. 2, 3"
    (missing,) = check_unique_key(frame(id=["a", None, "b"]), "id")
    assert missing.observed == "1 missing"
    [absent] = check_unique_key(frame(other=[1]), "id")
    assert absent.observed == "missing column"
    assert absent.message == "column 'id': the uniqueKey column is not in the data"


def test_target_present_and_not_empty() -> None:
    assert check_target(frame(churn=[None, 1.0]), "churn") == []
    [absent] = check_target(frame(other=[1]), "churn")
    assert (absent.column, absent.rule, absent.observed) == ("churn", "target", "missing column")
    [empty] = check_target(
        frame(churn=[None, None]).cast(pa.schema([("churn", pa.float64())])), "churn"
    )
    assert (empty.rule, empty.observed) == ("target", "no values")
    assert empty.message == "column 'churn': the target column has no values"


def test_duplicate_and_unsupported_columns() -> None:
    table = pa.Table.from_arrays(
        [pa.array([1, 2]), pa.array([3, 4]), pa.array([[1], [2]]), pa.array([0, 1])],
        names=["a", "a", "nested", "churn"],
    )
    conformed = conform(table, [], [])
    assert conformed.table.column_names == ["a", "churn"]
    assert conformed.table.column("a").to_pylist() == [1, 2]  # the first one is kept
    assert rules(conformed.failures) == [("a", "uniqueColumnNames"), ("nested", "supportedType")]


def test_every_failure_is_reported_in_a_stable_order() -> None:
    declared = spec(
        columns=[
            {"name": "age", "type": "integer", "minimum": 0},
            {"name": "churn", "type": "integer"},
        ],
        validation={"minRows": 5, "maxMissingFraction": 0.1, "uniqueKey": "id"},
    )
    table = frame(id=[1, 1, 2], age=[-1.0, None, 3.0], churn=[None, None, None])
    failures = validate(table, declared).failures
    assert rules(failures) == [
        (None, "minRows"),
        ("age", "minimum"),
        ("age", "maxMissingFraction"),
        ("churn", "maxMissingFraction"),
        ("id", "uniqueKey"),
        ("churn", "target"),
    ]
    assert all(f.column is None or f"column '{f.column}'" in f.message for f in failures)
    assert validate(table, declared).failures == failures
