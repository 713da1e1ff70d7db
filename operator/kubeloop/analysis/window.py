"""One analysis window per version: what its pods did between two scrapes.

Counters only grow while a process lives, so the window of one pod is ``after - before``.
The edge cases are where naive subtraction lies:

* **a pod restarted** (any of its counters went down, or its ``_created`` time changed):
  its counters restarted from zero, so its window is everything in ``after``; requests
  between the last scrape and the restart are lost, as Prometheus' ``increase()`` loses them;
* **a pod appeared** (no ``before``): it started during the window (new replica, HPA), so
  all of its counts are in the window;
* **a pod disappeared** (no ``after``): its last requests are unknown and it contributes
  nothing; it cannot make the window negative.

Pods are keyed by the caller, preferably by pod UID: a replaced pod with the same name is a
new pod, a restarted container in the same pod is a reset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from kubeloop.analysis.exposition import Histogram, PodMetrics, is_inference_endpoint

Key = TypeVar("Key")


def _decreased(before: Mapping[Key, float], after: Mapping[Key, float]) -> bool:
    return any(after.get(key, 0.0) < value for key, value in before.items())


def _counter_reset(before: PodMetrics, after: PodMetrics) -> bool:
    if before.created is not None and after.created is not None and after.created != before.created:
        return True
    latency_before = {endpoint: h.count for endpoint, h in before.latency.items()}
    latency_after = {endpoint: h.count for endpoint, h in after.latency.items()}
    values_before = before.prediction_value.count if before.prediction_value else 0.0
    values_after = after.prediction_value.count if after.prediction_value else 0.0
    return (
        _decreased(before.requests, after.requests)
        or _decreased(before.predictions, after.predictions)
        or _decreased(before.feedback, after.feedback)
        or _decreased(latency_before, latency_after)
        or values_after < values_before
    )


def _minus(after: Mapping[Key, float], before: Mapping[Key, float]) -> dict[Key, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def pod_delta(before: PodMetrics | None, after: PodMetrics) -> PodMetrics:
    """What one pod did between two scrapes (all of ``after`` when new or restarted)."""
    if before is None or _counter_reset(before, after):
        return after
    return PodMetrics(
        requests=_minus(after.requests, before.requests),
        latency={
            endpoint: histogram.minus(before.latency.get(endpoint, Histogram()))
            for endpoint, histogram in after.latency.items()
        },
        predictions=_minus(after.predictions, before.predictions),
        prediction_value=(
            None
            if after.prediction_value is None
            else after.prediction_value.minus(before.prediction_value or Histogram())
        ),
        feedback=_minus(after.feedback, before.feedback),
        created=after.created,
    )


@dataclass(frozen=True)
class VersionWindow:
    """One version's traffic in a window, summed over its pods."""

    requests: int = 0
    """Inference requests (probes, scrapes and feedback excluded)."""
    errors: int = 0
    """Inference requests answered 5xx."""
    latency: Histogram = field(default_factory=Histogram)
    """Duration of inference requests, all endpoints together (seconds)."""
    predictions: Mapping[str, float] = field(default_factory=dict)
    """Predicted label -> count (classification)."""
    prediction_value: Histogram | None = None
    """Predicted values (regression)."""
    correct: int = 0
    """Feedback labels that matched the prediction."""
    incorrect: int = 0
    """Feedback labels that did not."""
    pods: int = 0
    """Pods that contributed."""

    @property
    def feedback(self) -> int:
        """Feedback labels received."""
        return self.correct + self.incorrect


def _counts(values: Iterable[float]) -> int:
    # Counters are floats on the wire; a window is a whole number of events.
    return round(max(0.0, sum(values)))


def version_window(
    before: Mapping[str, PodMetrics], after: Mapping[str, PodMetrics]
) -> VersionWindow:
    """Sum the per-pod windows of one version; ``before``/``after`` are keyed by pod."""
    deltas = [pod_delta(before.get(pod), metrics) for pod, metrics in after.items()]
    latency = Histogram()
    predictions: dict[str, float] = {}
    values: Histogram | None = None
    requests = errors = 0.0
    correct = incorrect = 0.0
    for delta in deltas:
        for (endpoint, code), count in delta.requests.items():
            if not is_inference_endpoint(endpoint):
                continue
            requests += count
            if code.startswith("5"):
                errors += count
        for endpoint, histogram in delta.latency.items():
            if is_inference_endpoint(endpoint):
                latency = latency.plus(histogram)
        for label, count in delta.predictions.items():
            predictions[label] = predictions.get(label, 0.0) + count
        if delta.prediction_value is not None:
            values = (
                delta.prediction_value if values is None else values.plus(delta.prediction_value)
            )
        correct += delta.feedback.get("correct", 0.0)
        incorrect += delta.feedback.get("incorrect", 0.0)
    return VersionWindow(
        requests=_counts([requests]),
        errors=_counts([errors]),
        latency=latency,
        predictions=predictions,
        prediction_value=values,
        correct=_counts([correct]),
        incorrect=_counts([incorrect]),
        pods=len(deltas),
    )
