"""Typed settings of ``kubeloop serve`` (:class:`ServeSettings`) and the CPU budget.

Read once at start from ``KUBELOOP_SERVE_*`` variables and command-line flags (flags win), and
passed explicitly to everything that needs them; the S3 connection comes separately from
``KUBELOOP_S3_*`` (:class:`kubeloop.storage.S3Settings`), exactly as for the trainer. Errors
name the variable or flag, never a secret's value.

The thread budget of onnxruntime is the pod's CPU limit: ``threads`` when set, else the cgroup
quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), else the CPUs this process may run on.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "KUBELOOP_SERVE_"
NanPolicy = Literal["reject", "missing"]
UnknownCategoryPolicy = Literal["accept", "reject"]

_CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


class ServeSettings(BaseSettings):
    """What to serve, where, and the limits every request is held to."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    model_name: str = Field(
        min_length=1, max_length=253, description="registry name of the model (V2 model name)"
    )
    model_version: str = Field(
        min_length=1, max_length=63, description="version served (V2 model version), e.g. '3'"
    )
    model_uri: str = Field(description="s3://bucket/key of model.onnx")
    model_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="expected hex sha256 of model.onnx (the registry's)"
    )
    profile_uri: str | None = Field(
        default=None,
        description="s3:// URI of the training Dataset's profile.json (feature histogram buckets)",
    )
    host: str = Field(default="0.0.0.0", description="address to listen on")  # noqa: S104
    port: int = Field(default=8080, ge=0, le=65535, description="port to listen on (0: any)")
    max_batch_size: int = Field(
        default=64, ge=1, le=100_000, description="rows per onnxruntime call at most"
    )
    max_batch_wait_ms: float = Field(
        default=2.0,
        ge=0,
        le=1000,
        description="longest a batch waits for more rows, and only while requests keep arriving",
    )
    inference_thread: bool = Field(
        default=False,
        description=(
            "run onnxruntime in a worker thread instead of on the event loop thread (for models "
            "whose batches take milliseconds; slower for small models, see batcher.py)"
        ),
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="largest request body (413 above)"
    )
    max_rows: int = Field(
        default=1000, ge=1, le=1_000_000, description="most rows in one request (413 above)"
    )
    nan_policy: NanPolicy = Field(
        default="missing",
        description=(
            "NaN in a numeric input: 'missing' treats it as a missing value (accepted only for "
            "nullable features), 'reject' always answers 422"
        ),
    )
    unknown_categories: UnknownCategoryPolicy = Field(
        default="accept",
        description=(
            "a category not seen in training: 'accept' (the encoder ignores it, as in training; "
            "counted as __other__) or 'reject' (422)"
        ),
    )
    prediction_log_uri: str | None = Field(
        default=None,
        description="s3://bucket/prefix/ for the prediction and feedback logs (off when unset)",
    )
    prediction_log_queue: int = Field(
        default=10_000, ge=1, description="records waiting to be written; more are dropped"
    )
    prediction_log_batch: int = Field(
        default=1000, ge=1, description="records per log object at most"
    )
    prediction_log_interval: float = Field(
        default=5.0, gt=0, le=3600, description="seconds before a partial log object is written"
    )
    feedback_window: int = Field(
        default=100_000, ge=1, description="recent predictions kept to match feedback by id"
    )
    threads: int | None = Field(
        default=None, ge=1, le=1024, description="onnxruntime threads (default: the CPU limit)"
    )
    drain_timeout: float = Field(
        default=20.0, gt=0, le=3600, description="seconds to finish in-flight requests on SIGTERM"
    )
    shutdown_delay: float = Field(
        default=0.0,
        ge=0,
        le=600,
        description=(
            "seconds to keep serving after SIGTERM with readiness false, so endpoints and the "
            "router drop this pod before it stops accepting"
        ),
    )
    pod_name: str = Field(
        default_factory=lambda: os.environ.get("HOSTNAME", "") or "local",
        description="names this replica in log object keys (default: $HOSTNAME)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="log level of the server (logs go to stderr)"
    )

    @field_validator("model_uri", "profile_uri", "prediction_log_uri")
    @classmethod
    def _check_s3(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError("must be an s3:// URI")
        return value


def cpu_budget(configured: int | None, cgroup_root: Path | None = None) -> int:
    """Threads for onnxruntime: ``configured``, else the cgroup quota, else the CPUs usable."""
    if configured is not None:
        return configured
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(quota, available) if quota else available)


def _cgroup_quota(root: Path | None) -> int | None:
    v2 = root / "cpu.max" if root else _CGROUP_V2_CPU_MAX
    v1_quota = root / "cpu" / "cpu.cfs_quota_us" if root else _CGROUP_V1_QUOTA
    v1_period = root / "cpu" / "cpu.cfs_period_us" if root else _CGROUP_V1_PERIOD
    try:
        quota, period = v2.read_text().split()[:2]
        return math.ceil(int(quota) / int(period)) if quota != "max" else None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(v1_quota.read_text())
        period_us = int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return math.ceil(quota_us / period_us) if quota_us > 0 and period_us > 0 else None
