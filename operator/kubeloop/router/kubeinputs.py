"""Pure parsing of the Kubernetes objects the router reads into ``RouteInputs``.

The router reads two kinds of objects, as plain dicts (the API's JSON, camelCase):

* the kubeloop Deployment (``deployments.kubeloop.io``, ``v1alpha1``):
  ``status.versions[]`` = ``{version, weight, role, readyReplicas}``,
  ``spec.traffic.stickyHeader`` / ``spec.traffic.stickyCookie``, and
  ``spec.strategy.shadow.percent`` (100 when a shadow version exists and no percent is set);
* the EndpointSlices (``discovery.k8s.io/v1``) of the per-version Services, labelled
  ``kubeloop.io/deployment=<name>`` and ``kubeloop.io/modelversion=<version>`` (the
  EndpointSlice controller copies a Service's labels onto its slices). Only the port named
  ``http`` is used; an endpoint counts when ``conditions.ready`` is not false (the API says a
  missing value means ready) and its address type is IPv4 or IPv6.

Parsing is deliberately lenient about everything the router does not use: it reads a handful
of fields and does not validate the whole Deployment with the API models, so a router image
one release behind the operator keeps routing. A status entry it cannot read (no name, a
weight out of range) is skipped with a note rather than failing the whole table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from kubeloop.router.table import RouteInputs, VersionInput

log = logging.getLogger(__name__)

DEPLOYMENT_LABEL = "kubeloop.io/deployment"
VERSION_LABEL = "kubeloop.io/modelversion"
PORT_NAME = "http"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def endpoints_by_version(slices: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Ready ``ip:port`` endpoints per model version, from EndpointSlice objects."""
    found: dict[str, set[str]] = {}
    for item in slices:
        labels = _mapping(_mapping(item.get("metadata")).get("labels"))
        version = labels.get(VERSION_LABEL)
        if not isinstance(version, str) or not version:
            continue
        bucket = found.setdefault(version, set())
        address_type = item.get("addressType")
        if address_type not in ("IPv4", "IPv6"):
            continue
        ports = [p for p in item.get("ports") or [] if _mapping(p).get("name") == PORT_NAME]
        port = _mapping(ports[0]).get("port") if ports else None
        if not isinstance(port, int):
            continue
        for endpoint in item.get("endpoints") or []:
            conditions = _mapping(_mapping(endpoint).get("conditions"))
            if conditions.get("ready") is False:
                continue
            for address in _mapping(endpoint).get("addresses") or []:
                if address_type == "IPv6":
                    bucket.add(f"[{address}]:{port}")
                else:
                    bucket.add(f"{address}:{port}")
    return {version: tuple(sorted(addresses)) for version, addresses in found.items()}


def route_inputs_from_objects(
    deployment: Mapping[str, Any] | None, slices: Iterable[Mapping[str, Any]]
) -> RouteInputs:
    """``RouteInputs`` for a kubeloop Deployment (None: absent) and its EndpointSlices."""
    if deployment is None:
        return RouteInputs()
    spec = _mapping(deployment.get("spec"))
    status = _mapping(deployment.get("status"))
    traffic = _mapping(spec.get("traffic"))
    shadow = _mapping(_mapping(spec.get("strategy")).get("shadow"))
    endpoints = endpoints_by_version(slices)

    versions: list[VersionInput] = []
    seen: set[str] = set()
    for entry in status.get("versions") or []:
        entry_map = _mapping(entry)
        name = entry_map.get("version")
        if not isinstance(name, str) or name in seen:
            continue
        try:
            version = VersionInput(
                name=name,
                weight=entry_map.get("weight") or 0,
                role=entry_map.get("role") or "canary",
                endpoints=endpoints.get(name, ()),
            )
        except ValidationError as error:
            log.warning("status.versions entry %r skipped: %s", name, error)
            continue
        seen.add(name)
        versions.append(version)

    percent = shadow.get("percent")
    sticky_header = traffic.get("stickyHeader")
    sticky_cookie = traffic.get("stickyCookie")
    return RouteInputs(
        versions=tuple(versions),
        sticky_header=sticky_header if isinstance(sticky_header, str) else None,
        sticky_cookie=(
            sticky_cookie
            if isinstance(sticky_cookie, str) and not isinstance(sticky_header, str)
            else None
        ),
        shadow_percent=percent if isinstance(percent, int) and 0 <= percent <= 100 else 100,
    )
