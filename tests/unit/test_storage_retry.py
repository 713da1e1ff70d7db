"""Retry classification and backoff: transient failures are retried, 4xx answers never are."""

from __future__ import annotations

import random

import pytest
import urllib3
import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

from kubeloop.storage import RetryPolicy
from kubeloop.storage.retry import Failure, RetriesExhausted, call_with_retries, classify


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - deterministic jitter, not cryptography


def s3_error(code: str, status: int) -> S3Error:
    """A real S3Error as minio builds it from a server's XML answer."""
    return S3Error(
        response=urllib3.HTTPResponse(status=status),
        code=code,
        message=f"{code} happened",
        resource="/bucket/key",
        request_id="req",
        host_id="host",
        bucket_name="bucket",
        object_name="key",
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("ServiceUnavailable", 503),
        ("InternalError", 500),
        ("RequestTimeout", 400),  # a 400 that still deserves a retry
        ("TooManyRequests", 429),
        ("SomethingNew", 502),  # any 5xx
        ("SomethingElse", 429),
    ],
)
def test_transient_s3_errors_are_retried(code: str, status: int) -> None:
    assert classify(s3_error(code, status)) is Failure.SERVER


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("SignatureDoesNotMatch", 403),
        ("InvalidAccessKeyId", 403),
        ("NoSuchBucket", 404),
        ("NoSuchKey", 404),
        ("BadDigest", 400),
        ("InvalidArgument", 400),
        ("PreconditionFailed", 412),
        ("EntityTooLarge", 400),
    ],
)
def test_client_errors_are_never_retried(code: str, status: int) -> None:
    assert classify(s3_error(code, status)) is Failure.PERMANENT


@pytest.mark.parametrize(
    "exc",
    [
        urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
        urllib3.exceptions.ConnectTimeoutError("connect timed out"),
        urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"),  # type: ignore[arg-type]
        urllib3.exceptions.ProtocolError("Connection aborted", ConnectionResetError()),
        urllib3.exceptions.MaxRetryError(
            None,  # type: ignore[arg-type]
            "/",
            urllib3.exceptions.NewConnectionError(None, "refused"),  # type: ignore[arg-type]
        ),
        ConnectionResetError("reset by peer"),
        BrokenPipeError("broken pipe"),
        TimeoutError("timed out"),
    ],
    ids=type,
)
def test_network_errors_are_retried(exc: Exception) -> None:
    assert classify(exc) is Failure.NETWORK


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (ServerError("server failed with HTTP status code 503", 503), Failure.SERVER),
        (ServerError("server failed with HTTP status code 418", 418), Failure.PERMANENT),
        (InvalidResponseError(502, "text/html", "<html>Bad gateway</html>"), Failure.SERVER),
        (InvalidResponseError(400, "text/html", "<html>no</html>"), Failure.PERMANENT),
        (urllib3.exceptions.SSLError("certificate verify failed"), Failure.PERMANENT),
        (FileNotFoundError("no such file"), Failure.PERMANENT),  # local, not network
        (PermissionError("denied"), Failure.PERMANENT),
        (ValueError("bug"), Failure.PERMANENT),
        (TypeError("bug"), Failure.PERMANENT),
    ],
)
def test_other_errors(exc: Exception, expected: Failure) -> None:
    assert classify(exc) is expected


class Flaky:
    """Fails with the given errors, then returns 'done'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def run(operation: Flaky, attempts: int = 4) -> tuple[str, list[float]]:
    sleeps: list[float] = []
    result = call_with_retries(
        operation,
        policy=RetryPolicy(attempts=attempts, base_delay=0.1, max_delay=1.0),
        rng=seeded(7),
        sleep=sleeps.append,
        what="test",
    )
    return result, sleeps


def test_transient_failures_are_retried_until_success() -> None:
    operation = Flaky(ConnectionResetError(), s3_error("SlowDown", 503))
    result, sleeps = run(operation)
    assert result == "done"
    assert operation.calls == 3
    assert len(sleeps) == 2


def test_permanent_failure_is_raised_at_once() -> None:
    operation = Flaky(s3_error("AccessDenied", 403))
    with pytest.raises(S3Error):
        run(operation)
    assert operation.calls == 1


def test_permanent_failure_after_a_transient_one_stops_retrying() -> None:
    operation = Flaky(ConnectionResetError(), s3_error("NoSuchKey", 404), ConnectionResetError())
    with pytest.raises(S3Error, match="NoSuchKey"):
        run(operation)
    assert operation.calls == 2


def test_exhausted_attempts_report_the_last_failure() -> None:
    operation = Flaky(*[ConnectionRefusedError(f"refused {i}") for i in range(10)])
    with pytest.raises(RetriesExhausted) as caught:
        run(operation, attempts=3)
    assert operation.calls == 3
    assert caught.value.attempts == 3
    assert caught.value.failure is Failure.NETWORK
    assert "refused 2" in str(caught.value.last)


def test_single_attempt_policy_never_sleeps() -> None:
    operation = Flaky(ConnectionResetError())
    sleeps: list[float] = []
    with pytest.raises(RetriesExhausted):
        call_with_retries(
            operation,
            policy=RetryPolicy(attempts=1),
            rng=seeded(1),
            sleep=sleeps.append,
            what="test",
        )
    assert sleeps == []


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.1, max_delay=1.0)
    rng = seeded(42)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 100  # jittered, not constant


def test_zero_base_delay_means_no_waiting() -> None:
    policy = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)
    assert policy.delay(5, seeded(0)) == 0.0


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"base_delay": -1.0}])
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
