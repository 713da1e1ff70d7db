"""The Dataset controller on the real cluster: a profiling Job on the process node, S3 in
SeaweedFS, the answer in the status; bad new data is Invalid and the last good version stays.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.cluster.conftest import REPO, Kubectl, wait_until

from kubeloop.devenv.cluster import ClusterInfo
from kubeloop.devenv.demo import iris_csv
from kubeloop.devenv.runtime import ensure_runtime
from kubeloop.devenv.seaweedfs import S3Endpoint, SeaweedFS
from kubeloop.storage import ObjectStore, S3Uri

pytestmark = pytest.mark.cluster

DATA_BUCKET = "kubeloop-demo"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    with SeaweedFS(tmp_path_factory.mktemp("s3"), bind_ip="10.88.0.1") as endpoint:
        with ObjectStore(endpoint.settings()) as store:
            store.ensure_bucket(DATA_BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def operator_namespace(
    cluster: ClusterInfo,
    kubectl: Kubectl,
    crds_installed: None,
    s3: S3Endpoint,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    namespace = f"t-dataset-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", namespace)
    kubectl.ok("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kubeloop-s3"},
        "stringData": {"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()},
    }
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(secret))
    wait_until(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", namespace).returncode == 0,
        timeout=30,
        what="the default ServiceAccount",
    )
    kubeloop = ensure_runtime()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "KUBELOOP_NAMESPACES": json.dumps([namespace]),
        "KUBELOOP_WORKLOAD_COMMAND": json.dumps([str(kubeloop)]),
        "KUBELOOP_WORKLOAD_S3_ENDPOINT": s3.url,
        "KUBELOOP_ARTIFACT_BUCKET": s3.bucket,
        "KUBELOOP_METRICS_PORT": "0",
    }
    log = (tmp_path_factory.mktemp("operator") / "operator.log").open("w")
    operator = subprocess.Popen(
        [sys.executable, "-m", "kubeloop", "operator"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    yield namespace
    operator.terminate()
    try:
        operator.wait(timeout=20)
    except subprocess.TimeoutExpired:
        operator.kill()
    log.close()
    kubectl.run("delete", "namespace", namespace, "--wait=false")


def _dataset(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris"},
        "spec": {"source": {"uri": uri}, "target": "species", "validation": {"minRows": 100}},
    }


def _status(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        kubectl.json("get", "datasets.kubeloop.io", "iris", "-n", namespace).get("status") or {}
    )
    return status


def test_dataset_becomes_ready_then_bad_data_is_invalid_and_last_good_kept(
    kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint
) -> None:
    namespace = operator_namespace
    good_uri = f"s3://{DATA_BUCKET}/iris/iris.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(iris_csv(), S3Uri.parse(good_uri), content_type="text/csv")
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(_dataset(good_uri)))

    ready = wait_until(
        lambda: (s := _status(kubectl, namespace)).get("phase") == "Ready" and s,
        timeout=180,
        what="Dataset iris Ready",
    )
    version = ready["version"]
    assert version.startswith("sha256:")
    assert ready["rows"] == 150
    assert {c["name"] for c in ready["columns"]} >= {"petal_length", "species"}
    with ObjectStore(s3.settings()) as store:
        assert store.exists(S3Uri.parse(ready["profileURI"]))
        assert store.exists(S3Uri.parse(ready["snapshotURI"]))

    # New content where a numeric column turned into text: Invalid, column named, v1 kept.
    frame = pd.read_csv(io.BytesIO(iris_csv()))
    frame["petal_length"] = frame["petal_length"].map(lambda value: f"{value} cm")
    bad_uri = f"s3://{DATA_BUCKET}/iris/iris-v2.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(
            frame.to_csv(index=False).encode(), S3Uri.parse(bad_uri), content_type="text/csv"
        )
    kubectl.ok(
        "patch", "datasets.kubeloop.io", "iris", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"source": {"uri": bad_uri}}}),
    )  # fmt: skip
    invalid = wait_until(
        lambda: (s := _status(kubectl, namespace)).get("phase") == "Invalid" and s,
        timeout=180,
        what="Dataset iris Invalid",
    )
    assert "petal_length" in invalid["message"]
    assert invalid["version"] == version  # the last good version stays usable
    conditions = {c["type"]: c for c in invalid["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Validated"]["status"] == "False"

    jobs = kubectl.json("get", "jobs", "-n", namespace, "-l", "kubeloop.io/dataset=iris")["items"]
    assert sorted(job["metadata"]["name"] for job in jobs) == ["iris-profile-g1", "iris-profile-g2"]
    events = kubectl.ok(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=iris"
    )
    assert "Profiling" in events
