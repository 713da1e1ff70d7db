"""What every controller shares: the handler logger type, timestamps, owned-Job events."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf
from kopf.on import WatchingDecorator

Logger = logging.Logger | logging.LoggerAdapter[Any]


def now() -> str:
    """The current time as status timestamps want it (RFC 3339, seconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def on_owned_job(component: str) -> WatchingDecorator:
    """Kopf's watch on the Jobs kubeloop made for one component (profiler, trainer)."""
    return kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": "kubeloop",
        },
    )


def job_outcome(job_status: dict[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` once a Job has finished, else None."""
    for condition in job_status.get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None
