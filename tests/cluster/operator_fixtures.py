"""The operator as a real process on the local cluster, for every module that needs one.

Each test module that asks for ``operator_namespace`` gets its own namespace (Pod Security
``restricted`` enforced), the workload S3 Secret, SeaweedFS on the cluster bridge, and its own
``kubeloop operator`` process watching only that namespace, with admission webhooks and
``/metrics``. ``OPERATORS`` lets a test kill and restart its module's operator.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.api.kinds import KINDS
from kubeloop.devenv.cluster import ClusterInfo
from kubeloop.devenv.pki import ClusterPKI
from kubeloop.devenv.runtime import ensure_runtime
from kubeloop.devenv.seaweedfs import S3Endpoint, SeaweedFS
from kubeloop.storage import ObjectStore

REPO = Path(__file__).resolve().parents[2]

DATA_BUCKET = "kubeloop-demo"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    with SeaweedFS(tmp_path_factory.mktemp("s3"), bind_ip="10.88.0.1") as endpoint:
        with ObjectStore(endpoint.settings()) as store:
            store.ensure_bucket(DATA_BUCKET)
        yield endpoint


class OperatorProcess:
    """``kubeloop operator`` as a real process the tests can kill and start again."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.metrics_port = int(env["KUBELOOP_METRICS_PORT"])
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kubeloop", "operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything, as when a node dies."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


OPERATORS: dict[str, OperatorProcess] = {}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def create_restricted_namespace(kubectl: Any, namespace: str) -> None:
    """A namespace where Pod Security ``restricted`` is enforced, with its default ServiceAccount."""
    kubectl.ok("create", "namespace", namespace)
    kubectl.ok("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    deadline = time.monotonic() + 30
    while kubectl.run("get", "serviceaccount", "default", "-n", namespace).returncode != 0:
        assert time.monotonic() < deadline, f"no default ServiceAccount in {namespace} after 30 s"
        time.sleep(0.5)


def put_s3_secret(kubectl: Any, namespace: str, s3: S3Endpoint, name: str = "kubeloop-s3") -> None:
    """The S3 keys as a Secret (accessKey, secretKey), as workloads and the chart read them."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()},
    }
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(secret))


@pytest.fixture(scope="module")
def operator_namespace(
    cluster: ClusterInfo,
    kubectl: Any,  # conftest's Kubectl (conftest imports this module, not the other way)
    crds_installed: None,
    s3: S3Endpoint,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    namespace = f"t-operator-{uuid.uuid4().hex[:6]}"
    create_restricted_namespace(kubectl, namespace)
    put_s3_secret(kubectl, namespace, s3)
    kubeloop = ensure_runtime()
    metrics_port = _free_port()
    # The API server calls the operator's admission webhooks on the bridge, with a serving
    # certificate from the cluster's own CA.
    webhook = ClusterPKI(cluster.state_dir / "pki").serving(
        "operator-webhook",
        "kubeloop-operator",
        dns_names=("kubeloop-operator",),
        ip_addresses=("10.88.0.1",),
    )
    with socket.socket() as probe:
        probe.bind(("10.88.0.1", 0))
        webhook_port = probe.getsockname()[1]
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "KUBELOOP_NAMESPACES": json.dumps([namespace]),
        "KUBELOOP_WORKLOAD_COMMAND": json.dumps([str(kubeloop)]),
        "KUBELOOP_WORKLOAD_S3_ENDPOINT": s3.url,
        "KUBELOOP_ARTIFACT_BUCKET": s3.bucket,
        "KUBELOOP_METRICS_PORT": str(metrics_port),
        **s3.env(),  # the operator's own S3 access: it reads signatures and digests
        "KUBELOOP_WEBHOOK_HOST": "10.88.0.1",
        "KUBELOOP_WEBHOOK_PORT": str(webhook_port),
        "KUBELOOP_WEBHOOK_CERTFILE": str(webhook.cert),
        "KUBELOOP_WEBHOOK_KEYFILE": str(webhook.key),
        "KUBELOOP_WEBHOOK_CAFILE": str(cluster.ca_cert),
    }
    operator = OperatorProcess(env, tmp_path_factory.mktemp("operator") / "operator.log")
    operator.start()
    OPERATORS[namespace] = operator
    yield namespace
    # Deleted while the operator runs, so its finalizers come off: otherwise the namespace
    # stays Terminating for as long as a kept cluster lives.
    # Newest kinds first: what serves, what was registered, what was trained, the data.
    kinds = ",".join(info.crd_name for info in reversed(KINDS))
    kubectl.run("delete", kinds, "--all", "-n", namespace, "--timeout=60s")
    operator.stop()
    # The webhooks point at this operator only: do not leave them to block later changes.
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kubectl.run("delete", kind, "kubeloop.io", "--ignore-not-found")
    kubectl.run("delete", "namespace", namespace, "--wait=false")
