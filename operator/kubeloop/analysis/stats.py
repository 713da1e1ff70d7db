"""The maths of canary analysis, kept free of any Kubernetes or HTTP detail.

* proportion tests: one-sided p-values for "the candidate's rate is above a bound" and "the
  candidate's rate is above stable's by more than a margin";
* :func:`histogram_quantile`, the same interpolation as PromQL's ``histogram_quantile``, and
  :func:`histogram_count_above`, its inverse (how many observations exceed a value);
* :func:`js_divergence`, Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from statistics import NormalDist

from kubeloop.analysis.exposition import Histogram

_NORMAL = NormalDist()
# Exact binomial tails are summed term by term; past this many terms the normal
# approximation is used (it is excellent long before then).
_EXACT_TERMS = 10_000


def _binomial_pmf(k: int, n: int, p: float) -> float:
    log = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    return math.exp(log)


def one_proportion_p_value(successes: int, trials: int, bound: float) -> float:
    """p-value of H0 "rate <= bound" against H1 "rate > bound" (one-sided).

    Exact binomial tail ``P(X >= successes | trials, bound)`` while ``trials*bound`` or
    ``trials*(1-bound)`` is below 10 (small samples, where the normal approximation is poor),
    else the normal approximation ``z = (p̂ - bound) / sqrt(bound (1 - bound) / trials)``.
    A bound of 0 (or 1) is certain: any success above it gives 0, none gives 1.
    """
    if trials <= 0:
        return 1.0
    if successes <= 0:
        return 1.0
    if bound <= 0.0:
        return 0.0
    if bound >= 1.0:
        return 1.0
    small = trials * bound < 10 or trials * (1 - bound) < 10
    if small and successes <= _EXACT_TERMS:
        below = math.fsum(_binomial_pmf(k, trials, bound) for k in range(successes))
        return min(1.0, max(0.0, 1.0 - below))
    rate = successes / trials
    z = (rate - bound) / math.sqrt(bound * (1 - bound) / trials)
    return 1.0 - _NORMAL.cdf(z)


def two_proportion_p_value(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, margin: float = 0.0
) -> float:
    """p-value of H0 "rate_a - rate_b <= margin" against H1 "rate_a - rate_b > margin".

    With ``margin == 0`` the classic pooled two-proportion z-test:
    ``z = (p̂a - p̂b) / sqrt(p̂ (1 - p̂) (1/na + 1/nb))`` with ``p̂`` the pooled rate. With a
    margin the unpooled (Wald) standard error ``sqrt(p̂a(1-p̂a)/na + p̂b(1-p̂b)/nb)`` is used,
    since the hypothesis no longer says the two rates are equal. When the standard error is
    0 (both rates 0 or both 1) the difference is taken as exact.
    """
    if trials_a <= 0 or trials_b <= 0:
        return 1.0
    rate_a, rate_b = successes_a / trials_a, successes_b / trials_b
    difference = rate_a - rate_b
    if margin == 0.0:
        pooled = (successes_a + successes_b) / (trials_a + trials_b)
        error = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    else:
        error = math.sqrt(rate_a * (1 - rate_a) / trials_a + rate_b * (1 - rate_b) / trials_b)
    if error == 0.0:
        return 0.0 if difference > margin else 1.0
    z = (difference - margin) / error
    return 1.0 - _NORMAL.cdf(z)


def histogram_quantile(quantile: float, histogram: Histogram) -> float | None:
    """The ``quantile`` (0..1) of a cumulative histogram, as PromQL computes it.

    Linear interpolation inside the bucket that holds the rank; the first bucket starts at 0
    (durations and most values are non-negative); a rank in the ``+Inf`` bucket returns the
    largest finite bound (the histogram cannot say more). ``None`` for an empty histogram.
    """
    buckets = sorted(histogram.buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in buckets:
        if count >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            if count == lower_count:
                return upper_bound
            if lower_bound > upper_bound:  # a negative first bound: no interpolation below it
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = upper_bound, count
    return lower_bound


def histogram_count_above(value: float, histogram: Histogram) -> float:
    """How many observations of a cumulative histogram exceed ``value``.

    The inverse of :func:`histogram_quantile`, with the same linear interpolation inside the
    bucket that holds ``value`` (the first bucket starts at 0). Beyond the largest finite
    bound nothing is known, so the ``+Inf`` bucket's observations all count as above.
    """
    buckets = sorted(histogram.buckets)
    if not buckets:
        return 0.0
    total = buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, count in buckets:
        if value < upper_bound:
            if math.isinf(upper_bound) or value <= lower_bound:
                return max(0.0, total - lower_count)
            inside = (count - lower_count) * (value - lower_bound) / (upper_bound - lower_bound)
            return max(0.0, total - lower_count - inside)
        lower_bound, lower_count = upper_bound, count
    return max(0.0, total - lower_count)


def histogram_distribution(histogram: Histogram) -> dict[str, float]:
    """Counts per bucket (not cumulative), keyed by the bucket's upper bound."""
    counts: dict[str, float] = {}
    previous = 0.0
    for bound, cumulative in sorted(histogram.buckets):
        counts[repr(bound)] = max(0.0, cumulative - previous)
        previous = cumulative
    return counts


def js_divergence(left: Mapping[str, float], right: Mapping[str, float]) -> float:
    """Jensen-Shannon divergence (log base 2, so 0..1) of two count distributions.

    ``JS(P, Q) = KL(P || M) / 2 + KL(Q || M) / 2`` with ``M = (P + Q) / 2``, over the union of
    the keys (a key missing on one side has probability 0 there). Raises ``ValueError`` when
    either side has no mass.
    """
    total_left = math.fsum(max(0.0, v) for v in left.values())
    total_right = math.fsum(max(0.0, v) for v in right.values())
    if total_left <= 0 or total_right <= 0:
        raise ValueError("both distributions need at least one observation")
    divergence = 0.0
    for key in set(left) | set(right):
        p = max(0.0, left.get(key, 0.0)) / total_left
        q = max(0.0, right.get(key, 0.0)) / total_right
        m = (p + q) / 2
        if p > 0:
            divergence += 0.5 * p * math.log2(p / m)
        if q > 0:
            divergence += 0.5 * q * math.log2(q / m)
    return min(1.0, max(0.0, divergence))
