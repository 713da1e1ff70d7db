"""The one adapter between kubeloop and the Kubernetes API server.

Controllers ask it for what they need in kubeloop's terms (create a child unless it exists,
read a Job's pods' termination messages, write a custom object's status) and it speaks the
API. API errors are never swallowed: only "already exists" on create-if-absent is expected,
because that is how a restarted operator finds the child it made before.
"""

from __future__ import annotations

import json
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeloop import API_GROUP, API_VERSION

_CONFLICT = 409
_NOT_FOUND = 404
_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# Server-side apply: one field manager for everything the operator owns, so a second apply
# of the same desired object is a no-op and fields set by others (an HPA's replicas) survive.
FIELD_MANAGER = "kubeloop-operator"

# The kinds the adapter addresses by path: apiVersion/kind -> URL path segment (plural). The
# Deployment controller's children and what it reads, and leader election's Lease. A table
# rather than discovery: the operator only ever touches these, and RBAC lists them.
_PLURALS: dict[tuple[str, str], str] = {
    ("v1", "Service"): "services",
    ("v1", "ServiceAccount"): "serviceaccounts",
    ("v1", "Pod"): "pods",
    ("v1", "ConfigMap"): "configmaps",
    ("apps/v1", "Deployment"): "deployments",
    ("rbac.authorization.k8s.io/v1", "Role"): "roles",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebindings",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("discovery.k8s.io/v1", "EndpointSlice"): "endpointslices",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
    ("coordination.k8s.io/v1", "Lease"): "leases",
}


def _collection_path(api_version: str, kind: str, namespace: str) -> str:
    plural = _PLURALS.get((api_version, kind))
    if plural is None:
        raise ValueError(f"the adapter does not manage {api_version} {kind}")
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"


class KubernetesAdapter:
    """Typed access to the few API calls the controllers make."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._api = api_client

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One REST call by path (kinds without a typed client method we want), JSON back."""
        request = self._api.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._api.call_api(*request)
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return cast(dict[str, Any], json.loads(data)) if data else {}

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply ``obj`` (any kind in the adapter's table) as the operator."""
        meta = obj["metadata"]
        path = _collection_path(obj["apiVersion"], obj["kind"], meta["namespace"])
        return self._call(
            "PATCH",
            f"{path}/{meta['name']}",
            body=obj,
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )

    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """One object of a managed kind, or None when it does not exist."""
        path = _collection_path(api_version, kind, namespace)
        try:
            return self._call("GET", f"{path}/{name}")
        except ApiException as error:
            if error.status == _NOT_FOUND:
                return None
            raise

    def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        """Objects of a managed kind in ``namespace`` matching ``label_selector``, as dicts."""
        path = _collection_path(api_version, kind, namespace)
        items = self._call("GET", path, query=[("labelSelector", label_selector)]).get("items")
        return list(items or [])

    def delete_object(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (children go with it: background propagation); False if absent."""
        path = _collection_path(api_version, kind, namespace)
        try:
            self._call("DELETE", f"{path}/{name}", body={"propagationPolicy": "Background"})
        except ApiException as error:
            if error.status == _NOT_FOUND:
                return False
            raise
        return True

    def write_lease(self, lease: dict[str, Any]) -> bool:
        """Create ``lease``, or replace it when it carries a resourceVersion.

        False when another writer got there first (409: the name is taken, or the
        resourceVersion is stale), which in leader election means "not this time".
        """
        meta = lease["metadata"]
        path = _collection_path(lease["apiVersion"], lease["kind"], meta["namespace"])
        try:
            if meta.get("resourceVersion"):
                self._call("PUT", f"{path}/{meta['name']}", body=lease)
            else:
                self._call("POST", path, body=lease)
        except ApiException as error:
            if error.status == _CONFLICT:
                return False
            raise
        return True

    def create_job_if_absent(self, job: dict[str, Any]) -> bool:
        """Create ``job``; False when a Job of that name already exists (kept as it is)."""
        try:
            # The client serialises plain dicts as they are; V1Job is only its type hint.
            self._batch.create_namespaced_job(job["metadata"]["namespace"], cast(client.V1Job, job))
        except ApiException as error:
            if error.status == _CONFLICT:
                return False
            raise
        return True

    def job_finished(self, namespace: str, name: str) -> bool:
        """Whether the Job has finished (Complete or Failed), or no longer exists."""
        try:
            job = self._batch.read_namespaced_job_status(name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        conditions = json.loads(cast(Any, job).data).get("status", {}).get("conditions") or []
        return any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in conditions
        )

    def termination_messages(self, namespace: str, job: str) -> list[tuple[str, str]]:
        """``(pod name, message)`` of the Job's terminated containers, newest pod first."""
        response = self._core.list_namespaced_pod(
            namespace, label_selector=f"job-name={job}", _preload_content=False
        )
        # Unparsed: the raw JSON is a plain dict, without the client's Optional-everywhere models.
        pods: list[dict[str, Any]] = json.loads(cast(Any, response).data)["items"]
        pods.sort(key=lambda pod: str(pod["metadata"]["creationTimestamp"]), reverse=True)
        messages: list[tuple[str, str]] = []
        for pod in pods:
            for status in pod.get("status", {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated") or {}
                if terminated.get("message"):
                    messages.append((str(pod["metadata"]["name"]), str(terminated["message"])))
        return messages

    def indexed_termination_messages(self, namespace: str, job: str) -> dict[int, str]:
        """Completion index -> termination message of its newest finished pod (Indexed Jobs)."""
        response = self._core.list_namespaced_pod(
            namespace, label_selector=f"job-name={job}", _preload_content=False
        )
        pods: list[dict[str, Any]] = json.loads(cast(Any, response).data)["items"]
        pods.sort(key=lambda pod: str(pod["metadata"]["creationTimestamp"]))
        messages: dict[int, str] = {}
        for pod in pods:  # oldest first, so a retry's answer replaces the first try's
            index = (pod["metadata"].get("annotations") or {}).get(_COMPLETION_INDEX)
            if index is None:
                continue
            for status in pod.get("status", {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated") or {}
                if terminated.get("message"):
                    messages[int(index)] = str(terminated["message"])
        return messages

    def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A kubeloop object, or None when it is gone."""
        try:
            body = cast(
                dict[str, Any],
                self._custom.get_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, plural, name
                ),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return body

    def list_custom(self, plural: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """kubeloop objects of ``plural`` in ``namespace`` matching ``label_selector``."""
        listing = cast(
            dict[str, Any],
            self._custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, label_selector=label_selector
            ),
        )
        items: list[dict[str, Any]] = listing.get("items", [])
        return items

    def create_custom_if_absent(self, plural: str, body: dict[str, Any]) -> bool:
        """Create a kubeloop object; False when the name is taken already."""
        try:
            self._custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, body["metadata"]["namespace"], plural, body
            )
        except ApiException as error:
            if error.status == _CONFLICT:
                return False
            raise
        return True

    def patch_spec(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        """Merge ``spec`` into a kubeloop object's spec (the stage rules of the registry)."""
        self._custom.patch_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, plural, name, {"spec": spec}
        )

    def annotate_custom(
        self, plural: str, namespace: str, name: str, annotations: dict[str, str]
    ) -> None:
        """Merge ``annotations`` into a kubeloop object's metadata (a Dataset refresh request)."""
        self._custom.patch_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            namespace,
            plural,
            name,
            {"metadata": {"annotations": annotations}},
        )

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Merge ``status`` into the object's status subresource."""
        self._custom.patch_namespaced_custom_object_status(
            API_GROUP, API_VERSION, namespace, plural, name, {"status": status}
        )
