"""ObjectStore against a real SeaweedFS: round trips, digests, idempotency, real failures."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from minio import Minio
from minio.error import S3Error

from kubeloop.devenv.seaweedfs import S3Endpoint, SeaweedFS
from kubeloop.storage import (
    AccessDenied,
    BucketNotFound,
    DigestMismatch,
    EndpointUnreachable,
    InvalidCredentials,
    InvalidLocation,
    ObjectNotFound,
    ObjectStore,
    S3Settings,
    S3Uri,
    StorageError,
    content_addressed_key,
)

if TYPE_CHECKING:
    from conftest import FaultyProxy

pytestmark = pytest.mark.component

MIB = 1024 * 1024
StoreFactory = Callable[..., ObjectStore]


def pseudo_random_chunks(total: int, seed: int, chunk: int = 1_000_003) -> Iterator[bytes]:
    """Deterministic, incompressible data in odd-sized chunks, generated on the fly."""
    rng = random.Random(seed)  # noqa: S311 - test data
    produced = 0
    while produced < total:
        size = min(chunk, total - produced)
        yield rng.randbytes(size)
        produced += size


def sha256_of(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for piece in chunks:
        digest.update(piece)
    return digest.hexdigest()


def raw_client(endpoint: S3Endpoint) -> Minio:
    """The plain minio client: to tamper with objects behind ObjectStore's back."""
    return Minio(
        endpoint.url.removeprefix("http://"),
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key.get_secret_value(),
        secure=False,
        region=endpoint.region,
    )


def test_50_mib_stream_of_unknown_length_round_trips(
    store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    size = 50 * MIB
    expected = sha256_of(pseudo_random_chunks(size, seed=50))

    started = time.perf_counter()
    uploaded = store.upload(pseudo_random_chunks(size, seed=50), key_prefix + "big.bin")
    upload_seconds = time.perf_counter() - started

    assert uploaded.size == size
    assert uploaded.sha256 == expected
    assert uploaded.etag.endswith("-4")  # 50 MiB in 16 MiB parts: a multipart upload
    info = store.stat(uploaded.uri)
    assert info.size == size
    assert info.sha256 == expected  # x-amz-meta-sha256, attached after streaming

    target = tmp_path / "big.bin"
    started = time.perf_counter()
    downloaded = store.download_verified(uploaded.uri, target, expected)
    download_seconds = time.perf_counter() - started

    assert downloaded.sha256 == expected
    assert downloaded.size == size
    with target.open("rb") as written:
        assert hashlib.file_digest(written, "sha256").hexdigest() == expected
    print(f"50 MiB: upload {upload_seconds:.2f}s, verified download {download_seconds:.2f}s")


def test_1000_small_objects_round_trip(store: ObjectStore, key_prefix: str) -> None:
    rng = random.Random(1000)  # noqa: S311 - test data
    blobs = {
        f"{key_prefix}obj-{index:04d}": rng.randbytes(rng.randrange(0, 4096))
        for index in range(1000)
    }
    blobs[f"{key_prefix}obj-0000"] = b""  # the empty object is a classic edge case

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda item: store.upload(item[1], item[0]), blobs.items()))

        def fetch(key: str) -> tuple[str, bytes, str]:
            sink = io.BytesIO()
            result = store.download(key, sink)
            return key, sink.getvalue(), result.sha256

        fetched = list(pool.map(fetch, blobs))
    seconds = time.perf_counter() - started

    for result in results:
        assert result.sha256 == hashlib.sha256(blobs[result.uri.key]).hexdigest()
    for key, data, sha256 in fetched:
        assert data == blobs[key]
        assert sha256 == hashlib.sha256(blobs[key]).hexdigest()
    listed = list(store.list(key_prefix))
    assert [info.uri.key for info in listed] == sorted(blobs)
    assert {info.uri.key: info.size for info in listed} == {k: len(v) for k, v in blobs.items()}
    print(f"1000 objects: upload + download {seconds:.2f}s")


@pytest.mark.parametrize("kind", ["bytes", "path", "seekable", "pipe", "iterator"])
def test_every_source_kind_round_trips_as_multipart(
    make_store: StoreFactory, key_prefix: str, tmp_path: Path, kind: str
) -> None:
    store = make_store(part_size=5 * MIB)
    data = b"".join(pseudo_random_chunks(12 * MIB + 17, seed=12))
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    sources: dict[str, Callable[[], object]] = {
        "bytes": lambda: data,
        "path": lambda: path,
        "seekable": lambda: io.BytesIO(data),
        "iterator": lambda: iter([data[: 3 * MIB], data[3 * MIB :]]),
    }
    if kind == "pipe":  # a real one-shot stream: what a subprocess or socket gives
        read_end, write_end = os.pipe()
        with ThreadPoolExecutor(1) as writer, os.fdopen(read_end, "rb", buffering=0) as pipe:
            writer.submit(_write_and_close, write_end, data)
            result = store.upload(pipe, key_prefix + kind, content_type="application/x-test")
    else:
        source = sources[kind]()
        result = store.upload(source, key_prefix + kind, content_type="application/x-test")  # type: ignore[arg-type]
    expected = hashlib.sha256(data).hexdigest()
    assert (result.size, result.sha256) == (len(data), expected)
    info = store.stat(result.uri)
    assert info.sha256 == expected
    assert info.content_type == "application/x-test"
    assert result.etag.endswith("-3")
    sink = io.BytesIO()
    store.download(result.uri, sink)
    assert sink.getvalue() == data


def _write_and_close(descriptor: int, data: bytes) -> None:
    with os.fdopen(descriptor, "wb") as pipe_writer:
        pipe_writer.write(data)


def test_metadata_and_uri_forms(store: ObjectStore, key_prefix: str) -> None:
    key = key_prefix + "with-meta.json"
    result = store.upload(b"{}", key, content_type="application/json", metadata={"Run": "r-1"})
    by_uri = store.stat(f"s3://{store.bucket}/{key}")
    assert by_uri == store.stat(S3Uri(store.bucket, key)) == store.stat(key)
    assert by_uri.metadata["run"] == "r-1"
    assert by_uri.sha256 == result.sha256
    assert by_uri.content_type == "application/json"
    with pytest.raises(ValueError, match="reserved"):
        store.upload(b"x", key, metadata={"sha256": "0" * 64})
    with pytest.raises(ValueError, match="printable"):
        store.upload(b"x", key, metadata={"evil": "a\r\nX-Injected: 1"})


def test_content_addressed_writes_are_idempotent(store: ObjectStore, key_prefix: str) -> None:
    data = b"the same bytes, twice"
    digest = hashlib.sha256(data).hexdigest()
    first = store.put_content_addressed(key_prefix + "blobs", data)
    assert first.uploaded
    assert first.uri.key == content_addressed_key(key_prefix + "blobs", digest)
    assert first.uri.key == f"{key_prefix}blobs/{digest}"
    modified = store.stat(first.uri).last_modified

    time.sleep(1.1)  # Last-Modified has one-second resolution
    again = store.put_content_addressed(key_prefix + "blobs/", iter([data[:5], data[5:]]))
    assert not again.uploaded
    assert again.uri == first.uri
    assert again.sha256 == digest
    assert store.stat(first.uri).last_modified == modified  # not rewritten

    other = store.put_content_addressed(key_prefix + "blobs", b"other bytes")
    assert other.uploaded
    assert other.uri != first.uri
    assert len(list(store.list(key_prefix + "blobs/"))) == 2


def test_content_addressed_write_repairs_a_damaged_object(
    store: ObjectStore, seaweedfs: S3Endpoint, key_prefix: str
) -> None:
    data = b"precious"
    stored = store.put_content_addressed(key_prefix, data)
    raw_client(seaweedfs).put_object(store.bucket, stored.uri.key, io.BytesIO(b"damaged!!"), 9)
    repaired = store.put_content_addressed(key_prefix, data)
    assert repaired.uploaded
    sink = io.BytesIO()
    store.download_verified(repaired.uri, sink, repaired.sha256)
    assert sink.getvalue() == data


def test_tampered_object_fails_verification_and_leaves_no_file(
    store: ObjectStore, seaweedfs: S3Endpoint, key_prefix: str, tmp_path: Path
) -> None:
    original = store.upload(b"model weights v1" * 1000, key_prefix + "model.onnx")
    # Overwritten behind the store's back, even keeping the old digest in the metadata.
    raw_client(seaweedfs).put_object(
        store.bucket,
        original.uri.key,
        io.BytesIO(b"evil weights"),
        12,
        metadata={"sha256": original.sha256},
    )
    target = tmp_path / "serving" / "model.onnx"
    with pytest.raises(DigestMismatch) as caught:
        store.download_verified(original.uri, target, original.sha256)
    assert caught.value.expected == original.sha256
    assert caught.value.actual == hashlib.sha256(b"evil weights").hexdigest()
    assert original.sha256 in str(caught.value)
    assert str(original.uri) in str(caught.value)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no partial or temporary file either

    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"previous good version")
    with pytest.raises(DigestMismatch):
        store.download_verified(original.uri, target, original.sha256)
    assert target.read_bytes() == b"previous good version"  # untouched


def test_plain_download_checks_the_stored_digest(
    store: ObjectStore, seaweedfs: S3Endpoint, key_prefix: str, tmp_path: Path
) -> None:
    key = key_prefix + "data.csv"
    store.upload(b"a,b\n1,2\n", key)
    info = store.stat(key)
    raw_client(seaweedfs).put_object(
        store.bucket, key, io.BytesIO(b"a,b\n6,6\n"), 8, metadata={"sha256": info.sha256 or ""}
    )
    with pytest.raises(DigestMismatch, match="x-amz-meta-sha256"):
        store.download(key, tmp_path / "data.csv")
    assert not (tmp_path / "data.csv").exists()


def test_server_rejects_a_wrong_checksum_header(seaweedfs: S3Endpoint, key_prefix: str) -> None:
    """Why single-request uploads send x-amz-checksum-sha256: the server verifies it."""
    client = raw_client(seaweedfs)
    data = b"payload"
    wrong = base64.b64encode(hashlib.sha256(b"other payload").digest()).decode()
    with pytest.raises(S3Error) as caught:
        client.put_object(
            seaweedfs.bucket,
            key_prefix + "checked",
            io.BytesIO(data),
            len(data),
            metadata={"x-amz-checksum-sha256": wrong},
        )
    assert caught.value.code == "BadDigest"
    right = base64.b64encode(hashlib.sha256(data).digest()).decode()
    client.put_object(
        seaweedfs.bucket,
        key_prefix + "checked",
        io.BytesIO(data),
        len(data),
        metadata={"x-amz-checksum-sha256": right},
    )


def test_upload_retry_restarts_a_one_shot_stream(
    s3_settings: S3Settings,
    make_store: StoreFactory,
    faulty_proxy: FaultyProxy,
    key_prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = make_store(endpoint=faulty_proxy.url, part_size=5 * MIB, parallel_uploads=1)
    size = 12 * MIB
    expected = sha256_of(pseudo_random_chunks(size, seed=7))
    faulty_proxy.cut("upload", after_bytes=7 * MIB)  # in the middle of the second part
    with caplog.at_level(logging.WARNING, logger="kubeloop.storage"):
        result = store.upload(pseudo_random_chunks(size, seed=7), key_prefix + "retried.bin")
    assert faulty_proxy.cuts_done == 1
    assert any("retrying" in record.getMessage() for record in caplog.records)
    assert (result.size, result.sha256) == (size, expected)
    direct = make_store()
    assert direct.stat(result.uri).sha256 == expected
    sink = io.BytesIO()
    direct.download(result.uri, sink)
    assert hashlib.sha256(sink.getvalue()).hexdigest() == expected


def test_download_retry_resumes_where_it_broke(
    make_store: StoreFactory,
    store: ObjectStore,
    faulty_proxy: FaultyProxy,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    size = 12 * MIB
    uploaded = store.upload(pseudo_random_chunks(size, seed=8), key_prefix + "resumed.bin")
    through_proxy = make_store(endpoint=faulty_proxy.url)
    faulty_proxy.cut("download", after_bytes=5 * MIB)
    result = through_proxy.download_verified(uploaded.uri, tmp_path / "out", uploaded.sha256)
    assert faulty_proxy.cuts_done == 1
    assert result.sha256 == uploaded.sha256
    # Resumed with a Range request rather than starting over:
    assert faulty_proxy.forwarded["download"] < size + MIB


def test_missing_object(store: ObjectStore, key_prefix: str, tmp_path: Path) -> None:
    key = key_prefix + "nothing-here"
    assert not store.exists(key)
    with pytest.raises(ObjectNotFound, match=f"object s3://{store.bucket}/{key} does not exist"):
        store.stat(key)
    with pytest.raises(ObjectNotFound):
        store.download(key, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    store.delete(key)  # deleting what is not there is fine


def test_delete(store: ObjectStore, key_prefix: str) -> None:
    result = store.upload(b"short-lived", key_prefix + "tmp")
    assert store.exists(result.uri)
    store.delete(result.uri)
    assert not store.exists(result.uri)


def test_prefixes_and_hostile_keys_are_refused_before_any_request(store: ObjectStore) -> None:
    for location in ["a/b/", "../etc/passwd", "a//b", "/abs", "s3://Bad_Bucket/x", "x\ny"]:
        with pytest.raises(InvalidLocation):
            store.upload(b"x", location)
        with pytest.raises(InvalidLocation):
            store.stat(location)


def test_missing_bucket(make_store: StoreFactory, s3_settings: S3Settings, tmp_path: Path) -> None:
    store = make_store(bucket="kubeloop-no-such-bucket")
    message = f"bucket 'kubeloop-no-such-bucket' does not exist at {s3_settings.endpoint_url}"
    operations: list[Callable[[], object]] = [
        store.check,
        lambda: store.upload(b"x", "key"),
        lambda: store.upload(pseudo_random_chunks(20 * MIB, seed=1), "big"),
        lambda: store.download("key", tmp_path / "key"),
        lambda: store.stat("key"),
        lambda: store.exists("key"),
        lambda: list(store.list()),
        lambda: store.put_content_addressed("blobs", b"x"),
    ]
    for operation in operations:
        with pytest.raises(BucketNotFound) as caught:
            operation()
        assert str(caught.value) == message


def test_ensure_bucket_creates_once(make_store: StoreFactory) -> None:
    store = make_store(bucket=f"kubeloop-new-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    assert store.ensure_bucket()
    assert not store.ensure_bucket()
    store.check()
    assert store.upload(b"x", "key").size == 1


@pytest.mark.parametrize("wrong", ["secret_key", "access_key"])
def test_wrong_credentials_are_rejected(
    make_store: StoreFactory, store: ObjectStore, key_prefix: str, tmp_path: Path, wrong: str
) -> None:
    existing = store.upload(b"x", key_prefix + "existing")
    wrong_value = "wrong-" + wrong.replace("_", "-") + "-value-1234567890"
    bad = make_store(**{wrong: wrong_value})
    operations: list[Callable[[], object]] = [
        bad.check,
        lambda: bad.stat(existing.uri),
        lambda: bad.exists(existing.uri),
        lambda: bad.upload(b"x", key_prefix + "denied"),
        lambda: bad.download(existing.uri, tmp_path / "denied"),
        lambda: list(bad.list(key_prefix)),
        lambda: bad.delete(existing.uri),
    ]
    for operation in operations:
        with pytest.raises(InvalidCredentials) as caught:
            operation()
        text = str(caught.value) + repr(caught.value) + repr(caught.value.__cause__)
        assert "wrong-secret" not in text
        assert store.endpoint in str(caught.value)
    assert store.exists(existing.uri)  # the rejected delete did not happen
    assert not (tmp_path / "denied").exists()


def test_anonymous_requests_are_refused(seaweedfs: S3Endpoint, key_prefix: str) -> None:
    anonymous = Minio(seaweedfs.url.removeprefix("http://"), secure=False, region="us-east-1")
    with pytest.raises(S3Error) as caught:
        anonymous.put_object(seaweedfs.bucket, key_prefix + "anon", io.BytesIO(b"x"), 1)
    assert caught.value.code == "AccessDenied"
    assert issubclass(InvalidCredentials, AccessDenied)


def test_stopped_server_is_unreachable_after_retries(tmp_path: Path) -> None:
    throwaway = SeaweedFS(tmp_path / "throwaway")
    endpoint = throwaway.start()
    settings = endpoint.settings(retry_attempts=3, retry_base_delay=0.01, retry_max_delay=0.02)
    with ObjectStore(settings) as store:
        store.upload(b"x", "key")
        assert throwaway.stop()
        operations: list[Callable[[], object]] = [
            lambda: store.stat("key"),
            lambda: store.upload(pseudo_random_chunks(6 * MIB, seed=3), "key"),
            lambda: store.download("key", tmp_path / "key"),
        ]
        for operation in operations:
            started = time.perf_counter()
            with pytest.raises(EndpointUnreachable) as caught:
                operation()
            assert time.perf_counter() - started < 5
            assert caught.value.attempts == 3
            assert endpoint.url in str(caught.value)
            assert isinstance(caught.value, StorageError)
    assert not (tmp_path / "key").exists()
