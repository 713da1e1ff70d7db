"""The Helm chart on the real cluster: what it renders, and the operator it installs.

helm is built from its Go module (``build-helm.sh``). The rendered RBAC is checked against
the kinds the adapter manages (no wildcards, nothing more than the code uses), the API server
accepts every rendered object, and an installed release runs two operator pods on the process
node under the chart's own ServiceAccount: one leads (the Lease, the leader gauge), it
profiles a Dataset and enforces the registry's admission webhook from its pod IP; when its pod
is deleted the standby takes over at once and goes on reconciling, and when a leader is
killed outright its Lease changes hands only after a whole lease duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cluster.conftest import REPO, Kubectl, wait_until
from tests.cluster.operator_fixtures import (
    DATA_BUCKET,
    create_restricted_namespace,
    put_s3_secret,
)

from kubeloop import k8s
from kubeloop.controllers.leader import LeaseTimings
from kubeloop.devenv.cluster import ClusterInfo
from kubeloop.devenv.demo import iris_csv
from kubeloop.devenv.runtime import ensure_runtime
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "kubeloop"
RELEASE = "kl"
OPERATOR = "kl-kubeloop-operator"  # the chart's name for a release called "kl"

# What the code does with each kind of the adapter's table (kubeloop/k8s.py), hence the
# verbs the chart's ClusterRole must grant, and no more. A kind added to the table fails this
# test until it is listed here and in the chart.
CHILD = {"list", "create", "patch", "delete"}  # apply (create or patch), list, delete stale
NEEDED: dict[tuple[str, str], set[str]] = {
    ("v1", "Service"): CHILD,
    ("v1", "ServiceAccount"): CHILD,
    ("apps/v1", "Deployment"): CHILD,
    ("rbac.authorization.k8s.io/v1", "Role"): CHILD,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): CHILD,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): CHILD,
    ("policy/v1", "PodDisruptionBudget"): CHILD,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): CHILD,
    ("v1", "Pod"): {"list"},  # Job pods' messages, serving pods to scrape
    ("v1", "ConfigMap"): {"get"},  # a blue-green smoke request set
    ("discovery.k8s.io/v1", "EndpointSlice"): {"get", "list", "watch"},  # granted to routers
}
# Leader election's Lease: a Role in the release namespace only (checked on its own).
LEASE = ("coordination.k8s.io/v1", "Lease")


@dataclass(frozen=True)
class Helm:
    """helm as built by build-helm.sh, with its cache and config in the test's own directory."""

    binary: str
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 180) -> str:
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory, cluster: ClusterInfo) -> Helm:
    built = subprocess.run(
        ["bash", str(REPO / "tests" / "cluster" / "build-helm.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, f"building helm failed:\n{built.stderr}"
    home = tmp_path_factory.mktemp("helm-home")
    homes = {
        v: str(home / v.lower()) for v in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")
    }
    env = {**os.environ, **homes, "KUBECONFIG": str(cluster.kubeconfig)}
    return Helm(built.stdout.strip().splitlines()[-1], env)


def _render(helm: Helm, *values: str) -> list[dict[str, Any]]:
    text = helm.ok(
        "template", RELEASE, str(CHART), "-n", "kubeloop-system", "--kube-version",
        "1.37.2", *values,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _plural(api_version: str, kind: str) -> tuple[str, str]:
    group = api_version.rpartition("/")[0]
    return group, k8s._PLURALS[(api_version, kind)]


def _granted(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_the_chart_lints_and_its_rbac_is_exactly_what_the_adapter_uses(helm: Helm) -> None:
    helm.ok("lint", "--strict", str(CHART))
    objects = _render(helm)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    operator_rules = by_name[("ClusterRole", OPERATOR)]["rules"]
    for rule in (r for o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]):
        for key in ("apiGroups", "resources", "verbs", "resourceNames"):
            assert "*" not in rule.get(key, []), f"wildcard in {key}: {rule}"
    assert {*NEEDED, LEASE} == set(k8s._PLURALS), "the adapter's kinds changed: update NEEDED"
    for (api_version, kind), verbs in NEEDED.items():
        granted = _granted(operator_rules, *_plural(api_version, kind))
        assert granted == verbs, f"{kind}: the chart grants {sorted(granted)}, needed {verbs}"
    assert "secrets" not in {r for rule in operator_rules for r in rule["resources"]}
    assert not _granted(operator_rules, *_plural(*LEASE))
    # The Lease: creation, then reads and renewals of that one name only.
    lease_rules = by_name[("Role", f"{OPERATOR}-leader-election")]["rules"]
    assert {"get", "update"} == _granted(
        [r for r in lease_rules if r.get("resourceNames") == [OPERATOR]],
        "coordination.k8s.io",
        "leases",
    )
    # Whole cluster by default; RoleBindings in exactly the listed namespaces otherwise.
    assert ("ClusterRoleBinding", OPERATOR) in by_name
    scoped = _render(helm, "--set-json", 'watchNamespaces=["team-a","team-b"]')
    bindings = [
        o for o in scoped if o["kind"] == "RoleBinding" and o["metadata"]["name"] == OPERATOR
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert ("ClusterRoleBinding", OPERATOR) not in {
        (o["kind"], o["metadata"]["name"]) for o in scoped
    }


def test_the_operator_pod_meets_pod_security_restricted_as_rendered(helm: Helm) -> None:
    deployment = next(o for o in _render(helm) if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in container["env"]}
    assert env["KUBELOOP_LEADER_ELECTION"]["value"] == "true"
    assert env["KUBELOOP_WEBHOOK_HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_two_replicas_without_leader_election_are_refused_at_render(helm: Helm) -> None:
    result = helm.run("template", RELEASE, str(CHART), "--set", "leaderElection.enabled=false")
    assert result.returncode != 0
    assert "replicas > 1 needs leaderElection.enabled" in result.stderr


def test_the_api_server_accepts_every_rendered_object(
    helm: Helm, kubectl: Kubectl, crds_installed: None, namespace: str
) -> None:
    text = helm.ok("template", RELEASE, str(CHART), "-n", namespace)
    result = kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/kl-kubeloop-operator created (server dry run)" in result.stdout
    assert (
        "validatingwebhookconfiguration.admissionregistration.k8s.io/kubeloop.io" in result.stdout
    )


def _metrics_gauge(pod_ip: str) -> float:
    with urllib.request.urlopen(f"http://{pod_ip}:8080/metrics", timeout=5) as response:
        text = response.read().decode()
    line = next(x for x in text.splitlines() if x.startswith("kubeloop_operator_leader "))
    return float(line.split()[1])


def _allowed(
    kubectl: Kubectl, user: str, verb: str, group: str, resource: str, *, namespace: str
) -> bool:
    """The API server's RBAC answer (a SubjectAccessReview: no discovery, so it also holds
    for kinds whose CRDs are not installed, as the Gateway API's may not be)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "resourceAttributes": {
                "verb": verb, "group": group, "resource": resource, "namespace": namespace,
            },
        },
    }  # fmt: skip
    answer = json.loads(kubectl.ok("create", "-f", "-", "-o", "json", stdin=json.dumps(review)))
    return bool(answer["status"].get("allowed"))


def _operator_pid(pod: str) -> int:
    """The host PID of ``pod``'s operator (the process node runs it on this host)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process ended meanwhile
            continue
        if b"operator" not in argv or not any(a.endswith(b"kubeloop") for a in argv):
            continue
        pid = cmdline.parent.name
        hostname = subprocess.run(
            ["nsenter", "--target", pid, "--uts", "hostname"],
            capture_output=True,
            text=True,
            check=False,
        )
        if hostname.stdout.strip() == pod:
            return int(pid)
    raise AssertionError(f"no operator process runs with the host name {pod}")


def _holder(kubectl: Kubectl, namespace: str) -> str:
    result = kubectl.run(
        "get", "lease", OPERATOR, "-n", namespace, "-o", "jsonpath={.spec.holderIdentity}"
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def _pods(kubectl: Kubectl, namespace: str) -> dict[str, dict[str, Any]]:
    listed = kubectl.json(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=operator"
    )["items"]
    return {p["metadata"]["name"]: p for p in listed if not p["metadata"].get("deletionTimestamp")}


def _dataset(name: str, uri: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubeloop.io/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": name},
            "spec": {"source": {"uri": uri}, "target": "species"},
        }
    )


def _phase(kubectl: Kubectl, namespace: str, plural: str, name: str) -> str:
    body = kubectl.json("get", plural, name, "-n", namespace)
    return str((body.get("status") or {}).get("phase") or "")


@pytest.fixture(scope="module")
def release(
    helm: Helm,
    kubectl: Kubectl,
    cluster: ClusterInfo,
    crds_installed: None,
    s3: S3Endpoint,
) -> Iterator[tuple[str, str]]:
    """The chart installed in its own namespace, watching one other namespace."""
    suffix = uuid.uuid4().hex[:6]
    system, work = f"t-chart-sys-{suffix}", f"t-chart-work-{suffix}"
    for namespace in (system, work):
        create_restricted_namespace(kubectl, namespace)
    put_s3_secret(kubectl, work, s3)  # the workload pods'
    put_s3_secret(kubectl, system, s3, "operator-s3")  # the operator's own
    kubeloop = str(ensure_runtime())
    # The chart owns the webhook configurations; an operator of another test may have left its own.
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        kubectl.run("delete", kind, "kubeloop.io", "--ignore-not-found")
    helm.ok(
        "install", RELEASE, str(CHART), "-n", system, "--wait", "--timeout", "120s",
        "--set-json", f"command={json.dumps([kubeloop])}",
        "--set-json", f"watchNamespaces={json.dumps([work])}",
        "--set", "leaderElection.leaseSeconds=6",
        "--set", f"workload.s3Endpoint={s3.url}",
        "--set", f"s3.endpoint={s3.url}",
        "--set", f"s3.bucket={s3.bucket}",
        "--set", "s3.existingSecret=operator-s3",
        timeout=240,
    )  # fmt: skip
    yield system, work
    # While the operator runs, so its finalizers come off.
    kubectl.run("delete", "modelversions,datasets", "--all", "-n", work, "--timeout=60s")
    helm.ok("uninstall", RELEASE, "-n", system, "--wait", "--timeout", "60s")
    # Until its pods are gone, a stopping leader may still rewrite the kubeloop.io webhooks
    # (Kopf's cleanup on stop), which would be the next module's operator's by then.
    kubectl.ok(
        "wait", "--for=delete", "pod", "-l", "app.kubernetes.io/component=operator",
        "-n", system, "--timeout=60s",
    )  # fmt: skip
    kubectl.run("delete", "namespace", system, work, "--wait=false")
    # Nothing is left behind that would refuse later ModelVersion changes.
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        left = kubectl.run("get", kind, "kubeloop.io")
        assert left.returncode != 0 and "NotFound" in left.stderr, f"{kind} left after uninstall"


def test_the_installed_operator_leads_once_reconciles_enforces_webhooks_and_fails_over(
    kubectl: Kubectl, release: tuple[str, str], s3: S3Endpoint
) -> None:
    system, work = release
    uri = f"s3://{DATA_BUCKET}/chart/iris.csv"
    with ObjectStore(s3.settings()) as store:
        store.ensure_bucket(DATA_BUCKET)
        store.upload(iris_csv(), S3Uri.parse(uri), content_type="text/csv")

    # One leader of two Running pods, and the gauges agree with the Lease.
    holder = wait_until(lambda: _holder(kubectl, system), timeout=60, what="a Lease holder")
    pods = _pods(kubectl, system)
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods.values())
    leader = holder.rpartition("_")[0]
    assert leader in pods, f"the Lease names {holder}, not one of {sorted(pods)}"
    gauges = {name: _metrics_gauge(p["status"]["podIP"]) for name, p in pods.items()}
    assert gauges == {name: (1.0 if name == leader else 0.0) for name in pods}

    # The chart's ServiceAccount: the adapter's verbs in the watched namespace, nothing
    # elsewhere, and no Secrets anywhere.
    account = f"system:serviceaccount:{system}:{OPERATOR}"
    for (api_version, kind), verbs in NEEDED.items():
        group, plural = _plural(api_version, kind)
        for verb in verbs:
            assert _allowed(kubectl, account, verb, group, plural, namespace=work), (
                f"{verb} {plural}"
            )
            assert not _allowed(kubectl, account, verb, group, plural, namespace="default"), (
                f"{verb} {plural} outside the watched namespace"
            )
    for namespace in (work, system):
        assert not _allowed(kubectl, account, "get", "", "secrets", namespace=namespace)

    # The leader profiles a Dataset with a Job on the node, under the chart's RBAC only.
    kubectl.ok("apply", "-n", work, "-f", "-", stdin=_dataset("iris", uri))
    wait_until(
        lambda: _phase(kubectl, work, "datasets", "iris") == "Ready",
        timeout=180,
        what="Dataset iris Ready",
    )

    # The registry's stage rule, answered by the leader's webhook at its pod IP.
    version = yaml.safe_load((REPO / "examples" / "modelversion-iris-v1.yaml").read_text())
    version["spec"]["gates"]["thresholds"] = [{"metric": "accuracy", "min": 0.99}]
    kubectl.ok("apply", "-n", work, "-f", "-", stdin=yaml.safe_dump(version))
    wait_until(
        lambda: _phase(kubectl, work, "modelversions", "iris-v1") == "Rejected",
        timeout=60,
        what="ModelVersion iris-v1 Rejected by its gate",
    )
    promoted = kubectl.run(
        "patch", "modelversion", "iris-v1", "-n", work, "--type=merge",
        "-p", json.dumps({"spec": {"stage": "Production"}}),
    )  # fmt: skip
    assert promoted.returncode != 0
    assert "is Rejected, not Validated" in promoted.stderr
    url = kubectl.ok(
        "get", "validatingwebhookconfiguration", "kubeloop.io",
        "-o", "jsonpath={.webhooks[0].clientConfig.url}",
    )  # fmt: skip
    assert url.startswith(f"https://{pods[leader]['status']['podIP']}:")

    # The leader's pod goes away: it gives the Lease up and another pod takes over at once.
    # A Lease left to expire is taken a full duration after its last renewal, which was at
    # most one retry period before the delete (the chart's timings, as the operator derives).
    lease = kubectl.json("get", "lease", OPERATOR, "-n", system)
    timings = LeaseTimings.for_duration(float(lease["spec"]["leaseDurationSeconds"]))
    expiry = timings.duration - timings.retry_period
    started = time.monotonic()
    kubectl.ok("delete", "pod", leader, "-n", system, "--wait=false")
    successor = wait_until(
        lambda: (h := _holder(kubectl, system)) and not h.startswith(leader) and h,
        timeout=30,
        what="the standby to take the Lease",
    )
    taken_over = time.monotonic() - started
    assert taken_over < expiry, (
        f"takeover took {taken_over:.1f} s, as long as an expiry ({expiry:.0f} s): "
        "the Lease was not given up"
    )
    new_leader = successor.rpartition("_")[0]
    # The standby, or the pod that replaces the deleted one if it asks first: any live other.
    live = _pods(kubectl, system)
    assert new_leader in live and new_leader != leader, f"{successor} leads; live: {sorted(live)}"
    # ... and goes on reconciling, with the webhook following it.
    kubectl.ok("apply", "-n", work, "-f", "-", stdin=_dataset("iris-again", uri))
    wait_until(
        lambda: _phase(kubectl, work, "datasets", "iris-again") == "Ready",
        timeout=180,
        what="Dataset iris-again Ready after the failover",
    )
    wait_until(
        lambda: kubectl.ok(
            "get", "validatingwebhookconfiguration", "kubeloop.io",
            "-o", "jsonpath={.webhooks[0].clientConfig.url}",
        ).startswith(f"https://{live[new_leader]['status']['podIP']}:"),
        timeout=30,
        what="the webhook configuration to point at the new leader",
    )  # fmt: skip

    # A leader that dies without a word (SIGKILL: no release) keeps the Lease for a whole
    # duration (6 s here): nobody takes it early, and then a standby does.
    dead = new_leader
    killed_holder = _holder(kubectl, system)
    os.kill(_operator_pid(dead), signal.SIGKILL)
    killed_at = time.monotonic()
    successor = wait_until(
        lambda: (h := _holder(kubectl, system)) != killed_holder and h,
        timeout=30,
        interval=0.2,
        what="a standby to take the Lease of the killed leader",
    )
    waited = time.monotonic() - killed_at
    # At the earliest: the last renewal (up to one 0.8 s retry period before the kill) plus
    # the 6 s a standby watches it unchanged.
    assert 4.5 <= waited < 15, f"the Lease changed hands {waited:.1f} s after the kill"
    assert successor.rpartition("_")[0] in _pods(kubectl, system)  # one of the live pods

    # Nothing was refused to the operator on the way.
    for name in _pods(kubectl, system):
        log = kubectl.ok("logs", "-n", system, name)
        assert "Forbidden" not in log and " 403" not in log, log[-3000:]
