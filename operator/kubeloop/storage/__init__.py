"""Object storage for kubeloop: S3 over the ``minio`` SDK, with verified digests and typed errors.

A leaf of the package graph (it imports nothing else from kubeloop), used by the operator and by
every data-plane component alike. The pieces:

* ``uri`` -- ``s3://bucket/key`` values and bucket/key validation;
* ``layout`` -- the only place keys are built from Kubernetes names and digests;
* ``settings`` -- ``S3Settings`` (pydantic-settings, ``KUBELOOP_S3_*``);
* ``client`` -- ``ObjectStore``: streaming upload/download with sha256, retries, typed errors;
* ``retry``, ``streams`` -- what is retried and how; restartable upload sources;
* ``errors`` -- ``StorageError`` and its subclasses.
"""

from kubeloop.storage.client import (
    SHA256_METADATA,
    DownloadResult,
    Location,
    ObjectInfo,
    ObjectStore,
    UploadResult,
)
from kubeloop.storage.errors import (
    AccessDenied,
    BucketNotFound,
    DigestMismatch,
    EndpointUnreachable,
    InvalidCredentials,
    InvalidDigest,
    InvalidLocation,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from kubeloop.storage.layout import (
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
from kubeloop.storage.retry import RetryPolicy
from kubeloop.storage.settings import S3Settings
from kubeloop.storage.uri import S3Uri, normalise_key, validate_bucket_name

__all__ = [
    "SHA256_METADATA",
    "AccessDenied",
    "BucketNotFound",
    "DigestMismatch",
    "DownloadResult",
    "EndpointUnreachable",
    "InvalidCredentials",
    "InvalidDigest",
    "InvalidLocation",
    "Location",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "RetryPolicy",
    "S3Settings",
    "S3Uri",
    "StorageError",
    "StorageUnavailable",
    "UploadResult",
    "content_addressed_key",
    "dataset_snapshot_key",
    "file_key",
    "model_artifact_prefix",
    "normalise_key",
    "parse_sha256",
    "prediction_log_prefix",
    "training_trial_prefix",
    "validate_bucket_name",
    "validate_dns1123_label",
    "validate_dns1123_subdomain",
]
