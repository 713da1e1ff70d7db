"""``kubeloop rollout``: which spec fields each control writes, and the status summary."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubeloop.api.deployment import RetrainPolicy
from kubeloop.rollout_cli import _fields, _spec_change, describe


@pytest.mark.parametrize(
    ("action", "change"),
    [
        ("pause", {"paused": True}),
        ("resume", {"paused": False}),
        ("abort", {"abort": True, "promote": None}),
        ("retry", {"abort": False}),
        ("promote", {"promote": "churn-v3", "abort": False}),
    ],
)
def test_each_control_writes_the_fields_gitops_would(
    action: str, change: dict[str, object]
) -> None:
    assert _spec_change(action, {"candidateVersion": "churn-v3"}) == change


def test_retrain_writes_a_new_request_token_the_api_accepts() -> None:
    spec = {"retrain": {"template": "churn-search"}}
    first = _spec_change("retrain", {}, spec, datetime(2026, 12, 7, 13, 5, 1, 250, tzinfo=UTC))
    second = _spec_change("retrain", {}, spec, datetime(2026, 12, 7, 13, 5, 2, tzinfo=UTC))
    assert first == {"retrain": {"request": "cli-20261207T130501.000250Z"}}
    assert first != second  # a new value is what retrains again
    policy = RetrainPolicy.model_validate({**spec["retrain"], **first["retrain"]})
    assert policy.request == "cli-20261207T130501.000250Z"
    assert _fields(first, "spec") == ["spec.retrain.request=cli-20261207T130501.000250Z"]
    with pytest.raises(ValueError, match=r"no spec.retrain policy"):
        _spec_change("retrain", {}, {"model": {"version": "churn-v1"}})


def test_promote_names_the_candidate_or_refuses() -> None:
    with pytest.raises(ValueError, match="no candidate version"):
        _spec_change("promote", {"stableVersion": "churn-v2"})


def test_describe_shows_versions_weights_and_the_last_analysis() -> None:
    body = {
        "metadata": {"name": "churn"},
        "spec": {"paused": True},
        "status": {
            "phase": "Progressing",
            "message": "step 1/3",
            "stableVersion": "churn-v2",
            "candidateVersion": "churn-v3",
            "canaryWeight": 10,
            "versions": [
                {"version": "churn-v2", "role": "stable", "weight": 90, "readyReplicas": 1},
                {"version": "churn-v3", "role": "canary", "weight": 10, "readyReplicas": 1},
            ],
            "analysis": [
                {
                    "step": 0,
                    "verdict": "Fail",
                    "results": [
                        {"check": "p99Latency", "verdict": "Fail", "message": "31 ms > 10 ms"}
                    ],
                }
            ],
        },
    }
    text = describe(body)
    assert "churn-v3 at 10%  (paused)" in text
    assert "churn-v3" in text and "canary" in text
    assert "p99Latency: Fail - 31 ms > 10 ms" in text


def test_describe_shows_the_last_drift_check_and_retrain() -> None:
    body = {
        "metadata": {"name": "iris"},
        "spec": {},
        "status": {
            "phase": "Healthy",
            "drift": {"version": "iris-v1", "verdict": "Drifted", "message": "2 of 4 drifted"},
            "lastRetrain": {
                "name": "iris-retrain-1",
                "trigger": "Drift",
                "phase": "Training",
                "message": "TrainingRun iris-retrain-1 is Running",
            },
        },
    }
    text = describe(body)
    assert "drift of iris-v1: Drifted - 2 of 4 drifted" in text
    assert "last retrain iris-retrain-1 (Drift): Training - TrainingRun iris-retrain-1" in text
