"""``kubeloop rollout``: which spec fields each control writes, and the status summary."""

from __future__ import annotations

import pytest

from kubeloop.rollout_cli import _spec_change, describe


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
