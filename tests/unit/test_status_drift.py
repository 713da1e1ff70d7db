"""The drift streak, the DriftDetected condition and its Events: table cases."""

from __future__ import annotations

import pytest

from kubeloop.analysis.drift_check import DriftEvaluation
from kubeloop.api.deployment import DeploymentStatus, DriftStatus, DriftVerdict, Monitoring
from kubeloop.status.conditions import condition
from kubeloop.status.drift import DRIFT_CONDITION, apply_drift, next_drift

MONITORING = Monitoring(consecutive=3)


def _evaluation(verdict: DriftVerdict) -> DriftEvaluation:
    drifted = 2 if verdict == "Drifted" else 0
    return DriftEvaluation(
        verdict=verdict, message=f"{verdict} here", samples=900, drifted_features=drifted, scores=[]
    )


def _run(
    verdicts: list[DriftVerdict], *, versions: list[str] | None = None
) -> list[tuple[int, str, list[str]]]:
    """(streak, condition status, event reasons) after each check."""
    status = DeploymentStatus()
    seen = []
    for index, verdict in enumerate(verdicts):
        version = versions[index] if versions else "iris-v1"
        drift = next_drift(
            status.drift,
            _evaluation(verdict),
            version=version,
            now=f"2026-12-07T10:00:{index:02d}Z",
            window_seconds=30.0 * index,
            pods=2,
        )
        events = apply_drift(status, drift, MONITORING, now=drift.evaluated_at or "", generation=1)
        found = condition(status.conditions, DRIFT_CONDITION)
        assert found is not None
        seen.append((drift.consecutive, found.status, [e.reason for e in events]))
    return seen


def test_drift_is_detected_only_after_consecutive_drifted_checks() -> None:
    seen = _run(["Drifted", "Drifted", "Drifted", "Drifted"])
    assert seen == [
        (1, "False", []),
        (2, "False", []),
        (3, "True", ["DriftDetected"]),
        (4, "True", []),
    ]


def test_a_clean_check_ends_the_streak_and_resolves_the_condition() -> None:
    seen = _run(["Drifted", "Drifted", "NoDrift", "Drifted", "Drifted", "Drifted", "NoDrift"])
    assert [s[0] for s in seen] == [1, 2, 0, 1, 2, 3, 0]
    assert seen[5] == (3, "True", ["DriftDetected"])
    assert seen[6] == (0, "False", ["DriftResolved"])


def test_too_little_data_neither_extends_nor_ends_a_streak() -> None:
    seen = _run(["Drifted", "InsufficientData", "Drifted", "Drifted", "InsufficientData"])
    assert [s[0] for s in seen] == [1, 1, 2, 3, 3]
    # Detected at the fourth check; a quiet check after it does not call the drift resolved.
    assert seen[3][1:] == ("True", ["DriftDetected"])
    assert seen[4][1:] == ("True", [])


def test_a_new_stable_version_starts_its_own_streak() -> None:
    seen = _run(
        ["Drifted", "Drifted", "Drifted", "Drifted"],
        versions=["iris-v1", "iris-v1", "iris-v1", "iris-v2"],
    )
    assert [s[0] for s in seen] == [1, 2, 3, 1]
    assert seen[3] == (1, "False", ["DriftResolved"])


@pytest.mark.parametrize("verdict", ["NoDrift", "InsufficientData", "NoBaseline"])
def test_without_drift_the_condition_is_false_with_the_reason(verdict: DriftVerdict) -> None:
    status = DeploymentStatus()
    drift = next_drift(
        None,
        _evaluation(verdict),
        version="v",
        now="2026-12-07T10:00:00Z",
        window_seconds=0,
        pods=1,
    )
    assert apply_drift(status, drift, MONITORING, now="2026-12-07T10:00:00Z", generation=3) == []
    found = condition(status.conditions, DRIFT_CONDITION)
    assert found is not None
    assert (found.status, found.reason, found.observed_generation) == ("False", verdict, 3)
    assert isinstance(status.drift, DriftStatus) and status.drift.verdict == verdict
