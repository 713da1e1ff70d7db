"""Which failures are worth retrying, and exponential backoff with jitter for those that are.

Only *transient* failures are retried: the connection could not be made or broke, the server
said 5xx, 429, ``SlowDown`` or ``RequestTimeout``. A 4xx answer (wrong credentials, access
denied, missing bucket or key, bad request) is the same on every attempt, so retrying it would
only delay a clear error. The HTTP pool under the minio client is built with urllib3 retries
off, so this module is the single place that decides.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import urllib3.exceptions
from minio.error import InvalidResponseError, S3Error, ServerError

T = TypeVar("T")

_log = logging.getLogger(__name__)

# S3 error codes that describe the server's state rather than the request. RequestTimeout is a
# 400 on AWS (the client was too slow sending the body) and yet the right answer is a retry.
TRANSIENT_S3_CODES = frozenset(
    {
        "InternalError",
        "OperationAborted",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "XMinioServerNotInitialized",
        "XMinioReadQuorum",
        "XMinioWriteQuorum",
    }
)
_TOO_MANY_REQUESTS = 429
_FIRST_SERVER_ERROR = 500


class Failure(enum.Enum):
    """How a failed attempt is treated."""

    NETWORK = "network"  # no (complete) conversation with the server: retry
    SERVER = "server"  # the server answered with a transient error: retry
    PERMANENT = "permanent"  # retrying cannot help


def classify(exc: BaseException) -> Failure:
    """Tell transient failures (worth a retry) from permanent ones."""
    if isinstance(exc, S3Error):
        status = exc.response.status if exc.response is not None else 0
        if exc.code in TRANSIENT_S3_CODES or _is_transient_status(status):
            return Failure.SERVER
        return Failure.PERMANENT
    if isinstance(exc, ServerError):
        return Failure.SERVER if _is_transient_status(exc.status_code) else Failure.PERMANENT
    if isinstance(exc, InvalidResponseError):
        # A non-XML answer: typically an HTML 502/503 page of a proxy or load balancer.
        # minio keeps the status only in a private attribute.
        status = getattr(exc, "_code", 0)
        return Failure.SERVER if _is_transient_status(status) else Failure.PERMANENT
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return classify(exc.reason)
    if isinstance(exc, urllib3.exceptions.SSLError):
        return Failure.PERMANENT  # certificate problems do not fix themselves
    if isinstance(
        exc,
        urllib3.exceptions.TimeoutError  # connect/read timeouts, refused, DNS
        | urllib3.exceptions.ProtocolError  # connection reset, truncated body
        | urllib3.exceptions.IncompleteRead
        | urllib3.exceptions.ProxyError
        | ConnectionError  # raw socket errors; local file errors are other OSErrors
        | TimeoutError,
    ):
        return Failure.NETWORK
    return Failure.PERMANENT


def _is_transient_status(status: int) -> bool:
    return status == _TOO_MANY_REQUESTS or status >= _FIRST_SERVER_ERROR


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    The n-th retry waits a random time in ``[d/2, d]`` with ``d = min(max_delay,
    base_delay * 2**(n-1))``: exponential so an overloaded server gets room, jittered so many
    clients that failed together do not come back together.
    """

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return rng.uniform(ceiling / 2, ceiling)


class RetriesExhausted(Exception):
    """The last transient failure, after ``attempts`` attempts. Internal to the package."""

    def __init__(self, last: BaseException, failure: Failure, attempts: int) -> None:
        super().__init__(str(last))
        self.last = last
        self.failure = failure
        self.attempts = attempts


def call_with_retries(
    operation: Callable[[], T],
    *,
    policy: RetryPolicy,
    rng: random.Random,
    sleep: Callable[[float], None],
    what: str,
) -> T:
    """Call ``operation`` until it succeeds, a permanent error occurs, or attempts run out.

    ``operation`` must be safe to call again after a failure (restart its input stream, for
    instance). Permanent errors propagate unchanged; when the attempts are used up on transient
    errors, :class:`RetriesExhausted` is raised from the last one.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except Exception as exc:
            failure = classify(exc)
            if failure is Failure.PERMANENT:
                raise
            if attempt == policy.attempts:
                raise RetriesExhausted(exc, failure, attempt) from exc
            delay = policy.delay(attempt, rng)
            _log.warning(
                "%s failed (attempt %d of %d, %s error: %s); retrying in %.2fs",
                what,
                attempt,
                policy.attempts,
                failure.value,
                _describe(exc),
                delay,
            )
            sleep(delay)
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _describe(exc: BaseException) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
