"""The router's one adapter to the API server: list + watch its Deployment and EndpointSlices.

Two watches, each in a thread (the ``kubernetes`` client is synchronous), keep a local copy:

* ``deployments.kubeloop.io/v1alpha1`` in the namespace, ``fieldSelector=metadata.name=<name>``;
* ``endpointslices.discovery.k8s.io/v1`` in the namespace,
  ``labelSelector=kubeloop.io/deployment=<name>``.

Both go through ``CustomObjectsApi`` so every object arrives as the API's JSON dict, which is
what the pure parser (``kubeinputs.py``) reads. Each watch lists, then watches from the list's
``resourceVersion`` for ``resync_seconds`` and lists again (a periodic resync that also repairs
anything a broken watch missed; ``410 Gone`` relists at once). Any error is logged, counted in
``kubeloop_router_api_errors_total`` and retried with backoff (up to 30 s); meanwhile nothing
is published, so NGINX keeps serving the last good configuration.

Nothing is published until both have been listed once, so a starting router never renders a
half-known table (e.g. versions without their endpoints).

RBAC the router's ServiceAccount needs, in its namespace: ``get, list, watch`` on
``deployments.kubeloop.io`` and on ``endpointslices.discovery.k8s.io``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubeloop.router.kubeinputs import DEPLOYMENT_LABEL, route_inputs_from_objects
from kubeloop.router.metrics import RouterMetrics
from kubeloop.router.sources import Publish

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "kubeloop.io", "v1alpha1", "deployments"
SLICE_GROUP, SLICE_VERSION, SLICE_PLURAL = "discovery.k8s.io", "v1", "endpointslices"
GONE = 410


class KubernetesSource:
    """``RouteInputs`` of one kubeloop Deployment, from watches on the API server."""

    def __init__(
        self,
        namespace: str,
        name: str,
        metrics: RouterMetrics,
        *,
        kubeconfig: Path | None = None,
        resync_seconds: float = 300.0,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self._metrics = metrics
        self._kubeconfig = kubeconfig
        self._resync = resync_seconds
        self._lock = threading.Lock()
        self._deployment: dict[str, Mapping[str, Any]] = {}
        self._slices: dict[str, Mapping[str, Any]] = {}
        self._synced = {"deployment": False, "slices": False}
        self._stop = threading.Event()

    def _client(self) -> Any:
        from kubernetes import client, config  # noqa: PLC0415 - only this mode needs it

        if self._kubeconfig is not None:
            api_client = config.new_client_from_config(config_file=str(self._kubeconfig))
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        return client.CustomObjectsApi(api_client)

    async def run(self, publish: Publish) -> None:
        """Watch until cancelled, publishing the inputs after every change."""
        loop = asyncio.get_running_loop()
        api = await asyncio.to_thread(self._client)

        def changed() -> None:
            with self._lock:
                if not all(self._synced.values()):
                    return
                deployment = next(iter(self._deployment.values()), None)
                slices = list(self._slices.values())
            try:
                inputs = route_inputs_from_objects(deployment, slices)
            except ValueError as error:  # e.g. two versions with one name
                log.error("Deployment %s/%s not routable: %s", self.namespace, self.name, error)
                return
            loop.call_soon_threadsafe(publish, inputs)

        watches = [
            threading.Thread(
                target=self._watch,
                name="watch-deployment",
                daemon=True,
                args=("deployment",),
                kwargs={
                    "cache": self._deployment,
                    "changed": changed,
                    "resource": {"group": GROUP, "version": VERSION, "plural": PLURAL},
                    "selector": {"field_selector": f"metadata.name={self.name}"},
                    "api": api,
                },
            ),
            threading.Thread(
                target=self._watch,
                name="watch-endpointslices",
                daemon=True,
                args=("slices",),
                kwargs={
                    "cache": self._slices,
                    "changed": changed,
                    "resource": {
                        "group": SLICE_GROUP,
                        "version": SLICE_VERSION,
                        "plural": SLICE_PLURAL,
                    },
                    "selector": {"label_selector": f"{DEPLOYMENT_LABEL}={self.name}"},
                    "api": api,
                },
            ),
        ]
        for thread in watches:
            thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            self._stop.set()

    def _watch(
        self,
        kind: str,
        *,
        cache: dict[str, Mapping[str, Any]],
        changed: Callable[[], None],
        resource: Mapping[str, str],
        selector: Mapping[str, str],
        api: Any,
    ) -> None:
        from kubernetes import watch  # noqa: PLC0415
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        backoff = 0.5
        while not self._stop.is_set():
            try:
                listed = api.list_namespaced_custom_object(
                    namespace=self.namespace, _request_timeout=30, **resource, **selector
                )
                with self._lock:
                    cache.clear()
                    for item in listed.get("items") or []:
                        cache[item["metadata"]["name"]] = item
                    self._synced[kind] = True
                changed()
                backoff = 0.5
                resource_version = listed["metadata"]["resourceVersion"]
                stream = watch.Watch().stream(
                    api.list_namespaced_custom_object,
                    namespace=self.namespace,
                    resource_version=resource_version,
                    timeout_seconds=int(self._resync),
                    allow_watch_bookmarks=True,
                    # a silent network partition must not hang the watch past the resync
                    _request_timeout=(10, self._resync + 30),
                    **resource,
                    **selector,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    kind_of_event = event.get("type")
                    obj = event.get("object") or {}
                    if kind_of_event == "ERROR":
                        if obj.get("code") != GONE:
                            raise RuntimeError(f"watch error: {obj}")
                        break  # relist
                    if kind_of_event == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    with self._lock:
                        if kind_of_event == "DELETED":
                            cache.pop(name, None)
                        else:
                            cache[name] = obj
                    changed()
            except ApiException as error:
                if error.status == GONE:
                    continue
                self._failed(kind, error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except Exception as error:  # any failure: count, keep serving the last routes, retry
                self._failed(kind, error)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _failed(self, kind: str, error: BaseException) -> None:
        self._metrics.api_errors.inc()
        log.warning(
            "watching %s of %s/%s failed (serving the last good routes): %s",
            kind,
            self.namespace,
            self.name,
            error,
        )
