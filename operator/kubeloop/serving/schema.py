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

import json
import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import orjson

from kubeloop.api.modelversion import FeatureSpec, Signature
from kubeloop.serving.settings import NanPolicy, UnknownCategoryPolicy

MISSING_TEXT: Final = ""
FLOAT32_MAX: Final = float(np.finfo(np.float32).max)
Array = np.ndarray[Any, Any]
_NUMBER_TYPES: Final = frozenset({int, float})
_ABSENT: Final = object()


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

    # -- JSON values ---------------------------------------------------------------------------

    def from_values(self, values: Sequence[Any], where: str) -> Array:
        """An array of the model's dtype from JSON values; ``where`` prefixes row messages."""
        if self.numeric:
            return self._numbers(values, where)
        return self._texts(values, where)

    def _numbers(self, values: Sequence[Any], where: str) -> Array:
        kinds = set(map(type, values))
        if kinds <= _NUMBER_TYPES:
            array = np.array(values, dtype=np.float64)
        else:
            cleaned: list[float] = []
            for row, value in enumerate(values):
                kind = type(value)
                if kind is int or kind is float:
                    cleaned.append(value)
                elif value is None or value is _ABSENT:
                    if not self.nullable:
                        raise self._error(row, where, "is required (the column is not nullable)")
                    cleaned.append(math.nan)
                else:
                    raise self._error(row, where, f"must be a number, not {_describe(value)}")
            array = np.array(cleaned, dtype=np.float64)
        return self._check_numbers(array, where)

    def _texts(self, values: Sequence[Any], where: str) -> Array:
        boolean = self.type == "boolean"
        if not boolean and set(map(type, values)) == {str} and MISSING_TEXT not in values:
            if self.categories is not None:
                self._check_known(values, self.categories, where)
            return np.array(values, dtype=object)
        texts: list[str] = []
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
            if text == MISSING_TEXT and not self.nullable:
                raise self._error(row, where, "is required (the column is not nullable)")
            texts.append(text)
        if self.categories is not None:
            self._check_known(texts, self.categories, where)
        return np.array(texts, dtype=object)

    def _check_known(self, texts: Sequence[str], known: frozenset[str], where: str) -> None:
        for row, text in enumerate(texts):
            if text != MISSING_TEXT and text not in known:
                raise self._error(row, where, f"{text[:40]!r} is not a known category")

    # -- tensors -------------------------------------------------------------------------------

    def from_array(self, array: Array, where: str) -> Array:
        """Check a decoded binary tensor (numbers as float64/float32, texts as objects)."""
        if self.numeric:
            return self._check_numbers(array.astype(np.float64, copy=False), where)
        return self._texts(array.tolist(), where)

    def _check_numbers(self, array: Array, where: str) -> Array:
        if array.size and not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array))
            if np.isinf(array[bad]).any():
                row = int(bad[np.isinf(array[bad])][0])
                raise self._error(row, where, "must be finite")
            if not (self.nan_missing and self.nullable):
                row = int(bad[0])
                why = "NaN is refused (NaN policy: reject)" if not self.nan_missing else ""
                raise self._error(
                    row, where, why or "is required (NaN means missing; the column is not nullable)"
                )
        if array.size:
            finite = np.abs(array[np.isfinite(array)])
            if finite.size and finite.max() > FLOAT32_MAX:
                row = int(np.flatnonzero(np.abs(np.nan_to_num(array)) > FLOAT32_MAX)[0])
                raise self._error(row, where, "is out of float32 range")
            if self.type == "integer":
                fractional = np.flatnonzero(np.isfinite(array) & (np.mod(array, 1.0) != 0))
                if fractional.size:
                    raise self._error(int(fractional[0]), where, "must be an integer")
        return array.astype(np.float32)

    def _error(self, row: int, where: str, what: str) -> RequestError:
        return RequestError(422, f"{where.format(row=row)}{self.name}: {what}", self.name, row)


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
        self.required = frozenset(c.name for c in self.codecs if not c.nullable)
        self.max_rows = max_rows

    def check_rows(self, rows: int, field: str) -> None:
        if rows > self.max_rows:
            raise RequestError(
                413, f"{rows} rows in one request; at most {self.max_rows} are accepted", field
            )
        if rows == 0:
            raise RequestError(422, "the request has no rows", field)

    def from_records(self, document: Any) -> tuple[dict[str, Array], int]:
        """Model feeds from ``{"records": [{col: value}]}`` or a bare list of records."""
        if type(document) is dict:
            if "records" not in document:
                raise RequestError(422, "the body must have a 'records' list", "records")
            extra = set(document) - {"records", "parameters", "id"}
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
        self.check_rows(rows, "records")
        names = self.name_set
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
        columns: dict[str, Array] = {}
        for codec in self.codecs:
            name = codec.name
            values = [record.get(name, _ABSENT) for record in records]
            columns[name] = codec.from_values(values, "records[{row}].").reshape(-1, 1)
        return columns, rows

    def _check_keys(self, record: dict[str, Any], row: int) -> None:
        for key in record:
            if key not in self.name_set:
                raise RequestError(
                    422, f"records[{row}]: unknown column {str(key)[:64]!r}", str(key)[:64], row
                )
        for name in self.names:
            if name not in record and name in self.required:
                raise RequestError(422, f"records[{row}]: missing column {name!r}", name, row)
