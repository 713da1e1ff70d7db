"""Key layout: keys are built only from validated names, so user input cannot escape its place."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from kubeloop.storage import (
    InvalidDigest,
    InvalidLocation,
    StorageError,
    content_addressed_key,
    dataset_snapshot_key,
    file_key,
    model_artifact_prefix,
    parse_sha256,
    prediction_log_prefix,
    training_trial_prefix,
    validate_dns1123_label,
    validate_dns1123_subdomain,
)

DIGEST = hashlib.sha256(b"kubeloop").hexdigest()

# Names a user could put in metadata.name / namespace, or that a buggy caller could pass.
HOSTILE_NAMES: list[object] = [
    "",
    ".",
    "..",
    "../other-ns",
    "a/../b",
    "a/b",
    "/abs",
    "a\\b",
    "a\x00b",
    "a\nb",
    "UPPER",
    "under_score",
    "-leading",
    "trailing-",
    "sp ace",
    "%2e%2e",
    "\uff0e\uff0e",
    "a" * 254,
    "a..b",
    ".hidden",
    None,
    42,
    b"bytes",
]
HOSTILE_DIGESTS: list[object] = [
    "",
    "abc",
    DIGEST[:-1],
    DIGEST + "0",
    "g" * 64,
    "../" + DIGEST[3:],
    DIGEST[:32] + "/" + DIGEST[33:],
    "sha512:" + DIGEST,
    " " + DIGEST,
    DIGEST + "\n",
    None,
]


@pytest.mark.parametrize("name", ["default", "team-a", "a", "a" * 63, "0ns"])
def test_namespaces_are_dns1123_labels(name: str) -> None:
    assert validate_dns1123_label(name) == name


@pytest.mark.parametrize("name", ["iris", "iris.v2", "a-b.c-d", "a" * 63 + "." + "b" * 63])
def test_names_are_dns1123_subdomains(name: str) -> None:
    assert validate_dns1123_subdomain(name) == name


@pytest.mark.parametrize("name", ["a.b", "a" * 64])
def test_labels_reject_dots_and_length(name: str) -> None:
    with pytest.raises(InvalidLocation):
        validate_dns1123_label(name)


def test_dataset_snapshot_key() -> None:
    assert dataset_snapshot_key("team-a", "iris", DIGEST) == f"datasets/team-a/iris/{DIGEST}/"


def test_digest_forms_are_canonicalised() -> None:
    expected = f"datasets/ns/iris/{DIGEST}/"
    assert dataset_snapshot_key("ns", "iris", f"sha256:{DIGEST}") == expected
    assert dataset_snapshot_key("ns", "iris", DIGEST.upper()) == expected
    assert parse_sha256(f"sha256:{DIGEST.upper()}") == DIGEST


def test_other_prefixes() -> None:
    assert model_artifact_prefix("ns", "churn", 3) == "models/ns/churn/v3/"
    assert training_trial_prefix("ns", "churn-run", 0) == "runs/ns/churn-run/trials/0/"
    assert prediction_log_prefix("ns", "churn-svc") == "predictions/ns/churn-svc/"
    assert file_key("models/ns/churn/v3/", "model.onnx") == "models/ns/churn/v3/model.onnx"
    assert content_addressed_key("blobs/", DIGEST) == f"blobs/{DIGEST}"
    assert content_addressed_key("blobs", DIGEST) == f"blobs/{DIGEST}"


BUILDERS_OF_NAME: list[Callable[[object], str]] = [
    lambda bad: dataset_snapshot_key(bad, "iris", DIGEST),  # type: ignore[arg-type]
    lambda bad: dataset_snapshot_key("ns", bad, DIGEST),  # type: ignore[arg-type]
    lambda bad: model_artifact_prefix(bad, "m", 1),  # type: ignore[arg-type]
    lambda bad: model_artifact_prefix("ns", bad, 1),  # type: ignore[arg-type]
    lambda bad: training_trial_prefix(bad, "run", 0),  # type: ignore[arg-type]
    lambda bad: training_trial_prefix("ns", bad, 0),  # type: ignore[arg-type]
    lambda bad: prediction_log_prefix(bad, "svc"),  # type: ignore[arg-type]
    lambda bad: prediction_log_prefix("ns", bad),  # type: ignore[arg-type]
]
HOSTILE_FILE_NAMES: list[object] = [
    "",
    ".",
    "..",
    "../model.onnx",
    "a/b",
    "/abs",
    "a\\b",
    "a\x00b",
    "a\nb",
    ".hidden",
    "-rf",
    "%2e%2e",
    "\uff0e\uff0e",
    "sp ace",
    "x" * 256,
    None,
    b"model.onnx",
]


@pytest.mark.parametrize("builder", BUILDERS_OF_NAME)
@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=repr)
def test_hostile_names_never_make_a_key(builder: Callable[[object], str], name: object) -> None:
    with pytest.raises(InvalidLocation):
        builder(name)


@pytest.mark.parametrize("name", HOSTILE_FILE_NAMES, ids=repr)
def test_hostile_file_names_never_make_a_key(name: object) -> None:
    with pytest.raises(InvalidLocation):
        file_key("models/ns/m/v1/", name)  # type: ignore[arg-type]


@pytest.mark.parametrize("digest", HOSTILE_DIGESTS, ids=repr)
def test_hostile_digests_never_make_a_key(digest: object) -> None:
    with pytest.raises(InvalidDigest):
        dataset_snapshot_key("ns", "iris", digest)  # type: ignore[arg-type]
    with pytest.raises(InvalidDigest):
        content_addressed_key("blobs/", digest)  # type: ignore[arg-type]


@pytest.mark.parametrize("number", [-1, 1.5, "1", None, True])
def test_versions_and_trials_must_be_plain_integers(number: object) -> None:
    with pytest.raises(InvalidLocation):
        model_artifact_prefix("ns", "m", number)  # type: ignore[arg-type]
    with pytest.raises(InvalidLocation):
        training_trial_prefix("ns", "run", number)  # type: ignore[arg-type]


def test_model_versions_start_at_one() -> None:
    with pytest.raises(InvalidLocation, match="start at 1"):
        model_artifact_prefix("ns", "m", 0)


@pytest.mark.parametrize("prefix", ["models/ns/m/v1", "../x/", "/abs/", "a//b/"])
def test_file_key_needs_a_clean_prefix(prefix: str) -> None:
    with pytest.raises(InvalidLocation):
        file_key(prefix, "model.onnx")


def test_every_key_stays_under_its_root() -> None:
    """Exhaustively combine odd-but-valid names: each key starts with its root and the
    namespace and name appear as exactly one segment each."""
    names = ["a", "a-b", "a.b", "0", "x" * 63]
    for namespace in ["a", "ns-1", "0"]:
        for name in names:
            key = dataset_snapshot_key(namespace, name, DIGEST)
            assert key.split("/") == ["datasets", namespace, name, DIGEST, ""]


def test_errors_are_value_errors_and_storage_errors() -> None:
    with pytest.raises(ValueError, match="namespace"):
        dataset_snapshot_key("../x", "iris", DIGEST)
    with pytest.raises(StorageError):
        parse_sha256("nope")
