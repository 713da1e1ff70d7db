"""S3Settings: endpoint parsing, TLS choice, environment loading, and no secret in sight."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubeloop.storage import ObjectStore, S3Settings

SECRET = "s3cr3t-very-private-value"


def settings(**overrides: object) -> S3Settings:
    values: dict[str, object] = {
        "endpoint": "http://127.0.0.1:8333",
        "access_key": "AKID",
        "secret_key": SECRET,
        "bucket": "kubeloop",
    }
    values.update(overrides)
    return S3Settings.model_validate(values)


@pytest.mark.parametrize(
    ("endpoint", "secure", "tls", "url"),
    [
        ("http://127.0.0.1:8333", None, False, "http://127.0.0.1:8333"),
        ("https://s3.example.com", None, True, "https://s3.example.com"),
        ("https://s3.example.com/", None, True, "https://s3.example.com"),
        ("minio.storage:9000", None, True, "https://minio.storage:9000"),  # TLS by default
        ("minio.storage:9000", False, False, "http://minio.storage:9000"),
        ("  [::1]:9000  ", False, False, "http://[::1]:9000"),
    ],
)
def test_endpoint_forms(endpoint: str, secure: bool | None, tls: bool, url: str) -> None:
    parsed = settings(endpoint=endpoint, secure=secure)
    assert parsed.tls is tls
    assert parsed.endpoint_url == url


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://host:21",
        "http://user:pass@host:9000",
        "http://host:9000/path",
        "http://host:9000?x=1",
        "http://:9000",
        "host:notaport",
        "host:99999",
    ],
)
def test_bad_endpoints_are_rejected(endpoint: str) -> None:
    with pytest.raises(ValidationError, match="endpoint"):
        settings(endpoint=endpoint)


def test_scheme_and_secure_must_agree() -> None:
    with pytest.raises(ValidationError, match="contradicts"):
        settings(endpoint="http://host:9000", secure=True)


def test_bucket_name_is_validated() -> None:
    with pytest.raises(ValidationError, match="bucket"):
        settings(bucket="Not_A_Bucket")


@pytest.mark.parametrize(
    "overrides",
    [
        {"retry_attempts": 0},
        {"retry_base_delay": -1},
        {"retry_base_delay": 2.0, "retry_max_delay": 1.0},
        {"part_size": 1024},  # below S3's 5 MiB minimum
        {"unknown_field": 1},
    ],
)
def test_bad_values_are_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        settings(**overrides)


def test_secret_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = settings()
    assert parsed.secret_key.get_secret_value() == SECRET
    store = ObjectStore(parsed)
    for text in [repr(parsed), str(parsed), repr(store), str(store), str(parsed.model_dump())]:
        assert SECRET not in text
    with pytest.raises(ValidationError) as caught:
        settings(endpoint="ftp://x", secret_key=SECRET)
    assert SECRET not in str(caught.value)


def test_loaded_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELOOP_S3_ENDPOINT", "http://127.0.0.1:9000")
    monkeypatch.setenv("KUBELOOP_S3_ACCESS_KEY", "AKENV")
    monkeypatch.setenv("KUBELOOP_S3_SECRET_KEY", SECRET)
    monkeypatch.setenv("KUBELOOP_S3_BUCKET", "from-env")
    monkeypatch.setenv("KUBELOOP_S3_RETRY_ATTEMPTS", "2")
    parsed = S3Settings()
    assert parsed.endpoint_url == "http://127.0.0.1:9000"
    assert parsed.bucket == "from-env"
    assert parsed.retry_attempts == 2
    assert parsed.secret_key.get_secret_value() == SECRET


def test_settings_are_frozen() -> None:
    parsed = settings()
    with pytest.raises(ValidationError):
        parsed.bucket = "other"  # type: ignore[misc]
