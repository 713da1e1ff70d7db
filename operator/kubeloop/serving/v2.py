"""Open Inference Protocol V2 (KServe / Triton REST): tensors in and out, JSON or binary.

Requests: ``{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype", "data" |
"parameters": {"binary_data_size"}}], "outputs"?: [{"name", "parameters"?: {"binary_data"}}]}``
with one input per signature column, shape ``[N]`` or ``[N, 1]``. Numbers may come as any
numeric datatype (FP32 is what the model takes), categories and booleans as ``BYTES`` (booleans
also as ``BOOL``). Triton's *binary tensor data* extension is supported both ways, because
``tritonclient`` uses it by default: the JSON header is the first
``Inference-Header-Content-Length`` bytes and the tensors follow in input order (``BYTES`` as
4-byte little-endian lengths + UTF-8); outputs are binary when the request asks
(``parameters.binary_data_output`` or an output's ``parameters.binary_data``), and the response
then carries the same header. Every refusal is a :class:`~kubeloop.serving.schema.RequestError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson

from kubeloop.serving.schema import RequestError, RequestSchema, Rows, loads

NUMERIC_DATATYPES: Final = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}
_LENGTH = struct.Struct("<I")


@dataclass
class V2Request:
    """A decoded, validated inference request."""

    rows: Rows
    id: str | None = None
    outputs: list[str] | None = None  # requested outputs (None: all)
    binary_outputs: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class OutputTensor:
    """How one model output appears on the wire."""

    name: str
    datatype: str
    width: int | None  # columns of a 2-D output (None: 1-D [N])


def parse_request(
    body: bytes,
    header_length: int | None,
    schema: RequestSchema,
    outputs: list[OutputTensor],
) -> V2Request:
    """Decode and validate a V2 infer request (see the module docstring)."""
    if header_length is None:
        document, tail = loads(body), b""
    else:
        if not 0 < header_length <= len(body):
            raise RequestError(
                400,
                f"Inference-Header-Content-Length {header_length} is outside the body "
                f"({len(body)} bytes)",
                "Inference-Header-Content-Length",
            )
        document, tail = loads(body[:header_length]), body[header_length:]
    if type(document) is not dict:
        raise RequestError(422, "the body must be a JSON object", "body")
    inputs = document.get("inputs")
    if type(inputs) is not list or not inputs:
        raise RequestError(422, "'inputs' must be a non-empty list of tensors", "inputs")
    request_id = document.get("id")
    if request_id is not None and type(request_id) is not str:
        raise RequestError(422, "'id' must be a string", "id")
    parameters = _parameters(document.get("parameters"), "parameters")
    columns: dict[str, list[Any]] = {}
    rows = -1
    offset = 0
    for index, tensor in enumerate(inputs):
        name, count, column, offset = _parse_input(index, tensor, schema, tail, offset)
        if name in columns:
            raise RequestError(422, f"inputs[{index}]: input {name!r} given twice", name)
        if rows >= 0 and count != rows:
            raise RequestError(
                422, f"input {name!r} has {count} rows, the others have {rows}", name
            )
        rows = count
        columns[name] = column
    if offset != len(tail):
        raise RequestError(
            400, f"{len(tail) - offset} bytes of binary data belong to no input", "body"
        )
    for codec in schema.codecs:
        if codec.name not in columns:
            if not codec.nullable:
                raise RequestError(422, f"missing input {codec.name!r}", codec.name)
            filler = [None] * rows
            columns[codec.name] = codec.from_values(filler, "")
    request = V2Request(schema.rows(columns, rows), request_id)
    _requested_outputs(document.get("outputs"), parameters, outputs, request)
    return request


def _parse_input(
    index: int, tensor: Any, schema: RequestSchema, tail: bytes, offset: int
) -> tuple[str, int, list[Any], int]:
    """One input tensor: its name, rows, validated column, and the next binary offset."""
    where = f"inputs[{index}]"
    if type(tensor) is not dict:
        raise RequestError(422, f"{where} must be an object", where)
    name = tensor.get("name")
    if type(name) is not str:
        raise RequestError(422, f"{where}.name must be a string", f"{where}.name")
    codec = schema.by_name.get(name)
    if codec is None:
        raise RequestError(422, f"{where}: unknown input {name[:64]!r}", name[:64])
    count = _shape_rows(tensor.get("shape"), name)
    schema.check_rows(count, name)
    datatype = tensor.get("datatype")
    if type(datatype) is not str:
        raise RequestError(422, f"input {name!r}: datatype must be a string", name)
    where_row = f"input {name!r} row {{row}}: "
    binary_size = _parameters(tensor.get("parameters"), f"{where}.parameters").get(
        "binary_data_size"
    )
    if binary_size is not None:
        if type(binary_size) is not int or binary_size < 0:
            raise RequestError(422, f"input {name!r}: invalid binary_data_size", name)
        if offset + binary_size > len(tail):
            raise RequestError(
                400, f"input {name!r}: binary data runs past the end of the body", name
            )
        raw = tail[offset : offset + binary_size]
        values = _binary_values(raw, datatype, count, codec.numeric, name)
        column = codec.from_values(values, where_row)
        return name, count, column, offset + binary_size
    data = tensor.get("data")
    if type(data) is not list:
        raise RequestError(422, f"input {name!r}: 'data' must be a list", name)
    flat = _flatten(data, name)
    if len(flat) != count:
        raise RequestError(
            422, f"input {name!r}: shape says {count} values, data has {len(flat)}", name
        )
    _check_datatype(datatype, codec.numeric, codec.type == "boolean", name)
    return name, count, codec.from_values(flat, where_row), offset


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise RequestError(422, f"{where} must be an object", where)
    return value


def _shape_rows(shape: Any, name: str) -> int:
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 2
        or any(type(d) is not int or d < 0 for d in shape)
    ):
        raise RequestError(422, f"input {name!r}: shape must be [N] or [N, 1]", name)
    if len(shape) == 2 and shape[1] != 1:
        raise RequestError(422, f"input {name!r}: shape must be [N] or [N, 1], not {shape}", name)
    rows: int = shape[0]
    return rows


def _flatten(data: list[Any], name: str) -> list[Any]:
    if not data or type(data[0]) is not list:
        if any(type(v) is list for v in data):
            raise RequestError(422, f"input {name!r}: data mixes values and lists", name)
        return data
    flat: list[Any] = []
    for item in data:
        if type(item) is not list or any(type(v) is list for v in item):
            raise RequestError(422, f"input {name!r}: data must be [N] or [N][1]", name)
        flat.extend(item)
    return flat


def _check_datatype(datatype: str, numeric: bool, boolean: bool, name: str) -> None:
    if numeric and datatype in NUMERIC_DATATYPES:
        return
    if not numeric and (datatype == "BYTES" or (boolean and datatype == "BOOL")):
        return
    wanted = "a numeric datatype such as FP32" if numeric else "BYTES"
    raise RequestError(422, f"input {name!r}: datatype {datatype[:20]!r}, expected {wanted}", name)


def _binary_values(raw: bytes, datatype: str, count: int, numeric: bool, name: str) -> list[Any]:
    if numeric:
        dtype = NUMERIC_DATATYPES.get(datatype)
        if dtype is None:
            raise RequestError(
                422, f"input {name!r}: datatype {datatype[:20]!r}, expected FP32", name
            )
        width = np.dtype(dtype).itemsize
        if len(raw) != count * width:
            raise RequestError(
                422, f"input {name!r}: {len(raw)} bytes of {datatype} for {count} values", name
            )
        values: list[Any] = np.frombuffer(raw, dtype=dtype).tolist()
        return values
    if datatype == "BOOL":
        if len(raw) != count:
            raise RequestError(422, f"input {name!r}: {len(raw)} bytes of BOOL", name)
        flags: list[Any] = np.frombuffer(raw, dtype=np.bool_).tolist()
        return flags
    if datatype != "BYTES":
        raise RequestError(422, f"input {name!r}: datatype {datatype[:20]!r}, expected BYTES", name)
    texts: list[Any] = deserialize_bytes(raw, count, name)
    return texts


def deserialize_bytes(raw: bytes, count: int, name: str) -> list[str]:
    """``count`` length-prefixed UTF-8 strings (Triton's BYTES serialisation)."""
    values: list[str] = []
    offset = 0
    size = len(raw)
    for _ in range(count):
        if offset + 4 > size:
            raise RequestError(422, f"input {name!r}: BYTES data is truncated", name)
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > size:
            raise RequestError(422, f"input {name!r}: BYTES data is truncated", name)
        try:
            values.append(raw[offset : offset + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise RequestError(422, f"input {name!r}: a value is not UTF-8", name) from None
        offset += length
    if offset != size:
        raise RequestError(422, f"input {name!r}: more BYTES data than {count} values", name)
    return values


def serialize_bytes(values: list[str]) -> bytes:
    """Triton's BYTES serialisation of strings."""
    parts: list[bytes] = []
    for value in values:
        encoded = value.encode("utf-8")
        parts.append(_LENGTH.pack(len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def _requested_outputs(
    value: Any, parameters: dict[str, Any], outputs: list[OutputTensor], request: V2Request
) -> None:
    known = {tensor.name for tensor in outputs}
    binary_all = parameters.get("binary_data_output") is True
    if value is None:
        if binary_all:
            request.binary_outputs = set(known)
        return
    if type(value) is not list:
        raise RequestError(422, "'outputs' must be a list", "outputs")
    names: list[str] = []
    for index, item in enumerate(value):
        where = f"outputs[{index}]"
        if type(item) is not dict or type(item.get("name")) is not str:
            raise RequestError(422, f"{where} must be an object with a name", where)
        name = item["name"]
        if name not in known:
            raise RequestError(422, f"{where}: unknown output {name[:64]!r}", f"{where}.name")
        names.append(name)
        binary = _parameters(item.get("parameters"), f"{where}.parameters").get("binary_data")
        if binary is True or (binary is None and binary_all):
            request.binary_outputs.add(name)
    request.outputs = names


def encode_response(
    *,
    model: str,
    version: str,
    request_id: str | None,
    tensors: list[tuple[OutputTensor, list[Any]]],
    request: V2Request,
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow."""
    wanted = request.outputs
    described: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor, values in tensors:
        if wanted is not None and tensor.name not in wanted:
            continue
        rows = len(values)
        shape = [rows] if tensor.width is None else [rows, tensor.width]
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": shape}
        if tensor.name in request.binary_outputs:
            if tensor.datatype == "BYTES":
                blob = serialize_bytes([str(v) for v in values])
            else:
                blob = np.asarray(values, dtype="<f4").tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            nested = tensor.width is not None and tensor.width > 1
            entry["data"] = [v for row in values for v in row] if nested else values
        described.append(entry)
    document: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": described}
    if request_id is not None:
        document["id"] = request_id
    header = orjson.dumps(document)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
