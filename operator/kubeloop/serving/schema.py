"""Request validation against the model's signature: JSON values and tensors → model inputs.

One :class:`ColumnCodec` per signature input is built at load time, so a request costs a few
type checks per column rather than a schema walk. The rules, which ``docs/serving.md`` repeats:

* **names**: every signature column must be present (a nullable column may be absent or
  ``null``: missing); a column the signature does not know is refused;
* **number / integer**: JSON numbers (not booleans, not strings); ``integer`` also refuses a
  fraction; values beyond float32's range and infinities are refused; ``NaN`` (only possible in
  binary V2 tensors, JSON has none) follows the NaN policy: ``missing`` treats it as a missing
  value, ``reject`` refuses it;
* **category**: strings (integers are spelled as in training, ``7`` → ``"7"``); ``""`` and
  ``null`` are missing; a category not seen in training is accepted by default (the encoder
  ignores it exactly as in training; metrics count it as ``__other__``) or refused when the
  unknown-category policy is ``reject``;
* **boolean**: ``true``/``false`` or the strings ``"true"``/``"false"``;
* **missing** values are refused for non-nullable columns;
* sizes: at most ``max_rows`` rows (413), bodies at most ``max_body_bytes`` (413, checked by
  the HTTP layer).

Every refusal is a :class:`RequestError` with the HTTP status and the field it is about.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Final, NamedTuple

import numpy as np
import orjson

from kubeloop.api.modelversion import FeatureSpec, Signature
from kubeloop.serving.settings import NanPolicy, UnknownCategoryPolicy

MISSING_TEXT: Final = ""
FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
Array = np.ndarray[Any, Any]
_ABSENT: Final = object()
_NUMBER_TYPES: Final = frozenset({int, float})
_STR_TYPE: Final = {str}
_BOOL_TYPE: Final = {bool}
_BOOLEAN_TEXT: Final = {True: "true", False: "false"}
_RECORDS_KEYS: Final = frozenset({"records", "parameters", "id"})


class RequestError(Exception):
    """A request the server refuses: HTTP ``status``, a message, and the ``field`` concerned."""

    def __init__(self, status: int, message: str, field: str, row: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.row = row

    def body(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"error": self.message, "field": self.field}
        if self.row is not None:
            payload["row"] = self.row
        return payload


def loads(body: bytes | memoryview) -> Any:
    """Parse a JSON body; 400 when it is not JSON.

    orjson first (fast, strict). Python's ``json`` module writes ``NaN`` and ``Infinity`` for
    non-finite floats (tritonclient's JSON mode sends missing numbers that way), so a body
    orjson refuses is tried once more with the standard parser, which accepts those literals;
    they then meet the NaN policy like any other value.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        first = exc
    try:
        return json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise RequestError(400, f"the body is not valid JSON: {first}", "body") from None


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class ColumnCodec:
    """Validates and encodes one input column (see the module docstring for the rules)."""

    def __init__(
        self, spec: FeatureSpec, nan_policy: NanPolicy, unknown_categories: UnknownCategoryPolicy
    ) -> None:
        self.name = spec.name
        self.type = spec.type
        self.nullable = spec.nullable
        self.numeric = spec.type in ("number", "integer")
        self.categories: frozenset[str] | None = (
            frozenset(spec.categories)
            if spec.categories is not None and unknown_categories == "reject"
            else None
        )
        self.nan_missing = nan_policy == "missing"

    # -- values --------------------------------------------------------------------------------

    def from_values(self, values: Sequence[Any], where: str) -> list[Any]:
        """Validated values as the model will see them: floats (NaN: missing) or strings.

        Plain Python per value, on purpose: for the one-row requests that dominate live
        traffic, a numpy call per column would cost more than all the checks together. The
        batcher makes one array per column per batch (:meth:`RequestSchema.batch_inputs`).
        """
        if self.numeric:
            return self._numbers(values, where)
        return self._texts(values, where)

    def _numbers(self, values: Sequence[Any], where: str) -> list[Any]:
        integer = self.type == "integer"
        out: list[Any] = []
        append = out.append
        for row, value in enumerate(values):
            kind = type(value)
            if kind is float:
                if value - value != 0.0:  # NaN or an infinity
                    if value != value:  # noqa: PLR0124 - NaN is the value unequal to itself
                        self._nan(row, where)
                    else:
                        raise self._error(row, where, "must be finite")
                elif value > FLOAT32_MAX or value < -FLOAT32_MAX:
                    raise self._error(row, where, "is out of float32 range")
                elif integer and not value.is_integer():
                    raise self._error(row, where, "must be an integer")
                append(value)
            elif kind is int:
                if value > FLOAT32_MAX or value < -FLOAT32_MAX:
                    raise self._error(row, where, "is out of float32 range")
                append(value)
            elif value is None or value is _ABSENT:
                if not self.nullable:
                    raise self._error(row, where, "is required (the column is not nullable)")
                append(math.nan)
            else:
                raise self._error(row, where, f"must be a number, not {_describe(value)}")
        return out

    def _nan(self, row: int, where: str) -> None:
        if not self.nan_missing:
            raise self._error(row, where, "NaN is refused (NaN policy: reject)")
        if not self.nullable:
            raise self._error(row, where, "is required (NaN means missing; not nullable)")

    def _texts(self, values: Sequence[Any], where: str) -> list[Any]:
        boolean = self.type == "boolean"
        known = self.categories
        out: list[Any] = []
        append = out.append
        for row, value in enumerate(values):
            kind = type(value)
            if boolean:
                if kind is bool:
                    text = "true" if value else "false"
                elif value == "true" or value == "false":  # noqa: PLR1714 - value may be any type
                    text = value
                elif value is None or value is _ABSENT or value == MISSING_TEXT:
                    text = MISSING_TEXT
                else:
                    shown = repr(value) if kind is str else _describe(value)
                    raise self._error(row, where, f"must be true or false, not {shown[:40]}")
            elif kind is str:
                text = value
            elif kind is int:
                text = str(value)  # spelled as training spelled integer categories
            elif value is None or value is _ABSENT:
                text = MISSING_TEXT
            else:
                raise self._error(row, where, f"must be a string, not {_describe(value)}")
            if text == MISSING_TEXT:
                if not self.nullable:
                    raise self._error(row, where, "is required (the column is not nullable)")
            elif known is not None and text not in known:
                raise self._error(row, where, f"{text[:40]!r} is not a known category")
            append(text)
        return out

    def from_array(self, array: Array, where: str) -> list[Any]:
        """Check a decoded binary tensor (numbers, or objects for texts)."""
        return self.from_values(array.tolist(), where)

    def _error(self, row: int, where: str, what: str) -> RequestError:
        return RequestError(422, f"{where.format(row=row)}{self.name}: {what}", self.name, row)


class Rows(NamedTuple):
    """A validated request, row-major: numeric values and texts of each row, in block order.

    Row-major because the common request is one row: a row's numbers are one tuple, checked
    by a handful of C-level calls, and the batcher turns the tuples of a whole batch into one
    ``[N, k]`` float32 matrix with a single ``np.fromiter`` call (:meth:`RequestSchema.batch_inputs`).
    """

    numbers: list[tuple[Any, ...]]
    texts: list[tuple[Any, ...]]
    n_rows: int


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        only = names[0]
        return lambda record: (record[only],)
    if not names:
        return lambda record: ()
    get: Callable[[dict[str, Any]], tuple[Any, ...]] = itemgetter(*names)
    return get


class RequestSchema:
    """The per-column codecs of a signature and the request-level limits."""

    def __init__(
        self,
        signature: Signature,
        *,
        max_rows: int,
        nan_policy: NanPolicy = "missing",
        unknown_categories: UnknownCategoryPolicy = "accept",
    ) -> None:
        self.codecs = [ColumnCodec(s, nan_policy, unknown_categories) for s in signature.inputs]
        self.by_name = {codec.name: codec for codec in self.codecs}
        self.names = [codec.name for codec in self.codecs]
        self.name_set = frozenset(self.names)
        self._width = len(self.name_set)
        self.required = frozenset(c.name for c in self.codecs if not c.nullable)
        self.max_rows = max_rows
        # Block order: numbers, then categories, then booleans (texts keep this order).
        self.number_names = [c.name for c in self.codecs if c.numeric]
        self.category_names = [c.name for c in self.codecs if c.type == "category"]
        self.boolean_names = [c.name for c in self.codecs if c.type == "boolean"]
        self.text_names = self.category_names + self.boolean_names
        self._integers = [
            i for i, n in enumerate(self.number_names) if self.by_name[n].type == "integer"
        ]
        self._known = (
            frozenset().union(*(self.by_name[n].categories or () for n in self.category_names))
            if any(self.by_name[n].categories is not None for n in self.category_names)
            else None
        )
        self._known_per_column = [self.by_name[n].categories for n in self.category_names]
        self._get_numbers = _getter(self.number_names)
        self._get_categories = _getter(self.category_names)
        self._get_booleans = _getter(self.boolean_names)

    def check_rows(self, rows: int, field: str) -> None:
        if rows > self.max_rows:
            raise RequestError(
                413, f"{rows} rows in one request; at most {self.max_rows} are accepted", field
            )
        if rows == 0:
            raise RequestError(422, "the request has no rows", field)

    def from_records(self, document: Any) -> Rows:
        """Validated rows from ``{"records": [{col: value}]}`` or a bare list of records."""
        # The common request first, in as few steps as possible: one complete record of plainly
        # valid values. Anything else (including its refusals) takes the general path.
        if type(document) is dict and len(document) == 1:
            records = document.get("records")
            if type(records) is list and len(records) == 1 and self.max_rows:
                record = records[0]
                # As many keys as columns, and every column found: exactly the columns.
                if type(record) is dict and len(record) == self._width:
                    try:
                        number_row = self._get_numbers(record)
                        text_row = self._fast_texts(record) if self.text_names else ()
                    except KeyError:
                        return self._from_records(document)
                    if text_row is not None and self._fast_numbers(number_row):
                        # tuple.__new__: a NamedTuple's own __new__ is a Python-level function
                        return tuple.__new__(Rows, ([number_row], [text_row], 1))
        return self._from_records(document)

    def _from_records(self, document: Any) -> Rows:
        if type(document) is dict:
            if "records" not in document:
                raise RequestError(422, "the body must have a 'records' list", "records")
            extra = set(document) - _RECORDS_KEYS if len(document) > 1 else None
            if extra:
                name = sorted(extra)[0]
                raise RequestError(422, f"unknown top-level key {name[:64]!r}", name[:64])
            records = document["records"]
        else:
            records = document
        if type(records) is not list:
            raise RequestError(
                422, f"'records' must be a list of objects, not {_describe(records)}", "records"
            )
        rows = len(records)
        if not 0 < rows <= self.max_rows:
            self.check_rows(rows, "records")
        names = self.name_set
        get_numbers = self._get_numbers
        fast_numbers = self._fast_numbers
        fast_texts = self._fast_texts if self.text_names else None
        complete = fast = True
        numbers: list[tuple[Any, ...]] = []
        texts: list[tuple[Any, ...]] = []
        for row, record in enumerate(records):
            if type(record) is not dict:
                raise RequestError(
                    422,
                    f"records[{row}] must be an object keyed by column, not {_describe(record)}",
                    "records",
                    row,
                )
            if record.keys() != names:
                self._check_keys(record, row)
                complete = False  # absent nullable columns: the column-wise path fills them
            elif fast:
                number_row = get_numbers(record)
                text_row = () if fast_texts is None else fast_texts(record)
                if text_row is None or not fast_numbers(number_row):
                    fast = False  # the column-wise path gives the exact message, if any
                else:
                    numbers.append(number_row)
                    texts.append(text_row)
        if not (complete and fast):
            return self._slow_records(records)
        return Rows(numbers, texts, rows)

    def _fast_numbers(self, values: tuple[Any, ...]) -> bool:
        """True when every number is plainly valid (the common case), in C-level calls.

        False sends the request to the column-wise checks, which decide exactly.
        """
        if not values:
            return True
        kinds = set(map(type, values))
        if not kinds <= _NUMBER_TYPES:
            return False
        # NaN and infinities make the sum of magnitudes non-finite (NaN compares false) and a
        # value beyond float32's range makes it larger than the bound. (Valid values whose
        # magnitudes add up beyond it merely take the column-wise path.)
        try:
            if not sum(map(abs, values)) <= FLOAT32_MAX:
                return False
        except OverflowError:  # an integer beyond a double's range, next to a float
            return False
        if self._integers and float in kinds:
            return all(float(values[i]).is_integer() for i in self._integers)
        return True

    def _fast_texts(self, record: dict[str, Any]) -> tuple[Any, ...] | None:
        categories = self._get_categories(record)
        if categories:
            if set(map(type, categories)) != _STR_TYPE or MISSING_TEXT in categories:
                return None
            if self._known is not None and not all(
                known is None or text in known
                for known, text in zip(self._known_per_column, categories, strict=True)
            ):
                return None
        booleans = self._get_booleans(record)
        if not booleans:
            return categories
        if set(map(type, booleans)) != _BOOL_TYPE:
            return None
        return categories + tuple(map(_BOOLEAN_TEXT.__getitem__, booleans))

    def _slow_records(self, records: list[dict[str, Any]]) -> Rows:
        """Column by column with exact messages (anything the fast path did not accept)."""
        columns: dict[str, list[Any]] = {}
        for codec in self.codecs:
            name = codec.name
            values = [record.get(name, _ABSENT) for record in records]
            columns[name] = codec.from_values(values, "records[{row}].")
        return self.rows(columns, len(records))

    def rows(self, columns: dict[str, list[Any]], count: int) -> Rows:
        """Column lists (validated) → :class:`Rows`."""
        numbers = (
            list(zip(*(columns[n] for n in self.number_names), strict=True))
            if self.number_names
            else [()] * count
        )
        texts = (
            list(zip(*(columns[n] for n in self.text_names), strict=True))
            if self.text_names
            else [()] * count
        )
        return Rows(numbers, texts, count)

    def batch_inputs(self, batch: Sequence[Rows]) -> tuple[dict[str, Array], Array | None]:
        """The feeds, one ``[N, 1]`` array per column for the whole batch (float32 or strings),
        and the ``[N, k]`` float32 matrix of the numeric columns (if any).

        The numbers go into one matrix (one ``np.fromiter`` call over the rows' tuples) whose
        transposed copy holds each column contiguously, so every numeric feed is a view.
        """
        single = len(batch) == 1
        numbers = batch[0].numbers if single else [row for item in batch for row in item.numbers]
        count = len(numbers)
        feeds: dict[str, Array] = {}
        matrix = None
        if self.number_names:
            width = len(self.number_names)
            flat = itertools.chain.from_iterable(numbers)
            matrix = np.fromiter(flat, dtype=np.float32, count=count * width).reshape(count, width)
            # One [count, 1] view per column of the transposed copy.
            columns = matrix.T.copy().reshape(width, count, 1)
            for name, column in zip(self.number_names, columns, strict=True):
                feeds[name] = column
        if self.text_names:
            texts = batch[0].texts if single else [row for item in batch for row in item.texts]
            strings = np.array(texts, dtype=object).reshape(count, len(self.text_names))
            for index, name in enumerate(self.text_names):
                feeds[name] = np.ascontiguousarray(strings[:, index : index + 1])
        return feeds, matrix

    def _check_keys(self, record: dict[str, Any], row: int) -> None:
        for key in record:
            if key not in self.name_set:
                raise RequestError(
                    422, f"records[{row}]: unknown column {str(key)[:64]!r}", str(key)[:64], row
                )
        for name in self.names:
            if name not in record and name in self.required:
                raise RequestError(422, f"records[{row}]: missing column {name!r}", name, row)
