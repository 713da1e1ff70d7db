"""Drift status of a Deployment: the latest check, its streak, the DriftDetected condition.

Pure functions of the previous status and one evaluation (``analysis/drift_check.py``), so
the rules are table-tested:

* a streak counts checks in a row that found drift on the *same* version; a check without
  drift ends it; a check without enough data (or without a baseline) neither extends nor
  ends it, so a quiet minute in the traffic cannot hide a drift that was building up, nor
  complete one;
* ``DriftDetected`` is True once the streak reaches ``monitoring.consecutive`` and stays
  True until a check finds no drift; a new stable version starts from zero (its own
  baseline);
* the condition turning True posts a Warning Event ``DriftDetected``, turning False a
  Normal ``DriftResolved``.

The streak lives in status (not in memory), so an operator restarted mid-streak goes on
counting instead of waiting ``consecutive`` checks again.
"""

from __future__ import annotations

from kubeloop.analysis.drift_check import DriftEvaluation
from kubeloop.api.deployment import DeploymentStatus, DriftStatus, Monitoring
from kubeloop.api.meta import ConditionStatus
from kubeloop.status.conditions import condition, set_condition
from kubeloop.status.deployment import Event

DRIFT_CONDITION = "DriftDetected"
MAX_SCORES = 4000


def next_drift(
    previous: DriftStatus | None,
    evaluation: DriftEvaluation,
    *,
    version: str,
    now: str,
    window_seconds: float,
    pods: int,
) -> DriftStatus:
    """The drift status after one check of ``version``."""
    streak = previous.consecutive if previous is not None and previous.version == version else 0
    if evaluation.verdict == "Drifted":
        streak += 1
    elif evaluation.verdict == "NoDrift":
        streak = 0
    return DriftStatus(
        evaluated_at=now,
        version=version,
        verdict=evaluation.verdict,
        message=evaluation.message,
        window_seconds=round(window_seconds, 1),
        samples=evaluation.samples,
        pods=pods,
        drifted_features=evaluation.drifted_features,
        consecutive=streak,
        live_accuracy=evaluation.live_accuracy,
        live_mean_absolute_error=evaluation.live_mean_absolute_error,
        feedback=evaluation.feedback,
        scores=evaluation.scores[:MAX_SCORES],
    )


def drift_detected(drift: DriftStatus | None, monitoring: Monitoring) -> bool:
    """Whether the streak of ``drift`` has reached what ``monitoring`` asks for."""
    return drift is not None and drift.consecutive >= monitoring.consecutive


def apply_drift(
    status: DeploymentStatus,
    drift: DriftStatus,
    monitoring: Monitoring,
    *,
    now: str,
    generation: int | None,
) -> list[Event]:
    """Write ``drift`` and the DriftDetected condition into ``status``; the Events to post."""
    was = condition(status.conditions, DRIFT_CONDITION)
    detected = drift_detected(drift, monitoring)
    state: ConditionStatus = "True" if detected else "False"
    if detected:
        reason = "Drifted"
        message = f"{drift.consecutive} checks in a row found drift: {drift.message}"
    elif drift.verdict == "Drifted":
        reason = "Drifting"
        message = (
            f"drift found by {drift.consecutive} of the {monitoring.consecutive} checks in a "
            f"row needed: {drift.message}"
        )
    elif was is not None and was.status == "True" and drift.verdict != "NoDrift":
        # Too little data to say the drift ended: the condition holds.
        reason, message, state = was.reason, was.message, "True"
    else:
        reason = {"NoDrift": "NoDrift", "InsufficientData": "InsufficientData"}.get(
            drift.verdict, "NoBaseline"
        )
        message = drift.message
    status.drift = drift
    status.conditions = set_condition(
        status.conditions,
        type_=DRIFT_CONDITION,
        status=state,
        reason=reason,
        message=f"{drift.version}: {message}"[:1000],
        now=now,
        generation=generation,
    )
    events: list[Event] = []
    if state == "True" and (was is None or was.status != "True"):
        events.append(Event("Warning", "DriftDetected", f"{drift.version}: {message}"))
    elif state == "False" and was is not None and was.status == "True":
        events.append(Event("Normal", "DriftResolved", f"{drift.version}: {message}"))
    return events


def monitoring_off(status: DeploymentStatus, *, now: str, generation: int | None) -> None:
    """Monitoring disabled (or nothing served): no drift verdict stands."""
    status.conditions = set_condition(
        status.conditions,
        type_=DRIFT_CONDITION,
        status="False",
        reason="NotMonitored",
        message="spec.monitoring.enabled is false, or no stable version is served",
        now=now,
        generation=generation,
    )
