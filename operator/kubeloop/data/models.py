"""What a profiling Job is asked (:class:`ProfileRequest`) and what it answers (:class:`ProfileResult`).

The Dataset controller builds the request, hands it to the Job as JSON (an environment
variable or a file), and reads the answer back from the pod's termination message, which
Kubernetes caps at 4096 bytes: :func:`termination_message` renders the compact form and cuts
long column and failure lists down to fit, saying how many it left out. The complete result
(every failure, timings) goes to the Job's log, and the full profile to ``profile.json``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import Field, field_validator

from kubeloop.api.dataset import DatasetSpec, ObservedColumn, ValidationFailure
from kubeloop.api.meta import DatasetVersion, KubeloopModel
from kubeloop.data.errors import FailureReason
from kubeloop.storage import (
    validate_bucket_name,
    validate_dns1123_label,
    validate_dns1123_subdomain,
)

TERMINATION_MESSAGE_LIMIT: Final = 4096  # bytes; the kubelet truncates anything longer
_MAX_MESSAGE_CHARS: Final = 1000
_MAX_FAILURE_MESSAGE_CHARS: Final = 300
_MAX_FIELD_CHARS: Final = 120


class ProfileRequest(KubeloopModel):
    """Everything a profiling Job needs to know about the Dataset it profiles."""

    namespace: str = Field(description="Namespace of the Dataset (the first key segment).")
    dataset: str = Field(description="Name of the Dataset.")
    spec: DatasetSpec = Field(description="The Dataset's spec: source, target, schema, rules.")
    pinned_schema: list[ObservedColumn] | None = Field(
        default=None,
        description=(
            "Columns of the first Ready version; later versions must keep them and their types "
            "(columns of a declared schema follow the declaration instead)."
        ),
    )
    previous_version: DatasetVersion | None = Field(
        default=None, description="Digest of the current Ready version, to report a change."
    )
    bucket: str | None = Field(
        default=None,
        description="Bucket for the snapshot and profile; the store's configured bucket if unset.",
    )
    base_snapshot_uri: str | None = Field(
        default=None,
        alias="baseSnapshotURI",
        description="Snapshot of source.predictionLog.baseDataset, resolved by the controller.",
    )

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        return validate_dns1123_label(value, "namespace")

    @field_validator("dataset")
    @classmethod
    def _check_dataset(cls, value: str) -> str:
        return validate_dns1123_subdomain(value, "Dataset name")

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str | None) -> str | None:
        return validate_bucket_name(value) if value is not None else None


class ValidationOutcome(KubeloopModel):
    """Whether the rules passed, and every one that did not."""

    passed: bool = Field(description="Whether every rule passed.")
    failures: list[ValidationFailure] = Field(default_factory=list, description="Failed rules.")


class ProfileResult(KubeloopModel):
    """The answer of a profiling Job: a Ready-style version, a validation failure, or an error."""

    ok: bool = Field(description="True when the version validated and its snapshot exists.")
    reason: FailureReason | None = Field(default=None, description="Why not ok, in one word.")
    message: str = Field(default="", description="What happened, in one sentence.")
    version: DatasetVersion | None = Field(default=None, description="Content digest, if known.")
    previous_version: DatasetVersion | None = Field(
        default=None, description="The previous Ready version the request named."
    )
    changed: bool | None = Field(
        default=None, description="Whether the version differs from the previous one."
    )
    rows: int | None = Field(default=None, description="Rows read.")
    columns: list[ObservedColumn] = Field(default_factory=list, description="Observed schema.")
    snapshot_uri: str | None = Field(
        default=None, alias="snapshotURI", description="The Parquet snapshot."
    )
    profile_uri: str | None = Field(
        default=None, alias="profileURI", description="The profile.json of the version."
    )
    snapshot_sha256: str | None = Field(
        default=None, description="sha256 of the snapshot file's bytes (for verified reads)."
    )
    snapshot_written: bool = Field(
        default=False, description="False when this version's snapshot already existed."
    )
    profiled_at: str | None = Field(default=None, description="When this Job profiled.")
    validation: ValidationOutcome | None = Field(
        default=None, description="The validation report (absent when the data was not read)."
    )
    source_summary: str | None = Field(
        default=None, description="What was read, when the source says more than its size."
    )
    timings: dict[str, float] = Field(default_factory=dict, description="Seconds per stage.")

    def to_json(self) -> dict[str, Any]:
        """The full result as JSON-ready data (wire names)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def termination_message(result: ProfileResult, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """The compact JSON the controller reads from the termination message, at most ``limit`` bytes.

    Columns are cut first (the controller can read the schema from profile.json), then
    failures; ``columnCount`` and ``failureCount`` always give the totals, and
    ``columnsOmitted`` / ``failuresOmitted`` say how many were left out.
    """
    payload: dict[str, Any] = {"ok": result.ok}
    if not result.ok:
        payload["reason"] = result.reason
        payload["message"] = _clip(result.message, _MAX_MESSAGE_CHARS)
    if result.version is not None:
        payload["version"] = result.version
    if result.changed is not None:
        payload["changed"] = result.changed
    if result.rows is not None:
        payload["rows"] = result.rows
        payload["columnCount"] = len(result.columns)
        payload["columns"] = [
            {"name": _clip(c.name, _MAX_FIELD_CHARS), "type": c.type, "nullable": c.nullable}
            for c in result.columns
        ]
    if result.source_summary is not None:
        payload["sourceSummary"] = _clip(result.source_summary, _MAX_MESSAGE_CHARS)
    if result.snapshot_uri is not None:
        payload["snapshotURI"] = result.snapshot_uri
    if result.profile_uri is not None:
        payload["profileURI"] = result.profile_uri
    if result.validation is not None:
        failures = result.validation.failures
        payload["validation"] = {
            "passed": result.validation.passed,
            "failureCount": len(failures),
            "failures": [_compact_failure(failure) for failure in failures],
        }
    if "columns" in payload:
        _shrink(payload, payload, "columns", "columnsOmitted", limit)
    if "validation" in payload:
        _shrink(payload, payload["validation"], "failures", "failuresOmitted", limit)
    text = dumps(payload)
    if len(text.encode("utf-8")) <= limit:
        return text
    # Only reachable with absurd limits: keep the verdict, whatever else is lost.
    minimal: dict[str, Any] = {
        key: payload[key] for key in ("ok", "reason", "version") if key in payload
    }
    return dumps(minimal)


def _compact_failure(failure: ValidationFailure) -> dict[str, Any]:
    compact: dict[str, Any] = {
        "rule": failure.rule,
        "observed": _clip(failure.observed, _MAX_FIELD_CHARS),
        "expected": _clip(failure.expected, _MAX_FIELD_CHARS),
        "message": _clip(failure.message, _MAX_FAILURE_MESSAGE_CHARS),
    }
    if failure.column is not None:
        compact = {"column": _clip(failure.column, _MAX_FIELD_CHARS), **compact}
    return compact


def _shrink(
    payload: dict[str, Any], holder: dict[str, Any], key: str, omitted_key: str, limit: int
) -> None:
    """Keep the longest prefix of ``holder[key]`` with which ``payload`` fits in ``limit``."""
    items: list[Any] = holder[key]
    if _size(payload) <= limit:
        return
    low, high = 0, len(items)  # invariant: keeping `low` items fits (or nothing does)
    holder[omitted_key] = len(items)
    while low < high:
        middle = (low + high + 1) // 2
        holder[key] = items[:middle]
        holder[omitted_key] = len(items) - middle
        if _size(payload) <= limit:
            low = middle
        else:
            high = middle - 1
    holder[key] = items[:low]
    holder[omitted_key] = len(items) - low


def _size(payload: dict[str, Any]) -> int:
    return len(dumps(payload).encode("utf-8"))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def dumps(data: Any) -> str:
    """Compact JSON, refusing NaN and Infinity (which are not JSON)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
