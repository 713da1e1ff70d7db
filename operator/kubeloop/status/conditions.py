"""Conditions as the Kubernetes API conventions define them.

``lastTransitionTime`` changes only when ``status`` does, so a condition says since when it
has held, not when the controller last looked.
"""

from __future__ import annotations

from kubeloop.api.meta import Condition, ConditionStatus


def set_condition(
    conditions: list[Condition],
    *,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """``conditions`` with ``type_`` set; other conditions keep their order and values."""
    previous = next((c for c in conditions if c.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == status else now
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    if previous is None:
        return [*conditions, updated]
    return [updated if c.type == type_ else c for c in conditions]


def condition(conditions: list[Condition], type_: str) -> Condition | None:
    """The condition of ``type_``, if present."""
    return next((c for c in conditions if c.type == type_), None)
