"""The trainer against a real SeaweedFS: trials end to end, artifacts verified, failures named.

Each test uploads a Parquet snapshot, runs a trial (through ``run_trial`` or the ``kubeloop
train`` entrypoint ``main``), then checks what a ModelVersion would rely on: the model's
sha256, the ONNX model reproducing the numbers in metrics.json on the test rows, the
signature, and self-contained reports. Failures must come back with the trainer's reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score
from tests.component.churn_data import churn_frame, client_feeds

from kubeloop.api.modelversion import Signature
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri
from kubeloop.trainer.cli import main
from kubeloop.trainer.config import TrialConfig
from kubeloop.trainer.data import split_rows
from kubeloop.trainer.search import trial_params
from kubeloop.trainer.train import run_trial

pytestmark = pytest.mark.component

FAST_ENV = {
    "KUBELOOP_S3_RETRY_ATTEMPTS": "2",
    "KUBELOOP_S3_RETRY_BASE_DELAY": "0.01",
    "KUBELOOP_S3_RETRY_MAX_DELAY": "0.05",
}


def upload_frame(store: ObjectStore, frame: pd.DataFrame, key: str) -> tuple[str, str]:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    result = store.upload(buffer.getvalue(), key)
    return str(result.uri), result.sha256


def config_body(
    store: ObjectStore,
    key_prefix: str,
    snapshot: tuple[str, str],
    *,
    estimator: dict[str, Any],
    target: str,
    search: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "churn"},
        "modelName": "churn",
        "estimator": estimator,
        "seed": 7,
    }
    if search is not None:
        spec["search"] = search
    uri, sha256 = snapshot
    return {
        "trial": 0,
        "spec": spec,
        "snapshotURI": uri,
        "snapshotSha256": sha256,
        "target": target,
        "outputPrefix": f"s3://{store.bucket}/{key_prefix}runs/ns/run/",
        "datasetVersion": f"sha256:{sha256}",
        "trainingRun": "run",
        "namespace": "ns",
        "latencyRuns": 50,
        **extra,
    }


def read_json(store: ObjectStore, uri: S3Uri) -> Any:
    buffer = io.BytesIO()
    store.download(uri, buffer)
    return json.loads(buffer.getvalue())


def test_classification_trial_end_to_end(
    store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    frame = churn_frame()
    snapshot = upload_frame(store, frame, f"{key_prefix}datasets/churn/snapshot.parquet")
    search = {
        "strategy": "random",
        "space": {
            "learning_rate": {"range": {"min": 0.05, "max": 0.3, "log": True}},
            "max_leaf_nodes": {"range": {"min": 8, "max": 31, "integer": True}},
        },
        "trials": 3,
        "parallelism": 1,
        "metric": "roc_auc",
    }
    body = config_body(
        store,
        key_prefix,
        snapshot,
        estimator={"name": "HistGradientBoostingClassifier", "params": {"max_iter": 60}},
        target="churned",
        search=search,
        trial=1,
        sliceColumns=["region", "contract"],
        sensitiveColumns=["age_band"],
        excludeColumns=["customer_id"],
    )
    config = TrialConfig.model_validate(body)
    result = run_trial(config, store)

    assert result.params == trial_params(config.spec, 1)
    assert result.params["max_iter"] == 60
    assert result.metric == "roc_auc"
    assert result.score is not None
    assert 0.5 < result.score <= 1.0
    prefix = S3Uri.parse(result.artifact_uri)
    stored = sorted(info.uri.name for info in store.list(prefix))
    assert stored == [
        "metrics.json",
        "model-card.md",
        "model.onnx",
        "report.html",
        "signature.json",
        "test-set.parquet",
    ]

    # The model's digest: verified while downloading, and recomputed here.
    model_path = tmp_path / "model.onnx"
    store.download_verified(prefix.join("model.onnx"), model_path, result.model_sha256)
    model_bytes = model_path.read_bytes()
    assert hashlib.sha256(model_bytes).hexdigest() == result.model_sha256
    summary = read_json(store, prefix.join("metrics.json"))
    assert summary["artifacts"]["model.onnx"]["sha256"] == result.model_sha256

    signature = Signature.model_validate(read_json(store, prefix.join("signature.json")))
    assert signature == result.signature
    names = [spec.name for spec in signature.inputs]
    assert names == [
        "tenure_months",
        "monthly_charges",
        "total charges",
        "contract",
        "region",
        "paperless",
    ]  # no sensitive column, no identifier
    types = {spec.name: spec.type for spec in signature.inputs}
    assert types["tenure_months"] == "integer"
    assert types["paperless"] == "boolean"
    nullable = {spec.name: spec.nullable for spec in signature.inputs}
    assert nullable["total charges"] and not nullable["monthly_charges"]
    contract = next(spec for spec in signature.inputs if spec.name == "contract")
    assert contract.categories == ["month-to-month", "one-year", "two-year"]
    assert signature.output.task == "classification"
    assert signature.output.labels == ["false", "true"]

    # ONNX Runtime on the test rows reproduces metrics.json.
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == names
    y = np.where(frame["churned"], "true", "false")
    split = split_rows(y, config.spec.split, "classification", config.spec.seed)
    test_rows = frame.iloc[split.test]
    labels, proba = session.run(None, client_feeds(test_rows, signature))
    assert summary["test"]["accuracy"] == pytest.approx(accuracy_score(y[split.test], labels))
    assert summary["test"]["roc_auc"] == pytest.approx(
        roc_auc_score(y[split.test] == "true", proba[:, 1]), abs=1e-6
    )
    assert result.metrics["accuracy"] == summary["test"]["accuracy"]
    assert summary["rows"] == {
        "train": len(split.train),
        "validation": len(split.validation),
        "test": len(split.test),
        "droppedNoTarget": 0,
    }
    assert summary["confusionMatrix"]["labels"] == ["false", "true"]
    assert sum(map(sum, summary["confusionMatrix"]["matrix"])) == len(split.test)
    assert {"demographic_parity_difference", "disparate_impact_ratio"} <= set(result.metrics)
    assert set(summary["fairness"]["age_band"]["groups"]) == {"18-29", "30-44", "45-64", "65+"}
    assert {row["group"] for row in summary["slices"]["region"]} == {
        "east",
        "north",
        "south",
        "west",
    }
    assert "identifier" not in summary["excludedColumns"]["customer_id"]  # excluded by the run
    assert summary["parity"]["mismatchedLabels"] == 0
    assert result.latency_p99_ms is not None
    assert result.latency_p99_ms > 0

    # The report is self-contained and has its plots; the card names the data version.
    report = store_text(store, prefix.join("report.html"))
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', report)) == 3
    assert "http://" not in report
    assert "https://" not in report
    card = store_text(store, prefix.join("model-card.md"))
    assert config.dataset_version in card
    assert "## Limitations" in card


def store_text(store: ObjectStore, uri: S3Uri) -> str:
    buffer = io.BytesIO()
    store.download(uri, buffer)
    return buffer.getvalue().decode()


def test_regression_trial_end_to_end(store: ObjectStore, key_prefix: str) -> None:
    diabetes = load_diabetes(as_frame=True).frame
    diabetes["clinic"] = np.where(diabetes["bmi"] > 0, "a", "b")  # a categorical column too
    snapshot = upload_frame(store, diabetes, f"{key_prefix}datasets/diabetes/snapshot.parquet")
    body = config_body(
        store,
        key_prefix,
        snapshot,
        estimator={"name": "GradientBoostingRegressor", "params": {"n_estimators": 50}},
        target="target",
        sliceColumns=["sex"],
    )
    config = TrialConfig.model_validate(body)
    result = run_trial(config, store)
    assert result.metric == "rmse"
    assert set(result.metrics) >= {"rmse", "mae", "r2", "latency_p50_ms", "latency_p99_ms"}

    prefix = S3Uri.parse(result.artifact_uri)
    buffer = io.BytesIO()
    store.download_verified(prefix.join("model.onnx"), buffer, result.model_sha256)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    split = split_rows(
        diabetes["target"].to_numpy(), config.spec.split, "regression", config.spec.seed
    )
    test_rows = diabetes.iloc[split.test]
    (predicted,) = session.run(None, client_feeds(test_rows, result.signature))
    rmse = float(np.sqrt(mean_squared_error(test_rows["target"], predicted.ravel())))
    assert result.metrics["rmse"] == pytest.approx(rmse, rel=1e-5)
    summary = read_json(store, prefix.join("metrics.json"))
    assert summary["signature"]["output"] == {"task": "regression"}
    report = store_text(store, prefix.join("report.html"))
    assert len(re.findall(r"data:image/png;base64,", report)) == 2  # residuals, importance


def test_multiclass_trial_through_the_command_line(
    seaweedfs: S3Endpoint, store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    iris = load_iris(as_frame=True).frame
    snapshot = upload_frame(store, iris, f"{key_prefix}datasets/iris/snapshot.parquet")
    search = {
        "strategy": "grid",
        "space": {"max_depth": {"values": [2, 4]}, "n_estimators": {"values": [10, 20]}},
        "trials": 4,
        "parallelism": 2,
        "metric": "f1",
    }
    body = config_body(
        store,
        key_prefix,
        snapshot,
        estimator={"name": "RandomForestClassifier", "params": {"criterion": "entropy"}},
        target="target",
        search=search,
    )
    log = tmp_path / "termination-log"
    environ = {
        **seaweedfs.env(),
        **FAST_ENV,
        "KUBELOOP_TRIAL_CONFIG": json.dumps(body),
        "JOB_COMPLETION_INDEX": "2",
    }
    assert main(["--termination-log", str(log)], environ=environ) == 0
    raw = log.read_bytes()
    assert len(raw) <= 4096
    message = json.loads(raw)
    assert message["ok"] is True
    assert message["trial"] == 2
    # grid in sorted name order: (max_depth, n_estimators) = (2,10) (2,20) (4,10) (4,20)
    assert message["params"] == {"criterion": "entropy", "max_depth": 4, "n_estimators": 10}
    assert message["metric"] == "f1"
    assert message["artifactURI"].endswith("/runs/ns/run/trials/2/")  # one prefix per index
    assert all(isinstance(v, float) for v in message["metrics"].values())
    assert {"accuracy", "f1", "roc_auc", "log_loss"} <= set(message["metrics"])
    assert re.fullmatch(r"[0-9a-f]{64}", message["modelSHA256"])
    assert seaweedfs.secret_key.get_secret_value() not in raw.decode()
    signature = read_json(store, S3Uri.parse(message["artifactURI"]).join("signature.json"))
    assert signature["output"] == {"task": "classification", "labels": ["0", "1", "2"]}


def run_failing(
    seaweedfs: S3Endpoint, body: dict[str, Any], tmp_path: Path, **env: str
) -> dict[str, Any]:
    log = tmp_path / "termination-log"
    environ = {**seaweedfs.env(), **FAST_ENV, "KUBELOOP_TRIAL_CONFIG": json.dumps(body), **env}
    assert main(["--termination-log", str(log)], environ=environ) == 1
    result: dict[str, Any] = json.loads(log.read_text())
    assert result["ok"] is False
    assert seaweedfs.secret_key.get_secret_value() not in json.dumps(result)
    return result


def test_missing_target_column_fails_with_missing_column(
    seaweedfs: S3Endpoint, store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    snapshot = upload_frame(store, churn_frame(200), f"{key_prefix}snapshot.parquet")
    body = config_body(
        store,
        key_prefix,
        snapshot,
        estimator={"name": "LogisticRegression"},
        target="churn",
    )
    result = run_failing(seaweedfs, body, tmp_path)
    assert result["reason"] == "MissingColumn"
    assert result["message"].startswith(
        "target column 'churn' is not in the dataset (columns: 'customer_id', 'tenure_months',"
    )
    assert result["trial"] == 0
    # A failed trial leaves nothing behind that could pass for a model.
    assert list(store.list(S3Uri.parse(body["outputPrefix"]))) == []


def test_other_failures_carry_their_own_reasons(
    seaweedfs: S3Endpoint, store: ObjectStore, key_prefix: str, tmp_path: Path
) -> None:
    snapshot = upload_frame(store, churn_frame(200), f"{key_prefix}snapshot.parquet")
    good = config_body(
        store, key_prefix, snapshot, estimator={"name": "LogisticRegression"}, target="churned"
    )

    bad_param = {
        **good,
        "spec": {
            **good["spec"],
            "estimator": {"name": "LogisticRegression", "params": {"C": -1.0}},
        },
    }
    # The trial's config is the API model, whose rules now hold scikit-learn's constraints:
    # refused before any data is read, naming the field (scikit-learn's own wording, from
    # make_estimator, is in tests/unit/test_trainer_model.py).
    result = run_failing(seaweedfs, bad_param, tmp_path)
    assert result["reason"] == "InvalidConfig"
    assert "spec.estimator.params.C must be a number > 0 (LogisticRegression)" in result["message"]

    missing = {**good, "snapshotURI": f"s3://{store.bucket}/{key_prefix}nothing.parquet"}
    missing.pop("snapshotSha256")
    result = run_failing(seaweedfs, missing, tmp_path)
    assert result["reason"] == "SnapshotNotFound"
    assert "nothing.parquet does not exist" in result["message"]

    wrong_digest = {**good, "snapshotSha256": "0" * 64}
    result = run_failing(seaweedfs, wrong_digest, tmp_path)
    assert result["reason"] == "DigestMismatch"

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = run_failing(
        seaweedfs, good, tmp_path, KUBELOOP_S3_ENDPOINT=f"http://127.0.0.1:{closed_port}"
    )
    assert result["reason"] == "StorageUnavailable"
    assert f"127.0.0.1:{closed_port} is unreachable" in result["message"]


def test_champion_is_scored_on_the_challengers_test_set(
    store: ObjectStore, key_prefix: str
) -> None:
    """A rerun with its predecessor as champion scores both models on the very same rows."""
    snapshot = upload_frame(store, churn_frame(), f"{key_prefix}snap.parquet")
    estimator = {"name": "LogisticRegression", "params": {"C": 1.0}}
    first = run_trial(
        TrialConfig.model_validate(
            config_body(store, f"{key_prefix}a/", snapshot, estimator=estimator, target="churned")
        ),
        store,
    )
    champion = {
        "name": "churn-v1",
        "artifactURI": first.artifact_uri + "model.onnx",
        "sha256": first.model_sha256,
    }
    body = config_body(store, f"{key_prefix}b/", snapshot, estimator=estimator, target="churned")
    second = run_trial(TrialConfig.model_validate({**body, "champion": champion}), store)

    # Same data, seed and parameters: the same model, byte for byte ...
    assert second.model_sha256 == first.model_sha256
    # ... so scored on the challenger's test rows the champion's metrics are the challenger's.
    assert second.champion is not None
    assert second.champion["name"] == "churn-v1"
    scored = second.champion["metrics"]
    for metric in ("accuracy", "f1", "roc_auc", "log_loss"):
        assert scored[metric] == pytest.approx(second.metrics[metric], abs=1e-6), metric
    assert second.termination_payload()["champion"]["metrics"] == scored
    summary = read_json(store, S3Uri.parse(second.artifact_uri + "metrics.json"))
    assert summary["champion"]["rows"] == second.champion["rows"] > 0

    # test-set.parquet holds the test rows and the predictions the served model must reproduce.
    buffer = io.BytesIO()
    store.download(S3Uri.parse(second.artifact_uri + "test-set.parquet"), buffer)
    test_set = pd.read_parquet(buffer)
    assert len(test_set) == second.champion["rows"]
    assert "customer_id" not in test_set.columns  # the unique key is no feature
    session = ort.InferenceSession(
        store_bytes(store, S3Uri.parse(second.artifact_uri + "model.onnx")),
        providers=["CPUExecutionProvider"],
    )
    labels, proba = session.run(None, client_feeds(test_set, second.signature))
    assert list(labels.astype(str)) == list(test_set["kubeloop:prediction"].astype(str))
    for index, label in enumerate(second.signature.output.labels or []):
        np.testing.assert_allclose(
            proba[:, index], test_set[f"kubeloop:probability:{label}"], atol=1e-4
        )

    # A champion whose artifact is not what the registry says is not scored, and says why.
    tampered = {**champion, "sha256": "0" * 64}
    body = config_body(store, f"{key_prefix}c/", snapshot, estimator=estimator, target="churned")
    third = run_trial(TrialConfig.model_validate({**body, "champion": tampered}), store)
    assert third.champion is not None
    assert "metrics" not in third.champion
    assert "cannot read churn-v1's model" in third.champion["error"]
    assert (
        "sha256" in third.champion["error"].lower() or "digest" in third.champion["error"].lower()
    )


def store_bytes(store: ObjectStore, uri: S3Uri) -> bytes:
    buffer = io.BytesIO()
    store.download(uri, buffer)
    return buffer.getvalue()
