"""How a Dataset's status follows its profiling Jobs.

Two conditions tell the story: ``Ready`` (a validated version exists and TrainingRuns can pin
it) and ``Validated`` (whether the newest content of the source passed its rules). Bad new
data makes the phase ``Invalid`` and says which column broke which rule, but never takes the
last good version away: ``status.version`` keeps pointing at it and ``Ready`` stays True.
"""

from __future__ import annotations

from typing import Any

from kubeloop.api.dataset import (
    DatasetStatus,
    DatasetVersionRecord,
    ObservedColumn,
    ValidationFailure,
    ValidationReport,
)
from kubeloop.status.conditions import set_condition

HISTORY_LENGTH = 10
_MESSAGE_FAILURES = 3


def profiling_started(
    current: DatasetStatus, *, job: str, now: str, generation: int | None
) -> DatasetStatus:
    """The status while a profiling Job runs; a Ready Dataset stays usable meanwhile."""
    status = current.model_copy(deep=True)
    status.profile_job = job
    status.observed_generation = generation
    if status.version is None:
        status.phase = "Profiling"
        status.message = f"profiling Job {job} is reading the source"
        status.conditions = set_condition(
            status.conditions,
            type_="Ready",
            status="False",
            reason="Profiling",
            message="no validated version yet",
            now=now,
            generation=generation,
        )
    return status


def _failure_summary(failures: list[ValidationFailure], total: int) -> str:
    shown = "; ".join(failure.message for failure in failures[:_MESSAGE_FAILURES])
    more = total - min(total, _MESSAGE_FAILURES)
    return shown + (f"; and {more} more" if more > 0 else "")


def profiling_finished(
    current: DatasetStatus,
    result: dict[str, Any],
    *,
    now: str,
    generation: int | None,
) -> DatasetStatus:
    """The status after a profiling Job answered with ``result`` (its termination message)."""
    status = current.model_copy(deep=True)
    status.observed_generation = generation
    validation = result.get("validation") or {}
    failures = [ValidationFailure.model_validate(f) for f in validation.get("failures", [])]
    failure_count = int(validation.get("failureCount", len(failures)))
    version = result.get("version")
    if result.get("sourceSummary"):
        status.source_summary = str(result["sourceSummary"])

    if result.get("ok"):
        return _ready(status, result, now=now, generation=generation)

    last_good = status.version
    keep = f"; the last good version {last_good} stays in use" if last_good else ""
    if result.get("reason") == "ValidationFailed":
        status.validation = ValidationReport(
            passed=False, checked_at=now, version=version, failures=failures
        )
        summary = _failure_summary(failures, failure_count)
        status.phase = "Invalid"
        status.message = f"new content {version or ''} failed validation: {summary}{keep}".replace(
            "  ", " "
        )
        status.conditions = set_condition(
            status.conditions,
            type_="Validated",
            status="False",
            reason="ValidationFailed",
            message=summary,
            now=now,
            generation=generation,
        )
    else:
        reason = str(result.get("reason") or "ProfilingFailed")
        detail = str(result.get("message") or "the profiling Job failed without a message")
        status.message = f"{reason}: {detail}{keep}"
        status.phase = "Ready" if last_good else "Invalid"
        status.conditions = set_condition(
            status.conditions,
            type_="Validated",
            status="Unknown" if last_good else "False",
            reason=reason,
            message=detail,
            now=now,
            generation=generation,
        )
    status.conditions = set_condition(
        status.conditions,
        type_="Ready",
        status="True" if last_good else "False",
        reason="LastGoodVersion" if last_good else "NoValidVersion",
        message=f"version {last_good} is usable"
        if last_good
        else "no version has passed validation",
        now=now,
        generation=generation,
    )
    return status


def _ready(
    status: DatasetStatus, result: dict[str, Any], *, now: str, generation: int | None
) -> DatasetStatus:
    version = str(result["version"])
    rows = int(result["rows"])
    status.phase = "Ready"
    status.version = version
    status.rows = rows
    status.column_count = int(result.get("columnCount", len(result.get("columns", []))))
    status.columns = [ObservedColumn.model_validate(c) for c in result.get("columns", [])]
    status.snapshot_uri = result.get("snapshotURI")
    status.profile_uri = result.get("profileURI")
    status.validation = ValidationReport(passed=True, checked_at=now, version=version, failures=[])
    status.message = f"version {version}: {rows} rows, {status.column_count} columns"
    if result.get("sourceSummary"):
        status.message += f" ({result['sourceSummary']})"
    if not status.history or status.history[0].version != version:
        record = DatasetVersionRecord(
            version=version,
            rows=rows,
            created_at=now,
            snapshot_uri=str(result["snapshotURI"]),
            profile_uri=str(result["profileURI"]),
        )
        earlier = [r for r in status.history if r.version != version]
        status.history = [record, *earlier][:HISTORY_LENGTH]
    for type_, reason in (("Validated", "ValidationPassed"), ("Ready", "VersionReady")):
        status.conditions = set_condition(
            status.conditions,
            type_=type_,
            status="True",
            reason=reason,
            message=status.message,
            now=now,
            generation=generation,
        )
    return status
