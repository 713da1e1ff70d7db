"""Logical column types: what the profiler infers from Arrow types, and how it coerces to them.

A Dataset column is one of four logical types (``number``, ``integer``, ``category``,
``boolean``, the ``ColumnType`` of the API). Each has exactly one canonical Arrow type, which is
what the snapshot stores and the digest hashes, so the same values always look the same
whatever file format they arrived in:

========== ============ ===============================================================
logical    Arrow        missing values
========== ============ ===============================================================
integer    ``int64``    null
number     ``float64``  null (a NaN is missing, as in pandas; it never survives coercion)
boolean    ``bool``     null
category   ``string``   null (an empty string is missing, as in a CSV cell)
========== ============ ===============================================================

:func:`coerce` converts a column to a logical type with vectorised ``pyarrow.compute`` kernels
and, when some values do not fit (``"abc"`` in an integer column), reports how many and a few
examples instead of raising, because a bad value is a validation failure, not a crash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.api.dataset import ColumnType

ARROW_TYPES: Final[dict[ColumnType, pa.DataType]] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "category": pa.string(),
}

# Text spellings accepted for booleans when a declared or pinned schema asks for one.
TRUE_WORDS: Final = ("true", "t", "yes", "y", "1")
FALSE_WORDS: Final = ("false", "f", "no", "n", "0")
_INTEGER_TEXT: Final = r"^\s*[+-]?[0-9]+\s*$"
_NUMBER_TEXT: Final = (
    r"^\s*[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|inf|infinity|Inf|Infinity|INF)\s*$"
)
# Floats beyond this magnitude cannot be represented exactly as int64.
_INT64_SAFE_FLOAT: Final = 2.0**63
_MAX_EXAMPLES: Final = 3
_MAX_EXAMPLE_CHARS: Final = 40


@dataclass(frozen=True)
class Coercion:
    """The outcome of converting a column to a logical type.

    ``column`` is the converted column, or None when ``bad`` values (non-missing values that
    do not fit the type) were found; ``examples`` shows a few of them, already quoted.
    """

    column: pa.ChunkedArray | None
    bad: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every non-missing value fitted."""
        return self.column is not None


def is_supported(data_type: pa.DataType) -> bool:
    """Whether a column of this Arrow type can become one of the four logical types.

    Nested and binary columns (lists, structs, maps, raw bytes) have no sensible flat logical
    type; everything else does (dates and times become categories, as their text).
    """
    return not (
        pa.types.is_nested(data_type)
        or pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    )


def infer_type(data_type: pa.DataType) -> ColumnType:
    """The logical type a column of this Arrow type has when nothing is declared or pinned.

    Decided by the Arrow type alone, never by sniffing values: the CSV reader already typed
    every column from its text (``1`` is an integer, ``1.0`` a number, ``x`` a category), and a
    value-based guess would flip between versions (a price column that happens to hold only
    whole numbers this week would "become" integer).
    """
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_integer(data_type):
        return "integer"
    if pa.types.is_floating(data_type) or pa.types.is_decimal(data_type):
        return "number"
    if pa.types.is_dictionary(data_type):
        return infer_type(data_type.value_type)
    return "category"  # strings, dates, times, and all-empty (null-typed) columns


def coerce(column: pa.ChunkedArray, to: ColumnType) -> Coercion:
    """Convert ``column`` to the canonical Arrow type of ``to``; report values that do not fit."""
    if pa.types.is_null(column.type):  # an all-empty column fits every type
        return Coercion(column.cast(ARROW_TYPES[to]))
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    source = infer_type(column.type)
    if to == "category":
        return Coercion(_empty_strings_to_null(_to_text(column)))
    if to == "number":
        return _to_number(column, source)
    if to == "integer":
        return _to_integer(column, source)
    return _to_boolean(column, source)


def canonical(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, ColumnType]:
    """A column in its inferred logical type and that type's canonical Arrow representation.

    Inference never fails: every supported Arrow type converts losslessly to its own logical type.
    """
    logical = infer_type(column.type)
    converted = coerce(column, logical).column
    if converted is None:  # pragma: no cover - a type always fits its own inference
        raise AssertionError(f"column of type {column.type} does not fit {logical}")
    return converted, logical


def _to_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if column.type == pa.string():
        return column
    if pa.types.is_boolean(column.type):
        # Arrow spells booleans "true"/"false" already; kept explicit for readers.
        return pc.if_else(column, "true", "false")
    return column.cast(pa.string())


def _empty_strings_to_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    # CSV reads an empty cell as missing; Parquet keeps "". Treat both alike so the same table
    # validates and hashes the same whichever format it came in.
    empty = pc.equal(column, "")
    if not pc.any(empty).as_py():
        return column
    return pc.if_else(empty, pa.scalar(None, pa.string()), column)


def _to_number(column: pa.ChunkedArray, source: ColumnType) -> Coercion:
    if source in ("integer", "number"):
        return Coercion(_nan_to_null(column.cast(pa.float64())))
    if source == "boolean":
        return _all_bad(column, "number")
    text = _empty_strings_to_null(_to_text(column))
    fits = pc.match_substring_regex(text, _NUMBER_TEXT)
    bad = _bad_values(text, fits)
    if bad is not None:
        return bad
    return Coercion(_nan_to_null(pc.utf8_trim_whitespace(text).cast(pa.float64())))


def _to_integer(column: pa.ChunkedArray, source: ColumnType) -> Coercion:
    if source == "integer":
        try:
            return Coercion(column.cast(pa.int64()))
        except pa.ArrowInvalid:  # uint64 values beyond int64
            return _bad_values(column, pc.less_equal(column, 2**63 - 1)) or _all_bad(
                column, "integer"
            )
    if source == "number":
        as_float = _nan_to_null(column.cast(pa.float64()))
        whole = pc.and_(
            pc.equal(as_float, pc.floor(as_float)), pc.less(pc.abs(as_float), _INT64_SAFE_FLOAT)
        )
        bad = _bad_values(as_float, whole)
        if bad is not None:
            return bad
        return Coercion(as_float.cast(pa.int64()))
    if source == "boolean":
        return _all_bad(column, "integer")
    text = _empty_strings_to_null(_to_text(column))
    bad = _bad_values(text, pc.match_substring_regex(text, _INTEGER_TEXT))
    if bad is not None:
        return bad
    try:
        return Coercion(pc.utf8_trim_whitespace(text).cast(pa.int64()))
    except pa.ArrowInvalid:  # digits only, but beyond int64
        return _all_bad(text, "integer")


def _to_boolean(column: pa.ChunkedArray, source: ColumnType) -> Coercion:
    if source == "boolean":
        return Coercion(column.cast(pa.bool_()))
    if source in ("integer", "number"):
        bad = _bad_values(column, pc.is_in(column, value_set=pa.array([0, 1], column.type)))
        if bad is not None:
            return bad
        return Coercion(pc.equal(column, pa.scalar(1, column.type)))
    text = _empty_strings_to_null(_to_text(column))
    words = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    is_true = pc.is_in(words, value_set=pa.array(TRUE_WORDS))
    is_false = pc.is_in(words, value_set=pa.array(FALSE_WORDS))
    bad = _bad_values(text, pc.or_(is_true, is_false))
    if bad is not None:
        return bad
    return Coercion(pc.if_else(pc.is_null(words), pa.scalar(None, pa.bool_()), is_true))


def _nan_to_null(column: pa.ChunkedArray) -> pa.ChunkedArray:
    nan = pc.is_nan(column)
    if not pc.any(nan).as_py():
        return column
    return pc.if_else(nan, pa.scalar(None, pa.float64()), column)


def _bad_values(column: pa.ChunkedArray, fits: pa.ChunkedArray) -> Coercion | None:
    """None when every non-missing value fits; otherwise the count and a few examples."""
    # Missing values are never bad, whatever a kernel said about them (null or false).
    misfit = pc.and_(pc.is_valid(column), pc.invert(pc.fill_null(fits, True)))
    bad = int(pc.sum(misfit).as_py() or 0)
    if bad == 0:
        return None
    return Coercion(None, bad, examples(pc.filter(column, misfit)))


def _all_bad(column: pa.ChunkedArray, to: ColumnType) -> Coercion:
    present = pc.is_valid(column)
    bad = int(pc.sum(present).as_py() or 0)
    if bad == 0:
        return Coercion(pa.chunked_array([pa.nulls(len(column), ARROW_TYPES[to])]))
    return Coercion(None, bad, examples(pc.filter(column, present)))


def examples(values: pa.ChunkedArray | pa.Array, limit: int = _MAX_EXAMPLES) -> list[str]:
    """Up to ``limit`` distinct values, quoted and shortened, for messages."""
    head = values.slice(0, 200)
    shown: list[str] = []
    for value in pc.unique(head).to_pylist():
        if len(shown) == limit:
            break
        shown.append(show_value(value))
    return shown


def show_value(value: Any) -> str:
    """A value as a message quotes it: strings in quotes and shortened, numbers plain."""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, str):
        if len(value) > _MAX_EXAMPLE_CHARS:
            value = value[: _MAX_EXAMPLE_CHARS - 3] + "..."
        return repr(value)
    return str(value)
