"""Scraped /metrics pages to per-version windows: parsing, counter resets, pods coming and going."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from kubeloop.analysis.exposition import (
    Histogram,
    PodMetrics,
    is_inference_endpoint,
    parse_pod_metrics,
)
from kubeloop.analysis.window import pod_delta, version_window
from kubeloop.api.modelversion import Signature

PAGE = """\
# HELP kubeloop_serve_requests_total Requests by endpoint and status code.
# TYPE kubeloop_serve_requests_total counter
kubeloop_serve_requests_total{model="iris",version="iris-v2",endpoint="/predict",code="200"} 90
kubeloop_serve_requests_total{model="iris",version="iris-v2",endpoint="/predict",code="503"} 6
kubeloop_serve_requests_total{model="iris",version="iris-v2",endpoint="/v2/models/iris/infer",code="200"} 4
kubeloop_serve_requests_total{model="iris",version="iris-v2",endpoint="/v2/health/ready",code="200"} 1000
kubeloop_serve_requests_total{model="iris",version="iris-v1",endpoint="/predict",code="200"} 777
# TYPE kubeloop_serve_request_duration_seconds histogram
kubeloop_serve_request_duration_seconds_bucket{model="iris",version="iris-v2",endpoint="/predict",le="0.005"} 50
kubeloop_serve_request_duration_seconds_bucket{model="iris",version="iris-v2",endpoint="/predict",le="0.01"} 90
kubeloop_serve_request_duration_seconds_bucket{model="iris",version="iris-v2",endpoint="/predict",le="+Inf"} 96
kubeloop_serve_request_duration_seconds_count{model="iris",version="iris-v2",endpoint="/predict"} 96
kubeloop_serve_request_duration_seconds_sum{model="iris",version="iris-v2",endpoint="/predict"} 0.5
kubeloop_serve_request_duration_seconds_bucket{model="iris",version="iris-v2",endpoint="/v2/health/ready",le="0.005"} 1000
kubeloop_serve_request_duration_seconds_bucket{model="iris",version="iris-v2",endpoint="/v2/health/ready",le="0.01"} 1000
kubeloop_serve_request_duration_seconds_bucket{model="iris",version="iris-v2",endpoint="/v2/health/ready",le="+Inf"} 1000
kubeloop_serve_request_duration_seconds_count{model="iris",version="iris-v2",endpoint="/v2/health/ready"} 1000
kubeloop_serve_request_duration_seconds_sum{model="iris",version="iris-v2",endpoint="/v2/health/ready"} 1.0
# TYPE kubeloop_serve_predictions_total counter
kubeloop_serve_predictions_total{model="iris",version="iris-v2",label="setosa"} 40
kubeloop_serve_predictions_total{model="iris",version="iris-v2",label="virginica"} 60
# TYPE kubeloop_serve_feedback_total counter
kubeloop_serve_feedback_total{model="iris",version="iris-v2",outcome="correct"} 9
kubeloop_serve_feedback_total{model="iris",version="iris-v2",outcome="incorrect"} 1
# TYPE kubeloop_serve_in_flight gauge
kubeloop_serve_in_flight{model="iris",version="iris-v2"} 3
"""


def test_parse_keeps_only_the_version_and_the_known_series() -> None:
    metrics = parse_pod_metrics(PAGE, version="iris-v2", model="iris")
    assert metrics.requests == {
        ("/predict", "200"): 90.0,
        ("/predict", "503"): 6.0,
        ("/v2/models/iris/infer", "200"): 4.0,
        ("/v2/health/ready", "200"): 1000.0,
    }
    assert metrics.latency["/predict"] == Histogram(
        buckets=((0.005, 50.0), (0.01, 90.0), (math.inf, 96.0)), count=96.0, sum=0.5
    )
    assert metrics.predictions == {"setosa": 40.0, "virginica": 60.0}
    assert metrics.feedback == {"correct": 9.0, "incorrect": 1.0}
    assert metrics.prediction_value is None
    assert parse_pod_metrics(PAGE, version="iris-v2", model="other").requests == {}


def test_parse_regression_values_and_created() -> None:
    page = """\
# TYPE kubeloop_serve_prediction_value histogram
kubeloop_serve_prediction_value_bucket{model="m",version="m-v1",le="1.0"} 3
kubeloop_serve_prediction_value_bucket{model="m",version="m-v1",le="+Inf"} 5
kubeloop_serve_prediction_value_count{model="m",version="m-v1"} 5
kubeloop_serve_prediction_value_sum{model="m",version="m-v1"} 7.5
kubeloop_serve_prediction_value_created{model="m",version="m-v1"} 1700000000.5
"""
    metrics = parse_pod_metrics(page, version="m-v1")
    assert metrics.prediction_value == Histogram(((1.0, 3.0), (math.inf, 5.0)), 5.0, 7.5)
    assert metrics.created == 1700000000.5


def test_parse_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        parse_pod_metrics("this is {not metrics", version="v")


@pytest.mark.parametrize(
    ("endpoint", "counts"),
    [
        ("/predict", True),
        ("predict", True),
        ("infer", True),
        ("feedback", False),
        ("/v2/models/iris/infer", True),
        ("/v2/models/iris/versions/2/infer", True),
        ("/v2/health/ready", False),
        ("/v2/health/live", False),
        ("/v2/models/iris/ready", False),
        ("/metrics", False),
        ("/feedback", False),
    ],
)
def test_inference_endpoints(endpoint: str, counts: bool) -> None:
    assert is_inference_endpoint(endpoint) is counts


def _pod(ok: float, failed: float = 0.0, created: float | None = None) -> PodMetrics:
    return PodMetrics(
        requests={("/predict", "200"): ok, ("/predict", "500"): failed},
        latency={
            "/predict": Histogram(((0.01, ok + failed), (math.inf, ok + failed)), ok + failed)
        },
        predictions={"a": ok},
        feedback={"correct": ok / 10},
        created=created,
    )


@pytest.mark.parametrize(
    ("name", "before", "after", "requests", "errors"),
    [
        ("steady pods: after - before", {"p1": _pod(100, 1), "p2": _pod(50)},
         {"p1": _pod(160, 3), "p2": _pod(80)}, 62 + 30, 2),
        ("a restarted pod counts from zero", {"p1": _pod(100, 1)}, {"p1": _pod(20, 1)}, 21, 1),
        ("a restart seen through _created", {"p1": _pod(100, 1, created=1.0)},
         {"p1": _pod(120, 2, created=2.0)}, 122, 2),
        ("a new pod counts fully", {"p1": _pod(100)}, {"p1": _pod(110), "p2": _pod(7)}, 17, 0),
        ("a gone pod contributes nothing", {"p1": _pod(100), "p2": _pod(40)},
         {"p1": _pod(130)}, 30, 0),
        ("first scrape: everything", {}, {"p1": _pod(5, 5)}, 10, 5),
        ("no pods", {"p1": _pod(5)}, {}, 0, 0),
    ],
)  # fmt: skip
def test_version_window(
    name: str,
    before: dict[str, PodMetrics],
    after: dict[str, PodMetrics],
    requests: int,
    errors: int,
) -> None:
    window = version_window(before, after)
    assert (window.requests, window.errors) == (requests, errors), name
    assert window.latency.count == requests
    assert window.pods == len(after)


def test_window_excludes_probes_and_sums_labels_and_feedback() -> None:
    before = parse_pod_metrics(PAGE, version="iris-v2")
    later = PAGE.replace("} 90\n", "} 190\n").replace(
        'outcome="incorrect"} 1', 'outcome="incorrect"} 4'
    )
    window = version_window({"p": before}, {"p": parse_pod_metrics(later, version="iris-v2")})
    assert (window.requests, window.errors) == (100, 0)
    assert (window.correct, window.incorrect) == (0, 3)
    first = version_window({}, {"p": before})
    assert (first.requests, first.errors) == (100, 6)
    assert first.latency.count == 96  # the readiness probe's 1000 are not latency of inference
    assert first.predictions == {"setosa": 40.0, "virginica": 60.0}
    assert (first.correct, first.incorrect, first.feedback) == (9, 1, 10)


def test_pod_delta_of_histograms_is_per_bucket() -> None:
    before = PodMetrics(
        latency={"/predict": Histogram(((0.01, 10.0), (math.inf, 12.0)), 12.0, 0.1)}
    )
    after = PodMetrics(latency={"/predict": Histogram(((0.01, 15.0), (math.inf, 20.0)), 20.0, 0.3)})
    delta = pod_delta(before, after).latency["/predict"]
    assert delta.buckets == ((0.01, 5.0), (math.inf, 8.0))
    assert delta.count == 8.0
    assert delta.sum == pytest.approx(0.2)


def test_histograms_with_different_bounds_add_up_monotonically() -> None:
    a = Histogram(((0.01, 5.0), (0.1, 9.0), (math.inf, 10.0)), 10.0)
    b = Histogram(((0.05, 4.0), (math.inf, 4.0)), 4.0)
    total = a.plus(b)
    assert total.buckets == ((0.01, 5.0), (0.05, 9.0), (0.1, 13.0), (math.inf, 14.0))
    counts = [count for _, count in total.buckets]
    assert counts == sorted(counts)
    assert total.count == 14.0


def test_the_servers_own_metrics_page_parses() -> None:
    """The contract with ``kubeloop serve``: its /metrics page, read by analysis."""
    serving = pytest.importorskip("kubeloop.serving.metrics")
    numpy = pytest.importorskip("numpy")
    signature = Signature.model_validate(
        {
            "inputs": [{"name": "x", "type": "number"}],
            "output": {"task": "classification", "labels": ["a", "b"]},
        }
    )
    metrics = serving.ServeMetrics("iris", "2", signature)
    for _ in range(97):
        metrics.request_done("predict", 200, 0.003)
    for _ in range(3):
        metrics.request_done("infer", 503, 0.2)
    metrics.request_done("feedback", 200, 0.001)
    metrics.observe_batch({"x": numpy.array([[1.0], [2.0], [3.0]])}, [numpy.array(["a", "b", "b"])])
    metrics.feedback["correct"] += 8
    metrics.feedback["incorrect"] += 2
    page = generate_latest(metrics.registry).decode()

    parsed = parse_pod_metrics(page, version="2", model="iris")
    window = version_window({}, {"pod-uid-1": parsed})
    assert (window.requests, window.errors) == (100, 3)
    assert window.latency.count == 100
    assert window.predictions.get("a") == 1.0 and window.predictions.get("b") == 2.0
    assert (window.correct, window.incorrect) == (8, 2)
    assert parse_pod_metrics(page, version="3").requests == {}
