"""The router with real NGINX and real HTTP backends (``kubeloop route --routes-file``).

Backends are small aiohttp processes answering with their version name; the router runs as
the real command; load comes from an aiohttp client over several keep-alive connections.
Judged here: the split within 3 points of the weight over 2,000 requests, stickiness, one
``x-kubeloop-version`` on every answer, zero failed requests through weight changes and dying
pods, shadow copies that arrive intact and cost clients nothing, refused configurations.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.component.router_fixtures import (
    Backend,
    LoadGenerator,
    RouterProcess,
    free_port,
    free_udp_port,
    routes,
)

from kubeloop.router.cli import build_router
from kubeloop.router.render import NginxParams, render_front_conf, render_nginx_conf
from kubeloop.router.settings import RouterSettings
from kubeloop.router.table import RouteInputs, build_route_table

pytestmark = pytest.mark.component

NGINX = Path("/usr/sbin/nginx")


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, list[Backend]]]:
    started = {
        "iris-v1": [Backend("iris-v1"), Backend("iris-v1")],
        "iris-v2": [Backend("iris-v2")],
        "iris-v3": [Backend("iris-v3")],
    }
    yield started
    for group in started.values():
        for backend in group:
            backend.stop()


@pytest.fixture(scope="module")
def router(
    tmp_path_factory: pytest.TempPathFactory, backends: dict[str, list[Backend]]
) -> Iterator[RouterProcess]:
    process = RouterProcess(
        tmp_path_factory.mktemp("router"), routes(("iris-v1", 100, "stable", backends["iris-v1"]))
    )
    yield process
    process.stop()
    assert process.process.returncode == 0  # SIGTERM: graceful quit, exit 0


def canary(backends: dict[str, list[Backend]], weight: int, **extra: object) -> dict[str, object]:
    return routes(
        ("iris-v1", 100 - weight, "stable", backends["iris-v1"]),
        ("iris-v2", weight, "canary", backends["iris-v2"]),
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("weight", [10, 50, 90])
def test_split_within_three_points(
    router: RouterProcess, backends: dict[str, list[Backend]], weight: int
) -> None:
    # 4,000 requests (judged: >= 2,000): at 50% one standard deviation is 0.8 points, so a
    # 3-point miss by chance is a 1-in-7,000 event rather than 1-in-250 at 2,000.
    router.update(canary(backends, weight))
    result = LoadGenerator(router.url, connections=16, count=4000).run()
    assert result.failed == 0, result.errors[:3] or result.statuses
    assert result.bad_headers == 0
    assert sum(result.versions.values()) == 4000
    assert abs(result.share("iris-v2") - weight / 100) <= 0.03, result.versions


def test_one_version_header_and_request_id(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    router.update(canary(backends, 50))
    with httpx.Client(base_url=router.url) as client:
        for _ in range(20):
            response = client.get("/v2/health/ready", headers={"x-request-id": "req-1"})
            versions = response.headers.get_list("x-kubeloop-version")
            assert versions in (["iris-v1"], ["iris-v2"])
            assert response.json()["version"] == versions[0]
            assert "nginx/" not in response.headers.get("server", "")
    received = [r for b in backends["iris-v1"] + backends["iris-v2"] for r in b.received()]
    assert any(r["request_id"] == "req-1" for r in received)


def test_feedback_reaches_the_pod_that_answered_the_prediction(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    router.update(canary(backends, 40))
    answered: dict[str, tuple[str, int]] = {}
    with httpx.Client(base_url=router.url) as client:
        for index in range(120):
            response = client.post("/predict", json={"x": index})
            version = response.headers["x-kubeloop-version"]
            answered[response.headers["x-request-id"]] = (version, response.json()["port"])
        # Both versions and both pods of iris-v1 answered: the checks below mean something.
        assert {port for version, port in answered.values() if version == "iris-v1"} == {
            backend.port for backend in backends["iris-v1"]
        }
        assert {version for version, _ in answered.values()} == {"iris-v1", "iris-v2"}
        for request_id, (version, port) in answered.items():
            response = client.post(
                "/feedback",
                json={"request_id": request_id, "label": 1},
                headers={"x-request-id": request_id, "x-kubeloop-version": version},
            )
            assert response.status_code == 200
            assert response.headers.get_list("x-kubeloop-version") == [version]
            assert response.json() == {"version": version, "path": "/feedback", "port": port}
        # A version the router does not serve, or none named: the split answers.
        for named in ({"x-kubeloop-version": "iris-v9"}, {}):
            response = client.post("/feedback", json={"request_id": "x", "label": 1}, headers=named)
            assert response.status_code == 200
            assert response.headers["x-kubeloop-version"] in ("iris-v1", "iris-v2")


def test_sticky_header_and_cookie_pin_a_client(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    router.update(canary(backends, 50, sticky_header="X-User"))
    seen: dict[str, set[str]] = {}
    with httpx.Client(base_url=router.url) as client:
        for user in range(40):
            for _ in range(5):
                response = client.post("/predict", json={}, headers={"X-User": f"user-{user}"})
                seen.setdefault(f"user-{user}", set()).add(response.headers["x-kubeloop-version"])
        anonymous = {
            client.post("/predict", json={}).headers["x-kubeloop-version"] for _ in range(60)
        }
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert Counter(next(iter(v)) for v in seen.values()).keys() == {"iris-v1", "iris-v2"}
    assert anonymous == {"iris-v1", "iris-v2"}  # no header: per-request randomness

    # A growing canary keeps its hash range: users pinned to it at 10% are still there at 50%.
    router.update(canary(backends, 10, sticky_header="X-User"))
    with httpx.Client(base_url=router.url) as client:
        at_10 = {
            user
            for user in range(200)
            if client.post("/predict", json={}, headers={"X-User": f"u{user}"}).headers[
                "x-kubeloop-version"
            ]
            == "iris-v2"
        }
    router.update(canary(backends, 50, sticky_header="X-User"))
    with httpx.Client(base_url=router.url) as client:
        at_50 = {
            user
            for user in range(200)
            if client.post("/predict", json={}, headers={"X-User": f"u{user}"}).headers[
                "x-kubeloop-version"
            ]
            == "iris-v2"
        }
    assert at_10
    assert at_10 <= at_50
    assert len(at_50) > len(at_10)

    router.update(canary(backends, 50, sticky_cookie="kl-session"))
    with httpx.Client(base_url=router.url) as client:
        for user in range(20):
            client.cookies.set("kl-session", f"s{user}")
            versions = {
                client.post("/predict", json={}).headers["x-kubeloop-version"] for _ in range(5)
            }
            assert len(versions) == 1


def test_weight_changes_under_load_fail_nothing(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    router.update(canary(backends, 0))
    with LoadGenerator(router.url, connections=16, rate=1000) as load:
        time.sleep(0.5)
        for weight in (10, 50, 100, 10, 50, 100):
            router.update(canary(backends, weight))
            time.sleep(0.5)
        before = sum(load.result.versions.values())
        time.sleep(0.5)
    result = load.result
    assert result.total > 1000  # steady traffic through six reloads
    assert result.failed == 0, (result.errors[:5], result.statuses)
    assert result.bad_headers == 0
    assert result.versions["iris-v2"] > 0
    # requests after the last reload all went to the canary at 100%
    assert sum(result.versions.values()) > before
    assert router.metric('kubeloop_router_reloads_total{result="invalid"}') == 0


def test_dying_pods_never_reach_clients(tmp_path: Path) -> None:
    stable = [Backend("iris-v1"), Backend("iris-v1")]
    candidate = [Backend("iris-v2")]
    try:
        process = RouterProcess(
            tmp_path,
            routes(("iris-v1", 50, "stable", stable), ("iris-v2", 50, "canary", candidate)),
        )
        try:
            with LoadGenerator(process.url, connections=16, rate=1000) as load:
                time.sleep(0.7)
                stable[0].kill()  # one stable pod: retried on the other
                candidate[0].kill()  # the canary's only pod: falls back to stable
                time.sleep(1.5)
        finally:
            process.stop()
        result = load.result
        assert result.total > 500  # enough traffic around the kills (the pace varies with load)
        assert result.failed == 0, (result.errors[:5], result.statuses)
        assert result.bad_headers == 0
        assert result.versions["iris-v2"] > 0
    finally:
        for backend in stable + candidate:
            backend.stop()


def test_unready_candidate_falls_back_to_stable(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    unready = Backend("iris-v5", status=503)
    try:
        router.update(
            routes(
                ("iris-v1", 50, "stable", backends["iris-v1"]),
                ("iris-v5", 50, "canary", [unready]),
            )
        )
        result = LoadGenerator(router.url, connections=8, count=400).run()
        assert result.statuses == {200: 400}
        assert set(result.versions) == {"iris-v1"}
        assert len(unready.received()) > 100  # it was asked, and its 503 never reached a client
    finally:
        unready.stop()


def _shadow_v3(
    router: RouterProcess, backends: dict[str, list[Backend]], shadow_percent: int = 100
) -> Backend:
    """Route to iris-v1 with iris-v3 (its record cleared) as the shadow; the shadow."""
    shadow = backends["iris-v3"][0]
    httpx.delete(f"http://{shadow.endpoint}/_received")
    router.update(
        routes(
            ("iris-v1", 100, "stable", backends["iris-v1"]),
            ("iris-v3", 0, "shadow", [shadow]),
            shadow_percent=shadow_percent,
        )
    )
    return shadow


def _wait_received(backend: Backend, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(backend.received()) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def test_shadow_copies_arrive_intact_and_clients_see_stable(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    shadow = _shadow_v3(router, backends)
    sent = []
    with httpx.Client(base_url=router.url) as client:
        for index in range(100):
            method, path, body, content_type = [
                ("POST", f"/predict?n={index}", f'{{"x": [{index}, "é\\"q"]}}'.encode(), "application/json"),
                ("PUT", f"/v2/models/iris/infer/{index}", bytes([0, 1, 255, 10, index % 256]), "application/octet-stream"),
                ("GET", f"/v2/models/iris?q=a%20b&n={index}", b"", ""),
            ][index % 3]  # fmt: skip
            request_id = f"req-{index}"
            headers = {"x-request-id": request_id}
            if content_type:
                headers["content-type"] = content_type
            response = client.request(method, path, content=body or None, headers=headers)
            assert response.headers.get_list("x-kubeloop-version") == ["iris-v1"]
            assert response.json()["version"] == "iris-v1"
            sent.append((method, path, body.hex(), content_type, request_id))
    _wait_received(shadow, len(sent))
    copies = {
        (r["method"], r["path"], r["body_hex"], r["content_type"], r["request_id"])
        for r in shadow.received()
    }
    assert copies == set(sent)
    assert all(r["shadow"] == "1" for r in shadow.received())
    assert router.metric('kubeloop_router_shadow_copies_total{result="sent"}') >= len(sent)


def test_every_feedback_is_copied_to_the_shadow(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    shadow = _shadow_v3(router, backends, shadow_percent=1)  # feedback is never sampled
    with httpx.Client(base_url=router.url) as client:
        for index in range(40):
            response = client.post(
                "/feedback",
                json={"request_id": f"req-{index}", "label": 0},
                headers={"x-request-id": f"req-{index}", "x-kubeloop-version": "iris-v1"},
            )
            assert response.headers.get_list("x-kubeloop-version") == ["iris-v1"]
    _wait_received(shadow, 40)
    copies = shadow.received()
    assert sorted(r["request_id"] for r in copies) == sorted(f"req-{n}" for n in range(40))
    assert {(r["path"], r["shadow"]) for r in copies} == {("/feedback", "1")}


def test_shadow_percent_samples_requests(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    shadow = _shadow_v3(router, backends, shadow_percent=25)
    result = LoadGenerator(router.url, connections=8, count=2000).run()
    assert result.failed == 0
    time.sleep(1.0)
    assert abs(len(shadow.received()) / 2000 - 0.25) <= 0.04


def _p(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def test_slow_shadow_costs_clients_nothing(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    slow = Backend("iris-v4", delay_ms=200)
    try:
        off = routes(("iris-v1", 100, "stable", backends["iris-v1"]))
        on = routes(
            ("iris-v1", 100, "stable", backends["iris-v1"]), ("iris-v4", 0, "shadow", [slow])
        )
        latencies: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(2):  # interleaved, so both see the same machine
            for name, document in (("off", off), ("on", on)):
                router.update(document)
                result = LoadGenerator(router.url, connections=8, rate=400, count=600).run()
                assert result.failed == 0
                assert set(result.versions) == {"iris-v1"}
                latencies[name] += result.latencies
        p50 = {name: _p(values, 0.5) for name, values in latencies.items()}
        p99 = {name: _p(values, 0.99) for name, values in latencies.items()}
        # A shadow that held the client (as NGINX's mirror does) would add its 200 ms to every
        # copied request, and every request is copied: even p99 stays well below that.
        assert p99["on"] < 150, p99
        assert p50["on"] < p50["off"] + 2.0, p50
        assert len(slow.received()) > 0
        assert router.metric('kubeloop_router_shadow_copies_total{result="sent"}') > 0
    finally:
        slow.stop()


def test_no_ready_version_answers_503(router: RouterProcess) -> None:
    router.update(routes(("iris-v1", 100, "stable", [])))
    response = httpx.post(router.url + "/predict", json={})
    assert response.status_code == 503
    assert router.health().status_code == 200  # the router itself is fine


def test_bad_routes_file_keeps_the_last_routes(
    router: RouterProcess, backends: dict[str, list[Backend]]
) -> None:
    router.update(routes(("iris-v1", 100, "stable", backends["iris-v1"])))
    errors = router.metric("kubeloop_router_routes_file_errors_total")
    router.routes_file.write_text('{"versions": [{"name": "Not A Name"}]}')
    time.sleep(0.5)
    assert router.metric("kubeloop_router_routes_file_errors_total") == errors + 1
    response = httpx.post(router.url + "/predict", json={})
    assert response.headers["x-kubeloop-version"] == "iris-v1"
    assert router.health().headers["x-kubeloop-config"] == router.config


def test_readiness_waits_for_the_first_routes(
    tmp_path: Path, backends: dict[str, list[Backend]]
) -> None:
    process = RouterProcess(tmp_path, None)
    try:
        time.sleep(0.5)
        with pytest.raises(httpx.HTTPError):
            process.health()
        # Routes that name a version whose endpoints are not known yet: serving, not ready.
        process.write_routes(routes(("iris-v1", 100, "stable", [])))
        config = process.wait_config_change(None)
        assert process.health().status_code == 503
        assert "waiting" in process.health().text
        assert process.metric("kubeloop_router_ready") == 0
        process.write_routes(routes(("iris-v1", 100, "stable", backends["iris-v1"])))
        config = process.wait_config_change(config)
        assert process.health().status_code == 200
        assert process.metric("kubeloop_router_ready") == 1
        # Once it has routed it stays ready when every endpoint goes: clients get a 503 JSON.
        process.write_routes(routes(("iris-v1", 100, "stable", [])))
        process.wait_config_change(config)
        assert process.health().status_code == 200
        assert process.metric("kubeloop_router_ready") == 1
        answer = httpx.post(f"{process.url}/predict", json={})
        assert answer.status_code == 503
        assert answer.json() == {"error": "no model version is ready to serve"}
    finally:
        process.stop()
    assert process.process.returncode == 0


def test_sigterm_drains_then_quits(tmp_path: Path, backends: dict[str, list[Backend]]) -> None:
    process = RouterProcess(
        tmp_path,
        routes(("iris-v1", 100, "stable", backends["iris-v1"])),
        KUBELOOP_ROUTE_SHUTDOWN_DELAY_SECONDS="1.5",
    )
    try:
        with LoadGenerator(process.url, connections=4, rate=200) as load:
            time.sleep(0.3)
            process.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while process.health().status_code != 503 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert process.health().status_code == 503  # unready ...
            response = httpx.post(process.url + "/predict", json={})
            assert response.status_code == 200  # ... but still serving while endpoints update
            time.sleep(0.5)
        assert load.result.failed == 0, load.result.errors[:3]
        assert process.process.wait(30) == 0
    finally:
        process.stop()


def test_nginx_refusal_keeps_the_old_config(
    tmp_path: Path, backends: dict[str, list[Backend]]
) -> None:
    """In process: a config ``nginx -t`` refuses is counted and never replaces the live one."""
    routes_file = tmp_path / "routes.json"
    routes_file.write_text(
        RouteInputs.model_validate(
            routes(("iris-v1", 100, "stable", backends["iris-v1"]))
        ).model_dump_json(by_alias=True)
    )
    settings = RouterSettings(
        routes_file=routes_file,
        state_dir=tmp_path / "state",
        listen_port=free_port(),
        health_port=free_port(),
        metrics_port=free_port(),
        shadow_port=free_udp_port(),
        worker_processes=1,
        shutdown_delay_seconds=0,
        routes_file_poll_seconds=0.05,
    )

    async def scenario() -> None:
        router, receiver = build_router(settings)
        running = asyncio.create_task(router.run(receiver))
        while router.version is None:
            await asyncio.sleep(0.05)
        good = router.version
        live_text = router.nginx.conf.read_text()
        assert await router.apply_text("http { this is not nginx }\n", "broken") == "invalid"
        assert router.nginx.conf.read_text() == live_text
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"http://127.0.0.1:{settings.listen_port}/predict", json={}
            )
            health = await client.get(f"http://127.0.0.1:{settings.health_port}/healthz")
        assert response.headers["x-kubeloop-version"] == "iris-v1"
        assert health.headers["x-kubeloop-config"] == good
        invalid = router.metrics.registry.get_sample_value(
            "kubeloop_router_reloads_total", {"result": "invalid"}
        )
        assert invalid == 1
        os.kill(os.getpid(), signal.SIGTERM)  # the router's own handler: graceful quit
        assert await asyncio.wait_for(running, 30) == 0
        assert not router.nginx.running
        assert not router.front.running

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "document",
    [
        {"versions": [{"name": "v1", "weight": 100, "endpoints": ["10.0.0.1:80"]}]},
        {
            "versions": [
                {"name": "v1", "weight": 90, "endpoints": ["10.0.0.1:80", "[fd00::1]:80"]},
                {"name": "v2.x-1", "weight": 10, "role": "canary", "endpoints": ["10.0.0.2:80"]},
                {"name": "v3", "role": "shadow", "endpoints": ["10.0.0.3:80"]},
            ],
            "stickyCookie": "my-session",
            "shadowPercent": 30,
        },
        {"versions": [{"name": "v1", "weight": 100}], "stickyHeader": "X-User"},
    ],
)
def test_nginx_accepts_every_rendered_shape(tmp_path: Path, document: dict[str, object]) -> None:
    params = NginxParams(state_dir=tmp_path)
    table = build_route_table(RouteInputs.model_validate(document))
    for directory, text in (
        (params.back_dir, render_nginx_conf(table, params)),
        (params.front_dir, render_front_conf(params)),
    ):
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        (directory / "nginx.conf").write_text(text)
        result = subprocess.run(
            [
                NGINX,
                "-t",
                "-q",
                "-e",
                "stderr",
                "-p",
                f"{directory}/",
                "-c",
                directory / "nginx.conf",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
