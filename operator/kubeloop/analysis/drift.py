"""Drift statistics of two count vectors on the same bins: training (baseline) and live.

The drift monitor compares, feature by feature, the training profile's counts with the
window's counts on exactly the same bins (``drift_check.py`` aligns them), so every measure
here takes two equally long vectors of non-negative counts:

* ``psi``: population stability index, sum((live - base) * ln(live / base)) over the bins'
  proportions, a proportion of 0 replaced by 0.0001 first (Evidently's convention, so an
  empty bin on one side gives a large but finite score);
* ``js``: Jensen-Shannon *distance* with base 2 (0..1), the square root of the divergence,
  as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``;
* ``ks``: Kolmogorov-Smirnov statistic of the binned distributions: the largest difference
  of the two cumulative proportions at the bin boundaries (numeric features only; it equals
  ``scipy.stats.ks_2samp`` on samples replaced by their bin index);
* ``chi2``: chi-square goodness of fit of the live counts to the baseline proportions
  (expected = proportion x live total, proportions smoothed as for psi so a category never
  seen in training does not divide by zero); the score is the p-value (drift when *below*
  the threshold, Evidently's convention) (categorical features only);
* ``linf``: the largest difference of the two proportions (categorical features only).

Every function is plain numpy on vectors of a dozen entries: one call is a few microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final, Literal

import numpy as np
from scipy import special

from kubeloop.analysis.stats import js_divergence
from kubeloop.api.deployment import DriftMethod

EPSILON: Final = 1e-4
FeatureKind = Literal["numeric", "categorical"]
_APPLIES: Final[dict[str, tuple[str, ...]]] = {
    "psi": ("numeric", "categorical"),
    "js": ("numeric", "categorical"),
    "ks": ("numeric",),
    "chi2": ("categorical",),
    "linf": ("categorical",),
}
Counts = Sequence[float]
Array = np.ndarray[Any, Any]


def applicable(method: DriftMethod, kind: FeatureKind) -> bool:
    """Whether ``method`` measures features of ``kind``."""
    return kind in _APPLIES[method]


def _proportions(counts: Counts) -> Array:
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("drift needs a non-empty vector of counts")
    if (values < 0).any():
        raise ValueError("counts must not be negative")
    total = values.sum()
    if total <= 0:
        raise ValueError("drift needs at least one count on each side")
    shares: Array = values / total
    return shares


def _pair(baseline: Counts, live: Counts) -> tuple[Array, Array]:
    if len(baseline) != len(live):
        raise ValueError(f"bins differ: {len(baseline)} in the baseline, {len(live)} live")
    return _proportions(baseline), _proportions(live)


def _smoothed(proportions: Array) -> Array:
    smoothed: Array = np.where(proportions == 0, EPSILON, proportions)
    return smoothed


def psi(baseline: Counts, live: Counts) -> float:
    """Population stability index (zero proportions read as 0.0001)."""
    expected, actual = _pair(baseline, live)
    expected, actual = _smoothed(expected), _smoothed(actual)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def js_distance(baseline: Counts, live: Counts) -> float:
    """Jensen-Shannon distance, base 2 (0: same distribution, 1: disjoint): the square root
    of the divergence the canary analysis uses on prediction distributions."""
    _pair(baseline, live)  # the same checks as every measure here

    def keyed(counts: Counts) -> dict[str, float]:
        return {str(index): float(count) for index, count in enumerate(counts)}

    return math.sqrt(js_divergence(keyed(baseline), keyed(live)))


def ks_statistic(baseline: Counts, live: Counts) -> float:
    """Largest difference of the cumulative proportions at the bin boundaries."""
    p, q = _pair(baseline, live)
    return float(np.max(np.abs(np.cumsum(p) - np.cumsum(q))))


def chi_square(baseline: Counts, live: Counts) -> tuple[float, float]:
    """(statistic, p-value) of the live counts against the baseline proportions."""
    expected_share, _ = _pair(baseline, live)
    observed = np.asarray(live, dtype=np.float64)
    shares = _smoothed(expected_share)
    expected = shares / shares.sum() * observed.sum()
    statistic = float(np.sum((observed - expected) ** 2 / expected))
    freedom = observed.size - 1
    if freedom < 1:
        return statistic, 1.0
    return statistic, float(special.chdtrc(freedom, statistic))


def linf(baseline: Counts, live: Counts) -> float:
    """Largest difference of one bin's (category's) proportion."""
    p, q = _pair(baseline, live)
    return float(np.max(np.abs(p - q)))


def score(method: DriftMethod, baseline: Counts, live: Counts) -> float:
    """The score of ``method`` (chi2: the p-value)."""
    if method == "psi":
        return psi(baseline, live)
    if method == "js":
        return js_distance(baseline, live)
    if method == "ks":
        return ks_statistic(baseline, live)
    if method == "chi2":
        return chi_square(baseline, live)[1]
    return linf(baseline, live)


def drifted(method: DriftMethod, value: float, threshold: float) -> bool:
    """Whether ``value`` crossed ``threshold`` (above; chi2's p-value: below)."""
    return value < threshold if method == "chi2" else value > threshold
