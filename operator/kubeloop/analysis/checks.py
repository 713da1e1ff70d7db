"""A Deployment's ``analysis`` block applied to one window of candidate and stable traffic.

Rules (``alpha = 1 - confidence``; "significant" means the one-sided p-value is below alpha):

* **requests** — the candidate's inference requests in the window. Below ``minRequests`` no
  check may pass; the run is at best Inconclusive ("keep waiting"). A check may still *fail*
  below ``minRequests`` when its test is significant on the samples there are: a candidate
  that failed 40 of its first 40 requests does not get to wait for 100.
* **errorRate** (``maxErrorRate``, absolute) — 5xx share of inference requests. Fail when the
  observed rate is above the bound *and* the one-proportion test of "rate <= bound" is
  significant; Inconclusive when above the bound but not (yet) significant; Pass otherwise.
* **errorRateVsStable** (``maxErrorRateIncrease``, relative) — Fail when
  ``rate_c - rate_s > increase`` *and* the two-proportion test of "rate_c - rate_s <=
  increase" is significant; Inconclusive when above but not significant, or when stable has
  fewer than ``minRequests`` requests; Pass otherwise.
* **p99LatencyMs** (``maxP99LatencyMs``) and **p99LatencyRatio** (``maxP99LatencyRatio``) —
  p99 interpolated from the duration histograms, compared with the bound (for the ratio:
  ``maxP99LatencyRatio`` times stable's p99, which needs ``minRequests`` on stable). "p99 <=
  limit" says at most 1% of requests are slower than the limit, so a p99 above it fails only
  when the one-proportion test of "share slower than the limit <= 1%" is significant, and is
  Inconclusive before that: a p99 of a few dozen requests is their slowest one. Pass needs
  ``minRequests``.
* **liveAccuracy** (``minLiveAccuracy``) and **liveAccuracyVsStable**
  (``maxLiveAccuracyDrop``) — the same two tests on the share of *incorrect* feedback labels
  (bound ``1 - minLiveAccuracy``; margin ``maxLiveAccuracyDrop``). Fewer than ``minFeedback``
  labels: Inconclusive unless significant; no feedback at all on either side: Pass with
  "no feedback" (the check does not apply; feedback is optional).
* **predictionDivergence** (``maxPredictionDivergence``) — Jensen-Shannon divergence (bits)
  of the predicted-label counts (classification) or predicted-value histogram buckets
  (regression); needs ``minPredictionSamples`` on both sides, else Inconclusive; Fail above
  the bound.

:func:`combine`: any Fail → Fail; all Pass → Pass; otherwise Inconclusive, and the
``maxInconclusive``-th Inconclusive in a row becomes a Fail that says so.
"""

from __future__ import annotations

import math

from kubeloop.analysis.exposition import Histogram
from kubeloop.analysis.stats import (
    histogram_count_above,
    histogram_distribution,
    histogram_quantile,
    js_divergence,
    one_proportion_p_value,
    two_proportion_p_value,
)
from kubeloop.analysis.window import VersionWindow
from kubeloop.api.deployment import Analysis, AnalysisResult, AnalysisRun, Verdict

P99 = 0.99


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _p(value: float) -> str:
    return f"p={value:.3g}"


def requests_check(analysis: Analysis, candidate: VersionWindow) -> AnalysisResult:
    """Enough candidate requests for a verdict?"""
    enough = candidate.requests >= analysis.min_requests
    return AnalysisResult(
        check="requests",
        candidate=float(candidate.requests),
        threshold=float(analysis.min_requests),
        samples=candidate.requests,
        verdict="Pass" if enough else "Inconclusive",
        message=(f"candidate served {candidate.requests} requests (needs {analysis.min_requests})"),
    )


def error_rate_check(analysis: Analysis, candidate: VersionWindow) -> AnalysisResult | None:
    """The candidate's 5xx rate against ``maxErrorRate``."""
    bound = analysis.max_error_rate
    if bound is None:
        return None
    alpha = 1 - analysis.confidence
    n, errors = candidate.requests, candidate.errors
    rate = errors / n if n else 0.0
    p_value = one_proportion_p_value(errors, n, bound)
    seen = f"candidate {_percent(rate)} ({errors}/{n})"
    if n and rate > bound and p_value < alpha:
        verdict: Verdict = "Fail"
        message = f"{seen} > {_percent(bound)}, {_p(p_value)} < {alpha:.3g}"
    elif n and rate > bound:
        verdict = "Inconclusive"
        message = f"{seen} > {_percent(bound)} but not significant yet ({_p(p_value)})"
    elif n < analysis.min_requests:
        verdict = "Inconclusive"
        message = f"{seen} <= {_percent(bound)}, too few requests to pass"
    else:
        verdict = "Pass"
        message = f"{seen} <= {_percent(bound)}"
    return AnalysisResult(
        check="errorRate",
        candidate=rate,
        threshold=bound,
        samples=n,
        p_value=p_value,
        verdict=verdict,
        message=message,
    )


def _relative_rate(
    *,
    check: str,
    what: str,
    candidate_bad: int,
    candidate_n: int,
    stable_bad: int,
    stable_n: int,
    margin: float,
    minimum: int,
    alpha: float,
) -> AnalysisResult:
    """Shared rule of the two relative checks: candidate's bad share vs stable's + margin."""
    rate_c = candidate_bad / candidate_n if candidate_n else 0.0
    rate_s = stable_bad / stable_n if stable_n else 0.0
    p_value = two_proportion_p_value(candidate_bad, candidate_n, stable_bad, stable_n, margin)
    seen = (
        f"{what} candidate {_percent(rate_c)} ({candidate_bad}/{candidate_n}) vs stable "
        f"{_percent(rate_s)} ({stable_bad}/{stable_n}), allowed +{_percent(margin)}"
    )
    worse = candidate_n > 0 and stable_n > 0 and rate_c - rate_s > margin
    if worse and p_value < alpha:
        verdict: Verdict = "Fail"
        message = f"{seen}: significantly worse, {_p(p_value)} < {alpha:.3g}"
    elif worse:
        verdict = "Inconclusive"
        message = f"{seen}: worse but not significant yet ({_p(p_value)})"
    elif candidate_n < minimum or stable_n < minimum:
        verdict = "Inconclusive"
        message = f"{seen}: too few samples to pass (needs {minimum} each)"
    else:
        verdict = "Pass"
        message = f"{seen}"
    return AnalysisResult(
        check=check,
        stable=rate_s,
        candidate=rate_c,
        threshold=margin,
        samples=candidate_n,
        p_value=p_value,
        verdict=verdict,
        message=message,
    )


def error_rate_vs_stable_check(
    analysis: Analysis, candidate: VersionWindow, stable: VersionWindow | None
) -> AnalysisResult | None:
    """The candidate's 5xx rate against stable's plus ``maxErrorRateIncrease``."""
    margin = analysis.max_error_rate_increase
    if margin is None or stable is None:
        return None
    return _relative_rate(
        check="errorRateVsStable",
        what="5xx rate",
        candidate_bad=candidate.errors,
        candidate_n=candidate.requests,
        stable_bad=stable.errors,
        stable_n=stable.requests,
        margin=margin,
        minimum=analysis.min_requests,
        alpha=1 - analysis.confidence,
    )


def _tail_check(
    analysis: Analysis,
    latency: Histogram,
    *,
    check: str,
    p99_ms: float,
    limit_ms: float,
    seen: str,
    threshold: float,
    stable_ms: float | None,
) -> AnalysisResult:
    """Shared rule of the two latency checks: is the candidate's p99 above ``limit_ms``?

    "p99 <= limit" means at most 1% of requests are slower than the limit, so the test is the
    one-proportion test of that share. A p99 from a few dozen requests is their slowest one:
    a single cold request would otherwise fail a healthy candidate.
    """
    alpha, minimum = 1 - analysis.confidence, analysis.min_requests
    n = round(latency.count)
    slower = min(n, math.floor(histogram_count_above(limit_ms / 1000, latency) + 1e-9))
    p_value = one_proportion_p_value(slower, n, 1 - P99)
    tail = f"{slower}/{n} requests slower than {limit_ms:.1f} ms"
    if p99_ms > limit_ms and p_value < alpha:
        verdict: Verdict = "Fail"
        message = f"{seen} ({tail}), {_p(p_value)} < {alpha:.3g}"
    elif p99_ms > limit_ms:
        verdict = "Inconclusive"
        message = f"{seen} but not significant yet ({tail}, {_p(p_value)})"
    elif n < minimum:
        verdict = "Inconclusive"
        message = f"{seen}, too few requests to pass (needs {minimum})"
    else:
        verdict = "Pass"
        message = seen
    return AnalysisResult(
        check=check,
        stable=stable_ms,
        candidate=p99_ms,
        threshold=threshold,
        samples=n,
        p_value=p_value,
        verdict=verdict,
        message=message,
    )


def latency_checks(
    analysis: Analysis, candidate: VersionWindow, stable: VersionWindow | None
) -> list[AnalysisResult]:
    """p99 latency: absolute bound and ratio to stable (see :func:`_tail_check`)."""
    results: list[AnalysisResult] = []
    minimum = analysis.min_requests
    p99_c = histogram_quantile(P99, candidate.latency)
    p99_s = histogram_quantile(P99, stable.latency) if stable is not None else None
    ms_c = None if p99_c is None else 1000 * p99_c
    ms_s = None if p99_s is None else 1000 * p99_s
    if analysis.max_p99_latency_ms is not None:
        bound = analysis.max_p99_latency_ms
        if ms_c is None:
            results.append(
                AnalysisResult(
                    check="p99LatencyMs",
                    stable=ms_s,
                    threshold=bound,
                    samples=0,
                    verdict="Inconclusive",
                    message=f"candidate p99 needs {minimum} requests (0 so far)",
                )
            )
        else:
            relation = ">" if ms_c > bound else "<="
            results.append(
                _tail_check(
                    analysis,
                    candidate.latency,
                    check="p99LatencyMs",
                    p99_ms=ms_c,
                    limit_ms=bound,
                    seen=f"candidate p99 {ms_c:.1f} ms {relation} {bound:g} ms",
                    threshold=bound,
                    stable_ms=ms_s,
                )
            )
    if analysis.max_p99_latency_ratio is not None and stable is not None:
        limit = analysis.max_p99_latency_ratio
        enough_s = stable.requests >= minimum and ms_s is not None and ms_s > 0
        if ms_c is None or ms_s is None or not enough_s:
            results.append(
                AnalysisResult(
                    check="p99LatencyRatio",
                    stable=ms_s,
                    candidate=ms_c,
                    threshold=limit,
                    samples=candidate.requests,
                    verdict="Inconclusive",
                    message=(
                        f"p99 ratio needs {minimum} requests on each side "
                        f"(candidate {candidate.requests}, stable {stable.requests})"
                    ),
                )
            )
        else:
            ratio = ms_c / ms_s
            relation = ">" if ratio > limit else "<="
            results.append(
                _tail_check(
                    analysis,
                    candidate.latency,
                    check="p99LatencyRatio",
                    p99_ms=ms_c,
                    limit_ms=limit * ms_s,
                    seen=(
                        f"candidate p99 {ms_c:.1f} ms / stable {ms_s:.1f} ms = {ratio:.2f} "
                        f"{relation} {limit:g}"
                    ),
                    threshold=limit,
                    stable_ms=ms_s,
                )
            )
    return results


def accuracy_checks(
    analysis: Analysis, candidate: VersionWindow, stable: VersionWindow | None
) -> list[AnalysisResult]:
    """Live accuracy from feedback: absolute floor and drop against stable."""
    results: list[AnalysisResult] = []
    alpha = 1 - analysis.confidence
    n = candidate.feedback
    no_feedback = n == 0 and (stable is None or stable.feedback == 0)
    accuracy_c = candidate.correct / n if n else None
    accuracy_s = stable.correct / stable.feedback if stable and stable.feedback else None
    if analysis.min_live_accuracy is not None:
        floor = analysis.min_live_accuracy
        if no_feedback:
            results.append(
                AnalysisResult(
                    check="liveAccuracy",
                    threshold=floor,
                    samples=0,
                    verdict="Pass",
                    message="no feedback in this window: check does not apply",
                )
            )
        else:
            p_value = one_proportion_p_value(candidate.incorrect, n, 1 - floor)
            seen = f"candidate accuracy {_percent(accuracy_c or 0.0)} ({candidate.correct}/{n})"
            below = n > 0 and (accuracy_c or 0.0) < floor
            if below and p_value < alpha:
                verdict: Verdict = "Fail"
                message = f"{seen} < {_percent(floor)}, significantly ({_p(p_value)} < {alpha:.3g})"
            elif below:
                verdict = "Inconclusive"
                message = f"{seen} < {_percent(floor)} but not significant yet ({_p(p_value)})"
            elif n < analysis.min_feedback:
                verdict = "Inconclusive"
                message = f"{seen}: needs {analysis.min_feedback} feedback labels to pass"
            else:
                verdict, message = "Pass", f"{seen} >= {_percent(floor)}"
            results.append(
                AnalysisResult(
                    check="liveAccuracy",
                    stable=accuracy_s,
                    candidate=accuracy_c,
                    threshold=floor,
                    samples=n,
                    p_value=p_value,
                    verdict=verdict,
                    message=message,
                )
            )
    if analysis.max_live_accuracy_drop is not None and stable is not None:
        if no_feedback:
            results.append(
                AnalysisResult(
                    check="liveAccuracyVsStable",
                    threshold=analysis.max_live_accuracy_drop,
                    samples=0,
                    verdict="Pass",
                    message="no feedback in this window: check does not apply",
                )
            )
        else:
            # A drop in accuracy is a rise in the share of incorrect labels.
            result = _relative_rate(
                check="liveAccuracyVsStable",
                what="incorrect-feedback share",
                candidate_bad=candidate.incorrect,
                candidate_n=n,
                stable_bad=stable.incorrect,
                stable_n=stable.feedback,
                margin=analysis.max_live_accuracy_drop,
                minimum=analysis.min_feedback,
                alpha=alpha,
            )
            results.append(
                result.model_copy(update={"stable": accuracy_s, "candidate": accuracy_c})
            )
    return results


def divergence_check(
    analysis: Analysis, candidate: VersionWindow, stable: VersionWindow | None
) -> AnalysisResult | None:
    """Jensen-Shannon divergence between the two versions' predictions."""
    bound = analysis.max_prediction_divergence
    if bound is None or stable is None:
        return None
    if candidate.predictions or stable.predictions:
        left, right = dict(candidate.predictions), dict(stable.predictions)
        kind = "labels"
    elif candidate.prediction_value is not None and stable.prediction_value is not None:
        left = histogram_distribution(candidate.prediction_value)
        right = histogram_distribution(stable.prediction_value)
        kind = "values"
    else:
        left, right, kind = {}, {}, "predictions"
    n_c, n_s = round(sum(left.values())), round(sum(right.values()))
    minimum = analysis.min_prediction_samples
    if n_c < minimum or n_s < minimum:
        return AnalysisResult(
            check="predictionDivergence",
            threshold=bound,
            samples=n_c,
            verdict="Inconclusive",
            message=(
                f"predicted {kind}: candidate {n_c}, stable {n_s}; needs {minimum} on each side"
            ),
        )
    divergence = js_divergence(left, right)
    failed = divergence > bound
    return AnalysisResult(
        check="predictionDivergence",
        candidate=divergence,
        threshold=bound,
        samples=n_c,
        verdict="Fail" if failed else "Pass",
        message=(
            f"Jensen-Shannon divergence of predicted {kind} {divergence:.4f} "
            f"{'>' if failed else '<='} {bound:g} (candidate {n_c}, stable {n_s})"
        ),
    )


def analyse(
    analysis: Analysis,
    candidate: VersionWindow,
    stable: VersionWindow | None,
    *,
    require_traffic: bool = True,
) -> list[AnalysisResult]:
    """Every configured check on one window.

    ``require_traffic=False`` is for a blue-green preview, which gets no user traffic: when
    it served fewer than ``minRequests`` the metric checks do not apply and a single Pass
    says so (readiness and the smoke test decide instead).
    """
    if not require_traffic and candidate.requests < analysis.min_requests:
        return [
            AnalysisResult(
                check="requests",
                candidate=float(candidate.requests),
                threshold=float(analysis.min_requests),
                samples=candidate.requests,
                verdict="Pass",
                message=(
                    f"preview served {candidate.requests} requests (< {analysis.min_requests}): "
                    "metric checks do not apply"
                ),
            )
        ]
    results: list[AnalysisResult | None] = [
        requests_check(analysis, candidate),
        error_rate_check(analysis, candidate),
        error_rate_vs_stable_check(analysis, candidate, stable),
        *latency_checks(analysis, candidate, stable),
        *accuracy_checks(analysis, candidate, stable),
        divergence_check(analysis, candidate, stable),
    ]
    return [result for result in results if result is not None]


def smoke_test_result(
    *, sent: int, succeeded: int, agreed: int | None, min_agreement: float | None
) -> AnalysisResult:
    """The blue-green smoke test: every record answered 200, and enough agree with stable.

    ``agreed`` is how many records the preview predicted as stable did (``None`` when there
    is no stable to compare with).
    """
    if sent == 0:
        return AnalysisResult(
            check="smokeTest", samples=0, verdict="Inconclusive", message="no smoke records sent"
        )
    if succeeded < sent:
        return AnalysisResult(
            check="smokeTest",
            candidate=succeeded / sent,
            threshold=1.0,
            samples=sent,
            verdict="Fail",
            message=f"{sent - succeeded} of {sent} smoke records were not answered with 200",
        )
    if min_agreement is None or agreed is None:
        return AnalysisResult(
            check="smokeTest",
            candidate=1.0,
            threshold=1.0,
            samples=sent,
            verdict="Pass",
            message=f"all {sent} smoke records answered with 200",
        )
    share = agreed / sent
    passed = share >= min_agreement
    return AnalysisResult(
        check="smokeTest",
        candidate=share,
        threshold=min_agreement,
        samples=sent,
        verdict="Pass" if passed else "Fail",
        message=(
            f"all {sent} smoke records answered; {agreed}/{sent} ({_percent(share)}) agree "
            f"with stable, {'>=' if passed else '<'} {_percent(min_agreement)}"
        ),
    )


def combine(
    results: list[AnalysisResult], *, inconclusive_streak: int, max_inconclusive: int
) -> tuple[Verdict, str]:
    """The run's verdict and why.

    Any Fail → Fail; all Pass → Pass; otherwise Inconclusive, unless this is the
    ``max_inconclusive``-th Inconclusive in a row (``inconclusive_streak`` counts the ones
    before this run), which is a Fail: a candidate that never gathers evidence must not sit
    at its step forever.
    """
    failed = [r for r in results if r.verdict == "Fail"]
    if failed:
        return "Fail", "; ".join(f"{r.check}: {r.message}" for r in failed)
    waiting = [r for r in results if r.verdict == "Inconclusive"]
    if not waiting:
        return "Pass", f"{len(results)} check(s) passed"
    reasons = "; ".join(f"{r.check}: {r.message}" for r in waiting)
    streak = inconclusive_streak + 1
    if streak >= max_inconclusive:
        return (
            "Fail",
            f"{streak} inconclusive analyses in a row (limit {max_inconclusive}): {reasons}",
        )
    return "Inconclusive", reasons


def analysis_run(
    analysis: Analysis,
    candidate: VersionWindow,
    stable: VersionWindow | None,
    *,
    step: int,
    now: str,
    candidate_version: str,
    stable_version: str | None,
    window_seconds: float | None,
    inconclusive_streak: int,
    require_traffic: bool = True,
    extra: list[AnalysisResult] | None = None,
) -> AnalysisRun:
    """One complete analysis, shaped for ``status.analysis`` (``extra``: e.g. the smoke test)."""
    results = [
        *(extra or []),
        *analyse(analysis, candidate, stable, require_traffic=require_traffic),
    ]
    verdict, message = combine(
        results,
        inconclusive_streak=inconclusive_streak,
        max_inconclusive=analysis.max_inconclusive,
    )
    return AnalysisRun(
        step=step,
        time=now,
        candidate=candidate_version,
        stable=stable_version,
        window_seconds=window_seconds,
        verdict=verdict,
        message=message[:4000],
        results=results[:32],
    )
