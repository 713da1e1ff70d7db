"""Router benchmark: what the router adds to a request, and what shadow traffic costs clients.

Everything runs on this machine, measured side by side in one run, interleaved (each setup
once per round, medians over rounds), with ``wrk`` POSTing a single-row JSON body:

* **direct**: wrk → a fast constant backend (uvicorn + httptools + uvloop, one worker, a raw
  ASGI app that reads the body and answers a constant, as the inference server's floor does);
* **router**: wrk → ``kubeloop route`` (front + back NGINX, one worker each) → the same backend;
* **router + shadow**: the same, with a second, slow version (200 ms per request) as the
  shadow target at 100%: every request is copied through the side channel and replayed by
  the controller; clients should not notice;
* **router without front**: ``KUBELOOP_ROUTE_FRONT=false``, one NGINX instance: what the
  reload-proof front instance costs.

Four loads: 32 connections flat out (throughput; on a small machine wrk, NGINX and the
backend share the CPUs, so every microsecond of router CPU is taken from the backend: a
pessimistic view), 32 connections flat out with the router on **its own CPU** (``taskset``:
wrk and the backend on CPU 0 in both the direct and the routed run, the router's processes on
CPU 1, as its own pod has its own CPU in a cluster: whether a router costs the clients
throughput when it is not competing with the backend for the same core), 32 connections
paced at 4 ms between requests per connection (a steady load below saturation: the latency
the router adds at 32 connections), and 1 connection (the router's own per-request latency). "router CPU" is the CPU time of the router's whole
process tree (both NGINX instances and the controller) per request: the machine-independent
figure that says how many requests a core can route.

``python -m kubeloop.devenv.bench_router backend --port P [--delay-ms D]`` runs one backend.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BODY = json.dumps(
    {"inputs": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]}
)
LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
PACE_MS = 4
# Each connection waits PACE_MS between requests: a steady load below saturation, where
# latency differences are the router's and not CPU contention on a small machine.
PACED_LUA = LUA + f"function delay()\n  return {PACE_MS}\nend\n"


@dataclass(frozen=True)
class Load:
    """One way of loading a target: connections and pacing."""

    label: str
    connections: int
    paced: bool
    paths: tuple[str, ...]
    pinned: bool = False  # wrk and backend on CPU 0, the router on CPU 1


ALL_PATHS = ("direct", "router", "router + shadow", "router without front (front=false)")
PINNED_PATHS = ("direct", "router", "router without front (front=false)")
# CPU 0 for wrk and the backend, CPU 1 for the router (pinned loads only).
CLIENT_CPU, ROUTER_CPU = "0", "1"
LOADS = (
    Load("32, flat out", 32, False, ALL_PATHS),
    Load("32, flat out, router on its own CPU", 32, False, PINNED_PATHS, pinned=True),
    Load(f"32, paced ({PACE_MS} ms between requests)", 32, True, ALL_PATHS),
    Load("1, flat out", 1, False, ALL_PATHS[:2]),
)
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class WrkResult:
    """Throughput and latency percentiles of one wrk run."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    router_cpu_us: float | None = None  # router CPU (NGINX + controller) per request


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer")


def _on_cpus(args: list[str], cpus: str | None) -> list[str]:
    """``args`` run on the CPUs ``cpus`` (a ``taskset`` list; children inherit it), or anywhere."""
    return args if cpus is None else ["taskset", "-c", cpus, *args]


@contextmanager
def _process(
    args: list[str], env: Mapping[str, str] | None = None, cpus: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    environment = None if env is None else {**os.environ, **env}
    process = subprocess.Popen(_on_cpus(args, cpus), env=environment)  # noqa: S603 - our own commands
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def _backend(delay_ms: int = 0, kind: str = "asgi", cpus: str | None = None) -> Iterator[str]:
    port = _free_port()
    args = [sys.executable, "-m", "kubeloop.devenv.bench_router", "backend", "--port", str(port)]
    with _process([*args, "--delay-ms", str(delay_ms), "--kind", kind], cpus=cpus):
        _wait(f"http://127.0.0.1:{port}/")
        yield f"127.0.0.1:{port}"


@dataclass(frozen=True)
class RouterHandle:
    """A running router: where to send requests, its metrics, its process id."""

    url: str
    metrics_url: str
    pid: int


def _tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user + system) used so far by ``root`` and all its descendants."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in tree)


@contextmanager
def _router(
    state_dir: Path, document: dict[str, Any], *, front: bool = True, cpus: str | None = None
) -> Iterator[RouterHandle]:
    """``kubeloop route --routes-file`` on free ports."""
    state_dir.mkdir(parents=True, exist_ok=True)
    routes_file = state_dir / "routes.json"
    routes_file.write_text(json.dumps(document))
    port, health, metrics = _free_port(), _free_port(), _free_port()
    env = {
        "KUBELOOP_ROUTE_ROUTES_FILE": str(routes_file),
        "KUBELOOP_ROUTE_STATE_DIR": str(state_dir / "state"),
        "KUBELOOP_ROUTE_LISTEN_PORT": str(port),
        "KUBELOOP_ROUTE_HEALTH_PORT": str(health),
        "KUBELOOP_ROUTE_METRICS_PORT": str(metrics),
        "KUBELOOP_ROUTE_SHADOW_PORT": str(_free_port(socket.SOCK_DGRAM)),
        "KUBELOOP_ROUTE_WORKER_PROCESSES": "1",
        "KUBELOOP_ROUTE_SHUTDOWN_DELAY_SECONDS": "0",
        "KUBELOOP_ROUTE_LOG_LEVEL": "WARNING",
        "KUBELOOP_ROUTE_FRONT": "true" if front else "false",
    }
    with _process([sys.executable, "-m", "kubeloop", "route"], env, cpus) as process:
        _wait(f"http://127.0.0.1:{health}/healthz")
        yield RouterHandle(
            f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics}/metrics", process.pid
        )


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str, *, connections: int, seconds: int, script: Path, cpus: str | None = None
) -> WrkResult:
    """Run wrk against ``url`` and parse requests/s, p50, p99 and errors."""
    threads = min(2, connections)
    binary = shutil.which("wrk") or "wrk"
    command = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]  # fmt: skip
    output = subprocess.run(  # noqa: S603 - fixed commands of the benchmark
        _on_cpus(command, cpus),
        capture_output=True,
        text=True,
        check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return WrkResult(
        rps, _duration_ms(percentiles["50"]), _duration_ms(percentiles["99"]), errors, requests
    )


def _shadow_counts(metrics_url: str) -> dict[str, float]:
    counts: dict[str, float] = {}
    for line in httpx.get(metrics_url).text.splitlines():
        match = re.match(r'kubeloop_router_shadow_copies_total\{result="(\w+)"\} (\S+)', line)
        if match:
            counts[match.group(1)] = float(match.group(2))
    return counts


def _median(results: list[WrkResult]) -> WrkResult:
    cpu = [r.router_cpu_us for r in results if r.router_cpu_us is not None]
    return WrkResult(
        statistics.median(r.requests_per_second for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        sum(r.requests for r in results),
        statistics.median(cpu) if cpu else None,
    )


BACKENDS = {
    "starlette": "Starlette + uvicorn constant (the inference server's HTTP stack)",
    "asgi": "raw ASGI + uvicorn constant (faster: the router's own ceiling shows)",
}


def _measure(
    state_dir: Path, kind: str, scripts: dict[bool, Path], rounds: int, seconds: int
) -> tuple[dict[tuple[str, str], WrkResult], dict[str, float]]:
    runs: dict[tuple[str, str], list[WrkResult]] = {}
    pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    loads = [load for load in LOADS if pin or not load.pinned]
    with (
        _backend(kind=kind) as fast,
        _backend(delay_ms=200) as slow,
        _backend(kind=kind, cpus=CLIENT_CPU if pin else None) as pinned,
    ):

        def plain(endpoint: str) -> dict[str, Any]:
            return {"versions": [{"name": "bench-v1", "weight": 100, "endpoints": [endpoint]}]}

        shadowed = {
            "versions": [
                {"name": "bench-v1", "weight": 100, "endpoints": [fast]},
                {"name": "bench-v2", "role": "shadow", "endpoints": [slow]},
            ],
            "shadowPercent": 100,
        }
        on_own_cpu = ROUTER_CPU if pin else None
        with (
            _router(state_dir / f"router-{kind}", plain(fast)) as router,
            _router(state_dir / f"shadow-{kind}", shadowed) as shadow,
            _router(state_dir / f"single-{kind}", plain(fast), front=False) as single,
            _router(state_dir / f"pinned-{kind}", plain(pinned), cpus=on_own_cpu) as router_1,
            _router(
                state_dir / f"pinned-single-{kind}", plain(pinned), front=False, cpus=on_own_cpu
            ) as single_1,
        ):
            targets: dict[tuple[str, bool], tuple[str, RouterHandle | None]] = {
                ("direct", False): (f"http://{fast}/predict", None),
                ("router", False): (f"{router.url}/predict", router),
                ("router + shadow", False): (f"{shadow.url}/predict", shadow),
                ("router without front (front=false)", False): (f"{single.url}/predict", single),
                ("direct", True): (f"http://{pinned}/predict", None),
                ("router", True): (f"{router_1.url}/predict", router_1),
                ("router without front (front=false)", True): (
                    f"{single_1.url}/predict",
                    single_1,
                ),
            }
            for url, _ in targets.values():  # warm up connections and caches
                wrk(url, connections=32, seconds=1, script=scripts[False])
            for _ in range(rounds):
                for load in loads:
                    for name in load.paths:
                        url, handle = targets[(name, load.pinned)]
                        before = 0.0 if handle is None else _tree_cpu_seconds(handle.pid)
                        result = wrk(
                            url,
                            connections=load.connections,
                            seconds=seconds,
                            script=scripts[load.paced],
                            cpus=CLIENT_CPU if load.pinned else None,
                        )
                        if handle is not None:
                            used = _tree_cpu_seconds(handle.pid) - before
                            cpu_us = used * 1e6 / max(1, result.requests)
                            result = dataclasses.replace(result, router_cpu_us=cpu_us)
                        runs.setdefault((name, load.label), []).append(result)
            counts = _shadow_counts(shadow.metrics_url)
    return {key: _median(results) for key, results in runs.items()}, counts


def run_router_benchmark(state_dir: Path, *, rounds: int = 3, seconds: int = 3) -> int:
    """Measure direct vs router vs router + slow shadow; print Markdown tables."""
    if shutil.which("wrk") is None:
        print("router benchmark skipped: wrk is not installed (apt-get install -y wrk)")
        return 1
    state_dir.mkdir(parents=True, exist_ok=True)
    scripts = {False: state_dir / "post.lua", True: state_dir / "post-paced.lua"}
    scripts[False].write_text(LUA)
    scripts[True].write_text(PACED_LUA)
    failed = 0
    for kind, title in BACKENDS.items():
        medians, shadow_counts = _measure(state_dir, kind, scripts, rounds, seconds)
        print(
            f"router in front of a {title}; single-row POST by wrk; median of {rounds} "
            f"interleaved {seconds}s runs; {os.cpu_count()} CPUs shared by wrk, both NGINX "
            "instances (1 worker each) and the backend"
        )
        print()
        print(
            "| path | connections | requests/s | p50 ms | p99 ms | errors | vs direct "
            "| router CPU µs/request |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for (name, label), result in medians.items():
            direct = medians[("direct", label)]
            comparison = (
                "—"
                if name == "direct"
                else f"{result.requests_per_second / direct.requests_per_second:.2f}x rps, "
                f"p50 {result.p50_ms - direct.p50_ms:+.3f} ms"
            )
            cpu = "—" if result.router_cpu_us is None else f"{result.router_cpu_us:.0f}"
            print(
                f"| {name} | {label} | {result.requests_per_second:,.0f} "
                f"| {result.p50_ms:.3f} | {result.p99_ms:.3f} | {result.errors} | {comparison} "
                f"| {cpu} |"
            )
        print()
        print(
            "shadow copies to the 200 ms version: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(shadow_counts.items()))
        )
        print()
        failed += sum(result.errors for result in medians.values())
    return 0 if failed == 0 else 1


def _serve(port: int, delay_ms: int, kind: str) -> None:
    import asyncio  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from kubeloop.serving.cli import HTTP_STACK  # noqa: PLC0415

    headers = [(b"content-type", b"application/json"), (b"x-kubeloop-version", b"bench")]
    answer = b'{"outputs":[{"label":0,"probabilities":[0.98,0.01,0.01]}]}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def predict(request: Any) -> Any:
        await request.body()
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        return Response(
            answer, media_type="application/json", headers={"x-kubeloop-version": "bench"}
        )

    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    starlette_app = Starlette(routes=[Route("/{path:path}", predict, methods=["GET", "POST"])])
    # The inference server's own uvicorn settings: with uvicorn's defaults instead (proxy
    # headers on, Server and Date headers) the X-Forwarded-* headers the router adds cost the
    # backend about 2.7 us a request, which the server never pays.
    uvicorn.run(
        app if kind == "asgi" else starlette_app,
        **{**HTTP_STACK, "lifespan": "off"},
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="router benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    backend = sub.add_parser("backend", help="a constant HTTP backend")
    backend.add_argument("--port", type=int, required=True)
    backend.add_argument("--delay-ms", type=int, default=0)
    backend.add_argument("--kind", choices=["asgi", "starlette"], default="asgi")
    sub.add_parser("run", help="run the benchmark").add_argument("--dir", type=Path, default=None)
    arguments = parser.parse_args()
    if arguments.command == "backend":
        _serve(arguments.port, arguments.delay_ms, arguments.kind)
    else:
        import tempfile

        directory = arguments.dir or Path(tempfile.mkdtemp(prefix="bench-router-"))
        sys.exit(run_router_benchmark(directory))
