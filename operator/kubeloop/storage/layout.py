"""Where kubeloop keeps things in its bucket: the only place object keys are built from names.

Keys are assembled exclusively from values validated here: Kubernetes namespaces (DNS-1123
labels), resource names (DNS-1123 subdomains), sha256 digests (64 hex characters) and small
integers. None of these can contain ``/``, ``..`` or anything else that could move a key out
of its place, so a hostile resource name cannot read or overwrite another tenant's data.
Every key returned is also passed through :func:`~kubeloop.storage.uri.normalise_key` as a
second line of defence.

Layout (prefixes end in ``/``)::

    datasets/<namespace>/<dataset>/<sha256>/          immutable dataset snapshot
    runs/<namespace>/<trainingrun>/trials/<index>/    one trial's outputs
    models/<namespace>/<model>/v<version>/            a ModelVersion's artifacts
    predictions/<namespace>/<deployment>/             prediction logs of a Deployment
"""

from __future__ import annotations

import re

from kubeloop.storage.errors import InvalidDigest, InvalidLocation
from kubeloop.storage.uri import normalise_key

_DNS1123_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL_MAX = 63
_DNS1123_SUBDOMAIN_MAX = 253
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_DIGEST_ALGORITHM_PREFIX = "sha256:"
# File names inside a prefix (model.onnx, metrics.json, part-00001.parquet): deliberately
# narrower than what S3 allows, because these also become local file names.
_FILE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")


def validate_dns1123_label(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a DNS-1123 label (a Kubernetes namespace, for instance)."""
    if (
        not isinstance(value, str)
        or len(value) > _DNS1123_LABEL_MAX
        or not _DNS1123_LABEL_RE.fullmatch(value)
    ):
        raise InvalidLocation(
            f"invalid {what} {_show(value)}: must be a DNS-1123 label (at most 63 lowercase "
            "letters, digits or '-', starting and ending with a letter or digit)"
        )
    return value


def validate_dns1123_subdomain(value: str, what: str = "name") -> str:
    """Return ``value`` if it is a DNS-1123 subdomain (the rule for most Kubernetes names)."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > _DNS1123_SUBDOMAIN_MAX
        or not all(_DNS1123_LABEL_RE.fullmatch(label) for label in value.split("."))
    ):
        raise InvalidLocation(
            f"invalid {what} {_show(value)}: must be a DNS-1123 subdomain (at most 253 "
            "lowercase letters, digits, '-' or '.', each dot-separated part starting and "
            "ending with a letter or digit)"
        )
    return value


def parse_sha256(digest: str) -> str:
    """Return the canonical form (64 lowercase hex characters) of a sha256 digest.

    Accepts the bare hex form and the ``sha256:<hex>`` form used in resource status.
    """
    if not isinstance(digest, str):
        raise InvalidDigest(f"sha256 digest must be a string, not {type(digest).__name__}")
    candidate = digest.removeprefix(_DIGEST_ALGORITHM_PREFIX).lower()
    if not _SHA256_RE.fullmatch(candidate):
        raise InvalidDigest(
            f"invalid sha256 digest {_show(digest)}: expected 64 hexadecimal characters"
        )
    return candidate


def validate_file_name(name: str) -> str:
    """Return ``name`` if it is a plain file name usable both as a key segment and locally."""
    if not isinstance(name, str) or not _FILE_NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise InvalidLocation(
            f"invalid file name {_show(name)}: use letters, digits, '.', '_' or '-' "
            "(at most 255, not starting with '.' or '-')"
        )
    return name


def dataset_snapshot_key(namespace: str, name: str, digest: str) -> str:
    """``datasets/<namespace>/<name>/<sha256>/``: the immutable snapshot of a Dataset version."""
    namespace = validate_dns1123_label(namespace, "namespace")
    name = validate_dns1123_subdomain(name, "Dataset name")
    return _prefix("datasets", namespace, name, parse_sha256(digest))


def training_trial_prefix(namespace: str, run: str, trial: int) -> str:
    """``runs/<namespace>/<run>/trials/<trial>/``: the outputs of one trial of a TrainingRun."""
    namespace = validate_dns1123_label(namespace, "namespace")
    run = validate_dns1123_subdomain(run, "TrainingRun name")
    return _prefix("runs", namespace, run, "trials", str(_non_negative(trial, "trial index")))


def model_artifact_prefix(namespace: str, model: str, version: int) -> str:
    """``models/<namespace>/<model>/v<version>/``: the artifacts of one model version."""
    namespace = validate_dns1123_label(namespace, "namespace")
    model = validate_dns1123_subdomain(model, "model name")
    if _non_negative(version, "model version") < 1:
        raise InvalidLocation(f"invalid model version {version!r}: versions start at 1")
    return _prefix("models", namespace, model, f"v{version}")


def prediction_log_prefix(namespace: str, deployment: str) -> str:
    """``predictions/<namespace>/<deployment>/``: prediction logs of a kubeloop Deployment."""
    namespace = validate_dns1123_label(namespace, "namespace")
    deployment = validate_dns1123_subdomain(deployment, "Deployment name")
    return _prefix("predictions", namespace, deployment)


def file_key(prefix: str, file_name: str) -> str:
    """The key of ``file_name`` (e.g. ``model.onnx``) inside a prefix built by this module."""
    prefix = normalise_key(prefix)
    if not prefix.endswith("/"):
        raise InvalidLocation(f"{_show(prefix)} is not a prefix (it must end with '/')")
    return normalise_key(prefix + validate_file_name(file_name), allow_prefix=False)


def content_addressed_key(prefix: str, digest: str) -> str:
    """``<prefix>/<sha256>``: where content with that digest lives below ``prefix``."""
    prefix = normalise_key(prefix).rstrip("/")
    return normalise_key(f"{prefix}/{parse_sha256(digest)}", allow_prefix=False)


def _prefix(*segments: str) -> str:
    return normalise_key("/".join(segments) + "/")


def _non_negative(value: int, what: str) -> int:
    # bool is an int subclass; True as a version number is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidLocation(f"invalid {what} {value!r}: must be a non-negative integer")
    return value


def _show(value: object, limit: int = 80) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"
