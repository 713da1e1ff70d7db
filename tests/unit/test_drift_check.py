"""One drift check end to end without a cluster: profile -> baseline, pods -> window -> verdict."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.analysis.drift_check import baseline_from_profile, evaluate_drift
from kubeloop.analysis.drift_counts import DriftCounts
from kubeloop.api.deployment import Monitoring
from kubeloop.controllers.drift import DriftMonitor

PROFILE: dict[str, Any] = {
    "columns": [
        # A tie at 2.0: profile bins 0..4, server bins on distinct edges 1, 2, 3 (four bins).
        {
            "name": "x",
            "type": "number",
            "binEdges": [0, 1, 2, 2, 3, 4],
            "binCounts": [10, 20, 0, 30, 40],
        },
        {
            "name": "colour",
            "type": "category",
            "frequencies": [{"value": "red", "count": 60}, {"value": True, "count": 30}],
            "other": {"count": 10},
        },
    ],
    "target": {"frequencies": [{"value": "yes", "count": 50}, {"value": "no", "count": 50}]},
}


def test_the_profile_is_folded_onto_the_servers_bins() -> None:
    baseline = baseline_from_profile(PROFILE, regression=False)
    assert baseline.features["x"].bins == (10.0, 20.0, 30.0, 40.0)
    assert baseline.features["colour"].categories == {"red": 60.0, "true": 30.0, "__other__": 10.0}
    assert baseline.prediction is not None
    assert baseline.prediction.categories == {"yes": 50.0, "no": 50.0}


def _window(x: tuple[float, ...], n: float) -> DriftCounts:
    return DriftCounts(
        numeric={"x": x},
        categorical={"colour": {"red": 0.6 * n, "true": 0.3 * n, "__other__": 0.1 * n}},
        predicted_labels={"yes": n / 2, "no": n / 2},
        correct=n * 0.9,
        incorrect=n * 0.1,
    )


def test_below_min_samples_there_is_no_verdict() -> None:
    baseline = baseline_from_profile(PROFILE, regression=False)
    found = evaluate_drift(Monitoring(min_samples=500), baseline, _window((1, 2, 3, 4), 100))
    assert found.verdict == "InsufficientData" and found.scores == []
    assert "100 predictions in the window, 500 needed" in found.message


def test_same_distribution_no_drift_shifted_drifts_with_per_feature_overrides() -> None:
    baseline = baseline_from_profile(PROFILE, regression=False)
    monitoring = Monitoring(methods=["psi", "ks", "chi2"], min_samples=100)
    same = evaluate_drift(monitoring, baseline, _window((100, 200, 300, 400), 1000))
    assert same.verdict == "NoDrift" and same.drifted_features == 0
    assert same.live_accuracy == pytest.approx(0.9)
    assert {(s.feature, s.method) for s in same.scores} == {
        ("x", "psi"), ("x", "ks"), ("colour", "psi"), ("colour", "chi2"),
        ("prediction", "psi"), ("prediction", "chi2"),
    }  # fmt: skip
    shifted = evaluate_drift(monitoring, baseline, _window((400, 300, 200, 100), 1000))
    assert shifted.verdict == "Drifted" and shifted.drifted_features == 1
    assert shifted.scores[0].feature == "x" and shifted.scores[0].drifted
    loose = Monitoring.model_validate(
        {"methods": ["psi"], "minSamples": 100, "featureThresholds": [{"feature": "x", "psi": 5}]}
    )
    assert evaluate_drift(loose, baseline, _window((400, 300, 200, 100), 1000)).verdict == "NoDrift"


def test_without_a_profile_the_verdict_says_so() -> None:
    found = evaluate_drift(Monitoring(), None, _window((1, 1, 1, 1), 1000))
    assert found.verdict == "NoBaseline"


def _pod(x: tuple[float, ...], started: float = 1.0) -> DriftCounts:
    total = sum(x)
    return DriftCounts(numeric={"x": x}, predicted_labels={"yes": total}, started=started)


def test_the_monitor_window_slides_and_survives_restarts_and_scaling() -> None:
    monitor = DriftMonitor(None)
    monitoring = Monitoring.model_validate({"window": "60s", "minSamples": 10})
    pods = {"a": _pod((10, 20, 30, 40))}

    def observe(now: float) -> Any:
        return monitor.observe(
            uid="u", version="v1", current=pods, alive=set(pods), profile=PROFILE,
            monitoring=monitoring, now=now,
        )  # fmt: skip

    first = observe(0.0)  # the first scrape is only a baseline
    assert first.evaluation.verdict == "InsufficientData" and first.evaluation.samples == 0
    pods = {"a": _pod((20, 40, 60, 80))}
    assert observe(30.0).evaluation.samples == 100
    # Pod a restarted (counts from zero, new start time) and pod b scaled up.
    pods = {"a": _pod((1, 2, 3, 4), started=2.0), "b": _pod((10, 20, 30, 40))}
    third = observe(60.0)
    assert third.evaluation.samples == 100 + 10 + 100
    assert third.evaluation.verdict == "NoDrift"
    # At 90 s a 60 s window holds the intervals 30-60 and 60-90 s, no longer 0-30 s.
    pods = {"a": _pod((1, 2, 3, 4), started=2.0), "b": _pod((10, 20, 30, 40))}
    assert observe(90.0).evaluation.samples == 110
    # A new stable version starts from nothing.
    fresh = monitor.observe(
        uid="u", version="v2", current=pods, alive=set(pods), profile=PROFILE,
        monitoring=monitoring, now=95.0,
    )  # fmt: skip
    assert fresh.evaluation.samples == 0


def test_a_count_window_keeps_the_newest_intervals_holding_enough_predictions() -> None:
    monitor = DriftMonitor(None)
    monitoring = Monitoring.model_validate({"window": "1h", "windowSamples": 150, "minSamples": 10})
    counts = (0.0, 0.0, 0.0, 0.0)
    for now in range(0, 50, 10):
        pods = {"a": _pod(counts)}
        checked = monitor.observe(
            uid="u", version="v", current=pods, alive={"a"}, profile=PROFILE,
            monitoring=monitoring, now=float(now),
        )  # fmt: skip
        counts = tuple(c + 25 for c in counts)  # 100 predictions per interval
    assert checked.evaluation.samples == 200  # two newest intervals reach 150
    assert checked.window_seconds == pytest.approx(20.0)
