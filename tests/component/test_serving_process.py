"""``kubeloop serve`` as a real process against SeaweedFS, with models the trainer made.

A V2 client not written here (``tritonclient[http]``) and ``/predict`` must reproduce
onnxruntime's predictions on the trainer's test rows; a wrong digest or a model with external
data is never served and says why; the prediction log reaches S3 with the request ids;
``/feedback`` moves the live accuracy metric; SIGTERM under load loses no request.
"""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
import tritonclient.http as triton
from onnx.external_data_helper import set_external_data
from tests.component.serving_fixtures import (
    ServedModel,
    ServedModels,
    ServerProcess,
    metric_value,
    served_models,
)

from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri

pytestmark = pytest.mark.component
__all__ = ["served_models"]  # the fixture, re-exported for pytest


def triton_inputs(model: ServedModel, *, binary: bool) -> list[triton.InferInput]:
    inputs = []
    rows = len(model.test_rows)
    for spec in model.signature.inputs:
        column = model.test_rows[spec.name]
        if spec.type in ("number", "integer"):
            data = column.to_numpy(dtype=np.float32, na_value=np.nan).reshape(rows, 1)
            tensor = triton.InferInput(spec.name, [rows, 1], "FP32")
        else:
            if spec.type == "boolean":
                texts = ["true" if v else "false" for v in column]
            else:
                texts = [str(v) for v in column]
            data = np.array(texts, dtype=object).reshape(rows, 1)
            tensor = triton.InferInput(spec.name, [rows, 1], "BYTES")
        tensor.set_data_from_numpy(data, binary_data=binary)
        inputs.append(tensor)
    return inputs


def check_triton(server: ServerProcess, model: ServedModel) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(model.name)
        assert client.is_model_ready(model.name, "1")
        metadata = client.get_model_metadata(model.name)
        assert metadata["name"] == model.name
        assert [i["name"] for i in metadata["inputs"]] == [s.name for s in model.signature.inputs]
        names = [output["name"] for output in metadata["outputs"]]
        for binary in (True, False):
            # Default tritonclient: binary inputs and outputs; then plain JSON both ways.
            outputs = (
                None
                if binary
                else [triton.InferRequestedOutput(n, binary_data=False) for n in names]
            )
            result = client.infer(model.name, triton_inputs(model, binary=binary), outputs=outputs)
            if model.classification:
                labels = result.as_numpy(names[0])
                labels = np.array([v.decode() if isinstance(v, bytes) else v for v in labels])
                assert labels.tolist() == model.expected[0].tolist()
                np.testing.assert_allclose(result.as_numpy(names[1]), model.expected[1], atol=1e-6)
            else:
                np.testing.assert_allclose(result.as_numpy(names[0]), model.expected[0], rtol=1e-6)
        with_version = client.infer(
            model.name, triton_inputs(model, binary=True), model_version="1"
        )
        assert with_version.get_response()["model_version"] == "1"
    finally:
        client.close()


def check_predict(server: ServerProcess, model: ServedModel) -> None:
    records = model.records()
    response = server.client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    assert response.headers["x-kubeloop-version"] == "1"
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["model"] == model.name
    predictions = body["predictions"]
    assert len(predictions) == len(records)
    if model.classification:
        assert [p["label"] for p in predictions] == model.expected[0].tolist()
        labels = model.signature.output.labels or []
        probabilities = np.array([[p["probabilities"][k] for k in labels] for p in predictions])
        np.testing.assert_allclose(probabilities, model.expected[1], atol=1e-6)
    else:
        values = np.array([p["value"] for p in predictions])
        np.testing.assert_allclose(values, model.expected[0].ravel(), rtol=1e-6)
    # One row at a time (the batcher merges them under concurrency) gives the same answers.
    single = server.client.post("/predict", json=records[:1], headers={"x-request-id": "one"})
    assert single.status_code == 200
    assert single.headers["x-request-id"] == "one"
    assert single.json()["predictions"][0] == predictions[0]
    assert server.client.get("/v2/health/ready").headers["x-kubeloop-version"] == "1"
    if not model.classification:  # regression feedback feeds the absolute-error histogram
        truth = predictions[0]["value"] + 2.5
        answer = server.client.post("/feedback", json={"request_id": "one", "label": truth})
        assert answer.json()["results"][0]["status"] == 200
        text = server.metrics()
        assert metric_value(text, "kubeloop_serve_feedback_abs_error_count") == 1
        assert metric_value(text, "kubeloop_serve_feedback_abs_error_sum") == pytest.approx(2.5)


def test_tritonclient_and_predict_reproduce_the_test_set(
    seaweedfs: S3Endpoint, served_models: ServedModels, tmp_path: Path
) -> None:
    for model in (served_models.classification, served_models.regression):
        extra = {"KUBELOOP_SERVE_PROFILE_URI": model.profile_uri}
        with ServerProcess(seaweedfs, model, tmp_path, extra=extra) as server:
            server.wait_ready()
            check_triton(server, model)
            check_predict(server, model)
            text = server.metrics()
            assert metric_value(text, "kubeloop_serve_ready", model=model.name) == 1
            assert (
                metric_value(
                    text,
                    "kubeloop_serve_requests_total",
                    endpoint="predict",
                    code="200",
                    version="1",
                )
                == 2
            )
            first = model.signature.inputs[0].name
            # le="+Inf" is the count (features with negative edges have no _count: OpenMetrics).
            seen = metric_value(
                text, "kubeloop_serve_feature_value_bucket", feature=first, le="+Inf"
            )
            assert seen >= 3 * len(model.test_rows)
            if model.classification:
                assert "kubeloop_serve_feature_category_total{" in text
                assert 'category="__other__"' in text
                assert "kubeloop_serve_predictions_total{" in text
            else:
                assert "kubeloop_serve_prediction_value_bucket{" in text
            assert server.stop() == 0


def test_wrong_digest_is_never_ready_and_says_why(
    seaweedfs: S3Endpoint, served_models: ServedModels, tmp_path: Path
) -> None:
    model = served_models.classification
    with ServerProcess(seaweedfs, model, tmp_path, sha256="0" * 64) as server:
        server.wait_live()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "DigestMismatch" not in server.log:
            time.sleep(0.05)
        ready = server.client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert "DigestMismatch" in ready.json()["reason"]
        metadata = server.client.get(f"/v2/models/{model.name}")
        assert metadata.status_code == 503
        assert "DigestMismatch" in metadata.json()["error"]
        refused = server.client.post("/predict", json=model.records()[:1])
        assert refused.status_code == 503
        assert "DigestMismatch" in server.log
        assert metric_value(server.metrics(), "kubeloop_serve_ready") == 0
        assert server.stop() == 0


def test_model_with_external_data_is_refused(
    seaweedfs: S3Endpoint, served_models: ServedModels, tmp_path: Path
) -> None:
    model = served_models.classification
    proto = onnx.load_from_string(model.model_bytes)
    # An initializer whose bytes would be read from a file next to the model (here: anywhere).
    tensor = onnx.helper.make_tensor(
        "kubeloop_extra", onnx.TensorProto.FLOAT, [1], b"\x00" * 4, raw=True
    )
    set_external_data(tensor, location="../../../etc/passwd")
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    proto.graph.initializer.append(tensor)
    tampered = proto.SerializeToString()
    with ObjectStore(seaweedfs.settings()) as store:
        uploaded = store.upload(tampered, "tests/serving-external/model.onnx")
    with ServerProcess(
        seaweedfs, model, tmp_path, uri=str(uploaded.uri), sha256=uploaded.sha256
    ) as server:
        server.wait_live()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and server.client.get("/v2/health/ready").json().get(
            "reason", ""
        ).startswith("Loading"):
            time.sleep(0.05)
        ready = server.client.get("/v2/health/ready")
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("ExternalData")


def test_prediction_log_and_feedback(
    seaweedfs: S3Endpoint, served_models: ServedModels, tmp_path: Path
) -> None:
    model = served_models.classification
    prefix = f"s3://{seaweedfs.bucket}/tests/serving-log/{time.time_ns()}/"
    extra = {
        "KUBELOOP_SERVE_PREDICTION_LOG_URI": prefix,
        "KUBELOOP_SERVE_PREDICTION_LOG_INTERVAL": "0.2",
        "KUBELOOP_SERVE_PREDICTION_LOG_BATCH": "10",
    }
    records = model.records()[:25]
    expected = model.expected[0][:25].tolist()
    with ServerProcess(seaweedfs, model, tmp_path, extra=extra) as server:
        server.wait_ready()
        ids = [f"req-{i}" for i in range(len(records))]
        for request_id, record in zip(ids, records, strict=True):
            response = server.client.post(
                "/predict", json=[record], headers={"x-request-id": request_id}
            )
            assert response.status_code == 200
        # Feedback: the truth for the first 20 is the prediction, then 5 flipped.
        flip = {"true": "false", "false": "true"}
        feedback = [
            {"request_id": i, "label": p if n < 20 else flip[p]}
            for n, (i, p) in enumerate(zip(ids, expected, strict=True))
        ]
        answer = server.client.post("/feedback", json=feedback)
        assert answer.status_code == 200, answer.text
        assert answer.json()["matched"] == 25
        unknown = server.client.post("/feedback", json={"request_id": "nope", "label": "true"})
        assert unknown.status_code == 200
        assert unknown.json()["results"][0]["status"] == 404
        bad = server.client.post("/feedback", json={"request_id": 3, "label": "true"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "request_id"
        text = server.metrics()
        assert metric_value(text, "kubeloop_serve_feedback_total", outcome="correct") == 20
        assert metric_value(text, "kubeloop_serve_feedback_total", outcome="incorrect") == 5
        assert metric_value(text, "kubeloop_serve_feedback_unmatched_total") == 1
        assert server.stop() == 0
    with ObjectStore(seaweedfs.settings()) as store:
        base = S3Uri.parse(prefix).join(model.name, "1/")
        logged = _read_jsonl(store, base.join("predictions/"))
        assert sorted(line["request_id"] for line in logged) == sorted(ids)
        line = next(line for line in logged if line["request_id"] == "req-0")
        assert line["prediction"] == expected[0]
        assert set(line["inputs"]) == {spec.name for spec in model.signature.inputs}
        feedback_lines = _read_jsonl(store, base.join("feedback/"))
        assert len(feedback_lines) == 26
        assert sum(1 for f in feedback_lines if f["matched"]) == 25
    text = server.log
    assert "25 written, 0 dropped, 0 failed" in text


def _read_jsonl(store: ObjectStore, prefix: S3Uri) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for info in store.list(prefix):
        buffer = io.BytesIO()
        store.download(info.uri, buffer)
        lines.extend(json.loads(line) for line in buffer.getvalue().splitlines() if line)
    return lines


def test_sigterm_under_load_drains_and_flushes(
    seaweedfs: S3Endpoint, served_models: ServedModels, tmp_path: Path
) -> None:
    model = served_models.classification
    prefix = f"s3://{seaweedfs.bucket}/tests/serving-drain/{time.time_ns()}/"
    extra = {
        "KUBELOOP_SERVE_PREDICTION_LOG_URI": prefix,
        "KUBELOOP_SERVE_PREDICTION_LOG_INTERVAL": "30",  # only the shutdown flush writes
        "KUBELOOP_SERVE_SHUTDOWN_DELAY": "1",
    }
    records = model.records()[:50]
    answered: list[str] = []
    failures: list[str] = []
    stop_sending = threading.Event()
    signalled = threading.Event()
    after_signal = [0]

    def load(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            sent = 0
            while not stop_sending.is_set():
                request_id = f"w{worker}-{sent}"
                sent += 1
                try:
                    response = client.post(
                        "/predict",
                        json=[records[sent % len(records)]],
                        headers={"x-request-id": request_id},
                    )
                except httpx.TransportError:
                    # After the delay the server closes connections: only then may sends fail.
                    if not signalled.is_set():
                        failures.append(f"{request_id}: connection failed before SIGTERM")
                    return
                if response.status_code != 200:
                    failures.append(f"{request_id}: {response.status_code} {response.text}")
                    return
                answered.append(request_id)
                if signalled.is_set():
                    after_signal[0] += 1

    with ServerProcess(seaweedfs, model, tmp_path, extra=extra) as server:
        server.wait_ready()
        workers = [threading.Thread(target=load, args=(n,)) for n in range(8)]
        for worker in workers:
            worker.start()
        time.sleep(0.5)
        server.process.send_signal(15)
        signalled.set()
        time.sleep(0.3)
        assert server.client.get("/v2/health/ready").status_code == 503  # readiness first
        assert server.process.wait(30) == 0
        stop_sending.set()
        for worker in workers:
            worker.join(10)
    assert not failures, failures[:5]
    assert after_signal[0] > 0  # served during the shutdown delay too
    with ObjectStore(seaweedfs.settings()) as store:
        base = S3Uri.parse(prefix).join(model.name, "1/", "predictions/")
        logged = {line["request_id"] for line in _read_jsonl(store, base)}
    assert set(answered) <= logged
    assert len(answered) > 100
