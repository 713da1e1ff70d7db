"""Parsing the Deployment and EndpointSlice objects the router reads (API-shaped dicts)."""

from __future__ import annotations

from typing import Any

from kubeloop.router.kubeinputs import endpoints_by_version, route_inputs_from_objects


def endpoint_slice(
    version: str,
    *endpoints: tuple[str, bool | None],
    port_name: str = "http",
    port: int = 8080,
    address_type: str = "IPv4",
    suffix: str = "abcde",
) -> dict[str, Any]:
    """An EndpointSlice as the EndpointSlice controller writes it for a per-version Service."""
    items = []
    for address, ready in endpoints:
        conditions: dict[str, Any] = {"serving": True, "terminating": False}
        if ready is not None:
            conditions["ready"] = ready
        items.append(
            {
                "addresses": [address],
                "conditions": conditions,
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "namespace": "ml", "name": f"{version}-pod"},
            }
        )
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"iris-{version}-{suffix}",
            "namespace": "ml",
            "labels": {
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "kubernetes.io/service-name": f"iris-{version}",
                "kubeloop.io/deployment": "iris",
                "kubeloop.io/modelversion": version,
                "app.kubernetes.io/managed-by": "kubeloop",
            },
            "ownerReferences": [{"kind": "Service", "name": f"iris-{version}", "uid": "u"}],
        },
        "addressType": address_type,
        "endpoints": items,
        "ports": [
            {"name": "metrics", "port": 9100, "protocol": "TCP"},
            {"name": port_name, "port": port, "protocol": "TCP"},
        ],
    }


def deployment(versions: list[dict[str, Any]] | None, **spec: Any) -> dict[str, Any]:
    """A kubeloop Deployment as the API server returns it."""
    body: dict[str, Any] = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": "iris", "namespace": "ml", "generation": 3, "resourceVersion": "42"},
        "spec": {
            "model": {"track": {"model": "iris", "stage": "Production"}},
            "replicas": 2,
            **spec,
        },
    }
    if versions is not None:
        body["status"] = {"observedGeneration": 3, "phase": "Progressing", "versions": versions}
    return body


def test_ready_endpoints_on_the_http_port() -> None:
    slices = [
        endpoint_slice("iris-v1", ("10.1.0.4", True), ("10.1.0.5", False), ("10.1.0.6", None)),
        endpoint_slice("iris-v1", ("10.1.0.7", True), suffix="fghij"),
        endpoint_slice("iris-v2", ("fd00::7", True), address_type="IPv6"),
        endpoint_slice("iris-v3", ("10.1.0.9", True), port_name="grpc"),
        endpoint_slice("iris-v4", ("svc.example", True), address_type="FQDN"),
        {"metadata": {"name": "unlabelled"}, "addressType": "IPv4", "endpoints": []},
    ]
    assert endpoints_by_version(slices) == {
        "iris-v1": ("10.1.0.4:8080", "10.1.0.6:8080", "10.1.0.7:8080"),
        "iris-v2": ("[fd00::7]:8080",),
        "iris-v3": (),
        "iris-v4": (),
    }


def test_slice_with_null_endpoints() -> None:
    broken = endpoint_slice("iris-v1")
    broken["endpoints"] = None
    assert endpoints_by_version([broken]) == {"iris-v1": ()}


def test_canary_with_sticky_header() -> None:
    inputs = route_inputs_from_objects(
        deployment(
            [
                {"version": "iris-v1", "weight": 90, "role": "stable", "readyReplicas": 2},
                {"version": "iris-v2", "weight": 10, "role": "canary", "readyReplicas": 1},
            ],
            traffic={"router": "Builtin", "stickyHeader": "X-User"},
        ),
        [
            endpoint_slice("iris-v1", ("10.1.0.4", True)),
            endpoint_slice("iris-v2", ("10.1.0.8", True)),
        ],
    )
    assert [(v.name, v.weight, v.role, v.endpoints) for v in inputs.versions] == [
        ("iris-v1", 90, "stable", ("10.1.0.4:8080",)),
        ("iris-v2", 10, "canary", ("10.1.0.8:8080",)),
    ]
    assert inputs.sticky_header == "X-User"
    assert inputs.sticky_cookie is None


def test_shadow_percent_from_the_strategy() -> None:
    versions = [
        {"version": "iris-v1", "weight": 100, "role": "stable"},
        {"version": "iris-v2", "weight": 0, "role": "shadow"},
    ]
    slices = [endpoint_slice("iris-v2", ("10.1.0.8", True))]
    with_percent = route_inputs_from_objects(
        deployment(versions, strategy={"type": "Shadow", "shadow": {"percent": 30}}), slices
    )
    assert with_percent.shadow_percent == 30
    default = route_inputs_from_objects(deployment(versions, strategy={"type": "Shadow"}), slices)
    assert default.shadow_percent == 100
    assert (
        route_inputs_from_objects(
            deployment(versions, traffic={"stickyCookie": "session"}), slices
        ).sticky_cookie
        == "session"
    )


def test_missing_status_or_deployment_means_no_versions() -> None:
    assert route_inputs_from_objects(deployment(None), []).versions == ()
    assert (
        route_inputs_from_objects(None, [endpoint_slice("iris-v1", ("10.1.0.4", True))]).versions
        == ()
    )


def test_unreadable_status_entries_are_skipped() -> None:
    inputs = route_inputs_from_objects(
        deployment(
            [
                {"version": "iris-v1", "weight": 100, "role": "stable"},
                {"weight": 10, "role": "canary"},
                {"version": "iris-v1", "weight": 5, "role": "canary"},
                {"version": "Bad Name", "weight": 5, "role": "canary"},
                {"version": "iris-v9", "weight": 500, "role": "canary"},
                {"version": "iris-v2", "role": "previous"},
            ]
        ),
        [],
    )
    assert [(v.name, v.weight, v.role) for v in inputs.versions] == [
        ("iris-v1", 100, "stable"),
        ("iris-v2", 0, "previous"),
    ]
