"""Drift statistics against scipy and hand values on the same bins."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from kubeloop.analysis import drift

RNG = np.random.default_rng(5)
CASES = [RNG.integers(0, 50, size=n).astype(float) + 1 for n in (2, 5, 10, 10, 21)]


def test_psi_by_hand() -> None:
    # Proportions 0.5/0.5 vs 0.8/0.2: (0.3 ln 1.6) + (-0.3 ln 0.4) = 0.4158883...
    assert drift.psi([50, 50], [80, 20]) == pytest.approx(0.3 * math.log(1.6) - 0.3 * math.log(0.4))
    # An empty live bin reads as 0.0001: finite, large.
    assert drift.psi([50, 50], [100, 0]) == pytest.approx(
        (1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    )


@pytest.mark.parametrize("base", CASES)
def test_js_is_scipy_jensenshannon_base_2(base: np.ndarray) -> None:
    live = RNG.permutation(base) * 3
    assert drift.js_distance(base, live) == pytest.approx(
        distance.jensenshannon(base, live, base=2), abs=1e-12
    )


def test_js_bounds() -> None:
    assert drift.js_distance([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert drift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)


def test_ks_is_scipy_ks_2samp_on_bin_indices() -> None:
    a = RNG.integers(0, 10, size=700)
    b = np.clip(RNG.integers(0, 10, size=300) + 2, 0, 9)
    base, live = np.bincount(a, minlength=10), np.bincount(b, minlength=10)
    assert drift.ks_statistic(base, live) == pytest.approx(stats.ks_2samp(a, b).statistic)


@pytest.mark.parametrize("base", CASES)
def test_chi2_is_scipy_chisquare(base: np.ndarray) -> None:
    live = RNG.integers(0, 80, size=base.size).astype(float) + 1
    expected = base / base.sum() * live.sum()
    statistic, p_value = drift.chi_square(base, live)
    reference = stats.chisquare(live, expected)
    assert statistic == pytest.approx(reference.statistic)
    assert p_value == pytest.approx(reference.pvalue)


def test_chi2_of_a_category_unseen_in_training_is_finite_and_drifted() -> None:
    statistic, p_value = drift.chi_square([50, 50, 0], [50, 40, 10])
    assert math.isfinite(statistic) and p_value < 1e-6
    assert drift.drifted("chi2", p_value, 0.05)


def test_identical_distributions_score_no_drift() -> None:
    for method in ("psi", "js", "ks", "linf"):
        assert drift.score(method, [3, 5, 2], [30, 50, 20]) == pytest.approx(0.0, abs=1e-12)
    assert drift.score("chi2", [3, 5, 2], [30, 50, 20]) == pytest.approx(1.0)


def test_linf_by_hand() -> None:
    assert drift.linf([50, 30, 20], [20, 30, 50]) == pytest.approx(0.3)


def test_applicability_and_direction() -> None:
    assert drift.applicable("ks", "numeric") and not drift.applicable("ks", "categorical")
    assert drift.applicable("chi2", "categorical") and not drift.applicable("chi2", "numeric")
    assert drift.drifted("psi", 0.3, 0.2) and not drift.drifted("psi", 0.1, 0.2)
    assert drift.drifted("chi2", 0.01, 0.05) and not drift.drifted("chi2", 0.5, 0.05)


@pytest.mark.parametrize(
    ("base", "live", "message"),
    [
        ([1, 2], [1, 2, 3], "bins differ"),
        ([0, 0], [1, 1], "at least one count"),
        ([], [], "non-empty"),
    ],
)
def test_bad_vectors_are_errors(base: list[float], live: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        drift.psi(base, live)


def test_psi_and_js_agree_with_evidently_on_the_same_bins() -> None:
    """Evidently 0.7.23's own numbers (tests/unit/data/evidently_drift_cases.json).

    PSI is the same formula with the same 0.0001 for empty bins. Evidently's JS distance uses
    the natural logarithm (scipy's default); ours is base 2, so bounded by 1: the two differ
    by the constant factor sqrt(ln 2).
    """
    path = Path(__file__).parent / "data" / "evidently_drift_cases.json"
    cases = json.loads(path.read_text())["cases"]
    assert len(cases) == 40
    for case in cases:
        assert drift.psi(case["ref"], case["cur"]) == pytest.approx(case["psi"], rel=1e-12)
        ours = drift.js_distance(case["ref"], case["cur"])
        assert ours * math.sqrt(math.log(2)) == pytest.approx(case["js"], rel=1e-9)
