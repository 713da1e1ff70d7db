"""The children of a kubeloop Deployment (``deployments.kubeloop.io``), as plain manifests.

Per live ModelVersion: an ``apps/v1`` Deployment running ``kubeloop serve`` and a Service (port
``http``), plus an optional HorizontalPodAutoscaler and a PodDisruptionBudget. In front of them
either kubeloop's router (ServiceAccount, Role, RoleBinding, Deployment running
``kubeloop route``, and the Service that is the stable endpoint) or, with
``traffic.router: GatewayAPI``, one HTTPRoute with weighted backendRefs.

Everything here is pure: inputs in, manifests out, for server-side apply by the controller.
Names are deterministic (:func:`version_object_name`), so create, resume and update all
converge on the same objects; :func:`stale_children` says which labelled children are no
longer wanted.

Labels and selectors: pods carry only labels that never change for the life of a version
(deployment, modelversion, component), because ``spec.selector`` of an ``apps/v1``
Deployment is immutable and a change to pod labels would restart every pod. The
``kubeloop.io/role`` label, which changes during a rollout, is on the Deployment and the
Service only; the EndpointSlice controller copies the Service's labels onto its slices, which
is how the router finds each version's endpoints (``kubeloop.io/modelversion``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubeloop import API_GROUP
from kubeloop.api.deployment import DeploymentSpec, VersionRole, VersionWeight
from kubeloop.api.meta import ResourceRequirements
from kubeloop.resources.common import (
    COMPONENT_LABEL,
    SCRATCH_DIR,
    Owner,
    WorkloadSettings,
    container_security_context,
    kubeloop_version_annotation,
    labels,
    pod_security_context,
    resources_dict,
    s3_env,
)

SERVER_COMPONENT = "server"
ROUTER_COMPONENT = "router"
DEPLOYMENT_LABEL = f"{API_GROUP}/deployment"
VERSION_LABEL = f"{API_GROUP}/modelversion"
ROLE_LABEL = f"{API_GROUP}/role"

SERVER_PORT = 8080
ROUTER_PORT = 8080
ROUTER_HEALTH_PORT = 8081
ROUTER_METRICS_PORT = 9090
PORT_NAME = "http"

# Draining: the preStop sleep keeps a terminating pod serving while endpoints, kube-proxy and
# the router drop it; then SIGTERM lets the process finish in-flight requests.
PRE_STOP_SECONDS = 5
DRAIN_SECONDS = 20
TERMINATION_GRACE_SECONDS = PRE_STOP_SECONDS + DRAIN_SECONDS + 5

ROUTER_STATE_DIR = f"{SCRATCH_DIR}/kubeloop-route"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3600

GATEWAY_GROUP = "gateway.networking.k8s.io"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 63


@dataclass(frozen=True)
class ServedVersion:
    """What a serving pod needs to know about its ModelVersion (read from the registry).

    ``number`` becomes the V2 model version and the ``version`` label of the server's metrics
    (so analysis scrapes parse with ``version=str(number)``); ``name`` is the ModelVersion's
    object name, used in object names, labels and the Deployment's status.
    """

    name: str
    model: str
    number: int
    artifact_uri: str
    sha256: str
    profile_uri: str | None = None


@dataclass(frozen=True)
class LiveVersion:
    """A version to run, with its place in the rollout (from the state machine's ``versions``)."""

    served: ServedVersion
    role: VersionRole
    weight: int = 0
    mirror_percent: int | None = None

    @classmethod
    def of(cls, served: ServedVersion, entry: VersionWeight) -> LiveVersion:
        """Pair a registry entry with its ``status.versions`` entry."""
        return cls(served, entry.role, entry.weight, entry.mirror_percent)


# --- names ----------------------------------------------------------------------------------


def _dns1035(text: str) -> str:
    """A DNS-1035 label (what Service names must be): dots become dashes, a letter first."""
    name = text.lower().replace(".", "-")
    if not name or not name[0].isalpha():
        name = f"m-{name}"
    return name


def _fit(name: str, seed: str) -> str:
    """``name`` if it fits in 63 characters, else its head plus a hash of ``seed``."""
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(seed.encode()).hexdigest()[:10]
    head = name[: _MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}"


def version_object_name(deployment: str, version: str) -> str:
    """Name of a version's apps/v1 Deployment, Service, HPA and PDB: ``<deployment>-<version>``.

    At most 63 characters and a DNS-1035 label (valid for every kind involved); when too long,
    the head is kept and a hash of the full pair is appended, so two pairs never share a name.
    """
    return _fit(_dns1035(f"{deployment}-{version}"), f"{deployment}/{version}")


def router_name(deployment: str) -> str:
    """Name of the router's Deployment, ServiceAccount, Role and RoleBinding."""
    return _fit(_dns1035(f"{deployment}-router"), f"{deployment}/router")


def endpoint_service_name(deployment: str) -> str:
    """The stable endpoint's Service: named like the kubeloop Deployment itself."""
    return _fit(_dns1035(deployment), f"{deployment}/endpoint")


def preview_service_name(deployment: str) -> str:
    """The blue-green preview endpoint's Service."""
    return _fit(_dns1035(f"{deployment}-preview"), f"{deployment}/preview")


def http_route_name(deployment: str) -> str:
    """The HTTPRoute of ``traffic.router: GatewayAPI``."""
    return _fit(_dns1035(deployment), f"{deployment}/route")


def endpoint_url(
    deployment: str, namespace: str, spec: DeploymentSpec, *, gateway_address: str | None = None
) -> str | None:
    """``status.endpoint``: the URL clients use.

    With the built-in router, the stable Service's in-cluster URL. With the Gateway API the
    endpoint is the Gateway's: ``gateway_address`` is its ``status.addresses[0].value`` as
    the controller read it (None while the Gateway has no address yet, and then so is this).
    """
    if spec.traffic.router == "GatewayAPI":
        return f"http://{gateway_address}" if gateway_address else None
    port = spec.traffic.port
    host = f"{endpoint_service_name(deployment)}.{namespace}.svc"
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"


def label_value(text: str) -> str:
    """A label value (≤ 63 characters) for a name; names the API allows here already fit."""
    return _fit(text, text) if len(text) > _MAX_NAME else text


def children_selector(deployment: str) -> str:
    """Label selector of every child of ``deployment`` (for listing and pruning)."""
    return f"{DEPLOYMENT_LABEL}={label_value(deployment)},app.kubernetes.io/managed-by=kubeloop"


# --- labels ---------------------------------------------------------------------------------


def _version_pod_labels(owner: Owner, version: str) -> dict[str, str]:
    return {**labels(owner, SERVER_COMPONENT), VERSION_LABEL: label_value(version)}


def version_selector(owner: Owner, version: str) -> dict[str, str]:
    """Immutable selector of one version's pods."""
    return {
        DEPLOYMENT_LABEL: label_value(owner.name),
        VERSION_LABEL: label_value(version),
        COMPONENT_LABEL: SERVER_COMPONENT,
    }


def _version_labels(owner: Owner, version: str, role: str) -> dict[str, str]:
    return {**_version_pod_labels(owner, version), ROLE_LABEL: role}


def _metadata(
    owner: Owner, name: str, object_labels: Mapping[str, str], **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(object_labels),
        "annotations": kubeloop_version_annotation(),
        "ownerReferences": [owner.reference()],
        **extra,
    }


# --- serving pods ---------------------------------------------------------------------------


def _cpu_threads(resources: ResourceRequirements | None) -> int | None:
    """Whole CPUs in the limit (at least one), or None without a CPU limit."""
    if resources is None or resources.limits is None or resources.limits.cpu is None:
        return None
    text = str(resources.limits.cpu)
    cpus = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, int(cpus))


def _resources(resources: ResourceRequirements | None) -> dict[str, Any]:
    return resources_dict(
        resources.requests.to_wire() if resources and resources.requests else None,
        resources.limits.to_wire() if resources and resources.limits else None,
    )


def server_env(
    served: ServedVersion,
    spec: DeploymentSpec,
    settings: WorkloadSettings,
    prediction_log_uri: str | None,
) -> list[dict[str, Any]]:
    """``KUBELOOP_SERVE_*`` and ``KUBELOOP_S3_*`` of a serving container (no secret values)."""
    env: list[dict[str, Any]] = [
        {"name": "KUBELOOP_SERVE_MODEL_NAME", "value": served.model},
        {"name": "KUBELOOP_SERVE_MODEL_VERSION", "value": str(served.number)},
        {"name": "KUBELOOP_SERVE_MODEL_URI", "value": served.artifact_uri},
        {"name": "KUBELOOP_SERVE_MODEL_SHA256", "value": served.sha256},
        {"name": "KUBELOOP_SERVE_PORT", "value": str(SERVER_PORT)},
        {"name": "KUBELOOP_SERVE_MAX_BATCH_SIZE", "value": str(spec.max_batch_size)},
        {"name": "KUBELOOP_SERVE_MAX_BATCH_WAIT_MS", "value": f"{spec.max_batch_wait_ms:g}"},
        {"name": "KUBELOOP_SERVE_DRAIN_TIMEOUT", "value": str(DRAIN_SECONDS)},
    ]
    if served.profile_uri:
        env.append({"name": "KUBELOOP_SERVE_PROFILE_URI", "value": served.profile_uri})
    if prediction_log_uri:
        env.append({"name": "KUBELOOP_SERVE_PREDICTION_LOG_URI", "value": prediction_log_uri})
    threads = _cpu_threads(spec.resources)
    if threads is not None:
        env.append({"name": "KUBELOOP_SERVE_THREADS", "value": str(threads)})
    return [*env, *s3_env(settings)]


def build_version_deployment(
    owner: Owner,
    spec: DeploymentSpec,
    live: LiveVersion,
    settings: WorkloadSettings,
    *,
    prediction_log_uri: str | None = None,
) -> dict[str, Any]:
    """The apps/v1 Deployment of one live version's serving pods."""
    served = live.served
    pod_labels = _version_pod_labels(owner, served.name)
    probe_port = {"port": PORT_NAME}
    container: dict[str, Any] = {
        "name": "server",
        "image": settings.image,
        "command": [*settings.command, "serve"],
        "env": server_env(served, spec, settings, prediction_log_uri),
        "ports": [{"name": PORT_NAME, "containerPort": SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", **probe_port},
            "periodSeconds": 2,
            "failureThreshold": 2,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", **probe_port},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        # Loading and verifying the model may take a while; liveness waits for the start.
        "startupProbe": {
            "httpGet": {"path": "/v2/health/live", **probe_port},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
    }
    block = _resources(spec.resources)
    if block:
        container["resources"] = block
    pod_spec: dict[str, Any] = {
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "256Mi"}}],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": version_selector(owner, served.name)},
        # Never below the current capacity while a version's own pods are replaced.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "revisionHistoryLimit": 2,
        "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
    }
    if spec.autoscaling is None:
        deployment_spec["replicas"] = spec.replicas
    # With autoscaling the HPA owns replicas: leaving the field out of the applied manifest
    # keeps server-side apply from fighting it.
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(
            owner,
            version_object_name(owner.name, served.name),
            _version_labels(owner, served.name, live.role),
        ),
        "spec": deployment_spec,
    }


def build_version_service(owner: Owner, live: LiveVersion) -> dict[str, Any]:
    """The ClusterIP Service of one version (its labels reach the EndpointSlices)."""
    version = live.served.name
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            owner,
            version_object_name(owner.name, version),
            _version_labels(owner, version, live.role),
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": version_selector(owner, version),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": SERVER_PORT,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def build_preview_service(owner: Owner, live: LiveVersion) -> dict[str, Any]:
    """``<deployment>-preview``: a fixed address for the blue-green preview version."""
    service = build_version_service(owner, live)
    service["metadata"]["name"] = preview_service_name(owner.name)
    service["metadata"]["labels"] = {**labels(owner, "preview"), ROLE_LABEL: "preview"}
    return service


def build_version_hpa(owner: Owner, spec: DeploymentSpec, live: LiveVersion) -> dict[str, Any]:
    """An autoscaling/v2 HPA on CPU for one version (only with ``spec.autoscaling``)."""
    autoscaling = spec.autoscaling
    assert autoscaling is not None  # noqa: S101 - callers check
    name = version_object_name(owner.name, live.served.name)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner, name, _version_labels(owner, live.served.name, live.role)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def build_version_pdb(owner: Owner, spec: DeploymentSpec, live: LiveVersion) -> dict[str, Any]:
    """A policy/v1 PodDisruptionBudget keeping ``spec.minAvailable`` pods of one version."""
    version = live.served.name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(
            owner,
            version_object_name(owner.name, version),
            _version_labels(owner, version, live.role),
        ),
        "spec": {
            "minAvailable": spec.min_available,
            "selector": {"matchLabels": version_selector(owner, version)},
            # A version whose pods are not ready anyway must not block a node drain.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


# --- the built-in router --------------------------------------------------------------------


def build_router_service_account(owner: Owner) -> dict[str, Any]:
    """The router's own identity (its token is projected explicitly, nothing else mounts it)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(owner, router_name(owner.name), labels(owner, ROUTER_COMPONENT)),
        "automountServiceAccountToken": False,
    }


def build_router_role(owner: Owner) -> dict[str, Any]:
    """Least privilege: read kubeloop Deployments and EndpointSlices in this namespace.

    Namespaced verbs only (get, list, watch), no wildcards. ``resourceNames`` cannot narrow
    list and watch, so the router may read the other kubeloop Deployments of its namespace:
    they hold no secrets (weights and versions only).
    """
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _metadata(owner, router_name(owner.name), labels(owner, ROUTER_COMPONENT)),
        "rules": [
            {
                "apiGroups": [API_GROUP],
                "resources": ["deployments"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["get", "list", "watch"],
            },
        ],
    }


def build_router_role_binding(owner: Owner) -> dict[str, Any]:
    """Binds the router's Role to its ServiceAccount."""
    name = router_name(owner.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(owner, name, labels(owner, ROUTER_COMPONENT)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def _projected_token_volume() -> dict[str, Any]:
    """The service account token, CA and namespace, as the kubelet would mount them."""
    return {
        "name": "kube-api-access",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_SECONDS}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def build_router_deployment(
    owner: Owner, spec: DeploymentSpec, settings: WorkloadSettings, *, replicas: int = 2
) -> dict[str, Any]:
    """The router: NGINX configured by ``kubeloop route`` from this Deployment's status."""
    name = router_name(owner.name)
    pod_labels = labels(owner, ROUTER_COMPONENT)
    selector = {
        DEPLOYMENT_LABEL: label_value(owner.name),
        COMPONENT_LABEL: ROUTER_COMPONENT,
    }
    container: dict[str, Any] = {
        "name": "router",
        "image": settings.image,
        "command": [*settings.command, "route"],
        "env": [
            {"name": "KUBELOOP_ROUTE_NAMESPACE", "value": owner.namespace},
            {"name": "KUBELOOP_ROUTE_DEPLOYMENT", "value": owner.name},
            {"name": "KUBELOOP_ROUTE_LISTEN_PORT", "value": str(ROUTER_PORT)},
            {"name": "KUBELOOP_ROUTE_HEALTH_PORT", "value": str(ROUTER_HEALTH_PORT)},
            {"name": "KUBELOOP_ROUTE_METRICS_PORT", "value": str(ROUTER_METRICS_PORT)},
            {"name": "KUBELOOP_ROUTE_STATE_DIR", "value": ROUTER_STATE_DIR},
        ],
        "ports": [
            {"name": PORT_NAME, "containerPort": ROUTER_PORT, "protocol": "TCP"},
            {"name": "health", "containerPort": ROUTER_HEALTH_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": ROUTER_METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 2,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "scratch", "mountPath": SCRATCH_DIR},
            {"name": "kube-api-access", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True},
        ],
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "scratch", "emptyDir": {"sizeLimit": "256Mi"}},
            _projected_token_volume(),
        ],
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, name, pod_labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 2,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def build_endpoint_service(owner: Owner, spec: DeploymentSpec) -> dict[str, Any]:
    """The stable endpoint: ``spec.traffic.port`` on the router pods' 8080."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(
            owner, endpoint_service_name(owner.name), labels(owner, ROUTER_COMPONENT)
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": {
                DEPLOYMENT_LABEL: label_value(owner.name),
                COMPONENT_LABEL: ROUTER_COMPONENT,
            },
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": spec.traffic.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


# --- Gateway API ----------------------------------------------------------------------------


def _backend(owner: Owner, version: str) -> dict[str, Any]:
    return {
        "group": "",
        "kind": "Service",
        "name": version_object_name(owner.name, version),
        "port": SERVER_PORT,
    }


def build_http_route(
    owner: Owner, spec: DeploymentSpec, versions: Sequence[LiveVersion]
) -> dict[str, Any]:
    """A Gateway API HTTPRoute: weighted backendRefs, and a RequestMirror for a shadow.

    Versions with weight 0 (a preview, a previous stable, an aborted canary) are left out:
    they must get no traffic, and an empty weight says so less clearly than absence.
    """
    ref = spec.traffic.parent_ref
    assert ref is not None  # noqa: S101 - the API requires parentRef with GatewayAPI
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": ref.name}
    if ref.namespace:
        parent["namespace"] = ref.namespace
    if ref.section_name:
        parent["sectionName"] = ref.section_name
    backends = [
        {**_backend(owner, live.served.name), "weight": live.weight}
        for live in versions
        if live.role not in ("shadow", "previous", "preview") and live.weight > 0
    ]
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": backends,
    }
    mirrors = [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": _backend(owner, live.served.name),
                "percent": live.mirror_percent if live.mirror_percent is not None else 100,
            },
        }
        for live in versions
        if live.role == "shadow"
    ]
    if mirrors:
        rule["filters"] = mirrors
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": _metadata(owner, http_route_name(owner.name), labels(owner, "route")),
        "spec": {"parentRefs": [parent], "rules": [rule]},
    }


# --- everything -----------------------------------------------------------------------------


def build_children(
    owner: Owner,
    spec: DeploymentSpec,
    versions: Sequence[LiveVersion],
    settings: WorkloadSettings,
    *,
    prediction_log_uri: str | None = None,
    router_replicas: int = 2,
) -> list[dict[str, Any]]:
    """Every child the Deployment should have now, in apply order.

    ``versions`` are the live versions from the state machine (previous versions still inside
    their scale-down delay included). The router objects come first, so the endpoint exists
    before any version becomes routable; an HTTPRoute comes last, after its backends.
    """
    children: list[dict[str, Any]] = []
    gateway = spec.traffic.router == "GatewayAPI"
    if not gateway:
        children += [
            build_router_service_account(owner),
            build_router_role(owner),
            build_router_role_binding(owner),
            build_router_deployment(owner, spec, settings, replicas=router_replicas),
            build_endpoint_service(owner, spec),
        ]
    for live in versions:
        children.append(
            build_version_deployment(
                owner, spec, live, settings, prediction_log_uri=prediction_log_uri
            )
        )
        children.append(build_version_service(owner, live))
        if spec.autoscaling is not None:
            children.append(build_version_hpa(owner, spec, live))
        if spec.min_available > 0:
            children.append(build_version_pdb(owner, spec, live))
        if live.role == "preview":
            children.append(build_preview_service(owner, live))
    if gateway and versions:
        children.append(build_http_route(owner, spec, versions))
    return children


def child_key(manifest: Mapping[str, Any]) -> tuple[str, str, str]:
    """``(apiVersion, kind, name)`` of a manifest: how children are told apart."""
    return (manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])


def stale_children(
    owner: Owner, existing: Iterable[Mapping[str, Any]], desired: Iterable[Mapping[str, Any]]
) -> list[tuple[str, str, str]]:
    """Children that exist (listed with :func:`children_selector`) but are no longer wanted.

    Only objects ``owner`` controls (an ownerReference with its uid and ``controller: true``)
    are returned, so a user's object that happens to carry the labels is never deleted.
    """
    wanted = {child_key(manifest) for manifest in desired}
    stale: list[tuple[str, str, str]] = []
    for manifest in existing:
        references = manifest.get("metadata", {}).get("ownerReferences") or []
        controlled = any(
            ref.get("controller") is True and ref.get("uid") == owner.uid for ref in references
        )
        if controlled and child_key(manifest) not in wanted:
            stale.append(child_key(manifest))
    return sorted(stale)
