"""Builders of a kubeloop Deployment's children: names, labels, pods, router, HPA, PDB, HTTPRoute."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.api.deployment import DeploymentSpec
from kubeloop.resources.common import Owner, WorkloadSettings
from kubeloop.resources.deployment import (
    DEPLOYMENT_LABEL,
    ROLE_LABEL,
    VERSION_LABEL,
    LiveVersion,
    ServedVersion,
    build_children,
    build_http_route,
    build_router_role,
    build_version_deployment,
    child_key,
    children_selector,
    endpoint_url,
    router_name,
    stale_children,
    version_object_name,
)

SETTINGS = WorkloadSettings(
    image="ghcr.io/kubeloop/kubeloop:0.1.0",
    command=("kubeloop",),
    s3_endpoint="http://seaweedfs:8333",
    s3_bucket="kubeloop",
    s3_secret="kubeloop-s3",
)
OWNER = Owner("Deployment", "iris", "ml", "uid-iris")
SHA = "ab" * 32
V1 = ServedVersion("iris-v1", "iris", 1, "s3://kubeloop/models/ml/iris/v1/model.onnx", SHA)
V2 = ServedVersion(
    "iris-v2",
    "iris",
    2,
    "s3://kubeloop/models/ml/iris/v2/model.onnx",
    "cd" * 32,
    profile_uri="s3://kubeloop/datasets/ml/iris/" + "ef" * 32 + "/profile.json",
)
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
GATEWAY_CRDS = Path(__file__).resolve().parents[1] / "cluster" / "gateway-api"


def _spec(**overrides: Any) -> DeploymentSpec:
    body: dict[str, Any] = {"model": {"track": {"model": "iris"}}}
    body.update(overrides)
    return DeploymentSpec.model_validate(body)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment", "version", "expected"),
    [
        ("iris", "iris-v1", "iris-iris-v1"),
        ("churn.prod", "churn-v12", "churn-prod-churn-v12"),
        ("7eleven", "m-v1", "m-7eleven-m-v1"),
        ("a" * 40, "b" * 40, None),
        ("a" * 253, "iris-v1", None),
    ],
)
def test_version_object_names_fit_and_are_stable(
    deployment: str, version: str, expected: str | None
) -> None:
    name = version_object_name(deployment, version)
    assert len(name) <= 63 and DNS1035.match(name), name
    assert name == version_object_name(deployment, version)
    if expected is not None:
        assert name == expected


def test_long_names_differ_by_pair() -> None:
    names = {
        version_object_name("a" * 40, "b" * 40),
        version_object_name("a" * 40, "b" * 39 + "c"),
        version_object_name("a" * 41, "b" * 39),
    }
    assert len(names) == 3
    assert len(router_name("x" * 70)) <= 63


@pytest.mark.parametrize(
    ("overrides", "address", "url"),
    [
        ({}, None, "http://iris.ml.svc"),
        ({"traffic": {"port": 8000}}, None, "http://iris.ml.svc:8000"),
        ({"traffic": {"router": "GatewayAPI", "parentRef": {"name": "gw"}}}, None, None),
        (
            {"traffic": {"router": "GatewayAPI", "parentRef": {"name": "gw"}}},
            "10.0.0.7",
            "http://10.0.0.7",
        ),
    ],
)
def test_endpoint_url(overrides: dict[str, Any], address: str | None, url: str | None) -> None:
    assert endpoint_url("iris", "ml", _spec(**overrides), gateway_address=address) == url


# --- serving pods ---------------------------------------------------------------------------


def test_version_deployment_runs_kubeloop_serve_with_its_settings() -> None:
    spec = _spec(
        maxBatchSize=16,
        maxBatchWaitMs=1.5,
        resources={"requests": {"cpu": "250m"}, "limits": {"cpu": "2", "memory": "512Mi"}},
    )
    manifest = build_version_deployment(
        OWNER,
        spec,
        LiveVersion(V2, "canary", 10),
        SETTINGS,
        prediction_log_uri="s3://kubeloop/predictions/ml/iris/",
    )
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kubeloop", "serve"]
    env = _env(container)
    assert env["KUBELOOP_SERVE_MODEL_NAME"] == "iris"
    assert env["KUBELOOP_SERVE_MODEL_VERSION"] == "2"
    assert env["KUBELOOP_SERVE_MODEL_URI"] == V2.artifact_uri
    assert env["KUBELOOP_SERVE_MODEL_SHA256"] == "cd" * 32
    assert env["KUBELOOP_SERVE_PROFILE_URI"] == V2.profile_uri
    assert env["KUBELOOP_SERVE_PORT"] == "8080"
    assert env["KUBELOOP_SERVE_MAX_BATCH_SIZE"] == "16"
    assert env["KUBELOOP_SERVE_MAX_BATCH_WAIT_MS"] == "1.5"
    assert env["KUBELOOP_SERVE_THREADS"] == "2"
    assert env["KUBELOOP_SERVE_PREDICTION_LOG_URI"] == "s3://kubeloop/predictions/ml/iris/"
    assert env["KUBELOOP_S3_SECRET_KEY"] == {
        "secretKeyRef": {"name": "kubeloop-s3", "key": "secretKey"}
    }
    assert container["resources"] == {
        "requests": {"cpu": "250m"},
        "limits": {"cpu": "2", "memory": "512Mi"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    pod = manifest["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 5 + 20


def test_server_and_router_env_names_are_settings_they_know() -> None:
    """The server refuses unknown KUBELOOP_SERVE_* variables (extra=forbid) and the router
    ignores them, so a typo here would fail a pod or be silently lost."""
    serving = pytest.importorskip("kubeloop.serving.settings")
    router = pytest.importorskip("kubeloop.router.settings")
    children = build_children(
        OWNER, _spec(resources={"limits": {"cpu": "1"}}), [LiveVersion(V2, "canary", 10)], SETTINGS,
        prediction_log_uri="s3://kubeloop/p/",
    )  # fmt: skip
    for command, prefix, model in (
        ("serve", "KUBELOOP_SERVE_", serving.ServeSettings),
        ("route", "KUBELOOP_ROUTE_", router.RouterSettings),
    ):
        deployment = next(
            c for c in children
            if c["kind"] == "Deployment"
            and c["spec"]["template"]["spec"]["containers"][0]["command"][-1] == command
        )  # fmt: skip
        env = _env(deployment["spec"]["template"]["spec"]["containers"][0])
        fields = {name.upper() for name in model.model_fields}
        names = {name.removeprefix(prefix) for name in env if name.startswith(prefix)}
        assert names and names <= fields, names - fields


@pytest.mark.parametrize("role", ["stable", "canary", "preview", "shadow", "previous"])
def test_pods_are_restricted_and_selectors_immutable(role: str) -> None:
    manifest = build_version_deployment(OWNER, _spec(), LiveVersion(V1, role), SETTINGS)  # type: ignore[arg-type]
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is False
    selector = manifest["spec"]["selector"]["matchLabels"]
    assert selector == {
        DEPLOYMENT_LABEL: "iris",
        VERSION_LABEL: "iris-v1",
        "app.kubernetes.io/component": "server",
    }
    pod_labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    # the role changes during a rollout: never on pods (that would restart them)
    assert ROLE_LABEL not in pod_labels
    assert manifest["metadata"]["labels"][ROLE_LABEL] == role


def test_no_secret_values_in_any_child() -> None:
    children = build_children(OWNER, _spec(), [LiveVersion(V1, "stable", 100)], SETTINGS)
    text = yaml.safe_dump(children)
    assert "accessKey" in text  # as a reference
    assert "KUBELOOP_S3_SECRET_KEY\n  value" not in text


def test_autoscaling_leaves_replicas_to_the_hpa() -> None:
    spec = _spec(autoscaling={"minReplicas": 2, "maxReplicas": 6})
    children = build_children(OWNER, spec, [LiveVersion(V1, "stable", 100)], SETTINGS)
    deployment = next(c for c in children if c["kind"] == "Deployment" and "serve" in str(c))
    assert "replicas" not in deployment["spec"]
    hpa = next(c for c in children if c["kind"] == "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "iris-iris-v1",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    target = hpa["spec"]["metrics"][0]["resource"]["target"]
    assert target == {"type": "Utilization", "averageUtilization": 70}
    fixed = build_children(OWNER, _spec(replicas=3), [LiveVersion(V1, "stable", 100)], SETTINGS)
    assert not [c for c in fixed if c["kind"] == "HorizontalPodAutoscaler"]
    assert (
        next(c for c in fixed if c["metadata"]["name"] == "iris-iris-v1")["spec"]["replicas"] == 3
    )


# --- the whole set --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "overrides", "versions", "kinds"),
    [
        (
            "one stable version behind the router",
            {},
            [LiveVersion(V1, "stable", 100)],
            [
                ("v1", "ServiceAccount", "iris-router"),
                ("rbac.authorization.k8s.io/v1", "Role", "iris-router"),
                ("rbac.authorization.k8s.io/v1", "RoleBinding", "iris-router"),
                ("apps/v1", "Deployment", "iris-router"),
                ("v1", "Service", "iris"),
                ("apps/v1", "Deployment", "iris-iris-v1"),
                ("v1", "Service", "iris-iris-v1"),
                ("policy/v1", "PodDisruptionBudget", "iris-iris-v1"),
            ],
        ),
        (
            "canary: two versions, no PDB when minAvailable is 0",
            {"minAvailable": 0},
            [LiveVersion(V1, "stable", 90), LiveVersion(V2, "canary", 10)],
            [
                ("v1", "ServiceAccount", "iris-router"),
                ("rbac.authorization.k8s.io/v1", "Role", "iris-router"),
                ("rbac.authorization.k8s.io/v1", "RoleBinding", "iris-router"),
                ("apps/v1", "Deployment", "iris-router"),
                ("v1", "Service", "iris"),
                ("apps/v1", "Deployment", "iris-iris-v1"),
                ("v1", "Service", "iris-iris-v1"),
                ("apps/v1", "Deployment", "iris-iris-v2"),
                ("v1", "Service", "iris-iris-v2"),
            ],
        ),
        (
            "blue-green preview gets its own Service",
            {"minAvailable": 0, "strategy": {"type": "BlueGreen"}},
            [LiveVersion(V1, "stable", 100), LiveVersion(V2, "preview", 0)],
            [
                ("v1", "ServiceAccount", "iris-router"),
                ("rbac.authorization.k8s.io/v1", "Role", "iris-router"),
                ("rbac.authorization.k8s.io/v1", "RoleBinding", "iris-router"),
                ("apps/v1", "Deployment", "iris-router"),
                ("v1", "Service", "iris"),
                ("apps/v1", "Deployment", "iris-iris-v1"),
                ("v1", "Service", "iris-iris-v1"),
                ("apps/v1", "Deployment", "iris-iris-v2"),
                ("v1", "Service", "iris-iris-v2"),
                ("v1", "Service", "iris-preview"),
            ],
        ),
        (
            "Gateway API: an HTTPRoute instead of the router",
            {
                "minAvailable": 0,
                "traffic": {"router": "GatewayAPI", "parentRef": {"name": "gw"}},
            },
            [LiveVersion(V1, "stable", 100)],
            [
                ("apps/v1", "Deployment", "iris-iris-v1"),
                ("v1", "Service", "iris-iris-v1"),
                ("gateway.networking.k8s.io/v1", "HTTPRoute", "iris"),
            ],
        ),
    ],
)
def test_children(
    name: str,
    overrides: dict[str, Any],
    versions: list[LiveVersion],
    kinds: list[tuple[str, str, str]],
) -> None:
    children = build_children(OWNER, _spec(**overrides), versions, SETTINGS)
    assert [child_key(c) for c in children] == kinds, name
    for child in children:
        metadata = child["metadata"]
        assert metadata["namespace"] == "ml"
        assert metadata["ownerReferences"] == [OWNER.reference()]
        assert metadata["labels"][DEPLOYMENT_LABEL] == "iris"
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "kubeloop"
        assert metadata["labels"]["app.kubernetes.io/instance"] == "iris"
        assert len(metadata["name"]) <= 63


def test_version_services_carry_what_the_router_reads() -> None:
    children = build_children(
        OWNER, _spec(), [LiveVersion(V1, "stable", 90), LiveVersion(V2, "canary", 10)], SETTINGS
    )
    services = {c["metadata"]["name"]: c for c in children if c["kind"] == "Service"}
    canary = services["iris-iris-v2"]
    assert canary["metadata"]["labels"][VERSION_LABEL] == "iris-v2"
    assert canary["metadata"]["labels"][ROLE_LABEL] == "canary"
    assert canary["spec"]["ports"][0]["name"] == "http"
    assert canary["spec"]["ports"][0]["port"] == 8080
    assert canary["spec"]["selector"][VERSION_LABEL] == "iris-v2"
    endpoint = services["iris"]
    assert endpoint["spec"]["ports"][0]["port"] == 80
    assert endpoint["spec"]["ports"][0]["targetPort"] == "http"
    assert endpoint["spec"]["selector"]["app.kubernetes.io/component"] == "router"


def test_router_runs_kubeloop_route_with_its_own_token() -> None:
    children = build_children(OWNER, _spec(), [LiveVersion(V1, "stable", 100)], SETTINGS)
    router = next(
        c for c in children if c["metadata"]["name"] == "iris-router" and c["kind"] == "Deployment"
    )
    pod = router["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["kubeloop", "route"]
    env = _env(container)
    assert env["KUBELOOP_ROUTE_NAMESPACE"] == "ml"
    assert env["KUBELOOP_ROUTE_DEPLOYMENT"] == "iris"
    assert env["KUBELOOP_ROUTE_LISTEN_PORT"] == "8080"
    assert env["KUBELOOP_ROUTE_HEALTH_PORT"] == "8081"
    assert env["KUBELOOP_ROUTE_STATE_DIR"].startswith("/tmp/")
    assert {p["containerPort"] for p in container["ports"]} >= {8080, 8081}
    assert pod["serviceAccountName"] == "iris-router"
    assert pod["automountServiceAccountToken"] is False
    projected = next(v for v in pod["volumes"] if "projected" in v)["projected"]["sources"]
    assert projected[0]["serviceAccountToken"]["path"] == "token"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"]["readOnly"] is True
    assert "/tmp" in mounts
    assert next(v for v in pod["volumes"] if v["name"] == "scratch")["emptyDir"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_router_role_is_least_privilege() -> None:
    role = build_router_role(OWNER)
    assert role["rules"] == [
        {
            "apiGroups": ["kubeloop.io"],
            "resources": ["deployments"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    assert "*" not in yaml.safe_dump(role)


def test_pdb_keeps_min_available_and_allows_evicting_unhealthy_pods() -> None:
    children = build_children(
        OWNER, _spec(minAvailable=2), [LiveVersion(V1, "stable", 100)], SETTINGS
    )
    pdb = next(c for c in children if c["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"][VERSION_LABEL] == "iris-v1"
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


# --- Gateway API ----------------------------------------------------------------------------

GATEWAY_SPEC = {
    "minAvailable": 0,
    "traffic": {
        "router": "GatewayAPI",
        "parentRef": {"name": "kubeloop-gateway", "namespace": "infra", "sectionName": "http"},
    },
}


@pytest.mark.parametrize(
    ("versions", "backends", "mirror"),
    [
        ([LiveVersion(V1, "stable", 100)], [("iris-iris-v1", 100)], None),
        (
            [LiveVersion(V1, "stable", 75), LiveVersion(V2, "canary", 25)],
            [("iris-iris-v1", 75), ("iris-iris-v2", 25)],
            None,
        ),
        (
            [LiveVersion(V1, "stable", 100), LiveVersion(V2, "shadow", 0, mirror_percent=40)],
            [("iris-iris-v1", 100)],
            ("iris-iris-v2", 40),
        ),
        (
            [LiveVersion(V2, "stable", 100), LiveVersion(V1, "previous", 0)],
            [("iris-iris-v2", 100)],
            None,
        ),
    ],
)
def test_http_route_weights_and_mirror(
    versions: list[LiveVersion],
    backends: list[tuple[str, int]],
    mirror: tuple[str, int] | None,
) -> None:
    route = build_http_route(OWNER, _spec(**GATEWAY_SPEC), versions)
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "kubeloop-gateway",
            "namespace": "infra",
            "sectionName": "http",
        }
    ]
    (rule,) = route["spec"]["rules"]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == backends
    assert all(b["port"] == 8080 and b["kind"] == "Service" for b in rule["backendRefs"])
    if mirror is None:
        assert "filters" not in rule
    else:
        (filter_,) = rule["filters"]
        assert filter_["type"] == "RequestMirror"
        assert filter_["requestMirror"]["backendRef"]["name"] == mirror[0]
        assert filter_["requestMirror"]["percent"] == mirror[1]
    _check_against_crd(route)


def _httproute_schema() -> dict[str, Any]:
    crd = yaml.safe_load((GATEWAY_CRDS / "gateway.networking.k8s.io_httproutes.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    assert version["served"] and version["storage"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _check(value: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    """A structural subset of OpenAPI v3 validation: types, required, properties, enums,
    bounds, lengths and patterns (no CEL: the cluster test covers the rest)."""
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    if kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        errors.append(f"{path}: not an integer")
        return
    if kind in types and not isinstance(value, types[kind]):
        errors.append(f"{path}: not {kind}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: above {schema['maximum']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        for required in schema.get("required", []):
            if required not in value:
                errors.append(f"{path}.{required}: required")
        properties = schema.get("properties")
        for key, item in value.items():
            if properties is not None and key not in properties:
                if not schema.get("x-kubernetes-preserve-unknown-fields"):
                    errors.append(f"{path}.{key}: unknown field")
                continue
            if properties is not None:
                _check(item, properties[key], f"{path}.{key}", errors)
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        for index, item in enumerate(value):
            _check(item, schema.get("items", {}), f"{path}[{index}]", errors)


def _check_against_crd(route: dict[str, Any]) -> None:
    schema = _httproute_schema()
    body = {key: value for key, value in route.items() if key != "metadata"}
    errors: list[str] = []
    _check(body, schema, "", errors)
    assert errors == []


def test_the_structural_check_catches_mistakes() -> None:
    route = build_http_route(OWNER, _spec(**GATEWAY_SPEC), [LiveVersion(V1, "stable", 100)])
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    route["spec"]["rules"][0]["backendRefs"][0]["colour"] = "blue"
    del route["spec"]["parentRefs"][0]["name"]
    errors: list[str] = []
    _check({k: v for k, v in route.items() if k != "metadata"}, _httproute_schema(), "", errors)
    assert any("weight: below 0" in e for e in errors), errors
    assert any("colour: unknown field" in e for e in errors), errors
    assert any("parentRefs[0].name: required" in e for e in errors), errors


# --- pruning --------------------------------------------------------------------------------


def test_stale_children_are_only_our_own_unwanted_objects() -> None:
    before = build_children(
        OWNER, _spec(), [LiveVersion(V1, "previous", 0), LiveVersion(V2, "stable", 100)], SETTINGS
    )
    after = build_children(OWNER, _spec(), [LiveVersion(V2, "stable", 100)], SETTINGS)
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "someone-elses",
            "labels": {DEPLOYMENT_LABEL: "iris"},
            "ownerReferences": [{"uid": "other", "controller": True}],
        },
    }
    assert stale_children(OWNER, [*before, foreign], after) == [
        ("apps/v1", "Deployment", "iris-iris-v1"),
        ("policy/v1", "PodDisruptionBudget", "iris-iris-v1"),
        ("v1", "Service", "iris-iris-v1"),
    ]
    assert (
        children_selector("iris")
        == f"{DEPLOYMENT_LABEL}=iris,app.kubernetes.io/managed-by=kubeloop"
    )


def test_every_child_is_valid_yaml_and_json_numbers() -> None:
    children = build_children(
        OWNER,
        _spec(autoscaling={"maxReplicas": 3}),
        [LiveVersion(V1, "stable", 50), LiveVersion(V2, "canary", 50)],
        SETTINGS,
    )
    text = yaml.safe_dump_all(children)
    assert yaml.safe_load_all(text)
    for child in children:
        for value in _leaves(child):
            assert not (isinstance(value, float) and math.isnan(value))


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]
