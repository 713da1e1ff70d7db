"""Dataset status after profiling: Ready, Invalid with the column named, last good kept."""

from __future__ import annotations

from typing import Any

from kubeloop.api.dataset import DatasetStatus
from kubeloop.status.conditions import condition, set_condition
from kubeloop.status.dataset import HISTORY_LENGTH, profiling_finished, profiling_started

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def _ok(version: str, rows: int = 150) -> dict[str, Any]:
    prefix = f"s3://kubeloop/datasets/ml/iris/{version[7:]}"
    return {
        "ok": True,
        "version": version,
        "rows": rows,
        "columnCount": 2,
        "columns": [
            {"name": "petal_length", "type": "number", "nullable": False},
            {"name": "species", "type": "category", "nullable": False},
        ],
        "snapshotURI": f"{prefix}/snapshot.parquet",
        "profileURI": f"{prefix}/profile.json",
        "validation": {"passed": True, "failureCount": 0, "failures": []},
    }


TYPE_CHANGED = {
    "ok": False,
    "reason": "ValidationFailed",
    "message": "1 rule failed",
    "version": V2,
    "validation": {
        "passed": False,
        "failureCount": 1,
        "failures": [
            {
                "column": "petal_length",
                "rule": "pinnedSchema",
                "observed": "category",
                "expected": "number",
                "message": "column 'petal_length': type changed from number to category",
            }
        ],
    },
}


def test_first_profiling_then_ready() -> None:
    status = profiling_started(
        DatasetStatus(), job="iris-profile-g1", now="2026-11-27T10:00:00Z", generation=1
    )
    assert status.phase == "Profiling"
    assert condition(status.conditions, "Ready").status == "False"  # type: ignore[union-attr]
    status = profiling_finished(status, _ok(V1), now="2026-11-27T10:00:05Z", generation=1)
    assert status.phase == "Ready"
    assert status.version == V1
    assert status.rows == 150
    assert [c.name for c in status.columns] == ["petal_length", "species"]
    assert [r.version for r in status.history] == [V1]
    ready = condition(status.conditions, "Ready")
    assert ready is not None and ready.status == "True" and ready.reason == "VersionReady"


def test_bad_new_content_is_invalid_but_keeps_the_last_good_version() -> None:
    ready = profiling_finished(DatasetStatus(), _ok(V1), now="2026-11-27T10:00:00Z", generation=1)
    during = profiling_started(
        ready, job="iris-profile-r1", now="2026-11-27T11:00:00Z", generation=1
    )
    assert during.phase == "Ready"  # a usable Dataset stays usable while it is re-profiled
    status = profiling_finished(during, TYPE_CHANGED, now="2026-11-27T11:00:03Z", generation=1)
    assert status.phase == "Invalid"
    assert status.version == V1
    assert "column 'petal_length': type changed from number to category" in status.message
    assert f"the last good version {V1} stays in use" in status.message
    assert status.validation is not None and status.validation.failures[0].rule == "pinnedSchema"
    ready_condition = condition(status.conditions, "Ready")
    assert ready_condition is not None and ready_condition.status == "True"
    assert ready_condition.reason == "LastGoodVersion"
    validated = condition(status.conditions, "Validated")
    assert (
        validated is not None
        and validated.status == "False"
        and validated.reason == "ValidationFailed"
    )


def test_invalid_first_version_is_not_ready() -> None:
    status = profiling_finished(
        DatasetStatus(), TYPE_CHANGED, now="2026-11-27T10:00:00Z", generation=1
    )
    assert status.phase == "Invalid"
    assert status.version is None
    assert condition(status.conditions, "Ready").reason == "NoValidVersion"  # type: ignore[union-attr]


def test_errors_name_their_reason() -> None:
    missing = {
        "ok": False,
        "reason": "SourceNotFound",
        "message": "s3://demo/iris.csv does not exist",
    }
    status = profiling_finished(DatasetStatus(), missing, now="2026-11-27T10:00:00Z", generation=2)
    assert status.phase == "Invalid"
    assert status.message == "SourceNotFound: s3://demo/iris.csv does not exist"
    assert status.observed_generation == 2
    ready = profiling_finished(DatasetStatus(), _ok(V1), now="2026-11-27T10:00:00Z", generation=1)
    status = profiling_finished(ready, missing, now="2026-11-27T10:05:00Z", generation=1)
    assert status.phase == "Ready"  # a missing source does not make good data bad
    assert condition(status.conditions, "Validated").status == "Unknown"  # type: ignore[union-attr]


def test_history_is_newest_first_deduplicated_and_bounded() -> None:
    status = DatasetStatus()
    versions = [f"sha256:{index:064x}" for index in range(HISTORY_LENGTH + 3)]
    for index, version in enumerate(versions):
        status = profiling_finished(
            status, _ok(version), now=f"2026-11-27T10:{index:02d}:00Z", generation=1
        )
        status = profiling_finished(
            status, _ok(version), now=f"2026-11-27T10:{index:02d}:30Z", generation=1
        )
    assert [r.version for r in status.history] == versions[::-1][:HISTORY_LENGTH]


def test_transition_time_moves_only_when_status_changes() -> None:
    conditions = set_condition(
        [],
        type_="Ready",
        status="True",
        reason="A",
        message="",
        now="2026-11-27T10:00:01Z",
        generation=1,
    )
    conditions = set_condition(
        conditions,
        type_="Ready",
        status="True",
        reason="B",
        message="m",
        now="2026-11-27T10:00:02Z",
        generation=2,
    )
    assert conditions[0].last_transition_time == "2026-11-27T10:00:01Z"
    assert conditions[0].reason == "B"
    conditions = set_condition(
        conditions,
        type_="Ready",
        status="False",
        reason="C",
        message="",
        now="2026-11-27T10:00:03Z",
        generation=2,
    )
    assert conditions[0].last_transition_time == "2026-11-27T10:00:03Z"
