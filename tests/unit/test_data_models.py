"""The profiling Job's request, its compact termination message, and its command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kubeloop.api.dataset import ObservedColumn, ValidationFailure
from kubeloop.data.cli import load_request, load_settings, main
from kubeloop.data.errors import InvalidRequest
from kubeloop.data.models import (
    ProfileRequest,
    ProfileResult,
    ValidationOutcome,
    termination_message,
)

VERSION = "sha256:" + "ab" * 32
REQUEST = {
    "namespace": "team-a",
    "dataset": "churn",
    "spec": {"source": {"uri": "s3://data/churn.csv"}, "target": "churn"},
}


def test_request_round_trip_and_name_validation() -> None:
    request = ProfileRequest.model_validate_json(
        json.dumps(
            {
                **REQUEST,
                "pinnedSchema": [{"name": "age", "type": "integer", "nullable": False}],
                "previousVersion": VERSION,
                "bucket": "kubeloop",
            }
        )
    )
    assert request.pinned_schema == [ObservedColumn(name="age", type="integer", nullable=False)]
    for field, bad in (("namespace", "Team_A"), ("dataset", "../x"), ("bucket", "B")):
        with pytest.raises(ValidationError):
            ProfileRequest.model_validate({**REQUEST, field: bad})
    with pytest.raises(ValidationError, match="extra"):
        ProfileRequest.model_validate({**REQUEST, "unknown": 1})


def ok_result(columns: int) -> ProfileResult:
    return ProfileResult(
        ok=True,
        version=VERSION,
        changed=True,
        rows=1000,
        columns=[
            ObservedColumn(name=f"feature_{index:04d}", type="number", nullable=False)
            for index in range(columns)
        ],
        snapshot_uri="s3://kubeloop/datasets/team-a/churn/" + "ab" * 32 + "/snapshot.parquet",
        profile_uri="s3://kubeloop/datasets/team-a/churn/" + "ab" * 32 + "/profile.json",
        validation=ValidationOutcome(passed=True),
    )


def test_termination_message_of_a_small_ready_result_is_complete() -> None:
    message = json.loads(termination_message(ok_result(3)))
    assert message == {
        "ok": True,
        "version": VERSION,
        "changed": True,
        "rows": 1000,
        "columnCount": 3,
        "columns": [
            {"name": f"feature_{index:04d}", "type": "number", "nullable": False}
            for index in range(3)
        ],
        "snapshotURI": ok_result(0).snapshot_uri,
        "profileURI": ok_result(0).profile_uri,
        "validation": {"passed": True, "failureCount": 0, "failures": []},
    }


def test_termination_message_truncates_columns_to_fit() -> None:
    text = termination_message(ok_result(500))
    assert len(text.encode()) <= 4096
    message = json.loads(text)
    assert message["columnCount"] == 500
    kept = len(message["columns"])
    assert 0 < kept < 500
    assert message["columnsOmitted"] == 500 - kept
    assert message["columns"][0]["name"] == "feature_0000"  # a prefix, in order
    assert message["snapshotURI"].endswith("snapshot.parquet")
    # As many as fit: one more would not.
    assert len(termination_message(ok_result(kept)).encode()) <= 4096


def test_termination_message_truncates_failures_after_columns() -> None:
    failures = [
        ValidationFailure(
            column=f"c{index}",
            rule="maxMissingFraction",
            observed="0.5",
            expected="<= 0.1",
            message=f"column 'c{index}': 50.0% missing (500 of 1000 rows), more than 0.1 "
            + "x" * 400,
        )
        for index in range(200)
    ]
    result = ProfileResult(
        ok=False,
        reason="ValidationFailed",
        message="validation failed: " + "y" * 5000,
        version=VERSION,
        rows=1000,
        columns=ok_result(200).columns,
        validation=ValidationOutcome(passed=False, failures=failures),
    )
    text = termination_message(result)
    assert len(text.encode()) <= 4096
    message = json.loads(text)
    assert message["ok"] is False
    assert message["reason"] == "ValidationFailed"
    assert message["version"] == VERSION
    assert len(message["message"]) <= 1000
    assert message["columns"] == []
    assert message["columnsOmitted"] == 200
    validation = message["validation"]
    assert validation["passed"] is False
    assert validation["failureCount"] == 200
    assert 0 < len(validation["failures"]) < 200
    assert validation["failuresOmitted"] == 200 - len(validation["failures"])
    first = validation["failures"][0]
    assert first["column"] == "c0"
    assert first["rule"] == "maxMissingFraction"
    assert len(first["message"]) <= 300


def test_termination_message_of_an_error() -> None:
    result = ProfileResult(
        ok=False, reason="SourceNotFound", message="object s3://d/x.csv does not exist"
    )
    assert json.loads(termination_message(result)) == {
        "ok": False,
        "reason": "SourceNotFound",
        "message": "object s3://d/x.csv does not exist",
    }


def test_termination_message_with_an_absurd_limit_keeps_the_verdict() -> None:
    assert json.loads(termination_message(ok_result(10), limit=120)) == {
        "ok": True,
        "version": VERSION,
    }


def test_load_request_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))
    assert load_request(str(path), {}).dataset == "churn"
    assert (
        load_request(None, {"KUBELOOP_PROFILE_REQUEST": json.dumps(REQUEST)}).namespace == "team-a"
    )
    with pytest.raises(InvalidRequest, match="no request"):
        load_request(None, {})
    with pytest.raises(InvalidRequest, match=r"spec\.target: Field required"):
        load_request(
            None,
            {
                "KUBELOOP_PROFILE_REQUEST": json.dumps(
                    {**REQUEST, "spec": {"source": {"uri": "s3://data/x.csv"}}}
                )
            },
        )
    with pytest.raises(InvalidRequest, match="cannot read the request file"):
        load_request(str(tmp_path / "absent.json"), {})


def test_settings_errors_never_show_the_secret() -> None:
    secret = "do-not-print-me-0123456789"
    with pytest.raises(InvalidRequest) as caught:
        load_settings({"KUBELOOP_S3_SECRET_KEY": secret, "KUBELOOP_S3_ENDPOINT": "ftp://x"})
    assert secret not in str(caught.value)
    assert "endpoint" in str(caught.value)
    assert "bucket: Field required" in str(caught.value)


def test_cli_reports_an_invalid_request_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "do-not-print-me-0123456789"
    log = tmp_path / "termination-log"
    env = {
        "KUBELOOP_PROFILE_REQUEST": json.dumps(REQUEST),
        "KUBELOOP_S3_SECRET_KEY": secret,
        "KUBELOOP_S3_ACCESS_KEY": "ak",
    }
    assert main(["--termination-log", str(log)], environ=env) == 1
    message = json.loads(log.read_text())
    assert message["ok"] is False
    assert message["reason"] == "InvalidRequest"
    assert "invalid S3 settings" in message["message"]
    captured = capsys.readouterr()
    assert json.loads(captured.out)["reason"] == "InvalidRequest"
    assert secret not in captured.out + captured.err + log.read_text()


def test_cli_survives_an_unwritable_termination_log(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "termination-log"
    assert main(["--termination-log", str(target)], environ={}) == 1
