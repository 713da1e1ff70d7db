"""Reading the serving pods' ``/metrics`` for the rollout analysis.

The analysis compares windows of live traffic, so the operator scrapes every ready pod of each
live version directly (pod IP, the ``http`` port), not through the Service: a Service would
hand each scrape to a random pod and the per-pod counters could not be subtracted. A pod that
does not answer within the timeout is left out of this window and said so (its counters are
not lost: the next scrape's delta covers the gap).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

SCRAPE_TIMEOUT_SECONDS = 2.0
MAX_PARALLEL = 8  # pods scraped at once: a 50-pod check stays well under its interval


@dataclass(frozen=True)
class PodTarget:
    """One pod to scrape."""

    name: str
    ip: str
    port: int
    uid: str = ""
    """The pod's UID when known: a replaced pod of the same name is another pod."""


@dataclass(frozen=True)
class Scrape:
    """What one pod answered: the exposition text, or the error in words."""

    pod: str
    text: str | None
    error: str | None = None


def ready_pod_targets(pods: Iterable[dict[str, Any]], port: int) -> list[PodTarget]:
    """Running, Ready pods with an IP, from pod objects as the API returns them."""
    targets = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue  # draining: its last requests are in the next window of nobody
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        if ready:
            targets.append(PodTarget(str(pod["metadata"]["name"]), str(status["podIP"]), port))
    return sorted(targets, key=lambda target: target.name)


def ready_endpoint_targets(
    slices: Iterable[dict[str, Any]], service: str, port_name: str
) -> list[PodTarget]:
    """Ready pod endpoints of the Service ``service``, from its EndpointSlices.

    The EndpointSlice controller keeps these in step with pod readiness, so one list call
    finds every serving pod of a version (with its UID, from ``targetRef``) without reading
    the pods themselves. A missing ``ready`` means ready, as the API says.
    """
    targets: dict[str, PodTarget] = {}
    for item in slices:
        labels = (item.get("metadata") or {}).get("labels") or {}
        if labels.get("kubernetes.io/service-name") != service:
            continue
        if item.get("addressType") != "IPv4":
            continue
        ports = [p for p in item.get("ports") or [] if p.get("name") == port_name]
        port = ports[0].get("port") if ports else None
        if not isinstance(port, int):
            continue
        for endpoint in item.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            ref = endpoint.get("targetRef") or {}
            name = str(ref.get("name") or addresses[0])
            uid = str(ref.get("uid") or name)
            targets[uid] = PodTarget(name, str(addresses[0]), port, uid)
    return sorted(targets.values(), key=lambda target: target.name)


def scrape_pods(
    targets: list[PodTarget], *, timeout: float = SCRAPE_TIMEOUT_SECONDS
) -> list[Scrape]:
    """GET ``/metrics`` of every target, in parallel; one result per target, in order."""
    if not targets:
        return []

    def one(client: httpx.Client, target: PodTarget) -> Scrape:
        try:
            response = client.get(f"http://{target.ip}:{target.port}/metrics")
        except httpx.HTTPError as exc:
            return Scrape(target.name, None, f"{type(exc).__name__}: {exc}")
        if response.status_code != httpx.codes.OK:
            return Scrape(target.name, None, f"HTTP {response.status_code}")
        return Scrape(target.name, response.text)

    with (
        httpx.Client(timeout=timeout) as client,
        ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(targets))) as pool,
    ):
        return list(pool.map(lambda target: one(client, target), targets))
