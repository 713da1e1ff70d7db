"""The workload runtime: kubeloop's own commands run in restricted pods on the process node."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml
from tests.cluster.conftest import Kubectl, wait_for_pod_end
from tests.cluster.test_node import RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY

from kubeloop.devenv.runtime import ensure_runtime
from kubeloop.devenv.seaweedfs import SeaweedFS
from kubeloop.resources.common import WorkloadSettings, s3_env
from kubeloop.storage import ObjectStore

pytestmark = pytest.mark.cluster


def test_kubeloop_runs_as_the_restricted_workload_user(kubectl: Kubectl, namespace: str) -> None:
    kubeloop = ensure_runtime()
    kubectl.ok("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runtime"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": RESTRICTED_POD_SECURITY,
            "containers": [
                {
                    "name": "main",
                    "image": "kubeloop/host",
                    "command": [str(kubeloop), "data", "profile", "--help"],
                    "securityContext": RESTRICTED_CONTAINER_SECURITY,
                }
            ],
        },
    }
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(pod))
    status = wait_for_pod_end(kubectl, namespace, "runtime", timeout=90)
    assert status["phase"] == "Succeeded", status
    assert "usage: kubeloop data profile" in kubectl.ok("logs", "runtime", "-n", namespace)


def test_pods_reach_seaweedfs_on_the_bridge_with_secret_credentials(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """What every profiling and training pod does first: S3 from a restricted pod."""
    kubeloop = ensure_runtime()
    with SeaweedFS(tmp_path / "s3", bind_ip="10.88.0.1") as endpoint:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kubeloop-s3"},
            "stringData": {
                "accessKey": endpoint.access_key,
                "secretKey": endpoint.secret_key.get_secret_value(),
            },
        }
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(secret))
        settings = WorkloadSettings(
            image="kubeloop/host",
            command=(str(kubeloop),),
            s3_endpoint=endpoint.url,
            s3_bucket=endpoint.bucket,
            s3_secret="kubeloop-s3",
        )
        python = str(kubeloop.parent / "python")
        script = (
            "from kubeloop.storage import ObjectStore, S3Settings\n"
            "store = ObjectStore(S3Settings())\n"
            "store.check()\n"
            "result = store.upload(b'from a pod', 'probe/hello.txt')\n"
            "print('uploaded', result.sha256)\n"
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "s3-client"},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": RESTRICTED_POD_SECURITY,
                "containers": [
                    {
                        "name": "main",
                        "image": "kubeloop/host",
                        "command": [python, "-c", script],
                        "env": s3_env(settings),
                        "securityContext": RESTRICTED_CONTAINER_SECURITY,
                    }
                ],
            },
        }
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(pod))
        wait_for_pod_end(kubectl, namespace, "s3-client", timeout=90)
        logs = kubectl.ok("logs", "s3-client", "-n", namespace)
        expected = hashlib.sha256(b"from a pod").hexdigest()
        assert f"uploaded {expected}" in logs, logs
        with ObjectStore(endpoint.settings()) as store:
            assert store.stat("probe/hello.txt").sha256 == expected
        pod_spec = kubectl.json("get", "pod", "s3-client", "-n", namespace)
        assert endpoint.secret_key.get_secret_value() not in str(pod_spec)
