"""``kubeloop route``: run the router of one kubeloop Deployment, or of a routes file.

Settings come from ``KUBELOOP_ROUTE_*`` variables (``settings.py``); the flags below override
them. Exactly one source: ``--deployment`` (with ``--namespace``, from the API server) or
``--routes-file`` (a JSON ``RouteInputs`` file, for a router without a cluster and for tests).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from kubeloop.router.controller import Router
from kubeloop.router.metrics import RouterMetrics
from kubeloop.router.nginx import Nginx
from kubeloop.router.render import NginxParams
from kubeloop.router.settings import RouterSettings
from kubeloop.router.shadow import ShadowReceiver, ShadowReplayer
from kubeloop.router.sources import RoutesFileSource, RouteSource

_FLAGS = {
    "routes_file": Path,
    "deployment": str,
    "namespace": str,
    "kubeconfig": Path,
    "state_dir": Path,
    "listen_port": int,
    "health_port": int,
    "metrics_port": int,
    "shadow_port": int,
    "nginx_binary": Path,
    "worker_processes": int,
    "shutdown_delay_seconds": float,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeloop route",
        description="NGINX router of a kubeloop Deployment (KUBELOOP_ROUTE_* settings).",
    )
    for name, kind in _FLAGS.items():
        env = "KUBELOOP_ROUTE_" + name.upper()
        described = RouterSettings.model_fields[name].description or ""
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=f"{described} (env {env})",
        )
    return parser


def build_router(settings: RouterSettings) -> tuple[Router, ShadowReceiver]:
    """The router for ``settings``; ValueError when no (or two) route sources are given."""
    metrics = RouterMetrics()
    source: RouteSource
    if settings.routes_file is not None and settings.deployment is not None:
        raise ValueError("give either a routes file or a Deployment, not both")
    if settings.routes_file is not None:
        source = RoutesFileSource(
            settings.routes_file, metrics, poll_seconds=settings.routes_file_poll_seconds
        )
    elif settings.deployment is not None:
        from kubeloop.router.kubesource import KubernetesSource  # noqa: PLC0415

        source = KubernetesSource(
            settings.resolved_namespace(),
            settings.deployment,
            metrics,
            kubeconfig=settings.kubeconfig,
            resync_seconds=settings.resync_seconds,
        )
    else:
        raise ValueError("no routes: set KUBELOOP_ROUTE_DEPLOYMENT or --routes-file")
    params = NginxParams(
        state_dir=settings.state_dir.absolute(),
        listen_port=settings.listen_port,
        health_port=settings.health_port,
        shadow_port=settings.shadow_port,
        worker_processes=settings.resolved_workers(),
        worker_user=settings.resolved_worker_user(),
        front=settings.front,
        client_max_body_size=settings.client_max_body_size,
        shadow_max_body=settings.shadow_max_body,
    )
    replayer = ShadowReplayer(
        metrics,
        concurrency=settings.shadow_concurrency,
        queue_size=settings.shadow_queue_size,
        timeout_seconds=settings.shadow_timeout_seconds,
        max_rate=settings.shadow_max_rate,
    )
    router = Router(
        source,
        nginx=Nginx(settings.nginx_binary, params.back_dir),
        front=Nginx(settings.nginx_binary, params.front_dir),
        params=params,
        metrics=metrics,
        replayer=replayer,
        metrics_port=settings.metrics_port,
        debounce_seconds=settings.debounce_seconds,
        reload_timeout_seconds=settings.reload_timeout_seconds,
        shutdown_delay_seconds=settings.shutdown_delay_seconds,
        quit_timeout_seconds=settings.quit_timeout_seconds,
    )
    return router, ShadowReceiver(replayer, settings.shadow_port)


async def _run(settings: RouterSettings) -> int:
    router, receiver = build_router(settings)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return await router.run(receiver)


def main(argv: Sequence[str]) -> int:
    """Run the router until SIGTERM; the process exit status."""
    args = _parser().parse_args(list(argv))
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    settings = RouterSettings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return uvloop.run(_run(settings))
    except ValueError as error:
        sys.stderr.write(f"kubeloop route: {error}\n")
        return 2
