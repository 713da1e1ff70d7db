"""The operator's own /metrics: reconciles, errors and durations per kind, objects by phase.

Every handler is wrapped by :func:`instrumented`, so the numbers cover all of them without
each handler counting for itself; a watch on the four kinds keeps the objects-by-phase gauge.
The registry is created per operator (not the process-global default), so tests and embedded
uses do not collide.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kubeloop import API_GROUP, API_VERSION

F = TypeVar("F", bound=Callable[..., Any])
_PLURALS = {
    "datasets": "Dataset",
    "trainingruns": "TrainingRun",
    "modelversions": "ModelVersion",
    "deployments": "Deployment",
}


class OperatorMetrics:
    """Metrics of one operator process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "kubeloop_reconcile_total",
            "Handler runs by kind, handler and result (ok or error).",
            ["kind", "handler", "result"],
            registry=self.registry,
        )
        self.durations = Histogram(
            "kubeloop_reconcile_duration_seconds",
            "Handler run time by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.objects = Gauge(
            "kubeloop_objects",
            "kubeloop objects by kind and phase, as the operator last saw them.",
            ["kind", "phase"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "kubeloop_operator_leader",
            "1 while this replica runs the controllers (holds the Lease, or no election), else 0.",
            registry=self.registry,
        )
        self._phases: dict[tuple[str, str], str] = {}

    def instrumented(self, kind: str) -> Callable[[F], F]:
        """Count and time every run of a handler for ``kind``."""

        def decorate(handler: F) -> F:
            @functools.wraps(handler)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    result = handler(*args, **kwargs)
                except Exception:
                    self.reconciles.labels(kind, handler.__name__, "error").inc()
                    raise
                finally:
                    self.durations.labels(kind).observe(time.perf_counter() - start)
                self.reconciles.labels(kind, handler.__name__, "ok").inc()
                return result

            return wrapper  # type: ignore[return-value]

        return decorate

    def observe_phase(self, kind: str, key: str, phase: str | None) -> None:
        """Record the phase of one object (None when it was deleted) and refresh the gauge."""
        if phase is None:
            self._phases.pop((kind, key), None)
        else:
            self._phases[(kind, key)] = phase
        counts: dict[tuple[str, str], int] = {}
        for (object_kind, _), object_phase in self._phases.items():
            counts[(object_kind, object_phase)] = counts.get((object_kind, object_phase), 0) + 1
        self.objects.clear()
        for (object_kind, object_phase), count in counts.items():
            self.objects.labels(object_kind, object_phase).set(count)


def register(metrics: OperatorMetrics) -> None:
    """Watch the four kinds to keep the objects-by-phase gauge current."""
    for plural, kind in _PLURALS.items():

        def track(body: kopf.Body, type: str | None, kind: str = kind, **_: Any) -> None:
            key = f"{body.metadata.namespace}/{body.metadata.name}"
            phase = (body.get("status") or {}).get("phase") or "Pending"
            metrics.observe_phase(kind, key, None if type == "DELETED" else str(phase))

        kopf.on.event(API_GROUP, API_VERSION, plural, id=f"metrics-{plural}")(track)
