"""The maths of canary analysis against values computed by hand."""

from __future__ import annotations

import math

import pytest

from kubeloop.analysis.exposition import Histogram
from kubeloop.analysis.stats import (
    histogram_count_above,
    histogram_distribution,
    histogram_quantile,
    js_divergence,
    one_proportion_p_value,
    two_proportion_p_value,
)

LATENCY = Histogram(
    buckets=((0.005, 50.0), (0.01, 90.0), (0.025, 99.0), (0.05, 100.0), (math.inf, 100.0)),
    count=100.0,
    sum=0.7,
)


@pytest.mark.parametrize(
    ("quantile", "expected"),
    [
        # rank 50 falls in the first bucket [0, 0.005]: 0 + 0.005 * 50/50
        (0.5, 0.005),
        # rank 90: second bucket (0.005, 0.01], 40 of its 40 -> 0.01
        (0.9, 0.01),
        # rank 95: third bucket (0.01, 0.025], 5 of its 9 -> 0.01 + 0.015 * 5/9
        (0.95, 0.01 + 0.015 * 5 / 9),
        # rank 99: third bucket, 9 of 9 -> 0.025
        (0.99, 0.025),
        # rank 25: first bucket, half way -> 0.0025
        (0.25, 0.0025),
    ],
)
def test_histogram_quantile_interpolates_like_promql(quantile: float, expected: float) -> None:
    assert histogram_quantile(quantile, LATENCY) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, 100.0),  # everything is above 0
        (0.0025, 75.0),  # half of the first bucket's 50 are below
        (0.01, 10.0),  # exactly a bound: the 90 at or below it
        (0.01 + 0.015 * 5 / 9, 5.0),  # inverse of the 0.95 quantile
        (0.05, 0.0),
        (1.0, 0.0),  # beyond the largest finite bound: the +Inf bucket (empty here)
    ],
)
def test_count_above_inverts_the_quantile(value: float, expected: float) -> None:
    assert histogram_count_above(value, LATENCY) == pytest.approx(expected)


def test_count_above_counts_the_inf_bucket_as_above() -> None:
    slow = Histogram(buckets=((0.1, 10.0), (0.5, 50.0), (math.inf, 100.0)), count=100.0)
    assert histogram_count_above(0.7, slow) == 50.0
    assert histogram_count_above(0.5, Histogram()) == 0.0


def test_quantile_in_the_inf_bucket_is_the_largest_finite_bound() -> None:
    slow = Histogram(buckets=((0.1, 10.0), (0.5, 50.0), (math.inf, 100.0)), count=100.0)
    assert histogram_quantile(0.99, slow) == 0.5


def test_quantile_of_an_empty_histogram_is_none() -> None:
    assert histogram_quantile(0.99, Histogram()) is None
    assert histogram_quantile(0.99, Histogram(buckets=((0.1, 0.0), (math.inf, 0.0)))) is None


def test_histogram_distribution_is_per_bucket() -> None:
    assert histogram_distribution(LATENCY) == {
        "0.005": 50.0,
        "0.01": 40.0,
        "0.025": 9.0,
        "0.05": 1.0,
        "inf": 0.0,
    }


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ({"a": 10}, {"a": 3}, 0.0),
        ({"a": 5}, {"b": 7}, 1.0),
        # P=(.5,.5), Q=(1,0), M=(.75,.25):
        # KL(P||M) = .5 log2(.5/.75) + .5 log2(.5/.25) = 0.2075187
        # KL(Q||M) = log2(1/.75) = 0.4150375; JS = (0.2075187 + 0.4150375) / 2
        ({"a": 50, "b": 50}, {"a": 80}, 0.3112781),
        # P=(.9,.1), Q=(.5,.5), M=(.7,.3):
        # KL(P||M) = .9 log2(.9/.7) + .1 log2(.1/.3) = 0.3263131 - 0.1584963 = 0.1678168
        # KL(Q||M) = .5 log2(.5/.7) + .5 log2(.5/.3) = -0.2427134 + 0.3684828 = 0.1257694
        ({"setosa": 90, "virginica": 10}, {"setosa": 5, "virginica": 5}, 0.1467931),
    ],
)
def test_js_divergence(left: dict[str, float], right: dict[str, float], expected: float) -> None:
    assert js_divergence(left, right) == pytest.approx(expected, abs=1e-6)
    assert js_divergence(right, left) == pytest.approx(expected, abs=1e-6)


def test_js_divergence_needs_mass_on_both_sides() -> None:
    with pytest.raises(ValueError, match="at least one observation"):
        js_divergence({"a": 0}, {"a": 1})


def test_two_proportion_pooled_by_hand() -> None:
    # 30/1000 vs 10/1000: pooled 0.02, se = sqrt(.02 * .98 * (2/1000)) = 0.00626099
    # z = 0.02 / 0.00626099 = 3.19438; 1 - Phi(3.19438) = 0.000700
    assert two_proportion_p_value(30, 1000, 10, 1000) == pytest.approx(0.000700, rel=0.01)
    # the other way round it is nowhere near significant
    assert two_proportion_p_value(10, 1000, 30, 1000) == pytest.approx(0.999300, rel=1e-4)


def test_two_proportion_with_margin_by_hand() -> None:
    # 30/1000 vs 10/1000, margin 0.01: se = sqrt(.0291/1000 + .0099/1000) = 0.00624500
    # z = (0.02 - 0.01) / 0.00624500 = 1.60128; 1 - Phi(1.60128) = 0.054657
    assert two_proportion_p_value(30, 1000, 10, 1000, 0.01) == pytest.approx(0.054657, rel=0.01)


def test_two_proportion_degenerate_cases() -> None:
    assert two_proportion_p_value(0, 100, 0, 100) == 1.0
    assert two_proportion_p_value(5, 0, 0, 100) == 1.0
    assert two_proportion_p_value(100, 100, 100, 100) == 1.0


def test_one_proportion_normal_by_hand() -> None:
    # 80/1000 vs bound 0.05: se = sqrt(.05*.95/1000) = 0.00689202, z = 0.03/0.00689202 = 4.35286
    assert one_proportion_p_value(80, 1000, 0.05) == pytest.approx(6.72e-6, rel=0.02)
    # 60/1000: z = 0.01 / 0.00689202 = 1.45095 -> 0.073395
    assert one_proportion_p_value(60, 1000, 0.05) == pytest.approx(0.073395, rel=0.01)


def test_one_proportion_exact_for_small_samples() -> None:
    # n=5, bound .05: P(X >= 2) = 1 - .95^5 - 5 * .05 * .95^4
    #                            = 1 - 0.7737809 - 0.2036266 = 0.0225925
    assert one_proportion_p_value(2, 5, 0.05) == pytest.approx(0.0225925, rel=1e-5)
    # P(X >= 1) = 1 - .95^5 = 0.2262191
    assert one_proportion_p_value(1, 5, 0.05) == pytest.approx(0.2262191, rel=1e-6)


@pytest.mark.parametrize(
    ("successes", "trials", "bound", "expected"),
    [(0, 100, 0.05, 1.0), (1, 100, 0.0, 0.0), (0, 0, 0.05, 1.0), (3, 10, 1.0, 1.0)],
)
def test_one_proportion_edges(successes: int, trials: int, bound: float, expected: float) -> None:
    assert one_proportion_p_value(successes, trials, bound) == expected
