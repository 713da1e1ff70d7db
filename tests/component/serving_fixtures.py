"""Fixtures of the inference-server component tests: real models, real server processes.

* ``served_models`` (session): a classification model (churn-like data, with numbers,
  missing values, categories and a boolean) and a regression model (diabetes), each trained by
  the real trainer on SeaweedFS, with its test rows and the predictions onnxruntime makes on
  them directly (the reference every server answer is compared with), and a profile.json;
* :class:`ServerProcess`: ``kubeloop serve`` as a subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes
from tests.component.churn_data import churn_frame, client_feeds

from kubeloop.api.modelversion import Signature
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri
from kubeloop.trainer.config import TrialConfig
from kubeloop.trainer.data import split_rows
from kubeloop.trainer.train import run_trial

REPO = Path(__file__).resolve().parents[2]
FAST_S3_ENV = {
    "KUBELOOP_S3_RETRY_ATTEMPTS": "2",
    "KUBELOOP_S3_RETRY_BASE_DELAY": "0.01",
    "KUBELOOP_S3_RETRY_MAX_DELAY": "0.05",
}


@dataclass(frozen=True)
class ServedModel:
    """A trained model as the registry would describe it, plus its reference predictions."""

    name: str
    uri: str
    sha256: str
    signature: Signature
    profile_uri: str
    test_rows: pd.DataFrame  # feature columns only, raw values as in the dataset
    expected: list[np.ndarray[Any, Any]]  # onnxruntime's outputs on test_rows
    model_bytes: bytes

    @property
    def classification(self) -> bool:
        return self.signature.output.task == "classification"

    def records(self, rows: pd.DataFrame | None = None) -> list[dict[str, Any]]:
        """JSON records as a client would send them (None for missing values)."""
        frame = self.test_rows if rows is None else rows
        out: list[dict[str, Any]] = []
        for raw in frame.to_dict(orient="records"):
            record: dict[str, Any] = {}
            for spec in self.signature.inputs:
                value = raw[spec.name]
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    record[spec.name] = None
                elif isinstance(value, np.generic):
                    record[spec.name] = value.item()
                else:
                    record[spec.name] = value
            out.append(record)
        return out


def profile_document(frame: pd.DataFrame, signature: Signature, target: str) -> dict[str, Any]:
    """profile.json's shape (kubeloop.data.profile): decile edges and category frequencies."""
    deciles = [i / 10 for i in range(11)]
    columns = []
    for spec in signature.inputs:
        values = frame[spec.name].dropna()
        if spec.type in ("number", "integer"):
            columns.append(
                {
                    "name": spec.name,
                    "type": spec.type,
                    "binEdges": np.quantile(values.to_numpy(dtype=float), deciles).tolist(),
                }
            )
        else:
            counts = values.astype(str).value_counts()
            columns.append(
                {
                    "name": spec.name,
                    "type": spec.type,
                    "frequencies": [{"value": k, "count": int(v)} for k, v in counts.items()],
                }
            )
    target_values = frame[target]
    target_profile: dict[str, Any] = {"name": target}
    if pd.api.types.is_float_dtype(target_values):
        target_profile["binEdges"] = np.quantile(target_values.to_numpy(), deciles).tolist()
    return {"columns": columns, "target": target_profile}


def _train(
    store: ObjectStore,
    prefix: str,
    frame: pd.DataFrame,
    *,
    name: str,
    target: str,
    task: str,
    estimator: dict[str, Any],
) -> ServedModel:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    snapshot = store.upload(buffer.getvalue(), f"{prefix}{name}/snapshot.parquet")
    body = {
        "trial": 0,
        "spec": {
            "datasetRef": {"name": name},
            "modelName": name,
            "estimator": estimator,
            "seed": 7,
        },
        "snapshotURI": str(snapshot.uri),
        "snapshotSha256": snapshot.sha256,
        "target": target,
        "outputPrefix": f"s3://{store.bucket}/{prefix}{name}/runs/",
        "datasetVersion": f"sha256:{snapshot.sha256}",
        "trainingRun": f"{name}-run",
        "namespace": "ns",
        "latencyRuns": 10,
    }
    config = TrialConfig.model_validate(body)
    result = run_trial(config, store)
    artifact = S3Uri.parse(result.artifact_uri)
    model_uri = artifact.join("model.onnx")
    model_buffer = io.BytesIO()
    store.download_verified(model_uri, model_buffer, result.model_sha256)
    signature = result.signature
    names = [spec.name for spec in signature.inputs]
    test_set = artifact.join("test-set.parquet")
    if store.exists(test_set):  # the trainer's own test rows, when it writes them
        test_buffer = io.BytesIO()
        store.download(test_set, test_buffer)
        test_rows = pd.read_parquet(io.BytesIO(test_buffer.getvalue()))[names]
    else:
        y = frame[target].to_numpy()
        if task == "classification":
            y = np.where(y, "true", "false")
        split = split_rows(y, config.spec.split, task, config.spec.seed)  # type: ignore[arg-type]
        test_rows = frame.iloc[split.test][names].reset_index(drop=True)
    session = ort.InferenceSession(model_buffer.getvalue(), providers=["CPUExecutionProvider"])
    expected = session.run(None, client_feeds(test_rows, signature))
    profile = profile_document(frame, signature, target)
    profile_uri = store.upload(json.dumps(profile).encode(), f"{prefix}{name}/profile.json").uri
    return ServedModel(
        name=name,
        uri=str(model_uri),
        sha256=result.model_sha256,
        signature=signature,
        profile_uri=str(profile_uri),
        test_rows=test_rows,
        expected=expected,
        model_bytes=model_buffer.getvalue(),
    )


@dataclass(frozen=True)
class ServedModels:
    classification: ServedModel
    regression: ServedModel


@pytest.fixture(scope="session")
def served_models(seaweedfs: S3Endpoint) -> Iterator[ServedModels]:
    prefix = "tests/serving-models/"
    with ObjectStore(seaweedfs.settings()) as store:
        classification = _train(
            store,
            prefix,
            churn_frame(1500).drop(columns=["customer_id", "age_band"]),
            name="churn",
            target="churned",
            task="classification",
            estimator={"name": "HistGradientBoostingClassifier", "params": {"max_iter": 30}},
        )
        diabetes = load_diabetes(as_frame=True).frame
        diabetes["clinic"] = np.where(diabetes["bmi"] > 0, "a", "b")
        regression = _train(
            store,
            prefix,
            diabetes,
            name="diabetes",
            target="target",
            task="regression",
            estimator={"name": "GradientBoostingRegressor", "params": {"n_estimators": 30}},
        )
    yield ServedModels(classification, regression)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """``kubeloop serve`` in a subprocess; ``url``, ``client``, ``stop()``, ``log``."""

    def __init__(
        self,
        seaweedfs: S3Endpoint,
        model: ServedModel,
        tmp_path: Path,
        *,
        sha256: str | None = None,
        uri: str | None = None,
        extra: dict[str, str] | None = None,
        version: str = "1",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.model = model
        self.version = version
        self.log_path = tmp_path / f"serve-{self.port}.log"
        env = {
            **os.environ,
            **seaweedfs.env(),
            **FAST_S3_ENV,
            "KUBELOOP_SERVE_MODEL_NAME": model.name,
            "KUBELOOP_SERVE_MODEL_VERSION": version,
            "KUBELOOP_SERVE_MODEL_URI": uri or model.uri,
            "KUBELOOP_SERVE_MODEL_SHA256": sha256 or model.sha256,
            "KUBELOOP_SERVE_HOST": "127.0.0.1",
            "KUBELOOP_SERVE_PORT": str(self.port),
            "KUBELOOP_SERVE_THREADS": "1",
            "KUBELOOP_SERVE_POD_NAME": "test-pod",
            **(extra or {}),
        }
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubeloop", "serve"],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_live(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"kubeloop serve exited early:\n{self.log}")
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/v2/health/live").status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"kubeloop serve never became live:\n{self.log}")

    def wait_ready(self, timeout: float = 30) -> None:
        self.wait_live(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.get("/v2/health/ready").status_code == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"kubeloop serve never became ready:\n{self.log}")

    def metrics(self) -> str:
        return self.client.get("/metrics").text

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in head for key, val in labels.items()):
            return float(value)
    return 0.0
