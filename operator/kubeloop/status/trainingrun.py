"""How a TrainingRun's status follows its Indexed Job and the trials' own answers.

Each trial pod ends with a termination message from the trainer (``{"ok": true, "trial": i,
"score": ..., "metrics": {...}, ...}`` or ``{"ok": false, "reason": ..., "message": ...}``).
The trials table is rebuilt from those answers, the best trial is chosen by the search metric
in its natural direction, and a failed run carries the trainer's own reason rather than the
Job controller's generic one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from kubeloop.api.estimators import LOWER_IS_BETTER
from kubeloop.api.trainingrun import TrainingRunStatus, TrialCounts, TrialResult
from kubeloop.status.conditions import set_condition

JobOutcome = Literal["Complete", "Failed"]


@dataclass(frozen=True)
class JobProgress:
    """What the Job says about its pods."""

    active: int
    succeeded: int
    failed: int
    outcome: JobOutcome | None
    message: str = ""


def direction_of(metric: str, declared: str | None) -> Literal["maximize", "minimize"]:
    """The declared direction, else the metric's natural one (loss and errors: lower)."""
    if declared in ("maximize", "minimize"):
        return declared  # type: ignore[return-value]
    return "minimize" if metric in LOWER_IS_BETTER else "maximize"


def best_trial(
    trials: list[TrialResult], direction: Literal["maximize", "minimize"]
) -> TrialResult | None:
    """The succeeded trial with the best score; ties go to the lower index (deterministic)."""
    scored = [t for t in trials if t.phase == "Succeeded" and t.score is not None]
    if not scored:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(scored, key=lambda t: (sign * float(t.score or 0.0), t.index))


def trial_from_answer(index: int, answer: dict[str, Any]) -> TrialResult:
    """One row of the trials table from a trainer's termination message."""
    if answer.get("ok"):
        return TrialResult(
            index=index,
            phase="Succeeded",
            params=dict(answer.get("params") or {}),
            score=answer.get("score"),
            metrics={
                k: float(v)
                for k, v in (answer.get("metrics") or {}).items()
                if isinstance(v, int | float)
            },
            artifact_uri=answer.get("artifactURI"),
        )
    reason = str(answer.get("reason") or "TrialFailed")
    return TrialResult(
        index=index,
        phase="Failed",
        params=dict(answer.get("params") or {}),
        message=f"{reason}: {answer.get('message') or 'the trainer gave no message'}",
    )


def run_started(
    current: TrainingRunStatus,
    *,
    job: str,
    dataset_version: str,
    trials: int,
    metric: str,
    now: str,
    generation: int | None,
) -> TrainingRunStatus:
    """The status once the Job exists and the dataset version is pinned."""
    status = current.model_copy(deep=True)
    status.observed_generation = generation
    status.job_name = job
    status.dataset_version = status.dataset_version or dataset_version
    status.metric = metric
    status.start_time = status.start_time or now
    if status.phase == "Pending":
        status.phase = "Running"
        status.message = f"{trials} trial(s) on dataset version {status.dataset_version}"
    status.trials = status.trials or TrialCounts(total=trials)
    status.conditions = set_condition(
        status.conditions,
        type_="Complete",
        status="False",
        reason="Running",
        message=status.message,
        now=now,
        generation=generation,
    )
    return status


def trials_observed(
    current: TrainingRunStatus,
    *,
    answers: dict[int, dict[str, Any]],
    progress: JobProgress,
    direction: Literal["maximize", "minimize"],
    now: str,
    generation: int | None,
) -> TrainingRunStatus:
    """The status after looking at the Job and its finished pods' answers."""
    status = current.model_copy(deep=True)
    status.observed_generation = generation
    rows = {t.index: t for t in status.trial_results}
    for index, answer in answers.items():
        rows[index] = trial_from_answer(index, answer)
    status.trial_results = [rows[i] for i in sorted(rows)]
    total = status.trials.total if status.trials else len(rows)
    succeeded = sum(1 for t in status.trial_results if t.phase == "Succeeded")
    failed = sum(1 for t in status.trial_results if t.phase == "Failed")
    status.trials = TrialCounts(
        total=total, succeeded=succeeded, failed=failed, active=progress.active
    )
    best = best_trial(status.trial_results, direction)
    status.best_trial = best.index if best else None
    status.best_score = best.score if best else None

    if progress.outcome is None:
        status.phase = "Running"
        status.message = (
            f"{succeeded}/{total} trial(s) done, {failed} failed, {progress.active} running"
        )
        return status
    status.completion_time = status.completion_time or now
    if best is not None:
        status.phase = "Succeeded"
        status.message = (
            f"best trial {best.index}: {status.metric}={best.score:.4g} "
            f"({succeeded}/{total} trials succeeded)"
        )
        cond_status, reason = "True", "TrialsFinished"
    else:
        failures = [t.message for t in status.trial_results if t.phase == "Failed" and t.message]
        status.phase = "Failed"
        status.message = (
            failures[0] if failures else (progress.message or "the training Job failed")
        )
        cond_status, reason = "False", "TrainingFailed"
    status.conditions = set_condition(
        status.conditions,
        type_="Complete",
        status=cond_status,  # type: ignore[arg-type]
        reason=reason,
        message=status.message,
        now=now,
        generation=generation,
    )
    return status
