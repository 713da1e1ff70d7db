"""The router's Prometheus metrics, in a registry of its own (served on the metrics port).

* ``kubeloop_router_reloads_total{result}``: ``ok`` (NGINX serves the new config), ``invalid``
  (``nginx -t`` refused it; the last good one keeps serving), ``failed`` (accepted by ``-t``
  but not seen live within the timeout, e.g. a port NGINX could not bind);
* ``kubeloop_router_config_info{version}``: the configuration being served;
* ``kubeloop_router_version_weight_percent{version}``: effective split (after versions
  without endpoints gave their weight away);
* ``kubeloop_router_shadow_copies_total{result}``: ``sent`` (the shadow answered, any status
  below 500), ``failed`` (5xx, timeout, connection error, unreadable record), ``dropped``
  (queue full or no shadow target) and ``too_large`` (body not held in memory by NGINX);
* ``kubeloop_router_shadow_queue_depth``: copies waiting to be replayed;
* ``kubeloop_router_api_errors_total``: failed list/watch calls to the API server;
* ``kubeloop_router_routes_file_errors_total``: unreadable or invalid ``--routes-file``;
* ``kubeloop_router_ready``: 1 once NGINX serves a good configuration.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

SHADOW_RESULTS = ("sent", "failed", "dropped", "too_large")
RELOAD_RESULTS = ("ok", "invalid", "failed")


class RouterMetrics:
    """Every metric of the router, registered in ``self.registry``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reloads = Counter(
            "kubeloop_router_reloads",
            "Configuration changes by result (ok, invalid, failed).",
            ["result"],
            registry=self.registry,
        )
        self.config = Info(
            "kubeloop_router_config", "The configuration NGINX serves.", registry=self.registry
        )
        self.weight = Gauge(
            "kubeloop_router_version_weight_percent",
            "Effective share of live traffic per version.",
            ["version"],
            registry=self.registry,
        )
        self.shadow_copies = Counter(
            "kubeloop_router_shadow_copies",
            "Shadow copies by result (sent, failed, dropped, too_large).",
            ["result"],
            registry=self.registry,
        )
        self.shadow_queue = Gauge(
            "kubeloop_router_shadow_queue_depth",
            "Shadow copies waiting to be replayed.",
            registry=self.registry,
        )
        self.api_errors = Counter(
            "kubeloop_router_api_errors",
            "Failed list or watch calls to the Kubernetes API server.",
            registry=self.registry,
        )
        self.routes_file_errors = Counter(
            "kubeloop_router_routes_file_errors",
            "Unreadable or invalid routes files.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "kubeloop_router_ready",
            "1 once NGINX serves a good configuration.",
            registry=self.registry,
        )
        for result in RELOAD_RESULTS:
            self.reloads.labels(result=result)
        for result in SHADOW_RESULTS:
            self.shadow_copies.labels(result=result)
