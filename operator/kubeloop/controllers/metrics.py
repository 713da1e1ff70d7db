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
        self.drift_score = Gauge(
            "kubeloop_drift_score",
            "Latest drift score of a served version's feature (or 'prediction') by method "
            "(chi2: the test's p-value).",
            ["namespace", "deployment", "version", "feature", "method"],
            registry=self.registry,
        )
        self.drift_detected = Gauge(
            "kubeloop_drift_detected",
            "1 while a Deployment's DriftDetected condition is True, else 0.",
            ["namespace", "deployment", "version"],
            registry=self.registry,
        )
        self.drift_samples = Gauge(
            "kubeloop_drift_window_predictions",
            "Predictions in the latest drift window of a Deployment's stable version.",
            ["namespace", "deployment", "version"],
            registry=self.registry,
        )
        self.live_accuracy = Gauge(
            "kubeloop_live_accuracy",
            "Accuracy of the feedback labels in the latest drift window (classification).",
            ["namespace", "deployment", "version"],
            registry=self.registry,
        )
        self.retrains = Counter(
            "kubeloop_retrains",
            "Retrains that ended, by what started them and how they ended (Succeeded, "
            "Rejected by the gates, Failed).",
            ["namespace", "deployment", "trigger", "outcome"],
            registry=self.registry,
        )
        self._phases: dict[tuple[str, str], str] = {}
        self._drift_series: dict[tuple[str, str], list[tuple[str, ...]]] = {}

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

    def observe_drift(
        self,
        namespace: str,
        deployment: str,
        version: str,
        scores: list[tuple[str, str, float]],
        *,
        detected: bool,
        samples: int,
        live_accuracy: float | None,
    ) -> None:
        """Replace a Deployment's drift series with one check's (feature, method, score)."""
        self.forget_drift(namespace, deployment)
        base = (namespace, deployment, version)
        series: list[tuple[str, ...]] = []
        for feature, method, score in scores:
            self.drift_score.labels(*base, feature, method).set(score)
            series.append((*base, feature, method))
        self.drift_detected.labels(*base).set(1 if detected else 0)
        self.drift_samples.labels(*base).set(samples)
        if live_accuracy is not None:
            self.live_accuracy.labels(*base).set(live_accuracy)
        series.append(base)
        self._drift_series[(namespace, deployment)] = series

    def observe_retrain_end(
        self, namespace: str, deployment: str, *, trigger: str, outcome: str
    ) -> None:
        """Count one retrain that reached its end."""
        self.retrains.labels(namespace, deployment, trigger, outcome).inc()

    def forget_drift(self, namespace: str, deployment: str) -> None:
        """Remove a Deployment's drift series (a version gone, monitoring off, deleted)."""
        for labels in self._drift_series.pop((namespace, deployment), []):
            if len(labels) == 5:
                self.drift_score.remove(*labels)
                continue
            for gauge in (self.drift_detected, self.drift_samples, self.live_accuracy):
                try:
                    gauge.remove(*labels)
                except KeyError:
                    continue  # live accuracy is only set with feedback


def register(metrics: OperatorMetrics) -> None:
    """Watch the four kinds to keep the objects-by-phase gauge current."""
    for plural, kind in _PLURALS.items():

        def track(body: kopf.Body, type: str | None, kind: str = kind, **_: Any) -> None:
            key = f"{body.metadata.namespace}/{body.metadata.name}"
            phase = (body.get("status") or {}).get("phase") or "Pending"
            metrics.observe_phase(kind, key, None if type == "DELETED" else str(phase))

        kopf.on.event(API_GROUP, API_VERSION, plural, id=f"metrics-{plural}")(track)
