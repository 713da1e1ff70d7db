"""``kubeloop data profile`` against a real SeaweedFS: CSV and Parquet sources, snapshots,
profile.json, schema drift against a pinned schema, idempotency, and the errors a Job reports."""

from __future__ import annotations

import io
import json
import os
import statistics
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from kubeloop.data import ProfileRequest, SourceNotFound, UnreadableSource, profile_dataset
from kubeloop.data.cli import SOURCE_ACCESS_KEY_ENV, SOURCE_SECRET_KEY_ENV, main
from kubeloop.data.digest import content_digest
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri

pytestmark = pytest.mark.component

NAMESPACE = "team-a"
CHURN_CSV = """customer_id,age,plan,monthly_spend,active,churn
1,34,basic,20.5,true,0
2,45,pro,99.0,true,1
3,,basic,25.0,false,0
4,52,enterprise,310.25,true,0
5,23,basic,,true,1
6,38,pro,89.5,false,0
"""
# The same customers a month later: 'age' now holds text, so its pinned type no longer fits.
CHURN_CSV_AGE_AS_TEXT = CHURN_CSV.replace("1,34,", "1,thirty-four,").replace("4,52,", "4,unknown,")


def upload_text(store: ObjectStore, key: str, text: str) -> str:
    uri = S3Uri(store.bucket, key)
    store.upload(text.encode(), uri)
    return str(uri)


def request_for(source: str, **extra: Any) -> ProfileRequest:
    return ProfileRequest.model_validate(
        {
            "namespace": NAMESPACE,
            "dataset": f"churn-{uuid.uuid4().hex[:8]}",
            "spec": {
                "source": {"uri": source},
                "target": "churn",
                "validation": {"uniqueKey": "customer_id", "maxMissingFraction": 0.2},
            },
            **extra,
        }
    )


def read_json(store: ObjectStore, uri: str) -> Any:
    sink = io.BytesIO()
    store.download(uri, sink)
    return json.loads(sink.getvalue())


def test_csv_source_becomes_a_ready_version_with_a_profile(
    store: ObjectStore, key_prefix: str
) -> None:
    source = upload_text(store, f"{key_prefix}churn.csv", CHURN_CSV)
    request = request_for(source)
    result = profile_dataset(request, store)

    assert result.ok, result.message
    assert result.reason is None
    assert result.rows == 6
    assert [(c.name, c.type, c.nullable) for c in result.columns] == [
        ("customer_id", "integer", False),
        ("age", "integer", True),
        ("plan", "category", False),
        ("monthly_spend", "number", True),
        ("active", "boolean", False),
        ("churn", "integer", False),
    ]
    assert result.version is not None
    digest = result.version.removeprefix("sha256:")
    prefix = f"s3://{store.bucket}/datasets/{NAMESPACE}/{request.dataset}/{digest}/"
    assert result.snapshot_uri == prefix + "snapshot.parquet"
    assert result.profile_uri == prefix + "profile.json"
    assert result.snapshot_written
    assert result.validation is not None
    assert result.validation.passed

    profile = read_json(store, result.profile_uri)
    assert profile["version"] == result.version
    assert profile["rows"] == 6
    assert profile["columnCount"] == 6
    assert profile["source"]["format"] == "csv"
    columns = {column["name"]: column for column in profile["columns"]}
    ages = [34, 45, 52, 23, 38]
    age = columns["age"]
    assert (age["type"], age["count"], age["missing"]) == ("integer", 5, 1)
    assert (age["min"], age["max"]) == (23, 52)
    assert age["mean"] == pytest.approx(statistics.mean(ages))
    assert age["std"] == pytest.approx(statistics.stdev(ages))
    assert len(age["binEdges"]) == 11
    assert age["binEdges"][0] == 23.0
    assert age["binEdges"][-1] == 52.0
    assert age["binEdges"][5] == 38.0  # the median
    assert sum(age["binCounts"]) == 5
    spend = columns["monthly_spend"]
    assert spend["missingFraction"] == pytest.approx(1 / 6)
    assert spend["mean"] == pytest.approx((20.5 + 99.0 + 25.0 + 310.25 + 89.5) / 5)
    plan = columns["plan"]
    assert plan["distinct"] == 3
    assert plan["frequencies"][0] == {"value": "basic", "count": 3, "fraction": 0.5}
    assert plan["other"]["count"] == 0
    target = profile["target"]
    assert target["name"] == "churn"
    assert [(f["value"], f["count"]) for f in target["frequencies"]] == [(0, 4), (1, 2)]

    # The snapshot is the conformed table, and hashes to the version it is stored under.
    local = io.BytesIO()
    store.download(result.snapshot_uri, local, expected_sha256=result.snapshot_sha256)
    snapshot = pq.read_table(io.BytesIO(local.getvalue()))
    assert snapshot.num_rows == 6
    types = json.loads(snapshot.schema.metadata[b"kubeloop.types"])
    assert content_digest(snapshot, types) == result.version
    assert profile["snapshot"]["sha256"] == result.snapshot_sha256


def test_profiling_the_same_content_again_rewrites_nothing(
    store: ObjectStore, key_prefix: str
) -> None:
    source = upload_text(store, f"{key_prefix}churn.csv", CHURN_CSV)
    request = request_for(source)
    first = profile_dataset(request, store)
    assert first.snapshot_uri is not None
    assert first.profile_uri is not None
    before = (store.stat(first.snapshot_uri).etag, store.stat(first.profile_uri).etag)

    again = profile_dataset(request.model_copy(update={"previous_version": first.version}), store)
    assert again.ok
    assert again.version == first.version
    assert again.changed is False
    assert not again.snapshot_written
    assert again.snapshot_sha256 == first.snapshot_sha256
    assert (store.stat(first.snapshot_uri).etag, store.stat(first.profile_uri).etag) == before


def test_a_column_that_changes_type_fails_against_the_pinned_schema(
    store: ObjectStore, key_prefix: str
) -> None:
    first_source = upload_text(store, f"{key_prefix}churn-1.csv", CHURN_CSV)
    request = request_for(first_source)
    first = profile_dataset(request, store)
    assert first.ok

    second_source = upload_text(store, f"{key_prefix}churn-2.csv", CHURN_CSV_AGE_AS_TEXT)
    spec = request.spec.model_copy(deep=True)
    spec.source.uri = second_source
    second = profile_dataset(
        request.model_copy(
            update={"spec": spec, "pinned_schema": first.columns, "previous_version": first.version}
        ),
        store,
    )
    assert not second.ok
    assert second.reason == "ValidationFailed"
    assert second.version is not None
    assert second.version != first.version
    assert second.changed is True
    assert second.validation is not None
    [failure] = second.validation.failures
    assert (failure.column, failure.rule, failure.observed, failure.expected) == (
        "age",
        "pinnedSchema",
        "category",
        "integer",
    )
    assert failure.message.startswith(
        "column 'age': type changed from integer to category (pinned by the first version)"
    )
    assert "'thirty-four'" in failure.message
    assert "column 'age'" in second.message
    # Nothing is written for an invalid version; the last good one is untouched.
    assert second.snapshot_uri is None
    digest = second.version.removeprefix("sha256:")
    assert list(store.list(f"datasets/{NAMESPACE}/{request.dataset}/{digest}/")) == []
    assert first.profile_uri is not None
    assert store.exists(first.profile_uri)


def test_parquet_source_of_the_same_data_has_the_same_version(
    store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    csv_result = profile_dataset(
        request_for(upload_text(store, f"{key_prefix}churn.csv", CHURN_CSV)), store
    )
    frame = pd.read_csv(io.StringIO(CHURN_CSV))
    frame["age"] = frame["age"].astype("Int64")  # pandas would make it float because of the gap
    path = tmp_path / "churn.parquet"
    frame.to_parquet(path)
    uri = S3Uri(store.bucket, f"{key_prefix}churn.parquet")
    store.upload(path, uri)

    result = profile_dataset(request_for(str(uri)), store)
    assert result.ok, result.message
    assert result.rows == 6
    assert result.version == csv_result.version
    assert result.profile_uri is not None
    assert read_json(store, result.profile_uri)["source"]["format"] == "parquet"


def test_missing_source_object_or_bucket_is_source_not_found(
    store: ObjectStore, key_prefix: str
) -> None:
    with pytest.raises(SourceNotFound, match="does not exist"):
        profile_dataset(request_for(f"s3://{store.bucket}/{key_prefix}absent.csv"), store)
    with pytest.raises(SourceNotFound, match="no-such-bucket-kubeloop"):
        profile_dataset(request_for("s3://no-such-bucket-kubeloop/data.csv"), store)


def test_a_file_that_is_not_what_it_claims_is_unreadable(
    store: ObjectStore, key_prefix: str
) -> None:
    source = upload_text(store, f"{key_prefix}churn.parquet", CHURN_CSV)
    with pytest.raises(UnreadableSource, match="as PARQUET"):
        profile_dataset(request_for(source), store)


def test_random_bytes_are_unreadable_with_a_message_that_is_text(
    store: ObjectStore, key_prefix: str
) -> None:
    noise = os.urandom(100_000)  # a NUL in the first 64 KiB: all but certain (1 - e^-256)
    for key, match in (
        ("noise.csv", "is binary data, not CSV text"),
        ("noise.parquet", "as PARQUET: Parquet magic bytes not found"),
    ):
        uri = S3Uri(store.bucket, f"{key_prefix}{key}")
        store.upload(noise, uri)
        with pytest.raises(UnreadableSource, match=match) as raised:
            profile_dataset(request_for(str(uri)), store)
        assert str(raised.value).isprintable()
    latin1 = S3Uri(store.bucket, f"{key_prefix}latin1.csv")
    store.upload(CHURN_CSV.replace("basic", "b\u00e4sic").encode("latin-1"), latin1)
    with pytest.raises(UnreadableSource, match="is not UTF-8 text"):
        profile_dataset(request_for(str(latin1)), store)


def run_cli(
    seaweedfs: S3Endpoint,
    request: ProfileRequest,
    tmp_path: Path,
    extra_env: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    log = tmp_path / f"termination-log-{uuid.uuid4().hex[:6]}"
    env = {
        **seaweedfs.env(),
        "KUBELOOP_PROFILE_REQUEST": request.model_dump_json(by_alias=True, exclude_none=True),
        **(extra_env or {}),
    }
    status = main(["--termination-log", str(log)], environ=env)
    text = log.read_text()
    assert len(text.encode()) <= 4096
    return status, json.loads(text)


def test_cli_writes_the_result_to_the_termination_log(
    seaweedfs: S3Endpoint, store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    request = request_for(upload_text(store, f"{key_prefix}churn.csv", CHURN_CSV))
    status, message = run_cli(seaweedfs, request, tmp_path)
    assert status == 0
    assert message["ok"] is True
    assert message["version"].startswith("sha256:")
    assert message["rows"] == 6
    assert message["columns"][1] == {"name": "age", "type": "integer", "nullable": True}
    assert message["snapshotURI"].endswith("/snapshot.parquet")
    assert message["profileURI"].endswith("/profile.json")
    assert message["validation"] == {"passed": True, "failureCount": 0, "failures": []}

    # Invalid data is an answer, not an error: exit 0, ok false, the failed rule named.
    spec = request.spec.model_copy(deep=True)
    spec.validation.min_rows = 100
    status, message = run_cli(seaweedfs, request.model_copy(update={"spec": spec}), tmp_path)
    assert status == 0
    assert message["ok"] is False
    assert message["reason"] == "ValidationFailed"
    assert message["validation"]["failures"][0]["rule"] == "minRows"

    # A missing source keeps profiling from running at all: exit 1.
    spec = request.spec.model_copy(deep=True)
    spec.source.uri = f"s3://{store.bucket}/{key_prefix}absent.csv"
    status, message = run_cli(seaweedfs, request.model_copy(update={"spec": spec}), tmp_path)
    assert status == 1
    assert message["reason"] == "SourceNotFound"
    assert "absent.csv" in message["message"]


def test_source_credentials_read_the_source_and_only_the_source(
    seaweedfs: S3Endpoint, store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    """source.credentialsSecretRef reaches the profiler as KUBELOOP_SOURCE_*: they read the source."""
    request = request_for(upload_text(store, f"{key_prefix}churn.csv", CHURN_CSV))
    secret = seaweedfs.secret_key.get_secret_value()
    good = {
        SOURCE_ACCESS_KEY_ENV: seaweedfs.access_key,
        SOURCE_SECRET_KEY_ENV: secret,
    }
    status, message = run_cli(seaweedfs, request, tmp_path, good)
    assert (status, message["ok"]) == (0, True)

    # A key pair the server does not know: the source read is refused (the snapshot would
    # have been written with kubeloop's own, valid keys, so the refusal is the source's).
    status, message = run_cli(
        seaweedfs, request, tmp_path, {**good, SOURCE_SECRET_KEY_ENV: "not-" + secret}
    )
    assert status == 1
    assert message["ok"] is False
    assert secret not in json.dumps(message)
    assert "credential" in message["message"].lower() or "denied" in message["message"].lower()

    # Half a key pair is a usage error that names both variables.
    status, message = run_cli(seaweedfs, request, tmp_path, {SOURCE_ACCESS_KEY_ENV: "x"})
    assert status == 1
    assert SOURCE_SECRET_KEY_ENV in message["message"]


def test_cli_reports_unreachable_storage(seaweedfs: S3Endpoint, tmp_path: Path) -> None:
    request = request_for("s3://data/churn.csv")
    log = tmp_path / "termination-log"
    env = {
        **seaweedfs.env(),
        "KUBELOOP_S3_ENDPOINT": "http://127.0.0.1:9",  # discard port: nothing listens
        "KUBELOOP_S3_RETRY_ATTEMPTS": "2",
        "KUBELOOP_S3_RETRY_BASE_DELAY": "0.01",
        "KUBELOOP_S3_RETRY_MAX_DELAY": "0.01",
        "KUBELOOP_PROFILE_REQUEST": request.model_dump_json(by_alias=True, exclude_none=True),
    }
    assert main(["--termination-log", str(log)], environ=env) == 1
    message = json.loads(log.read_text())
    assert message["reason"] == "StorageUnavailable"
    assert seaweedfs.secret_key.get_secret_value() not in log.read_text()
