"""Fixtures for tests against the real local cluster.

One cluster per test run (started by :class:`kubeloop.devenv.cluster.LocalCluster`, the code
behind ``make cluster-up``; reused when already running, and then left running), a fresh
namespace per test, and ``kubectl`` of the server's own version with the admin kubeconfig
exported as ``KUBECONFIG``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.devenv.cluster import ClusterConfig, ClusterInfo, LocalCluster

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = Path(os.environ.get("KUBELOOP_CLUSTER_DIR", REPO / ".run" / "cluster"))


@dataclass
class Kubectl:
    """Runs the cluster's kubectl; ``run`` returns the completed process, never raises."""

    info: ClusterInfo

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.info.kubectl),
                f"--kubeconfig={self.info.kubeconfig}",
                f"--cache-dir={self.info.kubectl_cache}",
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        """Run and require success; returns stdout."""
        result = self.run(*args, stdin=stdin, timeout=timeout)
        assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def apply(self, namespace: str, body: dict[str, Any]) -> None:
        """``kubectl apply`` of one manifest given as a dict."""
        self.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))

    def get(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        """One object as JSON."""
        body: dict[str, Any] = self.json("get", kind, name, "-n", namespace)
        return body

    def endpoint_url(self, namespace: str, status: dict[str, Any]) -> str:
        """The host-reachable URL of a kubeloop Deployment's ``status.endpoint`` (the router
        Service's ClusterIP, which kube-proxy serves on the host too; there is no DNS)."""
        service = status["endpoint"].removeprefix("http://").split(".")[0]
        cluster_ip = self.get(namespace, "service", service)["spec"]["clusterIP"]
        return f"http://{cluster_ip}:80"


def wait_until(
    check: Callable[[], Any], *, timeout: float = 60, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or check}: last value {last!r}")


def wait_for_pod_end(
    kubectl: Kubectl, namespace: str, name: str, *, timeout: float = 60
) -> dict[str, Any]:
    """Wait until pod ``name`` has Succeeded or Failed; return its status."""
    status: dict[str, Any] = wait_until(
        lambda: (
            (s := kubectl.json("get", "pod", name, "-n", namespace)["status"]).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        timeout=timeout,
        what=f"pod {name} to finish",
    )
    return status


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterInfo]:
    local = LocalCluster(ClusterConfig(state_dir=STATE_DIR))
    was_running = local.running()
    info = local.up()
    os.environ["KUBECONFIG"] = str(info.kubeconfig)
    yield info
    if not was_running and not os.environ.get("KUBELOOP_KEEP_CLUSTER"):
        local.down()


@pytest.fixture(scope="session")
def kubectl(cluster: ClusterInfo) -> Kubectl:
    return Kubectl(cluster)


@pytest.fixture(scope="session")
def crds_installed(kubectl: Kubectl) -> None:
    # Webhooks of an operator that is not running (a stopped `make demo`) would refuse every
    # ModelVersion change: the tests start their own operator when they need one.
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kubectl.run("delete", kind, "kubeloop.io", "--ignore-not-found")
    kubectl.ok("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl.ok(
        "wait",
        "--for=condition=Established",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=kubeloop",
        "--timeout=60s",
    )


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:6]}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    kubectl.ok("create", "namespace", name)
    kubectl.ok("label", "namespace", name, "kubeloop.io/test=true")
    # Pods need the namespace's default ServiceAccount, made by the controller-manager.
    wait_until(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", name).returncode == 0,
        timeout=30,
        what=f"ServiceAccount default in {name}",
    )
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false")


# Module-scoped fixtures of the modules that run an operator (each module gets its own); they
# live in their own file and are imported last, because that file builds on the helpers above.
from tests.cluster.operator_fixtures import operator_namespace, s3  # noqa: E402, F401
