"""A Dataset on ``source.predictionLog``: a real ``kubeloop serve`` writes its prediction log and
feedback to a real SeaweedFS, and the real profiler joins them into a versioned snapshot."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.component.serving_fixtures import ServedModels, ServerProcess, served_models

from kubeloop.data import ProfileRequest, SourceNotFound, profile_dataset
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri, prediction_log_prefix

pytestmark = pytest.mark.component
__all__ = ["served_models"]  # the fixture, re-exported for pytest

NAMESPACE = "team-a"
TARGET = "churned"


def log_request(deployment: str, **source: Any) -> ProfileRequest:
    return ProfileRequest.model_validate(
        {
            "namespace": NAMESPACE,
            "dataset": f"{deployment}-feedback",
            "spec": {
                "source": {"predictionLog": {"deployment": deployment, "window": "1h", **source}},
                "target": TARGET,
            },
        }
    )


def snapshot_rows(store: ObjectStore, uri: str) -> dict[str, list[Any]]:
    buffer = io.BytesIO()
    store.download(S3Uri.parse(uri), buffer)
    table: dict[str, list[Any]] = pq.read_table(io.BytesIO(buffer.getvalue())).to_pydict()
    return table


def serve_and_label(
    seaweedfs: S3Endpoint,
    served_models: ServedModels,
    tmp_path: Path,
    deployment: str,
    *,
    predictions: int,
    labeled: int,
) -> list[str]:
    """Send ``predictions`` single-row requests and feedback for the first ``labeled``.

    Returns the labels sent, in request order; every fourth one is the opposite of the
    prediction, and the first request is labelled twice (the second label must win).
    """
    model = served_models.classification
    prefix = f"s3://{seaweedfs.bucket}/{prediction_log_prefix(NAMESPACE, deployment)}"
    extra = {
        "KUBELOOP_SERVE_PREDICTION_LOG_URI": prefix,
        "KUBELOOP_SERVE_PREDICTION_LOG_INTERVAL": "0.2",
    }
    flip = {"true": "false", "false": "true"}
    records = model.records()[:predictions]
    expected = model.expected[0][:predictions].tolist()
    sent: list[str] = []
    with ServerProcess(seaweedfs, model, tmp_path, extra=extra) as server:
        server.wait_ready()
        for index, record in enumerate(records):
            answer = server.client.post(
                "/predict", json=[record], headers={"x-request-id": f"{deployment}-{index}"}
            )
            assert answer.status_code == 200, answer.text
        feedback = []
        for index in range(labeled):
            truth = flip[expected[index]] if index % 4 == 0 else expected[index]
            feedback.append({"request_id": f"{deployment}-{index}", "label": truth})
            sent.append(truth)
        assert server.client.post("/feedback", json=feedback).json()["matched"] == labeled
        time.sleep(0.01)  # the correction below must carry a later time than the first label
        sent[0] = flip[sent[0]]
        correction = {"request_id": f"{deployment}-0", "label": sent[0]}
        assert server.client.post("/feedback", json=correction).json()["matched"] == 1
        assert server.stop() == 0  # the shutdown flush writes whatever is queued
    return sent


def test_the_log_joined_with_feedback_is_a_versioned_snapshot(
    seaweedfs: S3Endpoint, served_models: ServedModels, store: ObjectStore, tmp_path: Path
) -> None:
    deployment = f"churn-{time.time_ns() % 10**9}"
    labels = serve_and_label(
        seaweedfs, served_models, tmp_path, deployment, predictions=40, labeled=25
    )
    result = profile_dataset(log_request(deployment), store)

    assert result.ok, result.message
    assert result.rows == 25
    assert result.source_summary == (
        f"prediction log of {deployment} over 1h: 40 predictions, 25 with feedback, "
        "15 without feedback excluded"
    )
    assert result.snapshot_uri is not None
    rows = snapshot_rows(store, result.snapshot_uri)
    model = served_models.classification
    assert set(rows) == {spec.name for spec in model.signature.inputs} | {TARGET}
    assert [str(value).lower() for value in rows[TARGET]] == labels  # request order, later label

    again = profile_dataset(log_request(deployment), store)
    assert again.version == result.version  # same log, same version
    assert not again.snapshot_written

    kept = profile_dataset(log_request(deployment, requireFeedback=False), store)
    assert kept.ok, kept.message
    assert kept.rows == 40
    assert kept.version != result.version


def test_the_window_and_an_empty_log_are_answered_clearly(
    seaweedfs: S3Endpoint, served_models: ServedModels, store: ObjectStore, tmp_path: Path
) -> None:
    deployment = f"quiet-{time.time_ns() % 10**9}"
    with pytest.raises(SourceNotFound, match=f"no predictions of Deployment {deployment}"):
        profile_dataset(log_request(deployment), store)

    serve_and_label(seaweedfs, served_models, tmp_path, deployment, predictions=6, labeled=3)
    later = datetime.now(UTC) + timedelta(hours=3)
    with pytest.raises(SourceNotFound, match="within the last 1h"):
        profile_dataset(log_request(deployment), store, clock=lambda: later)

    three_labeled = profile_dataset(log_request(deployment, window="1h"), store)
    assert three_labeled.ok
    assert three_labeled.rows == 3


def test_a_base_dataset_comes_first_and_the_log_after_it(
    seaweedfs: S3Endpoint, served_models: ServedModels, store: ObjectStore, tmp_path: Path
) -> None:
    deployment = f"based-{time.time_ns() % 10**9}"
    model = served_models.classification
    base_frame = model.test_rows.iloc[:10].copy()
    base_frame[TARGET] = "true"
    base_key = S3Uri(store.bucket, f"tests/base-{deployment}.parquet")
    buffer = io.BytesIO()
    base_frame.to_parquet(buffer, index=False)
    store.upload(buffer.getvalue(), base_key)
    base = profile_dataset(
        ProfileRequest.model_validate(
            {
                "namespace": NAMESPACE,
                "dataset": f"{deployment}-base",
                "spec": {"source": {"uri": str(base_key)}, "target": TARGET},
            }
        ),
        store,
    )
    assert base.ok, base.message
    labels = serve_and_label(
        seaweedfs, served_models, tmp_path, deployment, predictions=8, labeled=8
    )
    request = log_request(deployment)
    request.base_snapshot_uri = base.snapshot_uri
    result = profile_dataset(request, store)

    assert result.ok, result.message
    assert result.rows == 18
    assert result.source_summary is not None
    assert "after 10 rows of the base Dataset" in result.source_summary
    assert result.snapshot_uri is not None
    rows = snapshot_rows(store, result.snapshot_uri)
    assert [str(value).lower() for value in rows[TARGET]] == ["true"] * 10 + labels
