"""Canary checks and the verdict combiner, on hand-made windows."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import pytest

from kubeloop.analysis.checks import (
    accuracy_checks,
    analyse,
    analysis_run,
    combine,
    divergence_check,
    error_rate_check,
    error_rate_vs_stable_check,
    latency_checks,
    smoke_test_result,
)
from kubeloop.analysis.exposition import Histogram
from kubeloop.analysis.smoke import smoke_records
from kubeloop.analysis.window import VersionWindow
from kubeloop.api.deployment import Analysis, AnalysisResult, SmokeTest

NOW = "2026-01-02T03:04:05Z"


def _analysis(**overrides: Any) -> Analysis:
    return Analysis.model_validate(overrides)


def _latency(n: int, fast: float = 0.9) -> Histogram:
    """n requests: ``fast`` share under 10 ms, the rest under 100 ms."""
    under = n * fast
    return Histogram(((0.01, under), (0.1, float(n)), (math.inf, float(n))), float(n))


def _window(
    requests: int = 1000,
    errors: int = 0,
    *,
    fast: float = 0.995,
    labels: dict[str, float] | None = None,
    correct: int = 0,
    incorrect: int = 0,
) -> VersionWindow:
    return VersionWindow(
        requests=requests,
        errors=errors,
        latency=_latency(requests, fast),
        predictions=labels if labels is not None else {"a": requests / 2, "b": requests / 2},
        correct=correct,
        incorrect=incorrect,
        pods=2,
    )


def _verdicts(results: list[AnalysisResult]) -> dict[str, str]:
    return {r.check: r.verdict for r in results}


@pytest.mark.parametrize(
    ("name", "requests", "errors", "verdict"),
    [
        ("well below the bound", 1000, 10, "Pass"),
        ("above the bound and significant", 1000, 80, "Fail"),  # p = 6.7e-6
        ("above the bound, not significant", 1000, 60, "Inconclusive"),  # p = 0.073
        ("few requests but all failed", 40, 40, "Fail"),
        ("few requests, no errors: never a pass", 40, 0, "Inconclusive"),
    ],
)
def test_error_rate(name: str, requests: int, errors: int, verdict: str) -> None:
    result = error_rate_check(_analysis(maxErrorRate=0.05), _window(requests, errors))
    assert result is not None
    assert result.verdict == verdict, (name, result.message)
    assert result.samples == requests


def test_error_rate_message_has_the_numbers() -> None:
    result = error_rate_check(_analysis(maxErrorRate=0.05), _window(1000, 80))
    assert result is not None
    assert "8.00% (80/1000) > 5.00%" in result.message
    assert result.candidate == pytest.approx(0.08)
    assert result.p_value == pytest.approx(6.72e-6, rel=0.02)


@pytest.mark.parametrize(
    ("name", "candidate", "stable", "increase", "verdict"),
    [
        # 3% vs 1% with no allowance: p = 0.0007 -> significantly worse
        ("significantly worse", (1000, 30), (1000, 10), 0.0, "Fail"),
        # 3% vs 1% with +1 point allowed: p = 0.055 at 95% -> not yet
        ("worse, not significant", (1000, 30), (1000, 10), 0.01, "Inconclusive"),
        ("within the allowance", (1000, 15), (1000, 10), 0.01, "Pass"),
        ("better than stable", (1000, 5), (1000, 10), 0.0, "Pass"),
        ("stable too quiet to pass", (1000, 5), (20, 0), 0.0, "Inconclusive"),
    ],
)
def test_error_rate_vs_stable(
    name: str,
    candidate: tuple[int, int],
    stable: tuple[int, int],
    increase: float,
    verdict: str,
) -> None:
    analysis = _analysis(maxErrorRate=None, maxErrorRateIncrease=increase)
    result = error_rate_vs_stable_check(analysis, _window(*candidate), _window(*stable))
    assert result is not None
    assert result.verdict == verdict, (name, result.message)


def test_relative_checks_need_a_stable() -> None:
    analysis = _analysis(maxErrorRateIncrease=0.01, maxP99LatencyRatio=1.5)
    assert error_rate_vs_stable_check(analysis, _window(), None) is None
    assert [r.check for r in latency_checks(analysis, _window(), None)] == []


@pytest.mark.parametrize(
    ("name", "candidate_fast", "stable_fast", "bound_ms", "ratio", "expected"),
    [
        # 99.5% under 10 ms: p99 = rank 990 of the 995 in (0, 10 ms] -> 9.95 ms
        ("fast on both", 0.995, 0.995, 50.0, 1.5, {"p99LatencyMs": "Pass", "p99LatencyRatio": "Pass"}),
        # 90% under 10 ms: p99 = 10 + 90 * (990-900)/100 = 91 ms
        ("slow candidate", 0.9, 0.995, 50.0, 1.5, {"p99LatencyMs": "Fail", "p99LatencyRatio": "Fail"}),
        ("slow both, ratio ok", 0.9, 0.9, 100.0, 1.5, {"p99LatencyMs": "Pass", "p99LatencyRatio": "Pass"}),
    ],
)  # fmt: skip
def test_latency(  # noqa: PLR0917 - one argument per table column
    name: str,
    candidate_fast: float,
    stable_fast: float,
    bound_ms: float,
    ratio: float,
    expected: dict[str, str],
) -> None:
    analysis = _analysis(maxP99LatencyMs=bound_ms, maxP99LatencyRatio=ratio)
    results = latency_checks(analysis, _window(fast=candidate_fast), _window(fast=stable_fast))
    assert _verdicts(results) == expected, name


def test_latency_numbers() -> None:
    results = latency_checks(
        _analysis(maxP99LatencyMs=50.0, maxP99LatencyRatio=1.5),
        _window(fast=0.9),
        _window(fast=0.995),
    )
    absolute, ratio = results
    assert absolute.candidate == pytest.approx(91.0)
    assert absolute.stable == pytest.approx(10 * 990 / 995)  # rank 990 of 995 in (0, 10 ms]
    assert "91.0 ms > 50 ms" in absolute.message
    assert "= 9.15 > 1.5" in ratio.message


def test_latency_needs_min_requests() -> None:
    results = latency_checks(_analysis(maxP99LatencyMs=50.0), _window(50), None)
    assert _verdicts(results) == {"p99LatencyMs": "Inconclusive"}


def _cold(requests: int, slow: int, slow_s: float = 0.0046) -> VersionWindow:
    """``requests`` answered in 0.5-1 ms, ``slow`` of them at ``slow_s`` (a cold start)."""
    fast = float(requests - slow)
    latency = Histogram(
        ((0.0005, 0.0), (0.001, fast), (0.004, fast), (0.005, float(requests)),
         (math.inf, float(requests))),
        float(requests),
        fast * 0.0008 + slow * slow_s,
    )  # fmt: skip
    return replace(_window(requests), latency=latency)


def test_one_slow_request_of_a_few_dozen_is_not_a_p99_failure() -> None:
    """CI saw a healthy canary rolled back: p99 of 35 requests was their one cold request."""
    analysis = _analysis(minRequests=20, maxP99LatencyRatio=4.0, maxP99LatencyMs=4.0)
    results = latency_checks(analysis, _cold(35, 1), _cold(1000, 0))
    assert _verdicts(results) == {"p99LatencyMs": "Inconclusive", "p99LatencyRatio": "Inconclusive"}
    absolute, ratio = results
    assert absolute.candidate is not None and absolute.candidate > 4.0  # the p99 is above...
    assert "not significant yet" in ratio.message and "/35 requests slower" in ratio.message
    assert absolute.p_value is not None and absolute.p_value > 0.05  # ...but 1 in 35 proves nothing


def test_a_slow_tail_is_a_failure_once_it_is_significant() -> None:
    analysis = _analysis(minRequests=20, maxP99LatencyRatio=4.0)
    # 6 of 200 slow: 3% against the 1% a p99 bound allows, p ~ 0.005
    (ratio,) = latency_checks(analysis, _cold(200, 6), _cold(1000, 0))
    assert ratio.verdict == "Fail", ratio.message
    assert "6/200 requests slower than" in ratio.message


def test_every_request_slow_fails_before_min_requests() -> None:
    """A candidate slow on all of its first 10 requests does not get to wait for 100."""
    (absolute,) = latency_checks(_analysis(maxP99LatencyMs=4.0), _cold(10, 10), None)
    assert absolute.verdict == "Fail", absolute.message


@pytest.mark.parametrize(
    ("name", "candidate", "stable", "expected"),
    [
        ("no feedback anywhere: does not apply", (0, 0), (0, 0),
         {"liveAccuracy": "Pass", "liveAccuracyVsStable": "Pass"}),
        ("accurate and as good as stable", (190, 10), (190, 10),
         {"liveAccuracy": "Pass", "liveAccuracyVsStable": "Pass"}),
        # 70% vs floor 85%: incorrect 30% vs bound 15%, n=200 -> z = 5.94
        ("clearly below the floor and stable", (140, 60), (190, 10),
         {"liveAccuracy": "Fail", "liveAccuracyVsStable": "Fail"}),
        ("too few labels to pass", (10, 0), (190, 10),
         {"liveAccuracy": "Inconclusive", "liveAccuracyVsStable": "Inconclusive"}),
    ],
)  # fmt: skip
def test_live_accuracy(
    name: str, candidate: tuple[int, int], stable: tuple[int, int], expected: dict[str, str]
) -> None:
    analysis = _analysis(minLiveAccuracy=0.85, maxLiveAccuracyDrop=0.05, minFeedback=50)
    results = accuracy_checks(
        analysis,
        _window(correct=candidate[0], incorrect=candidate[1]),
        _window(correct=stable[0], incorrect=stable[1]),
    )
    assert _verdicts(results) == expected, name
    if candidate[0] + candidate[1]:
        relative = results[1]
        assert relative.candidate == pytest.approx(candidate[0] / sum(candidate))


@pytest.mark.parametrize(
    ("name", "candidate", "stable", "verdict"),
    [
        ("same distribution", {"a": 500, "b": 500}, {"a": 4500, "b": 4500}, "Pass"),
        ("collapsed onto one class", {"a": 1000}, {"a": 500, "b": 500}, "Fail"),  # JS = 0.311
        ("too few predictions", {"a": 50}, {"a": 500, "b": 500}, "Inconclusive"),
    ],
)
def test_prediction_divergence(
    name: str, candidate: dict[str, float], stable: dict[str, float], verdict: str
) -> None:
    result = divergence_check(
        _analysis(maxPredictionDivergence=0.2, minPredictionSamples=100),
        _window(labels=candidate),
        _window(labels=stable),
    )
    assert result is not None
    assert result.verdict == verdict, (name, result.message)


def test_divergence_of_regression_values() -> None:
    low = Histogram(((1.0, 900.0), (10.0, 1000.0), (math.inf, 1000.0)), 1000.0)
    high = Histogram(((1.0, 100.0), (10.0, 1000.0), (math.inf, 1000.0)), 1000.0)
    candidate = VersionWindow(requests=1000, prediction_value=low)
    stable = VersionWindow(requests=1000, prediction_value=high)
    result = divergence_check(_analysis(), candidate, stable)
    assert result is not None and result.verdict == "Fail"
    assert "predicted values" in result.message
    same = divergence_check(_analysis(), candidate, VersionWindow(prediction_value=low))
    assert same is not None and same.verdict == "Pass" and same.candidate == 0.0


def test_a_good_canary_passes_every_check() -> None:
    analysis = _analysis(
        minRequests=200,
        maxErrorRate=0.02,
        maxErrorRateIncrease=0.01,
        maxP99LatencyMs=250,
        maxP99LatencyRatio=1.5,
        minLiveAccuracy=0.85,
        maxPredictionDivergence=0.2,
    )
    results = analyse(analysis, _window(1000, 3), _window(9000, 20))
    assert {r.verdict for r in results} == {"Pass"}, [r.message for r in results]
    assert [r.check for r in results] == [
        "requests",
        "errorRate",
        "errorRateVsStable",
        "p99LatencyMs",
        "p99LatencyRatio",
        "liveAccuracy",
        "predictionDivergence",
    ]


def test_preview_without_traffic_skips_metric_checks() -> None:
    results = analyse(_analysis(minRequests=100), _window(3), None, require_traffic=False)
    assert _verdicts(results) == {"requests": "Pass"}
    assert "do not apply" in results[0].message
    busy = analyse(_analysis(minRequests=100), _window(1000, 200), None, require_traffic=False)
    assert _verdicts(busy)["errorRate"] == "Fail"


def _result(verdict: str, check: str = "x") -> AnalysisResult:
    return AnalysisResult(check=check, verdict=verdict, message=f"{check} said {verdict}")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdicts", "streak", "limit", "expected"),
    [
        (["Pass", "Pass"], 0, 5, "Pass"),
        (["Pass", "Fail", "Inconclusive"], 0, 5, "Fail"),
        (["Pass", "Inconclusive"], 0, 5, "Inconclusive"),
        (["Pass", "Inconclusive"], 3, 5, "Inconclusive"),
        (["Pass", "Inconclusive"], 4, 5, "Fail"),
        (["Inconclusive"], 0, 1, "Fail"),
    ],
)
def test_combine(verdicts: list[str], streak: int, limit: int, expected: str) -> None:
    results = [_result(v, f"c{i}") for i, v in enumerate(verdicts)]
    verdict, message = combine(results, inconclusive_streak=streak, max_inconclusive=limit)
    assert verdict == expected
    if expected == "Fail" and "Fail" not in verdicts:
        assert f"{streak + 1} inconclusive analyses in a row (limit {limit})" in message


def test_smoke_test() -> None:
    assert smoke_test_result(sent=4, succeeded=4, agreed=None, min_agreement=None).verdict == "Pass"
    failed = smoke_test_result(sent=4, succeeded=3, agreed=3, min_agreement=None)
    assert failed.verdict == "Fail" and "1 of 4" in failed.message
    disagree = smoke_test_result(sent=4, succeeded=4, agreed=2, min_agreement=0.75)
    assert disagree.verdict == "Fail" and "2/4 (50.00%)" in disagree.message
    assert smoke_test_result(sent=4, succeeded=4, agreed=3, min_agreement=0.75).verdict == "Pass"
    assert (
        smoke_test_result(sent=0, succeeded=0, agreed=None, min_agreement=None).verdict
        == "Inconclusive"
    )


def test_analysis_run_is_status_shaped() -> None:
    run = analysis_run(
        _analysis(maxErrorRate=0.05),
        _window(1000, 80),
        _window(9000, 10),
        step=1,
        now=NOW,
        candidate_version="iris-v2",
        stable_version="iris-v1",
        window_seconds=30.0,
        inconclusive_streak=0,
    )
    assert run.verdict == "Fail"
    assert run.step == 1 and run.candidate == "iris-v2" and run.stable == "iris-v1"
    assert "errorRate: candidate 8.00% (80/1000) > 5.00%" in run.message
    wire = run.to_wire()
    assert wire["windowSeconds"] == 30.0 and wire["results"][1]["pValue"] < 0.05


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, "ConfigMap smoke key r.jsonl does not exist"),
        ({"other": "{}"}, "does not exist"),
        ({"r.jsonl": '{"a": 1}\n{"a": \n'}, "line 2: not JSON"),
        ({"r.jsonl": "[1, 2]\n"}, "line 1: a record must be a JSON object"),
        ({"r.jsonl": "\n\n"}, "holds no records"),
        ({"r.jsonl": '{"a": 1}\n' * 101}, "more than 100 records"),
    ],
)
def test_smoke_records_from_a_config_map_fail_clearly(
    data: dict[str, str] | None, error: str
) -> None:
    test = SmokeTest.model_validate({"configMapRef": {"name": "smoke", "key": "r.jsonl"}})
    with pytest.raises(ValueError, match=re.escape(error)):
        smoke_records(test, data)


def test_smoke_records() -> None:
    inline = SmokeTest.model_validate({"records": [{"a": 1.5, "b": "x"}]})
    assert smoke_records(inline) == [{"a": 1.5, "b": "x"}]
    mapped = SmokeTest.model_validate({"configMapRef": {"name": "smoke", "key": "r.jsonl"}})
    data = {"r.jsonl": '{"a": 1}\n\n{"a": 2, "b": null}\n'}
    assert smoke_records(mapped, data) == [{"a": 1}, {"a": 2, "b": None}]
