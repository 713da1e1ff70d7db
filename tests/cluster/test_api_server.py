"""The real API server: version, health, CRDs, examples and the bad-input catalogue.

These need only the control plane; everything is judged by the API server itself.
"""

from __future__ import annotations

import json

import pytest
from tests.cluster.conftest import REPO, Kubectl, wait_until
from tests.samples.catalogue import Sample, load_invalid_samples

pytestmark = pytest.mark.cluster

SAMPLES = load_invalid_samples()


def test_server_is_the_version_we_built(kubectl: Kubectl) -> None:
    version = json.loads(kubectl.ok("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.37.")
    assert version["clientVersion"]["gitVersion"] == version["serverVersion"]["gitVersion"]
    assert kubectl.ok("get", "--raw", "/readyz").strip() == "ok"


def test_crds_are_established_with_names_and_category(
    kubectl: Kubectl, crds_installed: None
) -> None:
    crds = kubectl.json("get", "crd", "-l", "app.kubernetes.io/part-of=kubeloop")["items"]
    names = {crd["metadata"]["name"] for crd in crds}
    assert names == {
        "datasets.kubeloop.io",
        "trainingruns.kubeloop.io",
        "modelversions.kubeloop.io",
        "deployments.kubeloop.io",
    }
    for crd in crds:
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert crd["status"]["acceptedNames"]["categories"] == ["kubeloop"]


def test_kubectl_explain_shows_model_descriptions(kubectl: Kubectl, crds_installed: None) -> None:
    # The published OpenAPI catches up with new CRDs a moment after they are Established.
    def explain(path: str) -> str:
        result = kubectl.run("explain", path)
        return result.stdout if result.returncode == 0 else ""

    explained = wait_until(
        lambda: explain("trainingruns.kubeloop.io.spec.search.parallelism"),
        timeout=60,
        what="kubectl explain of trainingruns",
    )
    assert "Trials that run at the same time." in explained
    explained = wait_until(
        lambda: explain("deployments.kubeloop.io.spec.strategy.canary.steps"),
        timeout=60,
        what="kubectl explain of deployments.kubeloop.io",
    )
    assert "after the last one the candidate takes all traffic" in explained


def test_examples_apply_and_list_in_the_category(
    kubectl: Kubectl, crds_installed: None, namespace: str
) -> None:
    applied = kubectl.ok("apply", "-n", namespace, "-f", str(REPO / "examples"))
    example_count = len(list((REPO / "examples").glob("*.yaml")))
    assert applied.count(" created") == example_count, applied
    listed = kubectl.ok("get", "kubeloop", "-n", namespace, "-o", "name").split()
    assert len(listed) == example_count
    canary = kubectl.json("get", "deployments.kubeloop.io", "iris-canary", "-n", namespace)
    # Defaults are applied by the API server from the schema.
    assert canary["spec"]["traffic"]["router"] == "Builtin"
    assert canary["spec"]["monitoring"]["thresholds"]["psi"] == 0.2


def test_short_names_resolve(kubectl: Kubectl, crds_installed: None, namespace: str) -> None:
    for short in ("mldata", "trun", "mv", "mldeploy"):
        assert kubectl.run("get", short, "-n", namespace).returncode == 0, short


@pytest.mark.parametrize("sample", SAMPLES, ids=[sample.path.name for sample in SAMPLES])
def test_invalid_sample_is_rejected_by_the_api_server(
    kubectl: Kubectl, crds_installed: None, sample: Sample
) -> None:
    result = kubectl.run("apply", "--dry-run=server", "-n", "default", "-f", str(sample.path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"{sample.path.name} was accepted: {output}"
    missing = [expect for expect in sample.expects if expect not in output]
    assert not missing, f"{sample.path.name}: {missing} not in the API server's answer:\n{output}"


def test_modelversion_facts_are_immutable(
    kubectl: Kubectl, crds_installed: None, namespace: str
) -> None:
    kubectl.ok("apply", "-n", namespace, "-f", str(REPO / "examples" / "modelversion-iris-v1.yaml"))
    patch = json.dumps({"spec": {"artifact": {"sha256": "0" * 64}}})
    result = kubectl.run(
        "patch", "modelversion", "iris-v1", "-n", namespace, "--type=merge", "-p", patch
    )
    assert result.returncode != 0
    assert "is immutable once the ModelVersion exists" in result.stderr
    # The stage is the one field people change.
    kubectl.ok(
        "patch",
        "modelversion",
        "iris-v1",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"stage":"Production"}}',
    )
    kubectl.ok(
        "patch",
        "modelversion",
        "iris-v1",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"stage":"Archived"}}',
    )
    result = kubectl.run(
        "patch",
        "modelversion",
        "iris-v1",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"stage":"Production"}}',
    )
    assert "an Archived version can only move back to Staging" in result.stderr
