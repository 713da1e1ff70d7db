"""The operator's one adapter against the real API server: apply, list, delete of managed kinds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import config
from kubernetes.client.exceptions import ApiException

from kubeloop.devenv.cluster import ClusterInfo
from kubeloop.k8s import FIELD_MANAGER, KubernetesAdapter

pytestmark = pytest.mark.cluster


@pytest.fixture
def adapter(cluster: ClusterInfo) -> Iterator[KubernetesAdapter]:
    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    yield KubernetesAdapter(api_client)
    api_client.close()


def _service(namespace: str, name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"kubeloop.io/test": "a"}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]},
    }


def test_apply_is_idempotent_lists_by_label_and_deletes(
    adapter: KubernetesAdapter, namespace: str
) -> None:
    first = adapter.apply(_service(namespace, "svc-a", 80))
    again = adapter.apply(_service(namespace, "svc-a", 80))
    # The same desired object twice: nothing changed on the server.
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    managers = {entry["manager"] for entry in again["metadata"]["managedFields"]}
    assert FIELD_MANAGER in managers

    changed = adapter.apply(_service(namespace, "svc-a", 8080))
    assert changed["spec"]["ports"][0]["port"] == 8080
    adapter.apply(_service(namespace, "svc-b", 80))

    listed = adapter.list_objects("v1", "Service", namespace, "kubeloop.io/test=a")
    assert sorted(item["metadata"]["name"] for item in listed) == ["svc-a", "svc-b"]
    assert adapter.delete_object("v1", "Service", namespace, "svc-b") is True
    assert adapter.delete_object("v1", "Service", namespace, "svc-b") is False
    listed = adapter.list_objects("v1", "Service", namespace, "kubeloop.io/test=a")
    assert [item["metadata"]["name"] for item in listed] == ["svc-a"]


def test_an_invalid_object_is_refused_with_the_field_named(
    adapter: KubernetesAdapter, namespace: str
) -> None:
    with pytest.raises(ApiException) as refused:
        adapter.apply(_service(namespace, "svc-bad", 70000))
    assert refused.value.status == 422
    assert "spec.ports[0].port" in str(refused.value.body)


def test_kinds_outside_the_table_are_refused_before_any_call(adapter: KubernetesAdapter) -> None:
    with pytest.raises(ValueError, match="does not manage v1 Secret"):
        adapter.list_objects("v1", "Secret", "default", "")
