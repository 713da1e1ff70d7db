"""Drift counts read from the inference server's own /metrics page, and windows of them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from kubeloop.analysis.drift_counts import (
    DriftCounts,
    parse_drift_counts,
    pod_window,
    restarted,
    total,
    version_interval,
)
from kubeloop.api.modelversion import Signature
from kubeloop.serving.metrics import ServeMetrics

SIGNATURE = Signature.model_validate(
    {
        "inputs": [
            {"name": "x", "type": "number"},
            {"name": "colour", "type": "category", "categories": ["red", "blue"]},
        ],
        "output": {"task": "classification", "labels": ["yes", "no"]},
    }
)
# Edges with a tie (2.0 twice): the server counts on the distinct inner edges 1, 2, 3.
PROFILE: dict[str, Any] = {
    "columns": [
        {"name": "x", "type": "number", "binEdges": [0, 1, 2, 2, 3, 4], "binCounts": [1] * 5},
        {
            "name": "colour",
            "type": "category",
            "frequencies": [{"value": "red", "count": 6}, {"value": "blue", "count": 4}],
            "other": {"count": 0},
        },
    ],
    "target": {"frequencies": [{"value": "yes", "count": 5}, {"value": "no", "count": 5}]},
}


def _server(version: str = "3") -> ServeMetrics:
    return ServeMetrics("m", version, SIGNATURE, PROFILE)


def _observe(server: ServeMetrics, xs: list[float], colours: list[str], labels: list[str]) -> None:
    server.observe_batch(
        {
            "x": np.array(xs, dtype=np.float32).reshape(-1, 1),
            "colour": np.array(colours, dtype=object).reshape(-1, 1),
        },
        [np.array(labels, dtype=object), np.zeros((len(labels), 2), np.float32)],
    )


def _page(server: ServeMetrics) -> str:
    return generate_latest(server.registry).decode()


def test_a_real_page_is_read_into_bins_categories_and_predictions() -> None:
    server = _server()
    # 0.5 -> bin 0; 1.0 and 1.5 -> bin 1 (an inner edge belongs to the bin above); 2.0 -> bin 2
    # (past both tied edges); 9 -> bin 3, the last; NaN is missing, not a bin.
    _observe(
        server,
        [0.5, 1.0, 1.5, 2.0, 9.0, float("nan")],
        ["red", "red", "blue", "green", "", "red"],
        ["yes", "no", "yes", "yes", "no", "no"],
    )
    server.feedback["correct"] += 4
    server.feedback["incorrect"] += 1
    counts = parse_drift_counts(_page(server), version="3", model="m")
    assert counts.numeric == {"x": (1.0, 2.0, 1.0, 1.0)}
    assert counts.categorical == {"colour": {"red": 3.0, "blue": 1.0, "__other__": 1.0}}
    assert counts.predicted_labels == {"yes": 3.0, "no": 3.0, "__other__": 0.0}
    assert counts.predictions == 6
    assert (counts.correct, counts.incorrect) == (4.0, 1.0)
    assert counts.started == pytest.approx(server.started)


def test_another_version_or_model_on_the_page_is_ignored() -> None:
    server = _server("3")
    _observe(server, [0.5], ["red"], ["yes"])
    page = _page(server)
    assert parse_drift_counts(page, version="4") == DriftCounts()
    assert parse_drift_counts(page, version="3", model="other") == DriftCounts()


def test_escaped_label_values_are_unescaped() -> None:
    page = (
        'kubeloop_serve_feature_category_total{category="a\\"b\\\\c",feature="f",'
        'model="m",version="1"} 2.0\n'
    )
    assert parse_drift_counts(page, version="1").categorical == {"f": {'a"b\\c': 2.0}}


def test_a_broken_value_is_an_error_not_a_zero() -> None:
    page = 'kubeloop_serve_predictions_total{label="a",model="m",version="1"} lots\n'
    with pytest.raises(ValueError, match="unreadable metrics line"):
        parse_drift_counts(page, version="1")


def test_the_delta_of_one_pod_between_scrapes_is_what_it_counted_meanwhile() -> None:
    server = _server()
    _observe(server, [0.5, 0.5], ["red", "red"], ["yes", "yes"])
    before = parse_drift_counts(_page(server), version="3")
    _observe(server, [9.0], ["blue"], ["no"])
    after = parse_drift_counts(_page(server), version="3")
    delta = pod_window(before, after)
    assert delta.numeric == {"x": (0.0, 0.0, 0.0, 1.0)}
    assert delta.categorical["colour"] == {"red": 0.0, "blue": 1.0, "__other__": 0.0}
    assert delta.predicted_labels == {"yes": 0.0, "no": 1.0, "__other__": 0.0}


def test_a_restarted_pod_counts_only_what_its_new_process_saw() -> None:
    old = _server()
    _observe(old, [0.5] * 50, ["red"] * 50, ["yes"] * 50)
    before = parse_drift_counts(_page(old), version="3")
    new = _server()  # same pod, new process: counters from zero, another start time
    new.started = old.started + 60
    _observe(new, [9.0] * 60, ["blue"] * 60, ["no"] * 60)  # more than before in total
    after = parse_drift_counts(_page(new), version="3")
    assert restarted(before, after)
    delta = pod_window(before, after)
    # Naive subtraction would give -50 in bin 0 and a distribution that never happened.
    assert delta.numeric == {"x": (0.0, 0.0, 0.0, 60.0)}
    assert delta.predicted_labels["yes"] == 0.0


def test_a_restart_is_seen_from_falling_counts_when_the_start_time_is_missing() -> None:
    before = DriftCounts(numeric={"x": (5.0, 5.0)}, predicted_labels={"a": 10.0})
    after = DriftCounts(numeric={"x": (1.0, 7.0)}, predicted_labels={"a": 8.0})
    assert restarted(before, after)
    assert pod_window(before, after) == after
    grown = DriftCounts(numeric={"x": (6.0, 7.0)}, predicted_labels={"a": 13.0})
    assert not restarted(before, grown)


def test_scaling_neither_loses_nor_invents_counts() -> None:
    a_before = DriftCounts(numeric={"x": (10.0, 10.0)}, predicted_labels={"y": 20.0})
    a_after = DriftCounts(numeric={"x": (12.0, 13.0)}, predicted_labels={"y": 25.0})
    fresh = DriftCounts(numeric={"x": (1.0, 2.0)}, predicted_labels={"y": 3.0})
    gone = DriftCounts(numeric={"x": (100.0, 0.0)}, predicted_labels={"y": 100.0})
    before = {"a": a_before, "gone": gone}
    after = {"a": a_after, "new": fresh}  # "gone" scaled away, "new" scaled up
    interval = version_interval(before, after, first=False)
    assert interval.numeric == {"x": (3.0, 5.0)}
    assert interval.predicted_labels == {"y": 8.0}
    # The monitor's first look has no earlier scrape: nothing is in any window yet.
    assert version_interval({}, after, first=True) == DriftCounts()


def test_total_adds_pods_and_skips_bins_of_another_shape() -> None:
    one = DriftCounts(numeric={"x": (1.0, 2.0)}, correct=1.0, predicted_values=(1.0, 1.0))
    two = DriftCounts(numeric={"x": (3.0, 4.0)}, incorrect=2.0, predicted_values=(2.0, 0.0))
    odd = DriftCounts(numeric={"x": (9.0, 9.0, 9.0)})
    summed = total([one, two, odd])
    assert summed.numeric == {"x": (4.0, 6.0)}
    assert summed.predicted_values == (3.0, 1.0)
    assert (summed.correct, summed.incorrect, summed.feedback) == (1.0, 2.0, 3.0)
