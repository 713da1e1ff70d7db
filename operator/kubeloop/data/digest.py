"""The content digest of a Dataset version: sha256 over a canonical serialisation of the table.

The digest is the version (``sha256:<hex>``) that TrainingRuns pin and the snapshot's key, so
it has to name the *data*, not the bytes of whatever file carried it. It is computed from the
conformed table (:func:`kubeloop.data.validate.conform`), in which every column already has
the canonical Arrow type of its logical type, and covers exactly:

* the number of rows and columns, and the column names in their order;
* each column's logical type (declaring a column ``category`` instead of ``integer`` is a
  different dataset, because the snapshot and every model trained on it differ);
* which cells are missing, and the value of every other cell, row by row, in row order.

It does *not* cover the file format (CSV or Parquet), compression, encoding, Parquet row
groups or Arrow chunking, CSV quoting and number spelling (``1.50`` and ``1.5`` are the same
number), or the schema metadata pandas writes into Parquet files. So the same table exported as
CSV and as Parquet gets the same digest, and re-encoding a file does not make a new version.

Serialisation, version 1 (all integers little-endian)::

    b"kubeloop.dataset.v1\\n" u64(rows) u64(columns)
    per column: u32(len) name-utf8  u32(len) logical-type  then three sha256 sub-digests:
        validity  one byte per row: 1 present, 0 missing
        values    integer: int64 per row; number: float64 per row (-0.0 written as 0.0);
                  boolean: one byte per row; category: int64 UTF-8 length per row;
                  missing cells are written as 0
        text      category only: the UTF-8 bytes of every present value, concatenated

Sub-digests (rather than one stream) make the result independent of how Arrow chunked the
column, without copying a column into one contiguous buffer first.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.api.dataset import ColumnType
from kubeloop.data.logical import ARROW_TYPES

DIGEST_PREFIX: Final = "sha256:"
_MAGIC: Final = b"kubeloop.dataset.v1\n"


def content_digest(table: pa.Table, types: Mapping[str, ColumnType]) -> str:
    """``sha256:<hex>`` of the canonical serialisation of a conformed table (see the module doc)."""
    digest = hashlib.sha256(_MAGIC)
    digest.update(struct.pack("<QQ", table.num_rows, table.num_columns))
    for name, column in zip(table.column_names, table.columns, strict=True):
        logical = types[name]
        expected_type = ARROW_TYPES[logical]
        if column.type != expected_type:
            raise ValueError(
                f"column {name!r} has Arrow type {column.type}, not {expected_type}: "
                "digest a conformed table"
            )
        _update_text(digest, name)
        _update_text(digest, logical)
        validity, values, text = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
        for chunk in column.chunks:
            if len(chunk) == 0:
                continue
            validity.update(_validity_bytes(chunk).data)
            if logical == "category":
                lengths, data = _text_parts(chunk)
                values.update(lengths.data)
                text.update(data)
            else:
                values.update(_value_bytes(chunk, logical).data)
        digest.update(validity.digest())
        digest.update(values.digest())
        digest.update(text.digest())
    return DIGEST_PREFIX + digest.hexdigest()


def _update_text(digest: Any, text: str) -> None:
    encoded = text.encode("utf-8")
    digest.update(struct.pack("<I", len(encoded)))
    digest.update(encoded)


def _validity_bytes(chunk: pa.Array) -> np.ndarray[Any, Any]:
    if chunk.null_count == 0:
        return np.ones(len(chunk), dtype=np.uint8)
    valid: np.ndarray[Any, Any] = pc.is_valid(chunk).to_numpy(zero_copy_only=False)
    return valid.view(np.uint8)


def _value_bytes(chunk: pa.Array, logical: ColumnType) -> np.ndarray[Any, Any]:
    if logical == "boolean":
        filled = pc.fill_null(chunk, False) if chunk.null_count else chunk
        as_bool: np.ndarray[Any, Any] = filled.to_numpy(zero_copy_only=False)
        return as_bool.view(np.uint8)
    if logical == "integer":
        filled = pc.fill_null(chunk, 0) if chunk.null_count else chunk
        return np.ascontiguousarray(filled.to_numpy(zero_copy_only=False), dtype="<i8")
    filled = pc.fill_null(chunk, 0.0) if chunk.null_count else chunk
    floats = np.ascontiguousarray(filled.to_numpy(zero_copy_only=False), dtype="<f8")
    # x + 0.0 turns -0.0 into 0.0 and leaves every other value alone: equal numbers, equal bytes.
    return floats + 0.0


def _text_parts(chunk: pa.Array) -> tuple[np.ndarray[Any, Any], memoryview]:
    if chunk.null_count:
        # Arrow lets a missing slot span arbitrary bytes; filling rebuilds the data buffer
        # from present values only.
        chunk = pc.fill_null(chunk, "")
    lengths = pc.binary_length(chunk)
    length_bytes = np.ascontiguousarray(lengths.to_numpy(zero_copy_only=False), dtype="<i8")
    # The offsets of a (possibly sliced) chunk bound exactly the bytes of its values.
    offsets = np.frombuffer(chunk.buffers()[1], dtype="<i4")
    start, end = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
    data = chunk.buffers()[2]
    text = memoryview(data)[start:end] if data is not None else memoryview(b"")
    return length_bytes, text
