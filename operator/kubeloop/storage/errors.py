"""The errors of ``kubeloop.storage``: one small typed hierarchy under :class:`StorageError`.

Callers (controllers, the trainer, the inference server) decide what to do from the *type* of an
error: a missing bucket is a configuration problem, a digest mismatch means an artifact must
never be served, an unreachable endpoint is worth a retry later. So the ``minio``/``urllib3``
exceptions never escape this package; they are translated into these types in ``client.py``
and chained as ``__cause__`` for debugging.

Messages name the endpoint, bucket, key and access key ID so an operator can act on them, and
never contain a secret key: nothing here ever receives one.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every error raised by ``kubeloop.storage``."""


class InvalidLocation(StorageError, ValueError):
    """A bucket name, object key, ``s3://`` URI or Kubernetes name that is not acceptable."""


class InvalidDigest(StorageError, ValueError):
    """A sha256 digest that is not 64 hexadecimal characters."""


class BucketNotFound(StorageError):
    """The bucket does not exist at the endpoint."""

    def __init__(self, bucket: str, endpoint: str) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        super().__init__(f"bucket {bucket!r} does not exist at {endpoint}")


class ObjectNotFound(StorageError):
    """The object does not exist (the bucket does)."""

    def __init__(self, uri: str, endpoint: str) -> None:
        self.uri = uri
        self.endpoint = endpoint
        super().__init__(f"object {uri} does not exist at {endpoint}")


class AccessDenied(StorageError):
    """The server refused the request: missing permission, or credentials it does not accept."""

    def __init__(self, endpoint: str, access_key: str, action: str, code: str) -> None:
        self.endpoint = endpoint
        self.access_key = access_key
        self.action = action
        self.code = code
        super().__init__(self._describe())

    def _describe(self) -> str:
        return (
            f"access denied ({self.code}) at {self.endpoint}: access key {self.access_key!r} "
            f"may not {self.action}"
        )


class InvalidCredentials(AccessDenied):
    """The server does not know the access key, or the signature (secret key) is wrong."""

    def _describe(self) -> str:
        return (
            f"{self.endpoint} rejected the credentials of access key {self.access_key!r} "
            f"({self.code}) while trying to {self.action}: check the access key and secret key"
        )


class EndpointUnreachable(StorageError):
    """No connection to the endpoint could be made (or kept), even after retries."""

    def __init__(self, endpoint: str, attempts: int, reason: str) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"S3 endpoint {endpoint} is unreachable after {attempts} attempt(s): {reason}"
        )


class StorageUnavailable(StorageError):
    """The endpoint answered but kept failing with transient errors (5xx, SlowDown, ...)."""

    def __init__(self, endpoint: str, attempts: int, reason: str) -> None:
        self.endpoint = endpoint
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"S3 endpoint {endpoint} kept failing after {attempts} attempt(s): {reason}"
        )


class DigestMismatch(StorageError):
    """The sha256 of the bytes differs from the digest they were supposed to have."""

    def __init__(self, uri: str, expected: str, actual: str, detail: str = "") -> None:
        self.uri = uri
        self.expected = expected
        self.actual = actual
        super().__init__(f"sha256 mismatch for {uri}: expected {expected}, got {actual}{detail}")
