"""The workload runtime: kubeloop's own commands run in restricted pods on the process node."""

from __future__ import annotations

import pytest
import yaml
from tests.cluster.conftest import Kubectl, wait_until
from tests.cluster.test_node import RESTRICTED_CONTAINER_SECURITY, RESTRICTED_POD_SECURITY

from kubeloop.devenv.runtime import ensure_runtime

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
    wait_until(
        lambda: (
            kubectl.json("get", "pod", "runtime", "-n", namespace)["status"].get("phase")
            in ("Succeeded", "Failed")
        ),
        timeout=90,
        what="the runtime pod to finish",
    )
    status = kubectl.json("get", "pod", "runtime", "-n", namespace)["status"]
    assert status["phase"] == "Succeeded", status
    assert "usage: kubeloop data profile" in kubectl.ok("logs", "runtime", "-n", namespace)
