"""The router's controller: routes in, ``nginx.conf`` out, NGINX reloaded gracefully.

Two NGINX instances (``render.py`` says why): the back one routes and is reloaded; the front
one faces clients, has a fixed configuration and is started once, first, so by the time the
back one answers on the health port (readiness) the traffic port is already listening.

The loop: a ``RouteSource`` publishes ``RouteInputs``; changes closer together than the
debounce make one update; the table is built and rendered; an unchanged text does nothing;
otherwise ``nginx -t`` checks it, the file is swapped and the back master gets SIGHUP (or is
started, the first time). The update counts as ``ok`` once the health port answers with the
new config version (new workers are up) and the old workers have been told to quit (the
master waits 100 ms), else ``failed``; a text ``nginx -t`` refuses counts as ``invalid`` and
never goes live. The router is ready (``/healthz`` answers 200) when the back NGINX serves a
good configuration that routes to a version, or that names no version at all (it then
answers 503 with a JSON error). At start-up the routes may name versions before their
endpoints are known: the router stays unready until the first version with endpoints, so a
Service (and the operator's status) never counts it before it can answer. Once it has
routed, it stays ready when every endpoint goes away (clients get the 503 JSON error rather
than refused connections). A source that fails stops publishing; NGINX keeps what it has.

SIGTERM: ``/healthz`` turns 503 (a reload with ``draining``) while traffic keeps flowing for
``shutdown_delay_seconds`` (endpoints drop the pod meanwhile), then both instances quit
gracefully, the front first (in-flight requests finish), and the controller exits 0. If NGINX
dies by itself the controller exits 1 and the kubelet restarts the container.

``/metrics`` (the router's own registry) and ``/routes`` (the table being served, as JSON)
are served by the controller on the metrics port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import replace

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubeloop.router.metrics import RouterMetrics
from kubeloop.router.nginx import Nginx
from kubeloop.router.render import (
    NginxParams,
    config_version,
    render_front_conf,
    render_nginx_conf,
)
from kubeloop.router.shadow import ShadowReceiver, ShadowReplayer
from kubeloop.router.sources import RouteSource
from kubeloop.router.table import RouteInputs, RouteTable, build_route_table

log = logging.getLogger(__name__)

OLD_WORKERS_GRACE_SECONDS = 0.15


class Router:
    """One router: NGINX, the shadow side channel and the loop that keeps them current."""

    def __init__(
        self,
        source: RouteSource,
        *,
        nginx: Nginx,
        front: Nginx,
        params: NginxParams,
        metrics: RouterMetrics,
        replayer: ShadowReplayer,
        metrics_port: int,
        debounce_seconds: float = 0.2,
        reload_timeout_seconds: float = 10.0,
        shutdown_delay_seconds: float = 5.0,
        quit_timeout_seconds: float = 20.0,
    ) -> None:
        self.source = source
        self.nginx = nginx
        self.front = front
        self.params = params
        self.metrics = metrics
        self.replayer = replayer
        self._metrics_port = metrics_port
        self._debounce = debounce_seconds
        self._reload_timeout = reload_timeout_seconds
        self._shutdown_delay = shutdown_delay_seconds
        self._quit_timeout = quit_timeout_seconds
        self._latest: RouteInputs | None = None
        self._changed = asyncio.Event()
        self.table: RouteTable | None = None
        self.text: str | None = None
        self.version: str | None = None
        self._has_routed = False

    def publish(self, inputs: RouteInputs) -> None:
        """Take new inputs from the source (called on the event loop)."""
        self._latest = inputs
        self._changed.set()

    async def apply(self, table: RouteTable, params: NginxParams) -> str:
        """Render, check and make live ``table``; the result: ``ok``, ``invalid`` or ``failed``."""
        text = render_nginx_conf(table, params)
        if text == self.text and self.nginx.running:
            return "ok"
        ready = not (params.waiting or params.draining)
        return await self.apply_text(text, config_version(table, params), table, ready=ready)

    async def apply_text(
        self, text: str, version: str, table: RouteTable | None = None, *, ready: bool = True
    ) -> str:
        """Check ``text`` with ``nginx -t`` and make it live; unchanged state if refused.

        ``ready``: whether the text's ``/healthz`` answers 200 (the ready gauge follows it).
        """
        error = await self.nginx.check(text)
        if error is not None:
            log.error(
                "nginx refused configuration %s; the last good one keeps serving:\n%s",
                version,
                error,
            )
            self.metrics.reloads.labels(result="invalid").inc()
            return "invalid"
        # The side channel follows the new table before NGINX does, so no copy of a request
        # served by the new configuration finds the replayer without its target.
        if table is not None:
            self.replayer.set_target(table.shadow)
        if self.nginx.running:
            self.nginx.reload()
        else:
            await self.nginx.start()
        live = await self._wait_live(version)
        result = "ok" if live else "failed"
        self.metrics.reloads.labels(result=result).inc()
        if not live:
            log.error(
                "nginx did not serve configuration %s within %.0fs", version, self._reload_timeout
            )
            if table is not None:
                self.replayer.set_target(None if self.table is None else self.table.shadow)
            return result
        self.text, self.version = text, version
        self.metrics.config.info({"version": version})
        self.metrics.ready.set(1 if ready else 0)
        if table is not None:
            self.table = table
            self.metrics.weight.clear()
            for name, percent in table.weights().items():
                self.metrics.weight.labels(version=name).set(float(percent))
            for note in table.notes:
                log.warning("routes: %s", note)
            log.info(
                "serving config %s: split %s, shadow %s",
                version,
                {k: str(v) for k, v in table.weights().items()},
                table.shadow.version if table.shadow else None,
            )
        return result

    async def _start_front(self) -> None:
        """Start the client-facing instance and wait until it accepts connections."""
        if not self.params.front:
            return
        error = await self.front.check(render_front_conf(self.params))
        if error is not None:
            raise RuntimeError(f"nginx refused the front configuration: {error}")
        await self.front.start()
        deadline = time.monotonic() + self._reload_timeout
        while self.front.running and time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.params.listen_port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return
        raise RuntimeError("the front nginx did not start listening")

    async def _wait_live(self, version: str) -> bool:
        """Poll the health port until NGINX answers with ``version`` (fresh connections)."""
        deadline = time.monotonic() + self._reload_timeout
        url = f"http://127.0.0.1:{self.params.health_port}/healthz"
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=1.0)
        ) as session:
            while time.monotonic() < deadline:
                if not self.nginx.running:
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.headers.get("x-kubeloop-config") == version:
                            # The master starts the new workers, waits 100 ms, then tells the
                            # old ones to quit; until then they still take requests.
                            await asyncio.sleep(OLD_WORKERS_GRACE_SECONDS)
                            return True
                await asyncio.sleep(0.02)
        return False

    async def _serve_metrics(self) -> web.AppRunner:
        async def metrics(_: web.Request) -> web.Response:
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def routes(_: web.Request) -> web.Response:
            payload = {
                "config": self.version,
                "table": None if self.table is None else self.table.model_dump(mode="json"),
            }
            return web.json_response(payload)

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/routes", routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, port=self._metrics_port).start()
        return runner

    async def _update_loop(self) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(self._debounce)
            self._changed.clear()
            inputs = self._latest
            if inputs is None:
                continue
            table = build_route_table(inputs)
            waiting = (
                not self._has_routed
                and not table.split
                and any(version.role != "shadow" for version in inputs.versions)
            )
            if await self.apply(table, replace(self.params, waiting=waiting)) == "ok":
                self._has_routed = self._has_routed or bool(table.split)

    async def run(self, receiver: ShadowReceiver | None = None) -> int:
        """Run until SIGTERM/SIGINT (exit 0 after a graceful quit) or NGINX dies (exit 1)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        runner = await self._serve_metrics()
        tasks: list[asyncio.Task[None]] = []
        stopped = asyncio.create_task(stop.wait())
        exit_code = 0
        try:
            await self._start_front()
            if receiver is not None:
                await receiver.start()
            tasks = [
                asyncio.create_task(self.source.run(self.publish), name="source"),
                asyncio.create_task(self._update_loop(), name="update"),
                asyncio.create_task(self.replayer.run(), name="shadow"),
            ]
            while not stop.is_set():
                done, _ = await asyncio.wait(
                    {stopped, *tasks}, timeout=0.5, return_when=asyncio.FIRST_COMPLETED
                )
                if stop.is_set():
                    break
                front_died = self.params.front and not self.front.running
                if front_died or (self.version is not None and not self.nginx.running):
                    log.error("nginx exited unexpectedly; exiting so the container restarts")
                    exit_code = 1
                    break
                failed = [task for task in tasks if task in done and task.exception()]
                for task in failed:
                    log.error("router task %s failed", task.get_name(), exc_info=task.exception())
                if failed:
                    exit_code = 1
                    break
        except Exception:
            log.exception("router failed")
            exit_code = 1
        finally:
            if exit_code == 0 and self.nginx.running and self.table is not None:
                await self._drain()
            stopped.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, stopped, return_exceptions=True)
            await self.front.quit(self._quit_timeout)
            await self.nginx.quit(self._quit_timeout)
            if receiver is not None:
                receiver.close()
            await runner.cleanup()
        return exit_code

    async def _drain(self) -> None:
        """Report unready while still routing, so endpoints drop this pod before it quits."""
        log.info("draining for %.1fs before quitting", self._shutdown_delay)
        if self.table is not None and self._shutdown_delay > 0:
            self.params = replace(self.params, draining=True)
            await self.apply(self.table, self.params)
            await asyncio.sleep(self._shutdown_delay)
