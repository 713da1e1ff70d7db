"""Pure renderer: a ``RouteTable`` and the router's ``NginxParams`` become ``nginx.conf`` text.

Two NGINX instances run in the router, each a master with its own workers:

* the **front** (``render_front_conf``) listens on the traffic port and proxies everything,
  over keep-alive connections, to the back instance's Unix socket. Its configuration never
  changes, so it is never reloaded. Measured with one instance: every reload cost about one
  failed client request per 10 keep-alive connections (``Can not write request body``): the
  old workers close idle keep-alive connections at once, racing a client that has just sent
  its next request on one, and clients do not retry a POST. The front sees the same race on
  its connections to the back, but NGINX retries a request whose cached connection failed
  before any answer, so it never reaches the client;
* the **back** (``render_nginx_conf``) does the routing below and is reloaded (SIGHUP) on
  every change.

What the back instance's configuration does, and why:

* **One ``upstream`` per version** (``kl_<version>``) with every ready endpoint,
  ``max_fails``/``fail_timeout`` (a failing pod is left alone for a while) and ``keepalive``
  connections to the backends (HTTP/1.1, ``Connection`` cleared), so a request through the
  router costs no TCP handshake.
* **Retries that hide dying pods**: ``proxy_next_upstream error timeout http_502 http_503
  non_idempotent`` with a try limit. ``non_idempotent`` lets a ``POST /predict`` that hit a
  pod dying mid-request go to another pod; predictions are pure functions of the request, so
  the only cost is that the dead pod may have logged the request too. When every pod of a
  candidate fails or answers 502/503/504 (e.g. unready), ``error_page`` with
  ``proxy_intercept_errors`` sends the request once more to stable (``@kl_fallback``).
* **Weighted split** with ``split_clients`` keyed on ``$request_id`` (random per request), or
  on the sticky header or cookie value, falling back to ``$request_id`` when the client sent
  none. The result names the version; ``proxy_pass http://kl_$kl_version`` picks its upstream.
* **``x-kubeloop-version``** on every proxied response (``add_header ... always``), after
  hiding the header the server sets itself, so a client sees exactly one.
* **``x-request-id``** is passed to the backends (the client's own, or NGINX's ``$request_id``)
  so the stable answer and its shadow copy can be joined in the prediction logs.
* **Feedback reaches the pod that answered.** A server matches ``/feedback`` ids against the
  predictions it made itself, so ``POST /feedback`` must not be split like a prediction:
  it goes to the version named by the client's ``x-kubeloop-version`` header (the one the
  prediction's answer carried) when that version has ready pods (even at weight 0), else
  through the split. Within
  a version the pod is chosen by a consistent hash of the request id (``hash $kl_request_id
  consistent``) for every request, so a feedback sent with the prediction's ``x-request-id``
  lands on the same pod as long as the version's pods are unchanged. Random ids spread
  predictions evenly, as round robin did. With a shadow, every feedback that fits is copied
  to it too (its predictions were copies with the same ids).
* **Shadow side channel**: after the response has gone out (log phase), a sampled request's
  method, URI, content type, id and body go as one JSON line over UDP syslog to the router's
  controller on 127.0.0.1, which replays it to the shadow version (``shadow.py``). Sampling is
  a second ``split_clients`` on ``$request_id`` with another salt, independent of the version
  split. Only bodies NGINX holds in memory can be logged (``$request_body``), so the buffer is
  at least the shadow body limit; a sampled request with a larger body (or a chunked one) sends
  a short ``too_large`` record instead, so the controller counts it.
* **Own endpoints**: ``/healthz`` on the health port (503 while draining, or while waiting
  for the first version with endpoints) with the config
  version in ``x-kubeloop-config``; no ``server_tokens``; pid, temp paths inside the state dir
  (read-only root filesystem), ``error_log stderr``, worker count from the CPU limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from kubeloop.router.table import RouteTable, StickyKey

UPSTREAM_PREFIX = "kl_"
FEEDBACK_PATH = "/feedback"
SHADOW_TAG = "kubeloop_shadow"


@dataclass(frozen=True)
class NginxParams:
    """The router's own settings that shape ``nginx.conf`` (not the routes)."""

    state_dir: Path
    listen_port: int = 8080
    health_port: int = 8081
    shadow_port: int = 5514
    worker_processes: int = 1
    worker_connections: int = 4096
    client_max_body_size: int = 16 * 1024 * 1024
    # NGINX allocates min(body, this) per request, so a large value costs small requests
    # nothing and keeps bodies up to it in memory instead of temp files in the state dir.
    client_body_buffer_size: int = 1024 * 1024
    shadow_max_body: int = 16 * 1024
    upstream_keepalive: int = 64
    max_fails: int = 1
    fail_timeout_seconds: int = 5
    next_upstream_tries: int = 3
    connect_timeout_seconds: float = 2.0
    read_timeout_seconds: float = 60.0
    error_log_level: str = "warn"
    draining: bool = False
    # Unready until the first table that routes somewhere (see controller.py).
    waiting: bool = False
    # Only when the master runs as root (local development): NGINX would otherwise switch its
    # workers to "nobody", who cannot enter a private state dir. The pod runs as 65532.
    worker_user: str | None = None
    # False: one instance listens on the traffic port itself (less CPU per request, but every
    # reload can fail a few requests of clients on idle keep-alive connections).
    front: bool = True

    @property
    def back_dir(self) -> Path:
        """Files of the routing (back) instance: its config, pid and temp files."""
        return self.state_dir / "back"

    @property
    def front_dir(self) -> Path:
        """Files of the client-facing (front) instance."""
        return self.state_dir / "front"

    @property
    def back_socket(self) -> Path:
        """The Unix socket the back instance listens on and the front proxies to."""
        return self.state_dir / "back.sock"


def quote(value: str) -> str:
    """A value as an NGINX double-quoted string (backslash and quote escaped).

    Values come from validated names (versions, headers, cookies), so no ``$`` reaches here.
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def max_integer_regex(limit: int) -> str:
    """A regex matching decimal integers from 0 to ``limit`` (no sign, no leading zeros).

    NGINX's ``map`` cannot compare numbers, so "Content-Length at most N" is a regex.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    digits = str(limit)
    width = len(digits)
    parts = ["0"]
    if width >= 2:
        parts.append("[1-9]")
    if width >= 3:
        parts.append(f"[1-9][0-9]{{1,{width - 2}}}")
    for index, char in enumerate(digits):
        low, high = (1 if index == 0 else 0), int(char) - 1
        if high < low:
            continue
        rest = width - index - 1
        digit_class = str(low) if high == low else f"[{low}-{high}]"
        tail = "" if rest == 0 else f"[0-9]{{{rest}}}"
        parts.append(digits[:index] + digit_class + tail)
    if limit > 0:
        parts.append(digits)
    return "^(" + "|".join(dict.fromkeys(parts)) + ")$"


def _sticky_variable(sticky: StickyKey) -> tuple[str, list[str]]:
    """The NGINX variable holding the sticky value, plus any ``map`` needed to extract it."""
    if sticky.kind == "header":
        return "$http_" + sticky.name.lower().replace("-", "_"), []
    if "-" not in sticky.name:
        return "$cookie_" + sticky.name, []
    # $cookie_<name> cannot spell a '-', so extract the value from the Cookie header.
    pattern = f"~(?:^|;)\\s*{sticky.name}=(?<kl_cookie>[^;]*)"
    lines = [
        "    map $http_cookie $kl_sticky_cookie {",
        f"        {quote(pattern)} $kl_cookie;",
        '        default "";',
        "    }",
    ]
    return "$kl_sticky_cookie", lines


def _split_lines(table: RouteTable) -> list[str]:
    lines: list[str] = []
    key = "${request_id}"
    if table.sticky is not None:
        variable, extra = _sticky_variable(table.sticky)
        lines += extra
        lines += [
            f"    map {variable} $kl_split_key {{",
            '        "" $request_id;',
            f"        default {variable};",
            "    }",
        ]
        key = "${kl_split_key}"
    lines.append(f'    split_clients "{key}" $kl_version {{')
    for entry in table.split[:-1]:
        lines.append(f"        {entry.percent}% {quote(entry.version)};")
    lines.append(f"        * {quote(table.split[-1].version)};")
    lines.append("    }")
    return lines


def _feedback_lines(table: RouteTable) -> list[str]:
    """``$kl_feedback_version``: the routed version the client names, else the split's."""
    lines = ["    map $http_x_kubeloop_version $kl_feedback_version {"]
    lines += [f"        {quote(up.version)} {quote(up.version)};" for up in table.upstreams]
    lines += ["        default $kl_version;", "    }"]
    return lines


def _fallback_lines(fallback: bool) -> list[str]:
    if not fallback:
        return []
    return [
        "            proxy_intercept_errors on;",
        "            error_page 502 503 504 = @kl_fallback;",
    ]


def _shadow_lines(table: RouteTable, params: NginxParams) -> list[str]:
    """Sampling maps and log formats of the shadow side channel (``$kl_shadow_*``)."""
    if table.shadow is None:
        return []
    lines = []
    if table.shadow.percent >= 100:
        lines += ["    map $request_id $kl_shadow_sampled {", "        default 1;", "    }"]
    else:
        lines += [
            '    split_clients "kl-shadow-${request_id}" $kl_shadow_sampled {',
            f"        {table.shadow.percent}% 1;",
            "        * 0;",
            "    }",
        ]
    fits = max_integer_regex(params.shadow_max_body)
    lines += [
        # A body fits when its length is known and small enough; no length and no
        # Transfer-Encoding means no body.
        '    map "$content_length:$http_transfer_encoding" $kl_body_fits {',
        f'        "~{fits[:-1]}:$" 1;',
        '        ":" 1;',
        "        default 0;",
        "    }",
        "    map $kl_body_fits $kl_body_too_large {",
        "        0 1;",
        "        default 0;",
        "    }",
        '    map "$kl_shadow_sampled$kl_body_fits" $kl_shadow_copy {',
        '        "11" 1;',
        "        default 0;",
        "    }",
        '    map "$kl_shadow_sampled$kl_body_fits" $kl_shadow_too_large {',
        '        "10" 1;',
        "        default 0;",
        "    }",
        "    log_format kl_shadow escape=json",
        """        '{"m":"$request_method","u":"$request_uri","t":"$content_type",'""",
        """        '"id":"$kl_request_id","b":"$request_body"}';""",
        "    log_format kl_shadow_too_large escape=json",
        """        '{"id":"$kl_request_id","too_large":true}';""",
    ]
    return lines


def _proxy_location_lines(version: str, target: str, indent: str) -> list[str]:
    return [
        f"{indent}proxy_pass http://{target};",
        f"{indent}add_header x-kubeloop-version {version} always;",
    ]


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def config_version(table: RouteTable, params: NginxParams) -> str:
    """A short digest naming one rendered configuration (metrics, ``/healthz`` header)."""
    text = table.model_dump_json() + repr(params)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _common_lines(
    state: Path, params: NginxParams, comments: list[str], error_log_level: str
) -> list[str]:
    """Process, paths and client-side settings shared by both instances."""
    return [
        *comments,
        *([f"user {params.worker_user};"] if params.worker_user else []),
        f"worker_processes {params.worker_processes};",
        f"pid {state / 'nginx.pid'};",
        f"error_log stderr {error_log_level};",
        "daemon off;",
        "pcre_jit on;",
        "",
        "events {",
        f"    worker_connections {params.worker_connections};",
        "}",
        "",
        "http {",
        "    server_tokens off;",
        "    access_log off;",
        "    default_type application/octet-stream;",
        f"    client_body_temp_path {state / 'tmp' / 'body'};",
        f"    proxy_temp_path {state / 'tmp' / 'proxy'};",
        f"    fastcgi_temp_path {state / 'tmp' / 'fastcgi'};",
        f"    uwsgi_temp_path {state / 'tmp' / 'uwsgi'};",
        f"    scgi_temp_path {state / 'tmp' / 'scgi'};",
        "    keepalive_timeout 75s;",
        "    keepalive_requests 100000;",
        "    tcp_nodelay on;",
        f"    client_max_body_size {params.client_max_body_size};",
        f"    client_body_buffer_size {max(params.client_body_buffer_size, params.shadow_max_body)};",
        "",
        "    map $http_x_request_id $kl_request_id {",
        '        "" $request_id;',
        "        default $http_x_request_id;",
        "    }",
        "    proxy_http_version 1.1;",
        # Answers are relayed through memory only: no temp files for large responses.
        "    proxy_buffer_size 16k;",
        "    proxy_buffers 16 16k;",
        "    proxy_max_temp_file_size 0;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $host;",
        "    proxy_set_header X-Request-ID $kl_request_id;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
    ]


def render_front_conf(params: NginxParams) -> str:
    """The client-facing instance: a fixed proxy to the back instance's Unix socket.

    Its text depends only on the router's settings, so it is never reloaded and client
    connections never meet a reload. When the back instance reloads, its old workers close
    idle keep-alive connections; the front sees that as an error on a cached connection and
    sends the request again on a fresh one (``non_idempotent``: the request never reached a
    backend), so the client never notices.
    """
    state = params.front_dir
    # Its retries on connections the back closed are routine: "error" would log each one.
    lines = _common_lines(
        state, params, ["# Generated by kubeloop route (front). Do not edit."], "crit"
    )
    lines += [
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_next_upstream error non_idempotent;",
        "    proxy_next_upstream_tries 5;",
        f"    proxy_connect_timeout {_ms(params.connect_timeout_seconds)};",
        # The back instance has its own timeouts and retries; these only bound the whole.
        f"    proxy_read_timeout {_ms(params.read_timeout_seconds * 2 + 5)};",
        f"    proxy_send_timeout {_ms(params.read_timeout_seconds * 2 + 5)};",
        "",
        "    upstream kl_back {",
        f"        server unix:{params.back_socket} max_fails=0;",
        "        keepalive 512;",
        "        keepalive_requests 1000000;",
        "        keepalive_timeout 300s;",
        "    }",
        "",
        "    server {",
        f"        listen {params.listen_port} backlog=4096;",
        "        location / {",
        "            proxy_pass http://kl_back;",
        "        }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)


def render_nginx_conf(table: RouteTable, params: NginxParams) -> str:
    """The routing (back) instance's ``nginx.conf`` for ``table`` (see the module docstring)."""
    state = params.back_dir
    version = config_version(table, params)
    shadow_log = f"syslog:server=127.0.0.1:{params.shadow_port},nohostname,tag={SHADOW_TAG}"
    lines = _common_lines(
        state,
        params,
        [
            f"# Generated by kubeloop route; config {version}. Do not edit.",
            *(f"# note: {note}" for note in table.notes),
        ],
        params.error_log_level,
    )
    lines += [
        # With a front instance, it added the client's address already.
        "    proxy_set_header X-Forwarded-For "
        + ("$http_x_forwarded_for;" if params.front else "$proxy_add_x_forwarded_for;"),
        "    proxy_hide_header x-kubeloop-version;",
        f"    proxy_connect_timeout {_ms(params.connect_timeout_seconds)};",
        f"    proxy_read_timeout {_ms(params.read_timeout_seconds)};",
        f"    proxy_send_timeout {_ms(params.read_timeout_seconds)};",
        "    proxy_next_upstream error timeout http_502 http_503 non_idempotent;",
        f"    proxy_next_upstream_tries {params.next_upstream_tries};",
        f"    proxy_next_upstream_timeout {_ms(params.read_timeout_seconds)};",
        "",
    ]
    for upstream in table.upstreams:
        lines.append(f"    upstream {UPSTREAM_PREFIX}{upstream.version} {{")
        # Before keepalive, which must follow the balancing method.
        lines.append("        hash $kl_request_id consistent;")
        for endpoint in upstream.endpoints:
            lines.append(
                f"        server {endpoint} max_fails={params.max_fails}"
                f" fail_timeout={params.fail_timeout_seconds}s;"
            )
        lines.append(f"        keepalive {params.upstream_keepalive};")
        lines.append("        keepalive_requests 100000;")
        lines.append("        keepalive_timeout 60s;")
        lines.append("    }")
    if table.split:
        lines += _split_lines(table)
        lines += _feedback_lines(table)
    lines += _shadow_lines(table, params)

    listen = f"unix:{params.back_socket}" if params.front else str(params.listen_port)
    lines += ["", "    server {", f"        listen {listen} backlog=4096;"]
    if table.shadow is not None:
        lines.append(f"        access_log {shadow_log} kl_shadow if=$kl_shadow_copy;")
        lines.append(
            f"        access_log {shadow_log} kl_shadow_too_large if=$kl_shadow_too_large;"
        )
    stable = table.stable if table.split and len(table.split) > 1 else None
    fallback = stable is not None
    if table.split:
        lines.append(f"        location = {FEEDBACK_PATH} {{")
        if table.shadow is not None:
            # Overrides the server's access logs: every feedback that fits is copied.
            lines.append(f"            access_log {shadow_log} kl_shadow if=$kl_body_fits;")
            lines.append(
                f"            access_log {shadow_log} kl_shadow_too_large if=$kl_body_too_large;"
            )
        lines += _proxy_location_lines(
            "$kl_feedback_version", f"{UPSTREAM_PREFIX}$kl_feedback_version", " " * 12
        )
        lines += _fallback_lines(fallback)
        lines.append("        }")
    lines.append("        location / {")
    if table.split:
        lines += _proxy_location_lines("$kl_version", f"{UPSTREAM_PREFIX}$kl_version", " " * 12)
        lines += _fallback_lines(fallback)
    else:
        lines.append("            default_type application/json;")
        lines.append(
            """            return 503 '{"error":"no model version is ready to serve"}\\n';"""
        )
    lines.append("        }")
    if stable is not None:
        lines.append("        location @kl_fallback {")
        lines += _proxy_location_lines(quote(stable), f"{UPSTREAM_PREFIX}{stable}", " " * 12)
        lines.append("        }")
    lines.append("    }")

    health_status = 503 if params.draining or params.waiting else 200
    health_text = (
        "draining"
        if params.draining
        else "waiting for a version with endpoints"
        if params.waiting
        else "ok"
    )
    lines += [
        "",
        "    server {",
        f"        listen {params.health_port};",
        "        location = /healthz {",
        "            default_type text/plain;",
        f"            add_header x-kubeloop-config {version} always;",
        f'            return {health_status} "{health_text} {version}\\n";',
        "        }",
        "        location / {",
        "            return 404;",
        "        }",
        "    }",
        "}",
        "",
    ]
    return "\n".join(lines)
