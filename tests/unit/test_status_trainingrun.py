"""TrainingRun status: trials table, best trial by direction, the trainer's own failure reason."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.api.trainingrun import TrainingRunStatus, TrialResult
from kubeloop.status.trainingrun import (
    JobProgress,
    best_trial,
    direction_of,
    run_started,
    trials_observed,
)

NOW = "2026-11-27T10:00:00Z"
LATER = "2026-11-27T10:05:00Z"


def _ok(trial: int, score: float) -> dict[str, Any]:
    return {
        "ok": True,
        "trial": trial,
        "params": {"max_depth": trial + 2},
        "score": score,
        "metric": "f1",
        "metrics": {"f1": score, "accuracy": score + 0.01},
        "artifactURI": f"s3://kubeloop/trainingruns/ml/churn/trial-{trial}/",
    }


def _started(trials: int = 3) -> TrainingRunStatus:
    return run_started(
        TrainingRunStatus(),
        job="churn-train",
        dataset_version="sha256:" + "a" * 64,
        trials=trials,
        metric="f1",
        now=NOW,
        generation=1,
    )


@pytest.mark.parametrize(
    ("metric", "declared", "expected"),
    [
        ("f1", None, "maximize"),
        ("rmse", None, "minimize"),
        ("log_loss", None, "minimize"),
        ("rmse", "maximize", "maximize"),
    ],
)
def test_direction(metric: str, declared: str | None, expected: str) -> None:
    assert direction_of(metric, declared) == expected


def test_best_trial_respects_direction_and_breaks_ties_by_index() -> None:
    trials = [
        TrialResult(index=0, phase="Succeeded", score=0.8),
        TrialResult(index=1, phase="Succeeded", score=0.9),
        TrialResult(index=2, phase="Succeeded", score=0.9),
        TrialResult(index=3, phase="Failed", message="x"),
    ]
    best_max = best_trial(trials, "maximize")
    best_min = best_trial(trials, "minimize")
    assert best_max is not None and best_max.index == 1
    assert best_min is not None and best_min.index == 0
    assert best_trial([TrialResult(index=0, phase="Failed")], "maximize") is None


def test_running_then_succeeded_with_the_best_trial() -> None:
    status = _started()
    assert status.phase == "Running"
    assert status.trials is not None and status.trials.total == 3
    status = trials_observed(
        status,
        answers={0: _ok(0, 0.81)},
        progress=JobProgress(active=2, succeeded=1, failed=0, outcome=None),
        direction="maximize",
        now=NOW,
        generation=1,
    )
    assert status.phase == "Running"
    assert status.best_trial == 0
    status = trials_observed(
        status,
        answers={1: _ok(1, 0.93), 2: _ok(2, 0.88)},
        progress=JobProgress(active=0, succeeded=3, failed=0, outcome="Complete"),
        direction="maximize",
        now=LATER,
        generation=1,
    )
    assert status.phase == "Succeeded"
    assert status.best_trial == 1
    assert status.best_score == 0.93
    assert [t.index for t in status.trial_results] == [0, 1, 2]
    assert status.trials is not None and status.trials.succeeded == 3
    assert status.completion_time == LATER
    assert "best trial 1: f1=0.93" in status.message


def test_failed_run_carries_the_trainers_reason() -> None:
    answer = {
        "ok": False,
        "trial": 0,
        "reason": "MissingColumn",
        "message": "column 'age' is not in the dataset",
    }
    status = trials_observed(
        _started(trials=1),
        answers={0: answer},
        progress=JobProgress(
            active=0, succeeded=0, failed=2, outcome="Failed", message="BackoffLimitExceeded"
        ),
        direction="maximize",
        now=LATER,
        generation=1,
    )
    assert status.phase == "Failed"
    assert status.message == "MissingColumn: column 'age' is not in the dataset"
    complete = next(c for c in status.conditions if c.type == "Complete")
    assert complete.status == "False" and complete.reason == "TrainingFailed"


def test_a_failed_job_with_one_good_trial_still_succeeds() -> None:
    status = trials_observed(
        _started(trials=2),
        answers={
            0: _ok(0, 0.7),
            1: {"ok": False, "trial": 1, "reason": "InvalidParameter", "message": "bad"},
        },
        progress=JobProgress(active=0, succeeded=1, failed=1, outcome="Failed"),
        direction="maximize",
        now=LATER,
        generation=1,
    )
    assert status.phase == "Succeeded"
    assert status.best_trial == 0
    assert status.trials is not None and status.trials.failed == 1


def test_pinned_version_is_never_replaced() -> None:
    status = _started()
    again = run_started(
        status,
        job="churn-train",
        dataset_version="sha256:" + "b" * 64,
        trials=3,
        metric="f1",
        now=LATER,
        generation=1,
    )
    assert again.dataset_version == "sha256:" + "a" * 64
    assert again.start_time == NOW
