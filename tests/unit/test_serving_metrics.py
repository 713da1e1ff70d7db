"""The inference server's metrics: names, labels, profile-binned features, per-batch updates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubeloop.api.modelversion import Signature
from kubeloop.serving.metrics import Histogram, ServeMetrics, _NumericBlock

CLASSIFIER = Signature.model_validate(
    {
        "inputs": [
            {"name": "x", "type": "number", "nullable": True},
            {"name": "c", "type": "category", "categories": ["a", "b"]},
            {"name": "flag", "type": "boolean"},
        ],
        "output": {"task": "classification", "labels": ["no", "yes"]},
    }
)
PROFILE = {
    "columns": [
        {"name": "x", "binEdges": [0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9]},
        {"name": "c", "frequencies": [{"value": "b", "count": 5}, {"value": "a", "count": 3}]},
    ],
}


def samples(metrics: ServeMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("model", "version")}
            assert sample.labels.get("model") == "m"
            assert sample.labels.get("version") == "3"
            found[(sample.name, frozenset(labels.items()))] = sample.value
    return found


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found[(name, frozenset(labels.items()))]


def test_every_series_carries_model_and_version_and_the_names_are_the_contract() -> None:
    metrics = ServeMetrics("m", "3", CLASSIFIER, PROFILE)
    metrics.request_done("predict", 200, 0.0007)
    metrics.request_done("predict", 422, 0.02)
    metrics.batch_sizes.observe(3)
    found = samples(metrics)
    names = {name for name, _ in found}
    for expected in (
        "kubeloop_serve_requests_total",
        "kubeloop_serve_request_duration_seconds_bucket",
        "kubeloop_serve_inflight_requests",
        "kubeloop_serve_batch_size_bucket",
        "kubeloop_serve_predictions_total",
        "kubeloop_serve_feature_value_bucket",
        "kubeloop_serve_feature_category_total",
        "kubeloop_serve_feature_missing_total",
        "kubeloop_serve_feedback_total",
        "kubeloop_serve_feedback_abs_error_bucket",
        "kubeloop_serve_prediction_log_records_total",
        "kubeloop_serve_ready",
    ):
        assert expected in names, expected
    assert value(found, "kubeloop_serve_requests_total", endpoint="predict", code="422") == 1
    assert (
        value(
            found, "kubeloop_serve_request_duration_seconds_bucket", endpoint="predict", le="0.001"
        )
        == 1
    )
    assert value(found, "kubeloop_serve_feedback_total", outcome="correct") == 0


def test_batches_fill_feature_histograms_with_the_profile_rule() -> None:
    metrics = ServeMetrics("m", "3", CLASSIFIER, PROFILE)
    feeds = {
        "x": np.array([[0.5], [2.0], [math.nan], [100.0]], dtype=np.float32),
        "c": np.array([["a"], ["zz"], [""], ["b"]], dtype=object),
        "flag": np.array([["true"], ["false"], ["true"], [""]], dtype=object),
    }
    outputs = [np.array(["yes", "no", "yes", "yes"], dtype=object), np.zeros((4, 2), np.float32)]
    metrics.observe_batch(feeds, outputs)
    found = samples(metrics)
    bucket = "kubeloop_serve_feature_value_bucket"
    # Inner edges 1..8 (2 once): 0.5 is below 1; 2.0 sits on an edge and belongs above it.
    assert value(found, bucket, feature="x", le="1.0") == 1
    assert value(found, bucket, feature="x", le="2.0") == 1
    assert value(found, bucket, feature="x", le="3.0") == 2
    assert value(found, bucket, feature="x", le="+Inf") == 3
    assert value(found, "kubeloop_serve_feature_value_sum", feature="x") == pytest.approx(102.5)
    missing = "kubeloop_serve_feature_missing_total"
    assert value(found, missing, feature="x") == 1
    assert value(found, missing, feature="c") == 1
    assert value(found, missing, feature="flag") == 1
    category = "kubeloop_serve_feature_category_total"
    assert value(found, category, feature="c", category="a") == 1
    assert value(found, category, feature="c", category="b") == 1
    assert value(found, category, feature="c", category="__other__") == 1
    assert value(found, category, feature="flag", category="true") == 2
    assert value(found, "kubeloop_serve_predictions_total", label="yes") == 3
    assert value(found, "kubeloop_serve_predictions_total", label="no") == 1


def test_regression_predictions_use_the_target_edges() -> None:
    signature = Signature.model_validate(
        {"inputs": [{"name": "x", "type": "number"}], "output": {"task": "regression"}}
    )
    profile = {"columns": [], "target": {"binEdges": [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]}}
    metrics = ServeMetrics("m", "3", signature, profile)
    metrics.observe_batch(
        {"x": np.array([[1.0], [2.0]], dtype=np.float32)},
        [np.array([[5.0], [55.0]], dtype=np.float32)],
    )
    found = samples(metrics)
    assert value(found, "kubeloop_serve_prediction_value_bucket", le="10.0") == 1
    assert value(found, "kubeloop_serve_prediction_value_bucket", le="60.0") == 2
    assert value(found, "kubeloop_serve_prediction_value_count") == 2


def test_request_counts_and_durations_are_exact_across_bulk_folds_and_scrapes() -> None:
    metrics = ServeMetrics("m", "3", CLASSIFIER, PROFILE)
    durations = [0.0005, 0.0007, 0.001, 0.004, 0.2] * 2000  # 10,000: more than one fold
    for seconds in durations:
        metrics.request_done("predict", 200, seconds)
    metrics.request_done("infer", 503, 0.001)
    first = samples(metrics)
    metrics.request_done("predict", 200, 0.001)  # after a scrape: counted on the next one
    second = samples(metrics)
    requests, buckets = "kubeloop_serve_requests_total", "kubeloop_serve_request_duration_seconds"
    assert value(first, requests, endpoint="predict", code="200") == 10_000
    assert value(second, requests, endpoint="predict", code="200") == 10_001
    assert value(second, requests, endpoint="infer", code="503") == 1
    # le is inclusive: 0.0005 is in the first bucket, 0.001 in le="0.001".
    assert value(first, buckets + "_bucket", endpoint="predict", le="0.0005") == 2000
    assert value(first, buckets + "_bucket", endpoint="predict", le="0.001") == 6000
    assert value(second, buckets + "_bucket", endpoint="predict", le="0.001") == 6001
    assert value(first, buckets + "_bucket", endpoint="predict", le="0.25") == 10_000
    assert value(first, buckets + "_count", endpoint="predict") == 10_000
    assert value(first, buckets + "_sum", endpoint="predict") == pytest.approx(sum(durations))


def test_histogram_le_semantics_and_bulk_observation() -> None:
    histogram = Histogram([1, 2, 2, 5])
    for sample in (0.5, 1.0, 2.0, 7.0):
        histogram.observe(sample)
    histogram.observe_many(np.array([1.0, 6.0]))
    assert histogram.buckets() == [("1.0", 3), ("2.0", 4), ("5.0", 4), ("+Inf", 6)]
    assert histogram.total == pytest.approx(17.5)
    assert histogram.count == 6


def test_batch_statistics_are_exact_across_bulk_folds_and_scrapes() -> None:
    """Batches wait to be counted in bulk: folded or not, a scrape sees every one of them."""
    rng = np.random.default_rng(7)
    batches = []
    for size in [1, 5, 32, 64, 3] * 12:  # more rows than one fold takes, then a remainder
        x = rng.uniform(-1, 10, size=(size, 1)).astype(np.float32)
        x[rng.random(size) < 0.1] = np.nan
        c = rng.choice(np.array(["a", "b", "zz", ""], dtype=object), size=(size, 1))
        flag = rng.choice(np.array(["true", "false", ""], dtype=object), size=(size, 1))
        labels = rng.choice(np.array(["yes", "no", "maybe"], dtype=object), size=size)
        batches.append(({"x": x, "c": c, "flag": flag}, [labels, np.zeros((size, 2), np.float32)]))
    one_by_one = ServeMetrics("m", "3", CLASSIFIER, PROFILE)
    for feeds, outputs in batches:  # a scrape after every batch: nothing waits
        one_by_one.observe_batch(feeds, outputs)
        samples(one_by_one)
    in_bulk = ServeMetrics("m", "3", CLASSIFIER, PROFILE)
    for feeds, outputs in batches:
        in_bulk.observe_batch(feeds, outputs)
    expected, found = samples(one_by_one), samples(in_bulk)
    assert found.keys() == expected.keys()
    for key, figure in expected.items():
        if key[0] == "kubeloop_serve_process_start_time_seconds":
            continue  # two servers, two start times
        assert found[key] == pytest.approx(figure, rel=1e-12), key
    rows = sum(len(outputs[0]) for _, outputs in batches)
    predicted = sum(
        value(found, "kubeloop_serve_predictions_total", label=label)
        for label in ("yes", "no", "__other__")
    )
    assert predicted == rows
    assert value(found, "kubeloop_serve_feature_missing_total", feature="x") == sum(
        int(np.isnan(feeds["x"]).sum()) for feeds, _ in batches
    )


def test_numeric_block_counts_each_feature_by_its_own_edges() -> None:
    """Features with different numbers of edges (none too), values on edges, and NaN."""
    edges = [[0.0, 1.0], [float(e) for e in range(9)], []]
    block = _NumericBlock(["a", "b", "c"], edges)
    rng = np.random.default_rng(3)
    matrix = rng.integers(-2, 11, size=(500, 3)).astype(np.float32)  # many values on an edge
    matrix[rng.random((500, 3)) < 0.1] = np.nan
    block.observe(matrix[:200])
    block.observe(matrix[200:])
    for index, feature_edges in enumerate(edges):
        column = matrix[:, index]
        present = column[~np.isnan(column)]
        # The profile's rule: bin = how many inner edges are <= the value.
        expected = np.bincount(
            [sum(edge <= value for edge in feature_edges) for value in present],
            minlength=len(feature_edges) + 1,
        )
        buckets, total, missing = block.feature(index)
        counts = np.diff([0.0] + [count for _, count in buckets])
        assert counts.tolist() == expected.tolist(), index
        assert missing == int(np.isnan(column).sum())
        assert total == pytest.approx(float(present.sum(dtype=np.float64)))
