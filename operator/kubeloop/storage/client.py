"""``ObjectStore``: kubeloop's S3 client (streaming, sha256-verified, retried, typed errors).

Everything kubeloop keeps in object storage (dataset snapshots, trial outputs, model artifacts,
prediction logs) goes through this class, over the ``minio`` SDK, so the rules live in one place:

* every upload is hashed while it streams; the sha256 is returned and stored as object metadata
  (``x-amz-meta-sha256``) so any later reader can check the bytes (an ETag is not a checksum);
* every download is hashed while it streams and checked against the caller's digest, or else
  against the stored one; a file download appears at its path only once it is verified;
* transient failures are retried with backoff (``retry.py``); a retried upload restarts its
  stream from the beginning (``streams.py``), a retried download resumes where it stopped,
  pinned to the same object version with ``If-Match``;
* ``minio``/``urllib3`` exceptions are translated into the types of ``errors.py``.

Locations are :class:`~kubeloop.storage.uri.S3Uri` values, ``"s3://bucket/key"`` strings, or
plain key strings meaning a key in the configured bucket. Plain keys cannot be confused with
URIs: ``s3://`` would be an empty segment, which keys may not have.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeAlias, TypeVar

import urllib3
import urllib3.exceptions
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.error import InvalidResponseError, MinioException, S3Error

from kubeloop.storage.errors import (
    AccessDenied,
    BucketNotFound,
    DigestMismatch,
    EndpointUnreachable,
    InvalidCredentials,
    InvalidLocation,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from kubeloop.storage.layout import content_addressed_key, parse_sha256
from kubeloop.storage.retry import (
    Failure,
    RetriesExhausted,
    RetryPolicy,
    call_with_retries,
)
from kubeloop.storage.settings import S3Settings
from kubeloop.storage.streams import (
    CHUNK_SIZE,
    HashingReader,
    Payload,
    UploadSource,
    payload_from,
    spool,
)
from kubeloop.storage.uri import SCHEME, S3Uri, validate_bucket_name

T = TypeVar("T")

Location: TypeAlias = S3Uri | str
"""An ``S3Uri``, an ``s3://bucket/key`` string, or a key in the configured bucket."""

SHA256_METADATA = "sha256"  # stored as the x-amz-meta-sha256 header
_METADATA_HEADER_PREFIX = "x-amz-meta-"
_METADATA_KEY_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_METADATA_VALUE_RE = re.compile(r"[\x20-\x7e]{0,1024}")  # printable ASCII: no header injection
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidSecurity",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem"})
_MISSING_OBJECT_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NotFound"})
_ALREADY_EXISTS_CODES = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})
_MAX_REASON_CHARS = 300
_CHECKSUM_HEADER = "x-amz-checksum-sha256"
_BAD_DIGEST_CODES = frozenset({"BadDigest", "XAmzContentSHA256Mismatch", "InvalidDigest"})

_log = logging.getLogger(__name__)


class Writable(Protocol):
    """A binary sink: ``write(bytes)``."""

    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class UploadResult:
    """What was stored: where, how many bytes, their sha256, and the server's ETag."""

    uri: S3Uri
    size: int
    sha256: str
    etag: str
    uploaded: bool = True  # False when a content-addressed object was already present


@dataclass(frozen=True)
class DownloadResult:
    """What was read: from where, how many bytes, and their (verified) sha256."""

    uri: S3Uri
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectInfo:
    """An object's facts. ``sha256`` comes from its metadata (None if absent or from a listing)."""

    uri: S3Uri
    size: int
    etag: str
    sha256: str | None = None
    content_type: str | None = None
    last_modified: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _DownloadProgress:
    hasher: Any = field(default_factory=hashlib.sha256)
    written: int = 0
    total: int | None = None
    etag: str | None = None
    stored_sha256: str | None = None


class ObjectStore:
    """Streaming, verified, retried access to one S3 endpoint (and its default bucket).

    Thread-safe: one instance can serve a thread pool. Construct it from :class:`S3Settings`;
    ``sleep`` and ``rng`` exist so tests can make backoff instant and deterministic, and
    ``spool_dir`` is where one-shot upload streams keep their replay copy (the system temporary
    directory by default).
    """

    def __init__(
        self,
        settings: S3Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._policy = RetryPolicy(
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
        )
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._spool_dir = spool_dir
        # urllib3's own retries are off: retry.py decides, and must see every failure.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
            maxsize=settings.max_connections,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(settings.ca_bundle) if settings.ca_bundle else None,
            retries=False,
        )
        self._client = Minio(
            settings.host,
            access_key=settings.access_key,
            secret_key=settings.secret_key.get_secret_value(),
            secure=settings.tls,
            region=settings.region,
            http_client=self._http,
        )

    def __repr__(self) -> str:
        return (
            f"ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r}, "
            f"access_key={self._settings.access_key!r})"
        )

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()

    @property
    def endpoint(self) -> str:
        """``http(s)://host:port`` of the server."""
        return self._settings.endpoint_url

    @property
    def bucket(self) -> str:
        """The configured (default) bucket."""
        return self._settings.bucket

    def uri(self, location: Location) -> S3Uri:
        """Resolve a location (plain keys are in the configured bucket) into an ``S3Uri``."""
        if isinstance(location, S3Uri):
            return location
        if isinstance(location, str) and location.startswith(SCHEME):
            return S3Uri.parse(location)
        return S3Uri(self.bucket, location)

    # -- buckets -----------------------------------------------------------------------------

    def ensure_bucket(self, bucket: str | None = None) -> bool:
        """Create the bucket (the configured one by default) unless it exists; True if created."""
        name = validate_bucket_name(bucket) if bucket is not None else self.bucket
        if self._bucket_exists(name):
            return False

        def create() -> bool:
            try:
                self._client.make_bucket(name, location=self._settings.region)
            except S3Error as exc:
                if exc.code in _ALREADY_EXISTS_CODES:  # someone else was faster
                    return False
                raise
            return True

        created = self._run(f"create bucket {name!r}", name, None, create)
        if created:
            _log.info("created bucket %r at %s", name, self.endpoint)
        return created

    def check(self) -> None:
        """Fail with a typed error unless the endpoint answers, accepts the credentials and has
        the configured bucket. Meant for start-up, so misconfiguration is reported at once."""
        if not self._bucket_exists(self.bucket):
            raise BucketNotFound(self.bucket, self.endpoint)

    # -- objects -----------------------------------------------------------------------------

    def upload(
        self,
        source: UploadSource,
        destination: Location,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> UploadResult:
        """Stream ``source`` to ``destination`` and return its size and sha256.

        ``source`` may be bytes, a path (``os.PathLike``), a binary file object (seekable or
        not) or an iterable of byte chunks; its length need not be known. Anything larger than
        one part goes up as a multipart upload of ``settings.part_size`` parts, so memory stays
        bounded. Retries restart the stream from the beginning (one-shot streams are replayed
        from a temporary copy made while uploading). A path or seekable stream whose bytes
        change between hashing and sending is detected: the object is removed again and
        :class:`DigestMismatch` raised.
        """
        uri = self._object_uri(destination)
        user_metadata = _check_metadata(metadata)
        payload = payload_from(
            source, small_size=self._settings.part_size, spool_dir=self._spool_dir
        )
        try:
            return self._upload_payload(payload, uri, content_type, user_metadata)
        finally:
            payload.close()

    def put_content_addressed(
        self,
        prefix: Location,
        data: UploadSource,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> UploadResult:
        """Store ``data`` at ``<prefix>/<sha256>``; skip the upload when it is already there.

        Idempotent and safe under concurrency: the same bytes always land on the same key. An
        existing object is trusted when its size matches and its stored digest (if any) agrees;
        otherwise it is treated as damaged and replaced. ``uploaded`` in the result says which
        happened. One-shot streams are first copied to a temporary file to learn their digest.
        """
        base = self.uri(prefix)
        user_metadata = _check_metadata(metadata)
        payload = spool(
            payload_from(data, small_size=self._settings.part_size, spool_dir=self._spool_dir),
            self._spool_dir,
        )
        try:
            digest = payload.sha256
            if digest is None or payload.size is None:  # pragma: no cover - spool() guarantees
                raise AssertionError("a spooled payload knows its digest and size")
            uri = S3Uri(base.bucket, content_addressed_key(base.key, digest))
            existing = self._stat_or_none(uri)
            if (
                existing is not None
                and existing.size == payload.size
                and existing.sha256 in {None, digest}
            ):
                return UploadResult(uri, existing.size, digest, existing.etag, uploaded=False)
            if existing is not None:
                _log.warning(
                    "replacing %s: its size %d or stored sha256 %s does not match its key",
                    uri,
                    existing.size,
                    existing.sha256,
                )
            return self._upload_payload(payload, uri, content_type, user_metadata)
        finally:
            payload.close()

    def download(
        self,
        source: Location,
        destination: os.PathLike[str] | Writable,
        *,
        expected_sha256: str | None = None,
    ) -> DownloadResult:
        """Stream an object to a path or a binary writer, verifying its sha256 on the way.

        The digest is checked against ``expected_sha256`` when given, otherwise against the
        object's ``x-amz-meta-sha256`` when it has one; a difference raises
        :class:`DigestMismatch`. A path is written through a temporary file in the same
        directory and renamed into place only after verification, so it never holds partial or
        unverified data. A writer receives bytes as they arrive: on any error the caller must
        discard what it got.
        """
        if isinstance(destination, str | bytes):
            raise TypeError("download destination: pass a Path for a file, or a binary writer")
        uri = self._object_uri(source)
        expected = parse_sha256(expected_sha256) if expected_sha256 is not None else None
        if not isinstance(destination, os.PathLike):
            return self._download_to(uri, destination, expected)
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
            dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False
        )
        try:
            with partial:
                result = self._download_to(uri, partial, expected)
            Path(partial.name).replace(path)
        except BaseException:
            Path(partial.name).unlink(missing_ok=True)
            raise
        return result

    def download_verified(
        self, source: Location, destination: os.PathLike[str] | Writable, expected_sha256: str
    ) -> DownloadResult:
        """:meth:`download` with a mandatory digest: what serving an artifact requires."""
        return self.download(source, destination, expected_sha256=expected_sha256)

    def stat(self, location: Location) -> ObjectInfo:
        """Size, ETag, stored sha256 and metadata of an object."""
        uri = self._object_uri(location)
        try:
            found = self._run(
                f"read {uri}",
                uri.bucket,
                uri,
                lambda: self._client.stat_object(uri.bucket, uri.key),
            )
        except ObjectNotFound:
            # A HEAD response has no body, so a missing bucket also looks like a missing key.
            if not self._bucket_exists(uri.bucket):
                raise BucketNotFound(uri.bucket, self.endpoint) from None
            raise
        return _object_info(uri, found.size, found.etag, found.metadata, found.last_modified)

    def exists(self, location: Location) -> bool:
        """Whether the object exists. A missing bucket is an error, not ``False``."""
        return self._stat_or_none(self._object_uri(location)) is not None

    def list(self, prefix: Location | None = None) -> Iterator[ObjectInfo]:
        """All objects below ``prefix`` (the whole configured bucket if None), in key order.

        Listings carry no metadata, so ``sha256`` is None here: use :meth:`stat` for it. A
        listing interrupted by a transient error resumes after the last key it returned.
        Objects whose keys kubeloop would not accept (``a//b``, ``../x``) are skipped with a
        warning rather than handed to callers that might turn them into paths.
        """
        base = self.uri(prefix) if prefix is not None else None
        bucket = base.bucket if base is not None else self.bucket
        key_prefix = base.key if base is not None else None
        shown = str(base) if base is not None else f"{SCHEME}{bucket}/"
        pages: list[Iterator[Any]] = []
        last_key: list[str] = []

        def next_object() -> Any:
            if not pages:
                pages.append(
                    iter(
                        self._client.list_objects(
                            bucket,
                            prefix=key_prefix,
                            recursive=True,
                            start_after=last_key[-1] if last_key else None,
                        )
                    )
                )
            try:
                return next(pages[0], None)
            except BaseException:
                pages.clear()  # start a fresh listing after the last key on retry
                raise

        while (found := self._run(f"list {shown}", bucket, None, next_object)) is not None:
            name: str = found.object_name
            last_key[:] = [name]
            try:
                uri = S3Uri(bucket, name)
            except InvalidLocation as exc:
                _log.warning("skipping object with an unacceptable key in %s: %s", shown, exc)
                continue
            yield _object_info(uri, found.size, found.etag, None, found.last_modified)

    def delete(self, location: Location) -> None:
        """Delete an object. Deleting a missing object is not an error (S3 semantics)."""
        uri = self._object_uri(location)
        self._run(
            f"delete {uri}",
            uri.bucket,
            uri,
            lambda: self._client.remove_object(uri.bucket, uri.key),
        )

    # -- internals ---------------------------------------------------------------------------

    def _object_uri(self, location: Location) -> S3Uri:
        uri = self.uri(location)
        if uri.is_prefix:
            raise InvalidLocation(f"{uri} names a prefix (ends with '/'), not an object")
        return uri

    def _upload_payload(
        self, payload: Payload, uri: S3Uri, content_type: str, user_metadata: dict[str, str]
    ) -> UploadResult:
        headers = dict(user_metadata)
        if payload.sha256 is not None:
            headers[SHA256_METADATA] = payload.sha256
            if payload.size is not None and payload.size <= self._settings.part_size:
                # Sent in one request: let the server verify the bytes too. (The signed
                # x-amz-content-sha256 of plain HTTP is not checked by every server, SeaweedFS
                # for one; this header is. minio-py cannot add it to multipart parts.)
                headers[_CHECKSUM_HEADER] = base64.b64encode(bytes.fromhex(payload.sha256)).decode()

        def put() -> tuple[str, str, int]:
            with payload.attempt() as raw:
                reader = HashingReader(raw)
                written = self._client.put_object(
                    uri.bucket,
                    uri.key,
                    reader,  # type: ignore[arg-type]  # minio only calls read()
                    length=payload.size if payload.size is not None else -1,
                    part_size=self._settings.part_size,
                    content_type=content_type,
                    metadata=headers,  # type: ignore[arg-type]  # minio's DictType is invariant
                    num_parallel_uploads=self._settings.parallel_uploads,
                )
                return str(written.etag), reader.sha256, reader.size

        etag, sha256, size = self._run(f"write {uri}", uri.bucket, uri, put)
        if payload.sha256 is None:
            # A one-shot stream's digest is known only now: attach it with a server-side copy
            # onto itself (no data goes over the wire again).
            etag = self._attach_sha256(uri, sha256, content_type, user_metadata)
        elif sha256 != payload.sha256:
            self.delete(uri)
            raise DigestMismatch(
                str(uri),
                payload.sha256,
                sha256,
                detail=" (the source changed while it was uploaded; the object was removed)",
            )
        return UploadResult(uri, size, sha256, etag)

    def _attach_sha256(
        self, uri: S3Uri, sha256: str, content_type: str, user_metadata: dict[str, str]
    ) -> str:
        replacement = {**user_metadata, SHA256_METADATA: sha256, "Content-Type": content_type}

        def copy() -> str:
            result = self._client.copy_object(
                uri.bucket,
                uri.key,
                CopySource(uri.bucket, uri.key),
                metadata=replacement,  # type: ignore[arg-type]
                metadata_directive=REPLACE,
            )
            return str(result.etag)

        return self._run(f"write {uri}", uri.bucket, uri, copy)

    def _download_to(self, uri: S3Uri, sink: Writable, expected: str | None) -> DownloadResult:
        progress = _DownloadProgress()

        def fetch() -> None:
            if progress.total is not None and progress.written >= progress.total:
                return  # everything arrived before the failure
            # A resumed read must continue the same object, not a newer one.
            pinned = progress.written and progress.etag
            headers = {"If-Match": f'"{progress.etag}"'} if pinned else None
            response = self._client.get_object(
                uri.bucket,
                uri.key,
                offset=progress.written,
                request_headers=headers,  # type: ignore[arg-type]
            )
            try:
                if progress.total is None:
                    progress.total = int(response.headers.get("content-length", "-1"))
                    progress.etag = response.headers.get("etag", "").strip('"') or None
                    progress.stored_sha256 = response.headers.get(
                        _METADATA_HEADER_PREFIX + SHA256_METADATA
                    )
                # decode_content=False: hash the stored bytes, even if they are gzip-encoded.
                for chunk in response.stream(CHUNK_SIZE, decode_content=False):
                    sink.write(chunk)
                    progress.hasher.update(chunk)
                    progress.written += len(chunk)
            finally:
                response.close()
                response.release_conn()

        self._run(f"read {uri}", uri.bucket, uri, fetch)
        actual: str = progress.hasher.hexdigest()
        if expected is not None:
            if actual != expected:
                raise DigestMismatch(str(uri), expected, actual)
        elif progress.stored_sha256 is not None:
            stored = _valid_sha256_or_none(progress.stored_sha256)
            if stored is None:
                _log.warning("ignoring malformed x-amz-meta-sha256 on %s", uri)
            elif actual != stored:
                raise DigestMismatch(
                    str(uri), stored, actual, detail=" (expected: the object's x-amz-meta-sha256)"
                )
        return DownloadResult(uri, progress.written, actual)

    def _stat_or_none(self, uri: S3Uri) -> ObjectInfo | None:
        try:
            return self.stat(uri)
        except ObjectNotFound:
            return None

    def _bucket_exists(self, bucket: str) -> bool:
        exists: bool = self._run(
            f"check bucket {bucket!r}", bucket, None, lambda: self._client.bucket_exists(bucket)
        )
        return exists

    def _run(self, action: str, bucket: str, uri: S3Uri | None, operation: Callable[[], T]) -> T:
        """Run one operation with retries; translate what escapes into ``StorageError``s."""
        try:
            return call_with_retries(
                operation, policy=self._policy, rng=self._rng, sleep=self._sleep, what=action
            )
        except RetriesExhausted as exhausted:
            reason = _reason(exhausted.last)
            if exhausted.failure is Failure.NETWORK:
                raise EndpointUnreachable(self.endpoint, exhausted.attempts, reason) from (
                    exhausted.last
                )
            raise StorageUnavailable(self.endpoint, exhausted.attempts, reason) from exhausted.last
        except S3Error as exc:
            raise self._translate_s3_error(exc, action, bucket, uri) from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise StorageError(f"cannot {action} at {self.endpoint}: {_reason(exc)}") from exc

    def _translate_s3_error(
        self, exc: S3Error, action: str, bucket: str, uri: S3Uri | None
    ) -> StorageError:
        code = exc.code or "UnknownError"
        if code == "NoSuchBucket":
            return BucketNotFound(bucket, self.endpoint)
        if code in _MISSING_OBJECT_CODES and uri is not None:
            return ObjectNotFound(str(uri), self.endpoint)
        if code in _CREDENTIAL_CODES:
            return InvalidCredentials(self.endpoint, self._settings.access_key, action, code)
        if code in _DENIED_CODES:
            # Answers to HEAD requests have no body, so a bad signature shows up as a bare 403;
            # one signed GET tells the two apart.
            code = self._credential_problem() or code
            error_type = InvalidCredentials if code in _CREDENTIAL_CODES else AccessDenied
            return error_type(self.endpoint, self._settings.access_key, action, code)
        if code in _BAD_DIGEST_CODES and uri is not None:
            return StorageError(
                f"{self.endpoint} received other bytes for {uri} than were hashed ({code}): "
                "the source changed while it was uploaded, or data was corrupted in transit"
            )
        if code == "PreconditionFailed" and uri is not None:
            return StorageError(f"{uri} changed while it was being read; read it again")
        return StorageError(
            f"cannot {action} at {self.endpoint}: {code}: {_truncate(exc.message or '')}"
        )

    def _credential_problem(self) -> str | None:
        try:
            self._client.list_buckets()
        except S3Error as exc:
            return exc.code if exc.code in _CREDENTIAL_CODES else None
        except (MinioException, urllib3.exceptions.HTTPError, OSError):
            return None
        return None


def _object_info(
    uri: S3Uri,
    size: int | None,
    etag: str | None,
    headers: Mapping[str, str] | None,
    last_modified: datetime | None,
) -> ObjectInfo:
    metadata: dict[str, str] = {}
    content_type = None
    for name, value in (headers or {}).items():
        lowered = name.lower()
        if lowered.startswith(_METADATA_HEADER_PREFIX):
            metadata[lowered[len(_METADATA_HEADER_PREFIX) :]] = value
        elif lowered == "content-type":
            content_type = value
    return ObjectInfo(
        uri=uri,
        size=size or 0,
        etag=(etag or "").strip('"'),
        sha256=_valid_sha256_or_none(metadata.get(SHA256_METADATA)),
        content_type=content_type,
        last_modified=last_modified,
        metadata=metadata,
    )


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        lowered = key.lower()
        if not _METADATA_KEY_RE.fullmatch(lowered):
            raise ValueError(f"invalid metadata key {key!r}: use letters, digits and '-'")
        if lowered == SHA256_METADATA:
            raise ValueError("metadata key 'sha256' is reserved: the store sets it")
        if not isinstance(value, str) or not _METADATA_VALUE_RE.fullmatch(value):
            raise ValueError(f"invalid value for metadata key {key!r}: printable ASCII only")
        checked[lowered] = value
    return checked


def _valid_sha256_or_none(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_sha256(value)
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, S3Error):
        return f"{exc.code}: {_truncate(exc.message or '')}"
    if isinstance(exc, InvalidResponseError):
        return f"unexpected non-S3 response: {_truncate(str(exc))}"
    return f"{type(exc).__name__}: {_truncate(str(exc))}"


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 3] + "..."
