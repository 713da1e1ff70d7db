"""Real processes for the router's component tests: HTTP backends, the router, a load generator.

* ``python router_fixtures.py backend --port P --version V [--delay-ms D]`` runs one backend:
  an aiohttp server answering every request with ``{"version": V, ...}`` and setting
  ``x-kubeloop-version: V`` itself and echoing ``x-request-id`` (as the inference server
  does), so tests see whether the router lets exactly one header through; the answer names
  the backend's port, so a test sees which pod answered. ``GET /_received`` lists what it received (method,
  path, body, shadow and request-id headers); ``DELETE /_received`` clears it.
* ``Backend`` and ``RouterProcess`` start those and ``kubeloop route --routes-file`` as
  subprocesses on free ports and stop them by their own pid.
* ``LoadGenerator`` sends POSTs through the router from a thread with its own event loop, at a
  steady pace over several connections, recording status, version header and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code < 500:
                return response
        except httpx.HTTPError as error:
            last = error
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer: {last}")


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Backend:
    """One backend process answering as ``version`` on a free port."""

    def __init__(self, version: str, *, delay_ms: int = 0, status: int = 200) -> None:
        self.version = version
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [PYTHON, __file__, "backend", "--port", str(self.port), "--version", version,
             "--delay-ms", str(delay_ms), "--status", str(status)],
        )  # fmt: skip
        try:
            wait_http(f"http://{self.endpoint}/_received")
        except BaseException:
            self.kill()
            raise

    def received(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = httpx.get(f"http://{self.endpoint}/_received").json()
        return result

    def kill(self) -> None:
        _stop(self.process, signal.SIGKILL)

    def stop(self) -> None:
        _stop(self.process)


def routes(
    *versions: tuple[str, int, str, list[Backend]],
    sticky_header: str | None = None,
    sticky_cookie: str | None = None,
    shadow_percent: int = 100,
) -> dict[str, Any]:
    """A routes file: ``(name, weight, role, backends)`` per version."""
    document: dict[str, Any] = {
        "versions": [
            {"name": name, "weight": weight, "role": role,
             "endpoints": [backend.endpoint for backend in backends]}
            for name, weight, role, backends in versions
        ],
        "shadowPercent": shadow_percent,
    }  # fmt: skip
    if sticky_header:
        document["stickyHeader"] = sticky_header
    if sticky_cookie:
        document["stickyCookie"] = sticky_cookie
    return document


class RouterProcess:
    """``kubeloop route --routes-file`` on free ports, with its own state dir."""

    def __init__(self, state_dir: Path, document: dict[str, Any] | None, **env: str) -> None:
        """Start the router; unless ``document`` is None, wait until it serves those routes."""
        self.state_dir = state_dir
        self.routes_file = state_dir / "routes.json"
        self.document: dict[str, Any] | None = None  # the routes last written
        if document is not None:
            self.write_routes(document)
        self.port, self.health_port, self.metrics_port = free_port(), free_port(), free_port()
        self.shadow_port = free_udp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {
            **os.environ,
            "KUBELOOP_ROUTE_ROUTES_FILE": str(self.routes_file),
            "KUBELOOP_ROUTE_STATE_DIR": str(state_dir / "state"),
            "KUBELOOP_ROUTE_LISTEN_PORT": str(self.port),
            "KUBELOOP_ROUTE_HEALTH_PORT": str(self.health_port),
            "KUBELOOP_ROUTE_METRICS_PORT": str(self.metrics_port),
            "KUBELOOP_ROUTE_SHADOW_PORT": str(self.shadow_port),
            "KUBELOOP_ROUTE_SHUTDOWN_DELAY_SECONDS": "0",
            "KUBELOOP_ROUTE_ROUTES_FILE_POLL_SECONDS": "0.05",
            "KUBELOOP_ROUTE_DEBOUNCE_SECONDS": "0.05",
            "KUBELOOP_ROUTE_WORKER_PROCESSES": "2",
            **env,
        }
        self.process = subprocess.Popen(
            [PYTHON, "-m", "kubeloop", "route"], env=environment, cwd=ROOT
        )
        try:
            self.config: str | None = None if document is None else self.wait_config_change(None)
        except BaseException:
            self.stop()
            raise

    def write_routes(self, document: dict[str, Any]) -> None:
        temporary = self.routes_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(self.routes_file)
        self.document = document

    def health(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2.0)

    def wait_config_change(self, old: str | None, timeout: float = 15.0) -> str:
        """Wait until NGINX serves a configuration other than ``old``; its version."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"router exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                # The controller publishes a config once NGINX serves it with old workers gone.
                version = httpx.get(f"http://127.0.0.1:{self.metrics_port}/routes").json()["config"]
                if version and version != old:
                    return str(version)
            time.sleep(0.02)
        raise TimeoutError("the router did not load a new configuration")

    def update(self, document: dict[str, Any]) -> str:
        """Write routes and wait until NGINX serves them (at once if they are already served).

        A test selected alone meets the module's router still on its starting routes, which
        may be the very routes the test asks for: no new configuration would ever come.
        """
        if document == self.document and self.config is not None:
            return self.config
        self.write_routes(document)
        self.config = self.wait_config_change(self.config)
        return self.config

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics").text

    def metric(self, sample: str) -> float:
        """The value of one sample, e.g. ``kubeloop_router_reloads_total{result="ok"}``."""
        for line in self.metrics().splitlines():
            if line.rsplit(" ", 1)[0] == sample:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class LoadResult:
    statuses: Counter[int] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    bad_headers: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.statuses.values()) + len(self.errors)

    @property
    def failed(self) -> int:
        return len(self.errors) + sum(n for code, n in self.statuses.items() if code >= 400)

    def share(self, version: str) -> float:
        return self.versions[version] / max(1, sum(self.versions.values()))


class LoadGenerator:
    """POSTs through the router from a background thread until ``stop()`` (or ``count``)."""

    def __init__(
        self,
        url: str,
        *,
        connections: int = 8,
        rate: float | None = None,
        count: int | None = None,
        headers: dict[str, str] | None = None,
        path: str = "/predict",
    ) -> None:
        self.url = url + path
        self.connections = connections
        self.rate = rate
        self.count = count
        self.headers = headers or {}
        self.result = LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> LoadGenerator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        self._thread.join(60)
        return self.result

    def run(self) -> LoadResult:
        """Send ``count`` requests and return what came back."""
        self._thread.start()
        return self.wait()

    def wait(self, timeout: float = 60) -> LoadResult:
        self._thread.join(timeout)
        return self.result

    async def _main(self) -> None:
        import aiohttp  # noqa: PLC0415

        sent = 0
        interval = None if self.rate is None else self.connections / self.rate
        connector = aiohttp.TCPConnector(limit=self.connections)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def worker(index: int) -> None:
                nonlocal sent
                while not self._stop.is_set():
                    if self.count is not None:
                        if sent >= self.count:
                            return
                        sent += 1
                    started = time.perf_counter()
                    body = json.dumps({"inputs": [index, sent]}).encode()
                    try:
                        async with session.post(
                            self.url,
                            data=body,
                            headers={"content-type": "application/json", **self.headers},
                        ) as response:
                            await response.read()
                            self.result.statuses[response.status] += 1
                            found = response.headers.getall("x-kubeloop-version", [])
                            if len(found) != 1:
                                self.result.bad_headers += 1
                            else:
                                self.result.versions[found[0]] += 1
                    except (aiohttp.ClientError, TimeoutError) as error:
                        self.result.errors.append(repr(error))
                    elapsed = time.perf_counter() - started
                    self.result.latencies.append(elapsed)
                    if interval is not None and interval > elapsed:
                        await asyncio.sleep(interval - elapsed)

            await asyncio.gather(*(worker(i) for i in range(self.connections)))


def _serve_backend(port: int, version: str, delay_ms: int, status: int) -> None:
    from aiohttp import web  # noqa: PLC0415

    received: list[dict[str, Any]] = []

    async def listing(request: web.Request) -> web.Response:
        if request.method == "DELETE":
            received.clear()
        return web.json_response(received)

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        received.append(
            {
                "method": request.method,
                "path": request.path_qs,
                "body": body.decode("utf-8", "surrogateescape"),
                "body_hex": body.hex(),
                "content_type": request.headers.get("content-type", ""),
                "shadow": request.headers.get("x-kubeloop-shadow"),
                "request_id": request.headers.get("x-request-id"),
            }
        )
        headers = {"x-kubeloop-version": version}
        if "x-request-id" in request.headers:  # echoed, as the inference server does
            headers["x-request-id"] = request.headers["x-request-id"]
        return web.json_response(
            {"version": version, "path": request.path, "port": port},
            status=status,
            headers=headers,
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/_received", listing)
    app.router.add_route("*", "/{tail:.*}", answer)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["backend"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--status", type=int, default=200)
    arguments = parser.parse_args()
    _serve_backend(arguments.port, arguments.version, arguments.delay_ms, arguments.status)
