"""nginx.conf rendering: split, sticky keys, fallbacks, shadow side channel, quoting, paths."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from kubeloop.router.render import (
    NginxParams,
    config_version,
    max_integer_regex,
    quote,
    render_front_conf,
    render_nginx_conf,
)
from kubeloop.router.table import RouteInputs, RouteTable, build_route_table

PARAMS = NginxParams(state_dir=Path("/state"), listen_port=8080, health_port=8081, shadow_port=5514)


def table(**document: object) -> RouteTable:
    return build_route_table(RouteInputs.model_validate(document))


def version(name: str, weight: int, role: str = "stable", *endpoints: str) -> dict[str, object]:
    return {"name": name, "weight": weight, "role": role, "endpoints": list(endpoints)}


def block(text: str, head: str) -> str:
    """The lines of the block opened by ``head``, up to its closing brace."""
    lines = text[text.index(head) :].splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip() == "}")
    return "\n".join(lines[: end + 1])


@pytest.mark.parametrize(
    ("canary", "lines"),
    [
        (0, ['* "v1";']),
        (10, ['10.00% "v2";', '* "v1";']),
        (50, ['50.00% "v2";', '* "v1";']),
        (100, ['* "v2";']),
    ],
)
def test_split_clients_per_weight(canary: int, lines: list[str]) -> None:
    text = render_nginx_conf(
        table(
            versions=[
                version("v1", 100 - canary, "stable", "10.0.0.1:8080"),
                version("v2", canary, "canary", "10.0.0.2:8080"),
            ]
        ),
        PARAMS,
    )
    split = block(text, 'split_clients "${request_id}" $kl_version {')
    assert [line.strip() for line in split.splitlines()[1:-1]] == lines
    assert "proxy_pass http://kl_$kl_version;" in text
    assert "add_header x-kubeloop-version $kl_version always;" in text
    assert "proxy_hide_header x-kubeloop-version;" in text


def test_upstreams_have_keepalive_and_failure_limits() -> None:
    text = render_nginx_conf(
        table(versions=[version("v1", 100, "stable", "10.0.0.1:8080", "10.0.0.2:8080")]), PARAMS
    )
    upstream = block(text, "upstream kl_v1 {")
    assert "server 10.0.0.1:8080 max_fails=1 fail_timeout=5s;" in upstream
    assert "server 10.0.0.2:8080 max_fails=1 fail_timeout=5s;" in upstream
    assert "keepalive 64;" in upstream
    assert "proxy_next_upstream error timeout http_502 http_503 non_idempotent;" in text
    assert "proxy_next_upstream_tries 3;" in text
    assert 'proxy_set_header Connection "";' in text


def test_candidate_failures_fall_back_to_stable() -> None:
    text = render_nginx_conf(
        table(
            versions=[
                version("v1", 90, "stable", "10.0.0.1:8080"),
                version("v2", 10, "canary", "10.0.0.2:8080"),
            ]
        ),
        PARAMS,
    )
    assert "error_page 502 503 504 = @kl_fallback;" in text
    assert "proxy_intercept_errors on;" in text
    fallback = block(text, "location @kl_fallback {")
    assert "proxy_pass http://kl_v1;" in fallback
    assert 'add_header x-kubeloop-version "v1" always;' in fallback
    single = render_nginx_conf(
        table(versions=[version("v1", 100, "stable", "10.0.0.1:8080")]), PARAMS
    )
    assert "@kl_fallback" not in single


def test_feedback_goes_to_the_version_the_client_names_and_pods_by_request_id() -> None:
    text = render_nginx_conf(
        table(
            versions=[
                version("v1", 100, "stable", "10.0.0.1:8080", "10.0.0.2:8080"),
                version("v2", 0, "canary", "10.0.0.3:8080"),
                version("v3", 0, "canary"),  # no ready pods: not a feedback target
                version("v4", 0, "shadow", "10.0.0.4:8080"),
            ]
        ),
        PARAMS,
    )
    mapping = block(text, "map $http_x_kubeloop_version $kl_feedback_version {")
    assert [line.strip() for line in mapping.splitlines()[1:-1]] == [
        '"v1" "v1";',
        '"v2" "v2";',
        "default $kl_version;",
    ]
    feedback = block(text, "location = /feedback {")
    assert "proxy_pass http://kl_$kl_feedback_version;" in feedback
    assert "add_header x-kubeloop-version $kl_feedback_version always;" in feedback
    # Every feedback that fits is copied to the shadow, not only the sampled requests.
    assert "kl_shadow if=$kl_body_fits;" in feedback
    assert "kl_shadow_too_large if=$kl_body_too_large;" in feedback
    for name in ("v1", "v2"):
        upstream = block(text, f"upstream kl_{name} {{")
        lines = [line.strip() for line in upstream.splitlines()]
        # The same request id picks the same pod for a prediction and its feedback.
        assert lines[1] == "hash $kl_request_id consistent;"
        assert lines.index("hash $kl_request_id consistent;") < lines.index("keepalive 64;")
    without_shadow = render_nginx_conf(
        table(versions=[version("v1", 100, "stable", "10.0.0.1:8080")]), PARAMS
    )
    assert "access_log" not in block(without_shadow, "location = /feedback {")
    nothing = render_nginx_conf(table(versions=[version("v1", 100, "stable")]), PARAMS)
    assert "/feedback" not in nothing  # no version ready: the catch-all 503 answers it


def test_sticky_header_keys_the_split_with_request_id_fallback() -> None:
    text = render_nginx_conf(
        table(versions=[version("v1", 100, "stable", "10.0.0.1:80")], stickyHeader="X-User-Id"),
        PARAMS,
    )
    key_map = block(text, "map $http_x_user_id $kl_split_key {")
    assert '"" $request_id;' in key_map
    assert "default $http_x_user_id;" in key_map
    assert 'split_clients "${kl_split_key}" $kl_version {' in text


def test_sticky_cookie_plain_and_with_dash() -> None:
    plain = render_nginx_conf(
        table(versions=[version("v1", 100, "stable", "10.0.0.1:80")], stickyCookie="session"),
        PARAMS,
    )
    assert "map $cookie_session $kl_split_key {" in plain
    dashed = render_nginx_conf(
        table(versions=[version("v1", 100, "stable", "10.0.0.1:80")], stickyCookie="my-session"),
        PARAMS,
    )
    assert "map $http_cookie $kl_sticky_cookie {" in dashed
    assert "my-session=(?<kl_cookie>[^;]*)" in dashed
    assert "map $kl_sticky_cookie $kl_split_key {" in dashed


def test_no_endpoints_renders_503_without_upstreams() -> None:
    text = render_nginx_conf(table(versions=[version("v1", 100, "stable")]), PARAMS)
    assert "    upstream " not in text
    assert "split_clients" not in text
    assert "return 503" in text
    assert "# note: no version has ready endpoints" in text


def test_shadow_off_has_no_side_channel() -> None:
    text = render_nginx_conf(table(versions=[version("v1", 100, "stable", "10.0.0.1:80")]), PARAMS)
    assert "syslog:" not in text
    assert "$request_body" not in text


def test_shadow_on_logs_sampled_requests_to_the_side_channel() -> None:
    text = render_nginx_conf(
        table(
            versions=[
                version("v1", 100, "stable", "10.0.0.1:80"),
                version("v3", 0, "shadow", "10.0.0.3:80"),
            ],
            shadowPercent=25,
        ),
        PARAMS,
    )
    sampled = block(text, 'split_clients "kl-shadow-${request_id}" $kl_shadow_sampled {')
    assert "25% 1;" in sampled
    assert "* 0;" in sampled
    assert (
        "access_log syslog:server=127.0.0.1:5514,nohostname,tag=kubeloop_shadow kl_shadow"
        " if=$kl_shadow_copy;" in text
    )
    assert "kl_shadow_too_large if=$kl_shadow_too_large;" in text
    assert '"b":"$request_body"' in text
    assert "log_format kl_shadow escape=json" in text
    assert "upstream kl_v3" not in text  # NGINX never proxies to the shadow
    full = render_nginx_conf(
        table(
            versions=[
                version("v1", 100, "stable", "10.0.0.1:80"),
                version("v3", 0, "shadow", "10.0.0.3:80"),
            ]
        ),
        PARAMS,
    )
    assert "map $request_id $kl_shadow_sampled {" in full


def test_paths_ports_and_health() -> None:
    params = NginxParams(
        state_dir=Path("/run/router"), listen_port=9000, health_port=9001, worker_processes=3
    )
    routes = table(versions=[version("v1", 100, "stable", "10.0.0.1:80")])
    back = render_nginx_conf(routes, params)
    assert "worker_processes 3;" in back
    assert "pid /run/router/back/nginx.pid;" in back
    assert "client_body_temp_path /run/router/back/tmp/body;" in back
    assert "error_log stderr warn;" in back
    assert "server_tokens off;" in back
    assert "listen unix:/run/router/back.sock backlog=4096;" in back
    assert "user " not in back
    health = block(back, "location = /healthz {")
    assert f"add_header x-kubeloop-config {config_version(routes, params)} always;" in health
    assert "return 200" in health
    draining = render_nginx_conf(routes, NginxParams(state_dir=Path("/run/router"), draining=True))
    assert "return 503" in block(draining, "location = /healthz {")
    front = render_front_conf(params)
    assert "listen 9000 backlog=4096;" in front
    assert "server unix:/run/router/back.sock max_fails=0;" in front
    assert "proxy_next_upstream error non_idempotent;" in front
    assert "pid /run/router/front/nginx.pid;" in front


def test_health_is_503_while_waiting_or_draining() -> None:
    routed = table(versions=[version("v1", 100, "stable", "10.0.0.1:80")])
    for params, status, text in (
        (PARAMS, 200, "ok"),
        (replace(PARAMS, waiting=True), 503, "waiting for a version with endpoints"),
        (replace(PARAMS, draining=True), 503, "draining"),
        (replace(PARAMS, waiting=True, draining=True), 503, "draining"),
    ):
        health = block(render_nginx_conf(routed, params), "location = /healthz {")
        assert f'return {status} "{text} ' in health, health


def test_quote_escapes() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'


@pytest.mark.parametrize("limit", [0, 1, 9, 10, 99, 100, 101, 999, 1000, 16384, 20000, 32768])
def test_max_integer_regex_matches_exactly_up_to_the_limit(limit: int) -> None:
    pattern = re.compile(max_integer_regex(limit))
    for number in [*range(min(limit + 50, 2000)), *range(max(0, limit - 50), limit + 2000)]:
        assert bool(pattern.match(str(number))) == (number <= limit), number
    assert not pattern.match("")
    assert not pattern.match("-1")


def test_without_front_the_routing_instance_listens_itself() -> None:
    params = NginxParams(state_dir=Path("/run/router"), listen_port=9000, front=False)
    text = render_nginx_conf(table(versions=[version("v1", 100, "stable", "10.0.0.1:80")]), params)
    assert "listen 9000 backlog=4096;" in text
    assert "unix:" not in text
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
