"""Logical column types: inference from Arrow types and coercion to declared/pinned types."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
import pytest

from kubeloop.data.logical import ARROW_TYPES, canonical, coerce, infer_type, is_supported


@pytest.mark.parametrize(
    ("data_type", "expected"),
    [
        (pa.bool_(), "boolean"),
        (pa.int8(), "integer"),
        (pa.int64(), "integer"),
        (pa.uint32(), "integer"),
        (pa.float32(), "number"),
        (pa.float64(), "number"),
        (pa.decimal128(10, 2), "number"),
        (pa.string(), "category"),
        (pa.large_string(), "category"),
        (pa.dictionary(pa.int32(), pa.string()), "category"),
        (pa.date32(), "category"),
        (pa.timestamp("s"), "category"),
        (pa.null(), "category"),
    ],
)
def test_infer_type_from_arrow_type(data_type: pa.DataType, expected: str) -> None:
    assert infer_type(data_type) == expected


def test_nested_and_binary_columns_are_unsupported() -> None:
    assert not is_supported(pa.list_(pa.int64()))
    assert not is_supported(pa.struct([("a", pa.int64())]))
    assert not is_supported(pa.binary())
    assert is_supported(pa.string())
    assert is_supported(pa.date32())


def column(values: Sequence[object], data_type: pa.DataType | None = None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, type=data_type)])


def test_canonical_types_and_missing_values() -> None:
    floats, logical = canonical(column([1.5, float("nan"), None]))
    assert logical == "number"
    assert floats.to_pylist() == [1.5, None, None]  # NaN is missing
    text, logical = canonical(column(["a", "", None], pa.large_string()))
    assert logical == "category"
    assert text.type == pa.string()
    assert text.to_pylist() == ["a", None, None]  # an empty string is missing
    dates, logical = canonical(column([dt.date(2024, 1, 2)]))
    assert (logical, dates.to_pylist()) == ("category", ["2024-01-02"])
    decimals, logical = canonical(column([Decimal("1.25")], pa.decimal128(5, 2)))
    assert (logical, decimals.to_pylist()) == ("number", [1.25])
    categories, logical = canonical(column(["x", "y", "x"]).dictionary_encode())
    assert (logical, categories.to_pylist()) == ("category", ["x", "y", "x"])


@pytest.mark.parametrize(
    ("values", "data_type", "to", "expected"),
    [
        ([1, 2, None], pa.int64(), "number", [1.0, 2.0, None]),
        ([1.0, 3.0, None], pa.float64(), "integer", [1, 3, None]),
        (["1", " 2 ", None], pa.string(), "integer", [1, 2, None]),
        (["1.5", "-2e3", ".5", "inf"], pa.string(), "number", [1.5, -2000.0, 0.5, float("inf")]),
        ([0, 1, None], pa.int64(), "boolean", [False, True, None]),
        (["Yes", "no", "TRUE", "0", ""], pa.string(), "boolean", [True, False, True, False, None]),
        ([1, 20], pa.int64(), "category", ["1", "20"]),
        ([True, False], pa.bool_(), "category", ["true", "false"]),
        ([None, None], pa.null(), "integer", [None, None]),
    ],
)
def test_coerce_converts_values_that_fit(
    values: list[object], data_type: pa.DataType, to: str, expected: list[object]
) -> None:
    result = coerce(column(values, data_type), to)  # type: ignore[arg-type]
    assert result.ok
    assert result.column is not None
    assert result.column.type == ARROW_TYPES[to]  # type: ignore[index]
    assert result.column.to_pylist() == expected


@pytest.mark.parametrize(
    ("values", "data_type", "to", "bad", "examples"),
    [
        (["1", "abc", "x", None], pa.string(), "integer", 2, ["'abc'", "'x'"]),
        ([1.0, 1.5, None], pa.float64(), "integer", 1, ["1.5"]),
        (["1.5", "n/a!"], pa.string(), "number", 1, ["'n/a!'"]),
        ([0, 1, 2], pa.int64(), "boolean", 1, ["2"]),
        (["yes", "maybe"], pa.string(), "boolean", 1, ["'maybe'"]),
        ([True, None], pa.bool_(), "number", 1, ["True"]),
        (["99999999999999999999"], pa.string(), "integer", 1, ["'99999999999999999999'"]),
    ],
)
def test_coerce_reports_values_that_do_not_fit(
    values: list[object], data_type: pa.DataType, to: str, bad: int, examples: list[str]
) -> None:
    result = coerce(column(values, data_type), to)  # type: ignore[arg-type]
    assert not result.ok
    assert result.bad == bad
    assert result.examples == examples


def test_examples_are_few_distinct_and_short() -> None:
    values = ["x" * 100, "bad", "bad", "worse", "worst", "1"]
    result = coerce(column(values), "integer")
    assert result.bad == 5
    assert result.examples == ["'" + "x" * 37 + "...'", "'bad'", "'worse'"]
