"""The trainer's command line: config loading, settings errors, the termination message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kubeloop.trainer.cli import (
    failure_payload,
    load_config,
    load_s3_settings,
    main,
    termination_message,
)
from kubeloop.trainer.errors import InvalidConfig, StorageMisconfigured
from kubeloop.trainer.threads import THREADS_ENV, cpu_budget

DIGEST = "a" * 64


def config_json(**changes: Any) -> str:
    body: dict[str, Any] = {
        "trial": 0,
        "spec": {
            "datasetRef": {"name": "churn"},
            "modelName": "churn",
            "estimator": {"name": "LogisticRegression", "params": {"C": 0.5}},
        },
        "snapshotURI": f"s3://kubeloop/datasets/ns/churn/{DIGEST}/snapshot.parquet",
        "target": "churned",
        "outputPrefix": "s3://kubeloop/runs/ns/run/",
        "datasetVersion": f"sha256:{DIGEST}",
    }
    body.update(changes)
    return json.dumps(body)


def test_config_from_the_environment_with_the_job_index() -> None:
    config = load_config(
        None, {"KUBELOOP_TRIAL_CONFIG": config_json(), "JOB_COMPLETION_INDEX": "3"}
    )
    assert config.trial == 3
    assert config.effective_model_name == "churn"
    assert config.effective_dataset_name == "churn"


def test_config_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "trial.json"
    path.write_text(config_json(trial=2))
    assert load_config(path, {}).trial == 2


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(InvalidConfig) as caught:
        load_config(None, {"KUBELOOP_TRIAL_CONFIG": config_json(outputPrefix="not-a-uri")})
    assert "outputPrefix" in str(caught.value) or "output_prefix" in str(caught.value)
    with pytest.raises(InvalidConfig, match="no trial configuration"):
        load_config(None, {})
    with pytest.raises(InvalidConfig, match="JOB_COMPLETION_INDEX='x'"):
        load_config(None, {"KUBELOOP_TRIAL_CONFIG": config_json(), "JOB_COMPLETION_INDEX": "x"})


def test_policy_rules_of_the_spec_apply() -> None:
    bad = json.loads(config_json())
    bad["spec"]["estimator"]["params"] = {"n_estimators": 3}
    with pytest.raises(InvalidConfig, match="does not accept"):
        load_config(None, {"KUBELOOP_TRIAL_CONFIG": json.dumps(bad)})


def test_storage_settings_errors_name_variables_never_values() -> None:
    environ = {
        "KUBELOOP_S3_ENDPOINT": "ftp://store:9000",
        "KUBELOOP_S3_ACCESS_KEY": "AKIAEXAMPLE",
        "KUBELOOP_S3_SECRET_KEY": "super-secret-value",
    }
    with pytest.raises(StorageMisconfigured) as caught:
        load_s3_settings(environ)
    message = str(caught.value)
    assert "KUBELOOP_S3_ENDPOINT" in message
    assert "KUBELOOP_S3_BUCKET: Field required" in message
    assert "super-secret-value" not in message


def test_termination_message_fits_4096_bytes() -> None:
    payload = {
        "ok": True,
        "trial": 1,
        "params": {f"p{i}": "x" * 200 for i in range(40)},
        "score": 0.9,
        "metric": "f1",
        "metrics": {"f1": 0.9, **{f"extra_{i}": 0.1 for i in range(200)}},
        "artifactURI": "s3://b/p/",
        "modelSHA256": DIGEST,
    }
    text = termination_message(payload)
    assert len(text.encode()) <= 4096
    decoded = json.loads(text)
    assert decoded["metrics"] == {"f1": 0.9}  # non-core metrics shed first
    assert decoded["paramsOmitted"] is True
    assert decoded["modelSHA256"] == DIGEST


def test_long_failure_messages_are_shortened_not_broken() -> None:
    text = termination_message(failure_payload(4, "InvalidData", "é" * 5000))
    assert len(text.encode()) <= 4096
    decoded = json.loads(text)
    assert decoded["reason"] == "InvalidData"
    assert decoded["message"].endswith("…")


def test_non_finite_numbers_become_null() -> None:
    decoded = json.loads(termination_message({"ok": True, "score": float("nan")}))
    assert decoded["score"] is None


def test_main_reports_a_bad_config_through_the_termination_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "termination-log"
    status = main(["--termination-log", str(log)], environ={"JOB_COMPLETION_INDEX": "5"})
    assert status == 1
    result = json.loads(log.read_text())
    assert result == {
        "ok": False,
        "trial": 5,
        "reason": "InvalidConfig",
        "message": "no trial configuration: pass --config FILE or set KUBELOOP_TRIAL_CONFIG",
    }
    assert json.loads(capsys.readouterr().out) == result


def test_main_reports_missing_storage_settings(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    status = main(
        ["--termination-log", str(log)],
        environ={"KUBELOOP_TRIAL_CONFIG": config_json(), "KUBELOOP_S3_SECRET_KEY": "hush-hush"},
    )
    assert status == 1
    result = json.loads(log.read_text())
    assert result["reason"] == "StorageMisconfigured"
    assert "KUBELOOP_S3_ENDPOINT: Field required" in result["message"]
    assert "hush-hush" not in log.read_text()


def test_cpu_budget(tmp_path: Path) -> None:
    assert cpu_budget({THREADS_ENV: "3"}, available=8) == 3  # the operator's word wins
    assert cpu_budget({}, cgroup_root=tmp_path, available=8) == 8  # no quota: affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_budget({}, cgroup_root=tmp_path, available=8) == 2  # 1.5 CPUs, rounded up
    assert cpu_budget({}, cgroup_root=tmp_path, available=1) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_budget({}, cgroup_root=tmp_path, available=8) == 8
    (tmp_path / "cpu.max").unlink()
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_budget({}, cgroup_root=tmp_path, available=8) == 1  # cgroup v1 quota
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_budget({}, cgroup_root=tmp_path, available=8) == 8  # v1 without a quota
