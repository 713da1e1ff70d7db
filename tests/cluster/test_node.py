"""The process node under the real control plane: Jobs, Deployments, Services, security.

Each test drives the cluster only through ``kubectl`` and judges by what the API server
reports, as a user of a real cluster would. Pods run host commands (``/usr/bin/python3``) as
processes in their own network namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cluster.conftest import Kubectl, wait_for_pod_end, wait_until

from kubeloop.devenv.cluster import ClusterInfo

pytestmark = pytest.mark.cluster

PYTHON = "/usr/bin/python3"
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def apply(kubectl: Kubectl, namespace: str, manifest: dict[str, Any]) -> None:
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest))


def pod_of(kubectl: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "pods", "-n", namespace, "-l", selector)[
        "items"
    ]
    return items


def container(command: list[str], name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "kubeloop/host", "command": command, **extra}


def test_node_is_ready_with_capacity(kubectl: Kubectl) -> None:
    node = kubectl.json("get", "node", "kubeloop-node")
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert int(node["status"]["capacity"]["cpu"]) >= 1
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "10.88.0.1"
    lease = kubectl.json("get", "lease", "kubeloop-node", "-n", "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == "kubeloop-node"


def test_job_completes_with_termination_message(kubectl: Kubectl, namespace: str) -> None:
    script = "open('/dev/termination-log', 'w').write('trained: accuracy=0.97'); print('hello from a job')"
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "ok"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [container([PYTHON, "-c", script])],
                    }
                },
            },
        },
    )
    kubectl.ok("wait", "-n", namespace, "--for=condition=Complete", "job/ok", "--timeout=60s")
    (pod,) = pod_of(kubectl, namespace, "job-name=ok")
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    assert state["message"] == "trained: accuracy=0.97"
    assert pod["status"]["phase"] == "Succeeded"
    assert "hello from a job" in kubectl.ok("logs", "-n", namespace, pod["metadata"]["name"])


def test_failing_job_is_retried_then_fails(kubectl: Kubectl, namespace: str) -> None:
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "fails"},
            "spec": {
                "backoffLimit": 1,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [container([PYTHON, "-c", "import sys; sys.exit(3)"])],
                    }
                },
            },
        },
    )
    kubectl.ok("wait", "-n", namespace, "--for=condition=Failed", "job/fails", "--timeout=120s")
    job = kubectl.json("get", "job", "fails", "-n", namespace)
    reasons = {c["type"]: c.get("reason") for c in job["status"]["conditions"]}
    assert reasons["Failed"] == "BackoffLimitExceeded"
    pods = pod_of(kubectl, namespace, "job-name=fails")
    assert len(pods) == 2  # the first try and one retry
    for pod in pods:
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 3
        assert terminated["reason"] == "Error"


def _http_deployment(replicas: int) -> list[dict[str, Any]]:
    labels = {"app": "web"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": RESTRICTED_POD_SECURITY,
                        "containers": [
                            container(
                                [PYTHON, "-m", "http.server", "8080", "--directory", "/srv"],
                                ports=[{"containerPort": 8080}],
                                readinessProbe={
                                    "httpGet": {"path": "/", "port": 8080},
                                    "periodSeconds": 1,
                                },
                                securityContext=RESTRICTED_CONTAINER_SECURITY,
                                volumeMounts=[{"name": "content", "mountPath": "/srv"}],
                            )
                        ],
                        "volumes": [{"name": "content", "configMap": {"name": "web-content"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-content"},
            "data": {"index.html": "served by a kubeloop-node pod\n"},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]},
        },
    ]


def test_deployment_service_proxy_restart_and_garbage_collection(
    kubectl: Kubectl, namespace: str
) -> None:
    for manifest in _http_deployment(replicas=2):
        apply(kubectl, namespace, manifest)
    kubectl.ok(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/web", "--timeout=90s"
    )

    body = kubectl.ok(
        "get", "--raw", f"/api/v1/namespaces/{namespace}/services/web:8080/proxy/index.html"
    )
    assert body == "served by a kubeloop-node pod\n"

    pods = pod_of(kubectl, namespace, "app=web")
    ips = {pod["status"]["podIP"] for pod in pods}
    assert len(ips) == 2 and all(ip.startswith("10.88.") for ip in ips)

    def ready_endpoint_ips() -> set[str]:
        slices = kubectl.json(
            "get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=web"
        )
        return {
            address
            for item in slices["items"]
            for endpoint in item.get("endpoints") or []
            if endpoint.get("conditions", {}).get("ready")
            for address in endpoint["addresses"]
        }

    wait_until(
        lambda: ready_endpoint_ips() == ips, timeout=30, what="EndpointSlices with both pod IPs"
    )

    # Kill one pod's process from the host: the node restarts it in place.
    victim = pods[0]
    victim_ip = victim["status"]["podIP"]
    pid = _server_pid_listening_on(victim_ip)
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        pod = kubectl.json("get", "pod", victim["metadata"]["name"], "-n", namespace)
        status = pod["status"]["containerStatuses"][0]
        return status["restartCount"] == 1 and status["ready"] is True

    wait_until(restarted, timeout=60, what="the killed container to come back with restartCount 1")

    kubectl.ok("delete", "deployment", "web", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_until(
        lambda: (
            not pod_of(kubectl, namespace, "app=web")
            and not kubectl.json("get", "replicasets", "-n", namespace)["items"]
        ),
        timeout=60,
        what="ReplicaSet and pods garbage-collected",
    )


def _server_pid_listening_on(ip: str) -> int:
    """The host pid of the http.server bound in the pod whose IP is ``ip``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"http.server" in cmdline and ip in (proc / "net" / "fib_trie").read_text():
                return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no http.server process in the network namespace of {ip}")


def test_processes_run_as_the_requested_user(kubectl: Kubectl, namespace: str) -> None:
    script = (
        "import os; print('uid', os.getuid(), 'gid', os.getgid(), 'groups', sorted(os.getgroups()))"
    )
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "whoami"},
            "spec": {
                "restartPolicy": "Never",
                "securityContext": RESTRICTED_POD_SECURITY,
                "containers": [
                    container([PYTHON, "-c", script], securityContext=RESTRICTED_CONTAINER_SECURITY)
                ],
            },
        },
    )
    ended = wait_for_pod_end(kubectl, namespace, "whoami")
    assert ended["phase"] == "Succeeded", ended
    assert "uid 65532 gid 65532 groups [65532]" in kubectl.ok("logs", "whoami", "-n", namespace)


def test_restricted_namespace_admits_compliant_and_rejects_privileged(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.ok("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    compliant = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "compliant"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": RESTRICTED_POD_SECURITY,
            "containers": [
                container(
                    [PYTHON, "-c", "print('ok')"], securityContext=RESTRICTED_CONTAINER_SECURITY
                )
            ],
        },
    }
    apply(kubectl, namespace, compliant)
    privileged = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {
            "containers": [
                container([PYTHON, "-c", "print('no')"], securityContext={"privileged": True})
            ]
        },
    }
    result = kubectl.run("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(privileged))
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "privileged" in result.stderr


def test_service_account_token_reaches_the_api_and_rbac_limits_it(
    kubectl: Kubectl, namespace: str
) -> None:
    apply(
        kubectl,
        namespace,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
    )
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader-reads-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    script = textwrap.dedent(
        """
        import json, os, ssl, urllib.error, urllib.request
        base = "/var/run/secrets/kubernetes.io/serviceaccount"
        token = open(base + "/token").read()
        namespace = open(base + "/namespace").read()
        context = ssl.create_default_context(cafile=base + "/ca.crt")
        host = os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
        def get(path):
            request = urllib.request.Request("https://" + host + path, headers={"Authorization": "Bearer " + token})
            try:
                with urllib.request.urlopen(request, context=context) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code
        print("pods", get("/api/v1/namespaces/" + namespace + "/pods"))
        print("secrets", get("/api/v1/namespaces/" + namespace + "/secrets"))
        """
    )
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client"},
            "spec": {
                "serviceAccountName": "reader",
                "restartPolicy": "Never",
                "securityContext": RESTRICTED_POD_SECURITY,
                "containers": [
                    container([PYTHON, "-c", script], securityContext=RESTRICTED_CONTAINER_SECURITY)
                ],
            },
        },
    )
    wait_for_pod_end(kubectl, namespace, "client", timeout=60)
    logs = kubectl.ok("logs", "client", "-n", namespace)
    assert "pods 200" in logs, logs
    assert "secrets 403" in logs, logs


def test_environment_from_fields_configmaps_and_secrets(kubectl: Kubectl, namespace: str) -> None:
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"MODE": "fast"},
        },
    )
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"key": "s3cr3t"},
        },
    )
    script = "import json, os; print(json.dumps({k: os.environ.get(k) for k in ['POD_IP', 'POD_NAME', 'MODE', 'SECRET', 'GREETING', 'KUBERNETES_SERVICE_HOST']}))"
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "env"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    container(
                        [PYTHON, "-c", script],
                        env=[
                            {
                                "name": "POD_IP",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                            },
                            {
                                "name": "POD_NAME",
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                            },
                            {
                                "name": "SECRET",
                                "valueFrom": {"secretKeyRef": {"name": "creds", "key": "key"}},
                            },
                            {"name": "GREETING", "value": "hello $(POD_NAME)"},
                        ],
                        envFrom=[{"configMapRef": {"name": "settings"}}],
                    )
                ],
            },
        },
    )
    ended = wait_for_pod_end(kubectl, namespace, "env", timeout=60)
    assert ended["phase"] == "Succeeded", ended
    pod = kubectl.json("get", "pod", "env", "-n", namespace)
    seen = json.loads(kubectl.ok("logs", "env", "-n", namespace).strip().splitlines()[-1])
    assert seen == {
        "POD_IP": pod["status"]["podIP"],
        "POD_NAME": "env",
        "MODE": "fast",
        "SECRET": "s3cr3t",
        "GREETING": "hello env",
        "KUBERNETES_SERVICE_HOST": "10.88.0.1",
    }


def test_pods_reach_services_by_cluster_ip(kubectl: Kubectl, namespace: str) -> None:
    """kube-proxy (nftables mode) makes ClusterIPs work from inside pods."""
    for manifest in _http_deployment(replicas=2):
        apply(kubectl, namespace, manifest)
    kubectl.ok(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/web", "--timeout=90s"
    )
    cluster_ip = kubectl.json("get", "service", "web", "-n", namespace)["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.96.")
    # kube-proxy programs a new Service within about a second; the client retries briefly.
    script = textwrap.dedent(
        f"""
        import time, urllib.request
        for attempt in range(20):
            try:
                body = urllib.request.urlopen("http://{cluster_ip}:8080/index.html", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        print(body.decode().strip())
        """
    )
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "svc-client"},
            "spec": {"restartPolicy": "Never", "containers": [container([PYTHON, "-c", script])]},
        },
    )
    wait_for_pod_end(kubectl, namespace, "svc-client", timeout=60)
    assert (
        kubectl.ok("logs", "svc-client", "-n", namespace).strip() == "served by a kubeloop-node pod"
    )


def test_volume_hiding_the_nodes_state_dir_keeps_the_termination_message(
    kubectl: Kubectl, namespace: str, cluster: ClusterInfo
) -> None:
    """An emptyDir mounted over the path that holds the node's own files (e.g. at /tmp when the
    cluster's state lives under /tmp) must not break the termination-message bind mount."""
    top = "/" + cluster.state_dir.resolve().parts[1]
    script = "open('/dev/termination-log', 'w').write('still here')"
    apply(
        kubectl,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hidden-state"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    container(
                        [PYTHON, "-c", script],
                        volumeMounts=[{"name": "scratch", "mountPath": top}],
                    )
                ],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
            },
        },
    )
    wait_for_pod_end(kubectl, namespace, "hidden-state", timeout=60)
    terminated = kubectl.json("get", "pod", "hidden-state", "-n", namespace)["status"][
        "containerStatuses"
    ][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    assert terminated["message"] == "still here"
