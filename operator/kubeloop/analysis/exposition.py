"""Parse one serving pod's ``/metrics`` into the samples canary analysis reads.

The inference server exports these series, all labelled ``model`` and ``version``:

* ``kubeloop_serve_requests_total{endpoint, code}`` (counter);
* ``kubeloop_serve_request_duration_seconds{endpoint}`` (histogram);
* ``kubeloop_serve_predictions_total{label}`` (counter, classification);
* ``kubeloop_serve_prediction_value`` (histogram, regression);
* ``kubeloop_serve_feedback_total{outcome="correct"|"incorrect"}`` (counter).

Everything else on the page (in-flight gauges, feature histograms, process metrics) is
ignored. Samples of another model or version are ignored too, so a pod that is mid-rollout
cannot leak its numbers into the wrong side of a comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "kubeloop_serve_requests_total"
DURATION = "kubeloop_serve_request_duration_seconds"
PREDICTIONS = "kubeloop_serve_predictions_total"
PREDICTION_VALUE = "kubeloop_serve_prediction_value"
FEEDBACK = "kubeloop_serve_feedback_total"

# Requests to these endpoints are not inference: probes, scrapes, metadata and feedback.
_NOT_INFERENCE = ("health", "metrics", "ready", "live", "feedback")


def is_inference_endpoint(endpoint: str) -> bool:
    """Whether requests to ``endpoint`` count for error rate and latency."""
    lowered = endpoint.lower()
    return not any(word in lowered for word in _NOT_INFERENCE)


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram: cumulative counts per upper bound (``+Inf`` last)."""

    buckets: tuple[tuple[float, float], ...] = ()
    count: float = 0.0
    sum: float = 0.0

    def plus(self, other: Histogram) -> Histogram:
        """Both histograms together (same bucket bounds expected; missing ones count 0)."""
        return _combine(self, other, 1.0)

    def minus(self, other: Histogram) -> Histogram:
        """This histogram less an earlier scrape of the same series."""
        return _combine(self, other, -1.0)


def _cumulative_at(buckets: tuple[tuple[float, float], ...], bound: float) -> float:
    """The cumulative count at ``bound``: that of the largest bound not above it.

    Histograms with different bucket bounds (two server releases) stay monotone when added;
    the estimate errs low, which moves a quantile up: the cautious side for a latency bound.
    """
    value = 0.0
    for upper, count in sorted(buckets):
        if upper > bound:
            break
        value = count
    return value


def _combine(left: Histogram, right: Histogram, sign: float) -> Histogram:
    bounds = sorted({bound for bound, _ in left.buckets} | {bound for bound, _ in right.buckets})
    return Histogram(
        buckets=tuple(
            (
                bound,
                _cumulative_at(left.buckets, bound) + sign * _cumulative_at(right.buckets, bound),
            )
            for bound in bounds
        ),
        count=left.count + sign * right.count,
        sum=left.sum + sign * right.sum,
    )


@dataclass(frozen=True)
class PodMetrics:
    """The analysis-relevant counters of one pod at one scrape."""

    requests: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """(endpoint, code) -> requests."""
    latency: Mapping[str, Histogram] = field(default_factory=dict)
    """endpoint -> request duration histogram (seconds)."""
    predictions: Mapping[str, float] = field(default_factory=dict)
    """predicted label -> count (classification)."""
    prediction_value: Histogram | None = None
    """distribution of predicted values (regression)."""
    feedback: Mapping[str, float] = field(default_factory=dict)
    """outcome (correct / incorrect) -> count."""
    created: float | None = None
    """Earliest ``_created`` timestamp on the page: changes when the process restarts."""


def parse_pod_metrics(text: str, *, version: str, model: str | None = None) -> PodMetrics:
    """The samples of ``version`` (and ``model``, when given) on one ``/metrics`` page.

    Raises ``ValueError`` when the text is not Prometheus exposition format.
    """
    requests: dict[tuple[str, str], float] = {}
    buckets: dict[str, dict[float, float]] = {}
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    value_buckets: dict[float, float] = {}
    value_count = value_sum = 0.0
    has_values = False
    predictions: dict[str, float] = {}
    feedback: dict[str, float] = {}
    created: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("version") != version:
                continue
            if model is not None and labels.get("model") != model:
                continue
            name, value = sample.name, float(sample.value)
            if name.endswith("_created"):
                created = value if created is None else min(created, value)
            elif name == REQUESTS:
                key = (labels.get("endpoint", ""), labels.get("code", ""))
                requests[key] = requests.get(key, 0.0) + value
            elif name == f"{DURATION}_bucket":
                endpoint = labels.get("endpoint", "")
                bound = bucket_bound(labels.get("le", "+Inf"))
                per_endpoint = buckets.setdefault(endpoint, {})
                per_endpoint[bound] = per_endpoint.get(bound, 0.0) + value
            elif name == f"{DURATION}_count":
                endpoint = labels.get("endpoint", "")
                counts[endpoint] = counts.get(endpoint, 0.0) + value
            elif name == f"{DURATION}_sum":
                endpoint = labels.get("endpoint", "")
                sums[endpoint] = sums.get(endpoint, 0.0) + value
            elif name == PREDICTIONS:
                label = labels.get("label", "")
                predictions[label] = predictions.get(label, 0.0) + value
            elif name == f"{PREDICTION_VALUE}_bucket":
                bound = bucket_bound(labels.get("le", "+Inf"))
                value_buckets[bound] = value_buckets.get(bound, 0.0) + value
                has_values = True
            elif name == f"{PREDICTION_VALUE}_count":
                value_count += value
                has_values = True
            elif name == f"{PREDICTION_VALUE}_sum":
                value_sum += value
            elif name == FEEDBACK:
                outcome = labels.get("outcome", "")
                feedback[outcome] = feedback.get(outcome, 0.0) + value
    latency = {
        endpoint: Histogram(
            buckets=tuple(sorted(bounds.items())),
            count=counts.get(endpoint, 0.0),
            sum=sums.get(endpoint, 0.0),
        )
        for endpoint, bounds in buckets.items()
    }
    return PodMetrics(
        requests=requests,
        latency=latency,
        predictions=predictions,
        prediction_value=(
            Histogram(tuple(sorted(value_buckets.items())), value_count, value_sum)
            if has_values
            else None
        ),
        feedback=feedback,
        created=created,
    )


def bucket_bound(text: str) -> float:
    """A histogram bucket's ``le`` as a number (``+Inf`` is infinity)."""
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)
