"""What every controller shares: the handler logger type, timestamps, owned-Job events, and
the merge patch that turns one stored status into another."""

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


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``.

    A merge patch keeps every key it does not mention, at every depth: a field that went
    away (``status.lastRetrain.finishedAt`` of the previous retrain, say) must be sent as
    null or it outlives the object it described. Lists are replaced whole, as the API
    server does.
    """
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch
