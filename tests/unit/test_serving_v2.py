"""The Open Inference Protocol V2 codec: JSON and Triton's binary tensor extension."""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http._utils import _get_inference_request
from tritonclient.utils import deserialize_bytes_tensor

from kubeloop.api.modelversion import Signature
from kubeloop.serving.schema import RequestError, RequestSchema
from kubeloop.serving.v2 import (
    OutputTensor,
    deserialize_bytes,
    encode_response,
    parse_request,
    serialize_bytes,
)

SIGNATURE = Signature.model_validate(
    {
        "inputs": [
            {"name": "x", "type": "number", "nullable": True},
            {"name": "n", "type": "integer"},
            {"name": "c", "type": "category"},
            {"name": "b", "type": "boolean"},
        ],
        "output": {"task": "classification", "labels": ["no", "yes"]},
    }
)
SCHEMA = RequestSchema(SIGNATURE, max_rows=5)
OUTPUTS = [OutputTensor("label", "BYTES", None), OutputTensor("probabilities", "FP32", 2)]


def tensor(
    name: str, datatype: str, data: list[Any], shape: list[int] | None = None
) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data), 1], "data": data}


def body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **extra}).encode()


VALID = [
    tensor("x", "FP32", [1.5, None]),
    tensor("n", "INT64", [1, 2]),
    tensor("c", "BYTES", ["a", "b"]),
    tensor("b", "BOOL", [True, False]),
]


def test_json_tensors_become_rows() -> None:
    request = parse_request(body(*VALID, id="r1"), None, SCHEMA, OUTPUTS)
    assert request.id == "r1"
    assert request.rows.n_rows == 2
    assert request.rows.numbers[0] == (1.5, 1)
    assert math.isnan(request.rows.numbers[1][0])
    assert request.rows.texts == [("a", "true"), ("b", "false")]
    assert request.outputs is None
    assert request.binary_outputs == set()


def test_tritonclient_binary_request_is_decoded() -> None:
    inputs = []
    for name, datatype, values in (
        ("x", "FP32", np.array([[1.5], [np.nan]], dtype=np.float32)),
        ("n", "FP32", np.array([[1], [2]], dtype=np.float32)),
        ("c", "BYTES", np.array([["a"], ["é"]], dtype=object)),
        ("b", "BYTES", np.array([["true"], ["false"]], dtype=object)),
    ):
        item = triton.InferInput(name, [2, 1], datatype)
        item.set_data_from_numpy(values)
        inputs.append(item)
    raw, header_length = _get_inference_request(inputs, "", None, 0, False, False, 0, None, None)
    request = parse_request(raw, header_length, SCHEMA, OUTPUTS)
    assert request.rows.texts == [("a", "true"), ("é", "false")]
    assert request.binary_outputs == {"label", "probabilities"}  # tritonclient's default


def test_binary_response_is_what_tritonclient_reads() -> None:
    request = parse_request(
        body(*VALID, parameters={"binary_data_output": True}), None, SCHEMA, OUTPUTS
    )
    payload, header_length = encode_response(
        model="m",
        version="1",
        request_id=None,
        tensors=[(OUTPUTS[0], ["yes", "no"]), (OUTPUTS[1], [[0.25, 0.75], [0.5, 0.5]])],
        request=request,
    )
    assert header_length is not None
    header = json.loads(payload[:header_length])
    assert [o["parameters"]["binary_data_size"] for o in header["outputs"]] == [13, 16]
    tail = payload[header_length:]
    labels = deserialize_bytes_tensor(tail[:13])
    assert [v.decode() for v in labels] == ["yes", "no"]
    probabilities = np.frombuffer(tail[13:], dtype="<f4").reshape(2, 2)
    assert probabilities.tolist() == [[0.25, 0.75], [0.5, 0.5]]


def test_json_response_and_requested_outputs() -> None:
    request = parse_request(
        body(*VALID, outputs=[{"name": "probabilities", "parameters": {"binary_data": False}}]),
        None,
        SCHEMA,
        OUTPUTS,
    )
    payload, header_length = encode_response(
        model="m",
        version="1",
        request_id="abc",
        tensors=[(OUTPUTS[0], ["yes", "no"]), (OUTPUTS[1], [[0.25, 0.75], [0.5, 0.5]])],
        request=request,
    )
    assert header_length is None
    document = json.loads(payload)
    assert document["id"] == "abc"
    assert document["outputs"] == [
        {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [2, 2],
            "data": [0.25, 0.75, 0.5, 0.5],
        }
    ]


@pytest.mark.parametrize(
    ("document", "header_length", "status", "field"),
    [
        (b"[1]", None, 422, "body"),
        (body(), None, 422, "inputs"),
        (body(*VALID[:3]), None, 422, "b"),  # missing non-nullable input
        (body(*VALID, tensor("zzz", "FP32", [1, 2])), None, 422, "zzz"),
        (body(*VALID, VALID[0]), None, 422, "x"),  # twice
        (body(tensor("x", "FP32", [1.0]), *VALID[1:]), None, 422, "n"),  # row counts differ
        (body(tensor("x", "BYTES", ["1", "2"]), *VALID[1:]), None, 422, "x"),
        (body(tensor("x", "FP32", [1.0, 2.0], [2, 2]), *VALID[1:]), None, 422, "x"),
        (body(tensor("x", "FP32", [1.0, 2.0], [3, 1]), *VALID[1:]), None, 422, "x"),
        (body(tensor("x", "FP32", [[1.0], [2.0, 3.0]]), *VALID[1:]), None, 422, "x"),
        (body(tensor("n", "INT64", [1.5, 2]), *VALID[:1], *VALID[2:]), None, 422, "n"),
        (body(*VALID, outputs=[{"name": "nope"}]), None, 422, "outputs[0].name"),
        (body(*VALID), 10_000, 400, "Inference-Header-Content-Length"),
        (body(*[tensor("x", "FP32", [1.0] * 6)]), None, 413, "x"),
        (b"{", None, 400, "body"),
    ],
)
def test_bad_requests_name_the_field(
    document: bytes, header_length: int | None, status: int, field: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(document, header_length, SCHEMA, OUTPUTS)
    assert (caught.value.status, caught.value.field) == (status, field), caught.value.message


def test_binary_sizes_that_lie_are_refused() -> None:
    def header(size: int) -> bytes:
        binary = {"name": "x", "shape": [1], "datatype": "FP32"}
        binary["parameters"] = {"binary_data_size": size}
        rest = [{**t, "shape": [1], "data": t["data"][:1]} for t in VALID[1:]]
        return json.dumps({"inputs": [binary, *rest]}).encode()

    good = parse_request(header(4) + b"\x00" * 4, len(header(4)), SCHEMA, OUTPUTS)
    assert good.rows.numbers == [(0.0, 1)]
    for size, tail, status in ((4, 2, 400), (4, 8, 400), (8, 8, 422), (-1, 0, 422)):
        with pytest.raises(RequestError) as caught:
            parse_request(header(size) + b"\x00" * tail, len(header(size)), SCHEMA, OUTPUTS)
        assert caught.value.status == status


def test_bytes_serialisation_round_trips_and_refuses_truncation() -> None:
    values = ["", "a", "héllo"]
    raw = serialize_bytes(values)
    assert deserialize_bytes(raw, 3, "c") == values
    assert raw == b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
    for broken, count in ((raw[:-1], 3), (raw, 2), (raw, 4), (b"\x02\x00\x00\x00\xff\xfe", 1)):
        with pytest.raises(RequestError):
            deserialize_bytes(broken, count, "c")
