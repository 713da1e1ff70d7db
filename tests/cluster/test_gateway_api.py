"""``traffic.router: GatewayAPI``: the rendered HTTPRoute is accepted by the real API server.

The Gateway API CRDs (standard channel, unchanged from the upstream Go module; see
``gateway-api/README.md``) are installed, then the routes the builder renders for a canary
split and for a shadow are applied through the operator's own adapter (server-side apply), so
the API server's schema and CEL rules for HTTPRoute judge exactly what the operator would send.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config
from kubernetes.client.exceptions import ApiException
from tests.cluster.conftest import Kubectl

from kubeloop.api.deployment import DeploymentSpec
from kubeloop.devenv.cluster import ClusterInfo
from kubeloop.k8s import KubernetesAdapter
from kubeloop.resources.common import Owner
from kubeloop.resources.deployment import LiveVersion, ServedVersion, build_http_route

pytestmark = pytest.mark.cluster

CRDS = Path(__file__).parent / "gateway-api"


@pytest.fixture(scope="module")
def gateway_api(kubectl: Kubectl) -> None:
    kubectl.ok("apply", "--server-side", "-f", str(CRDS))
    kubectl.ok(
        "wait",
        "--for=condition=Established",
        "crd/httproutes.gateway.networking.k8s.io",
        "--timeout=60s",
    )


@pytest.fixture
def adapter(cluster: ClusterInfo) -> Iterator[KubernetesAdapter]:
    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    yield KubernetesAdapter(api_client)
    api_client.close()


def _served(name: str, number: int) -> ServedVersion:
    return ServedVersion(
        name=name, model="iris", number=number, artifact_uri="s3://b/m.onnx", sha256="a" * 64
    )


SPEC = DeploymentSpec.model_validate(
    {
        "model": {"track": {"model": "iris", "stage": "Production"}},
        "traffic": {"router": "GatewayAPI", "parentRef": {"name": "public", "sectionName": "http"}},
    }
)


@pytest.mark.parametrize(
    ("versions", "weights", "mirrored"),
    [
        (
            [
                LiveVersion(_served("iris-v1", 1), "stable", 90),
                LiveVersion(_served("iris-v2", 2), "canary", 10),
            ],
            [90, 10],
            None,
        ),
        (
            [
                LiveVersion(_served("iris-v1", 1), "stable", 100),
                LiveVersion(_served("iris-v2", 2), "shadow", 0, mirror_percent=25),
            ],
            [100],
            25,
        ),
    ],
    ids=["canary", "shadow"],
)
@pytest.mark.usefixtures("gateway_api")
def test_rendered_http_route_is_accepted(
    adapter: KubernetesAdapter,
    namespace: str,
    versions: list[LiveVersion],
    weights: list[int],
    mirrored: int | None,
) -> None:
    owner = Owner("Deployment", "iris", namespace, "00000000-0000-0000-0000-000000000001")
    route = build_http_route(owner, SPEC, versions)
    # The owner does not exist: drop the reference, which only garbage collection reads.
    del route["metadata"]["ownerReferences"]
    stored = adapter.apply(route)
    (rule,) = stored["spec"]["rules"]
    assert [backend["weight"] for backend in rule["backendRefs"]] == weights
    assert stored["spec"]["parentRefs"][0]["name"] == "public"
    filters = rule.get("filters") or []
    if mirrored is None:
        assert filters == []
    else:
        (mirror,) = filters
        assert mirror["type"] == "RequestMirror"
        assert mirror["requestMirror"]["percent"] == mirrored
        assert mirror["requestMirror"]["backendRef"]["name"] == "iris-iris-v2"
        # The server really judges the route: an out-of-range percent is refused.
        route["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"] = 101
        with pytest.raises(ApiException) as refused:
            adapter.apply(route)
        assert refused.value.status == 422
        assert "percent" in str(refused.value.body)
