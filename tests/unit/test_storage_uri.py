"""Bucket names, object keys and ``s3://`` URIs: valid ones pass, hostile ones never do."""

from __future__ import annotations

import pytest

from kubeloop.storage import InvalidLocation, S3Uri, normalise_key, validate_bucket_name

VALID_BUCKETS = ["abc", "kubeloop", "my-bucket-1", "a.b.c", "0bucket", "x" * 63]
INVALID_BUCKETS = [
    "",
    "ab",  # too short
    "x" * 64,  # too long
    "MyBucket",  # uppercase
    "my_bucket",  # underscore
    "-bucket",
    "bucket-",
    ".bucket",
    "bucket.",
    "my..bucket",
    "my.-bucket",
    "my-.bucket",
    "192.168.1.1",  # IP address
    "xn--bucket",
    "sthree-bucket",
    "amzn-s3-demo-bucket",
    "bucket-s3alias",
    "bucket--ol-s3",
    "bucket.mrap",
    "bucket--x-s3",
    "bucket--table-s3",
    "bucket/key",
    "bucket name",
    "bücket",
    "bucket\n",
]


@pytest.mark.parametrize("name", VALID_BUCKETS)
def test_valid_bucket_names_pass(name: str) -> None:
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize("name", INVALID_BUCKETS)
def test_invalid_bucket_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidLocation, match="bucket name"):
        validate_bucket_name(name)


@pytest.mark.parametrize(
    "key",
    [
        "model.onnx",
        "datasets/ns/name/abc/",
        "a/b/c.txt",
        "year=2024/month=01/part-0.parquet",
        "with space/and+plus",
        "unicode/ünïcödé.csv",
        "dots/..hidden/file..name/...",  # dots inside segments are fine
        "a" * 1024,
    ],
)
def test_acceptable_keys_are_returned_unchanged(key: str) -> None:
    assert normalise_key(key) == key


HOSTILE_KEYS = [
    "",
    "/",
    "/etc/passwd",
    "//double",
    "a//b",
    "a/",  # only a problem when a prefix is not allowed, see below
    ".",
    "..",
    "../x",
    "a/../b",
    "a/./b",
    "a/..",
    "a/../../../etc/passwd",
    "%2e%2e/x",  # percent-encoded ..
    "a/%2E%2E/b",
    "a/.%2e/b",
    "a%2fb/../c",
    "a%2F..%2Fb",  # encoded separators
    "a%5c..%5cb",
    "\uff0e\uff0e/x",  # fullwidth dots fold to .. under NFKC
    "a\\b",
    "..\\..\\windows",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",  # escape: terminal injection
    "a\x7fb",
    "a\u0085b",  # C1 next line
    "a\u202eb",  # right-to-left override
    "a\u200bb",  # zero-width space
    "a\u2028b",  # line separator
    "a\ud800b",  # lone surrogate
    "a" * 1025,
    "é" * 513,  # 1026 bytes in UTF-8
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_rejected(key: str) -> None:
    with pytest.raises(InvalidLocation):
        normalise_key(key, allow_prefix=False)


def test_prefix_keys_only_where_allowed() -> None:
    assert normalise_key("a/b/") == "a/b/"
    with pytest.raises(InvalidLocation, match="prefix"):
        normalise_key("a/b/", allow_prefix=False)


def test_keys_are_nfc_normalised() -> None:
    decomposed = "cafe\u0301.csv"
    assert normalise_key(decomposed) == "caf\u00e9.csv"


@pytest.mark.parametrize("key", [None, 1, b"bytes"])
def test_non_string_keys_are_rejected(key: object) -> None:
    with pytest.raises(InvalidLocation, match="string"):
        normalise_key(key)  # type: ignore[arg-type]


def test_error_messages_escape_control_characters() -> None:
    with pytest.raises(InvalidLocation) as caught:
        normalise_key("evil\x1b[2J")
    assert "\x1b" not in str(caught.value)
    assert "\\x1b" in str(caught.value)


def test_parse_round_trips() -> None:
    uri = S3Uri.parse("s3://kubeloop/models/ns/m/v1/model.onnx")
    assert uri == S3Uri("kubeloop", "models/ns/m/v1/model.onnx")
    assert str(uri) == "s3://kubeloop/models/ns/m/v1/model.onnx"
    assert uri.name == "model.onnx"
    assert not uri.is_prefix


def test_parse_keeps_query_and_fragment_characters_in_the_key() -> None:
    assert S3Uri.parse("s3://bucket/a?b#c").key == "a?b#c"


def test_prefix_uri() -> None:
    uri = S3Uri.parse("s3://bucket/datasets/ns/name/")
    assert uri.is_prefix
    assert uri.name == "name"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bucket/key",
        "S3://bucket/key",
        "s3:/bucket/key",
        "http://bucket/key",
        "s3://bucket",
        "s3://bucket/",
        "s3:///key",
        "s3://Bucket/key",
        "s3://bucket//key",
        "s3://bucket/../key",
        "s3://bucket/a/../../b",
        "s3://bucket/%2e%2e/x",
        "s3://bucket/a\nb",
        "s3://user:pass@bucket/key",
        "s3://bucket:9000/key",
    ],
)
def test_parse_rejects_malformed_and_hostile_uris(text: str) -> None:
    with pytest.raises(InvalidLocation):
        S3Uri.parse(text)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(InvalidLocation):
        S3Uri("bucket", "../escape")
    with pytest.raises(InvalidLocation):
        S3Uri("BAD", "key")


def test_uri_is_immutable() -> None:
    uri = S3Uri("bucket", "key")
    with pytest.raises(AttributeError):
        uri.key = "../other"  # type: ignore[misc]


def test_join_validates_each_part() -> None:
    base = S3Uri("bucket", "models/ns/m/v1/")
    assert base.join("model.onnx") == S3Uri("bucket", "models/ns/m/v1/model.onnx")
    assert base.join("reports", "index.html").key == "models/ns/m/v1/reports/index.html"
    assert base.join("sub/").is_prefix
    for hostile in ["..", "../x", "/abs", "a//b", "%2e%2e", ""]:
        with pytest.raises(InvalidLocation):
            base.join(hostile)
