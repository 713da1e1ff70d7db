"""Fuzzing ``kubeloop serve`` over HTTP with hypothesis: malformed requests never cause a 5xx.

A real server process with a real model; hypothesis builds bodies from near-valid records and
V2 tensors (the right column names, wrong types, missing and extra fields, odd shapes, binary
tails with lying sizes, NaN and huge numbers) to pure garbage. Every answer must be a 2xx or a
4xx with ``{"error", "field"}``; afterwards the process is still up, ready and correct.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.component.serving_fixtures import ServedModels, ServerProcess, served_models

from kubeloop.api.modelversion import FeatureSpec
from kubeloop.devenv.seaweedfs import S3Endpoint

pytestmark = pytest.mark.component
__all__ = ["served_models"]

PREDICT_CASES = 650
INFER_CASES = 650
ALLOWED = {200, 400, 404, 405, 413, 422}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "true", "false", "north", "month-to-month", "a", "NaN", "1e400"]),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _json_bytes(value: Any) -> bytes:
    import json  # noqa: PLC0415

    return json.dumps(value, allow_nan=True).encode()


def valid_values(spec: FeatureSpec) -> st.SearchStrategy[Any]:
    """Values the signature accepts (so the 200 path is fuzzed too)."""
    if spec.type == "integer":
        values: st.SearchStrategy[Any] = st.integers(-(10**6), 10**6)
    elif spec.type == "number":
        values = st.floats(-1e30, 1e30, allow_nan=False) | st.integers(-(10**6), 10**6)
    elif spec.type == "boolean":
        values = st.booleans() | st.sampled_from(["true", "false"])
    else:
        values = st.sampled_from(spec.categories or ["x"]) | st.text(min_size=1, max_size=8)
    return values | st.none() if spec.nullable else values


@st.composite
def predict_bodies(draw: st.DrawFn, specs: list[FeatureSpec]) -> bytes:
    names = [spec.name for spec in specs]
    kind = draw(st.integers(0, 6))
    if kind >= 5:  # valid records
        record = st.fixed_dictionaries({spec.name: valid_values(spec) for spec in specs})
        return _json_bytes(draw(st.lists(record, min_size=1, max_size=4)))
    if kind == 0:  # anything at all
        return draw(st.binary(max_size=64))
    if kind == 1:
        return _json_bytes(draw(json_values))
    keys = st.one_of(st.sampled_from(names), st.text(max_size=6))
    record = st.dictionaries(keys, st.one_of(scalars, json_values), max_size=len(names) + 2)
    full = st.fixed_dictionaries(dict.fromkeys(names, scalars))
    records = st.lists(st.one_of(record, full, json_values), max_size=5)
    body: Any = draw(records)
    if kind == 3:
        body = {"records": body}
    if kind == 4:
        body = {"records": body, draw(st.text(max_size=5)): draw(scalars)}
    text = _json_bytes(body)
    if draw(st.booleans()) and len(text) > 2:  # truncate sometimes
        text = text[: draw(st.integers(1, len(text) - 1))]
    return text


@st.composite
def infer_requests(draw: st.DrawFn, specs: list[FeatureSpec]) -> tuple[bytes, dict[str, str]]:
    names = [spec.name for spec in specs]
    rows = draw(st.integers(0, 3))
    if draw(st.integers(0, 3)) == 0:  # valid JSON tensors
        rows = max(rows, 1)
        valid = [
            {
                "name": spec.name,
                "shape": [rows, 1],
                "datatype": "FP32" if spec.type in ("number", "integer") else "BYTES",
                "data": draw(st.lists(valid_values(spec), min_size=rows, max_size=rows)),
            }
            for spec in specs
        ]
        return _json_bytes({"inputs": valid}), {}
    inputs = []
    blobs = []
    for name in draw(st.lists(st.sampled_from([*names, "bogus"]), max_size=len(names) + 1)):
        shape = draw(
            st.one_of(
                st.just([rows, 1]),
                st.just([rows]),
                st.lists(st.integers(-2, 4), max_size=3),
                json_values,
            )
        )
        datatype = draw(st.sampled_from(["FP32", "BYTES", "INT64", "BOOL", "FP64", "XX", 7]))
        tensor: dict[str, Any] = {"name": name, "shape": shape, "datatype": datatype}
        if draw(st.booleans()):
            if datatype == "BYTES" and draw(st.booleans()):
                values = draw(st.lists(st.text(max_size=5), min_size=rows, max_size=rows))
                blob = b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)
            elif draw(st.booleans()):
                blob = struct.pack(
                    f"<{rows}f", *draw(st.lists(st.floats(width=32), min_size=rows, max_size=rows))
                )
            else:
                blob = draw(st.binary(max_size=16))
            size = draw(st.one_of(st.just(len(blob)), st.integers(-1, 40)))
            tensor["parameters"] = {"binary_data_size": size}
            blobs.append(blob)
        else:
            tensor["data"] = draw(
                st.one_of(st.lists(scalars, min_size=rows, max_size=rows), json_values)
            )
        inputs.append(tensor)
    document: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        document["outputs"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["label", "probabilities", "x"])},
                    optional={"parameters": st.dictionaries(st.just("binary_data"), scalars)},
                ),
                max_size=3,
            )
        )
    if draw(st.booleans()):
        document["parameters"] = {"binary_data_output": draw(scalars)}
    if draw(st.integers(0, 9)) == 0:
        document = draw(json_values)
    header = _json_bytes(document)
    headers: dict[str, str] = {}
    if blobs:
        length = draw(st.one_of(st.just(len(header)), st.integers(-3, len(header) + 10)))
        headers["Inference-Header-Content-Length"] = str(length)
    return header + b"".join(blobs), headers


def _check(response: httpx.Response) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    if response.status_code != 200:
        body = response.json()
        assert set(body) >= {"error", "field"}, body


def test_fuzzed_requests_never_cause_server_errors(
    seaweedfs: S3Endpoint, served_models: ServedModels, tmp_path: Path
) -> None:
    model = served_models.classification
    specs = list(model.signature.inputs)
    with ServerProcess(seaweedfs, model, tmp_path) as server:
        server.wait_ready()
        client = server.client
        counted = {"predict": 0, "infer": 0}

        @settings(
            max_examples=PREDICT_CASES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(body=predict_bodies(specs))
        def fuzz_predict(body: bytes) -> None:
            counted["predict"] += 1
            _check(client.post("/predict", content=body))

        @settings(
            max_examples=INFER_CASES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(request=infer_requests(specs))
        def fuzz_infer(request: tuple[bytes, dict[str, str]]) -> None:
            counted["infer"] += 1
            body, headers = request
            _check(client.post(f"/v2/models/{model.name}/infer", content=body, headers=headers))

        fuzz_predict()
        fuzz_infer()
        assert counted["predict"] + counted["infer"] >= 1000, counted
        codes = {
            line.split('code="')[1].split('"')[0]
            for line in server.metrics().splitlines()
            if line.startswith("kubeloop_serve_requests_total{")
        }
        assert {"200", "400", "422"} <= codes, codes

        # Still up, still ready, still right.
        assert server.process.poll() is None
        assert client.get("/v2/health/ready").status_code == 200
        records = model.records()[:5]
        answer = client.post("/predict", json=records)
        assert answer.status_code == 200
        assert [p["label"] for p in answer.json()["predictions"]] == model.expected[0][:5].tolist()
        assert "Traceback" not in server.log
        assert server.stop() == 0


def test_bad_inputs_name_the_field(
    seaweedfs: S3Endpoint, served_models: ServedModels, tmp_path: Path
) -> None:
    model = served_models.classification
    record = model.records()[0]
    extra = {"KUBELOOP_SERVE_MAX_ROWS": "10", "KUBELOOP_SERVE_MAX_BODY_BYTES": "4096"}
    with ServerProcess(seaweedfs, model, tmp_path, extra=extra) as server:
        server.wait_ready()
        post = server.client.post
        cases: list[tuple[Any, int, str]] = [
            ({**record, "tenure_months": "12"}, 422, "tenure_months"),
            ({**record, "tenure_months": 1.5}, 422, "tenure_months"),
            ({**record, "monthly_charges": None}, 422, "monthly_charges"),
            ({**record, "contract": 3.5}, 422, "contract"),
            ({**record, "paperless": "maybe"}, 422, "paperless"),
            ({**record, "surprise": 1}, 422, "surprise"),
            ({k: v for k, v in record.items() if k != "region"}, 422, "region"),
            ({**record, "monthly_charges": 1e39}, 422, "monthly_charges"),
        ]
        for bad, status, field in cases:
            response = post("/predict", json=[bad])
            assert response.status_code == status, (bad, response.text)
            assert response.json()["field"] == field, response.text
        # Nullable column: null and absence both mean missing.
        assert post("/predict", json=[{**record, "total charges": None}]).status_code == 200
        too_many = post("/predict", json=[record] * 11)
        assert too_many.status_code == 413
        assert too_many.json()["field"] == "records"
        too_big = post("/predict", content=b"[" + b" " * 5000 + b"]")
        assert too_big.status_code == 413
        assert post("/predict", content=b"{nope").status_code == 400
        assert server.client.get("/predict").status_code == 405
        assert server.client.get("/v2/models/other").status_code == 404
        assert server.client.get(f"/v2/models/{model.name}/versions/9").status_code == 404
        nan = post(
            f"/v2/models/{model.name}/infer",
            content=_json_bytes(
                {
                    "inputs": [
                        {"name": n, "shape": [1, 1], "datatype": "FP32", "data": [math.nan]}
                        if n == "monthly_charges"
                        else {
                            "name": n,
                            "shape": [1],
                            "datatype": "BYTES" if isinstance(v, str | bool) else "FP32",
                            "data": [v if not isinstance(v, bool) else str(v).lower()],
                        }
                        for n, v in record.items()
                    ]
                }
            ),
        )
        assert nan.status_code == 422, nan.text
        assert nan.json()["field"] == "monthly_charges"
