"""Settings of ``kubeloop route``: ``KUBELOOP_ROUTE_*`` environment variables, read once.

The operator sets the first group in the router's pod; the rest have defaults that fit a pod
with a read-only root filesystem, uid 65532 and an emptyDir mounted at ``state_dir``.
``worker_processes`` defaults to the CPU limit (cgroup ``cpu.max``), at least 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class RouterSettings(BaseSettings):
    """Everything ``kubeloop route`` can be told; CLI flags override the environment."""

    model_config = SettingsConfigDict(env_prefix="KUBELOOP_ROUTE_", extra="ignore")

    namespace: str | None = Field(
        default=None, description="Namespace of the Deployment (default: the pod's own)."
    )
    deployment: str | None = Field(default=None, description="kubeloop Deployment to route.")
    routes_file: Path | None = Field(
        default=None, description="Read routes from this JSON file instead of the API server."
    )
    kubeconfig: Path | None = Field(
        default=None, description="Kubeconfig to use instead of the in-cluster service account."
    )
    listen_port: int = Field(default=8080, ge=1, le=65535, description="Traffic port.")
    health_port: int = Field(default=8081, ge=1, le=65535, description="/healthz port (NGINX).")
    metrics_port: int = Field(default=9090, ge=1, le=65535, description="/metrics port.")
    shadow_port: int = Field(
        default=5514, ge=1, le=65535, description="UDP port on 127.0.0.1 of the side channel."
    )
    state_dir: Path = Field(
        default=Path("/tmp/kubeloop-route"),  # noqa: S108 - an emptyDir in the pod
        description="Writable directory for nginx.conf, pid and temp files.",
    )
    nginx_binary: Path = Field(default=Path("/usr/sbin/nginx"), description="NGINX executable.")
    nginx_user: str | None = Field(
        default=None,
        description="NGINX worker user when started as root (default: root; ignored otherwise).",
    )
    front: bool = Field(
        default=True,
        description=(
            "Run a fixed client-facing NGINX in front of the reloaded one, so reloads never "
            "fail a client's request; false saves CPU per request but lets every reload fail "
            "a few requests on idle keep-alive connections."
        ),
    )
    worker_processes: int | None = Field(
        default=None, ge=1, le=64, description="NGINX workers (default: CPU limit)."
    )
    debounce_seconds: float = Field(
        default=0.2, ge=0.0, le=60.0, description="Changes closer than this make one reload."
    )
    resync_seconds: float = Field(default=300.0, ge=10.0, description="Relist period of watches.")
    reload_timeout_seconds: float = Field(
        default=10.0, gt=0.0, description="Time for NGINX to serve a new configuration."
    )
    routes_file_poll_seconds: float = Field(default=0.5, gt=0.0, description="Routes-file poll.")
    client_max_body_size: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest request body accepted (bytes)."
    )
    shadow_max_body: int = Field(
        default=16 * 1024,
        ge=0,
        le=32 * 1024,
        description="Largest body copied to the shadow (bytes); a datagram must stay under 64 KiB.",
    )
    shadow_concurrency: int = Field(default=32, ge=1, le=1024, description="Replay workers.")
    shadow_queue_size: int = Field(default=4096, ge=1, description="Copies waiting at most.")
    shadow_timeout_seconds: float = Field(default=5.0, gt=0.0, description="Per copy.")
    shadow_max_rate: float = Field(
        default=2000.0,
        ge=0.0,
        description="Copies replayed per second at most (0: no cap); the rest are dropped.",
    )
    shutdown_delay_seconds: float = Field(
        default=5.0,
        ge=0.0,
        description="After SIGTERM: unready but serving, while endpoints drop the pod.",
    )
    quit_timeout_seconds: float = Field(
        default=20.0, gt=0.0, description="In-flight requests may finish for this long."
    )
    log_level: str = Field(default="INFO", description="Controller log level.")

    def resolved_namespace(self) -> str:
        """The namespace setting, else the service account's, else ``default``."""
        if self.namespace:
            return self.namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"

    def resolved_worker_user(self) -> str | None:
        """The worker user NGINX needs: only when running as root, where it would switch."""
        if os.geteuid() != 0:
            return None
        return self.nginx_user or "root"

    def resolved_workers(self) -> int:
        """The worker setting, else the CPU limit rounded up, else the CPUs we may run on."""
        return self.worker_processes or cpu_limit() or max(1, len(os.sched_getaffinity(0)))


def cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The container's CPU limit rounded up (cgroup v2 ``cpu.max`` or v1 CFS quota), or None."""
    try:
        quota_text, period_text = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota_text = (cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period_text = (cgroup_root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota_text in ("max", "-1"):
        return None
    try:
        return max(1, math.ceil(int(quota_text) / int(period_text)))
    except (ValueError, ZeroDivisionError):
        return None
