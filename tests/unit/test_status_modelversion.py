"""Gates against hand-made numbers: thresholds, champion in both directions, fairness, missing metrics."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.api.modelversion import ChampionScore, ModelVersionSpec, ModelVersionStatus
from kubeloop.status.modelversion import (
    ArtifactCheck,
    evaluate_gates,
    gates_evaluated,
    primary_metric,
)

NOW = "2026-11-27T10:00:00Z"


def _spec(metrics: dict[str, float], gates: dict[str, Any]) -> ModelVersionSpec:
    return ModelVersionSpec.model_validate(
        {
            "model": "churn",
            "version": 2,
            "artifact": {"uri": "s3://kubeloop/m/model.onnx", "sha256": "a" * 64},
            "signature": {
                "inputs": [{"name": "x", "type": "number"}],
                "output": {"task": "classification"},
            },
            "metrics": metrics,
            "lineage": {
                "trainingRun": "r",
                "dataset": "d",
                "datasetVersion": "sha256:" + "b" * 64,
                "estimator": "LogisticRegression",
            },
            "gates": gates,
        }
    )


def test_thresholds_pass_and_fail_with_numbers() -> None:
    spec = _spec(
        {"f1": 0.8, "log_loss": 0.5}, {"thresholds": [{"metric": "f1", "min": 0.75, "max": 0.79}]}
    )
    results = evaluate_gates(spec, None)
    assert [(r.gate, r.passed) for r in results] == [
        ("threshold:f1:min", True),
        ("threshold:f1:max", False),
    ]
    assert results[1].message == "f1 0.8 misses <= 0.79"
    status = gates_evaluated(ModelVersionStatus(), spec, None, now=NOW, generation=1)
    assert status.phase == "Rejected"
    assert status.message == "f1 0.8 misses <= 0.79"


def test_impossible_gate_rejects() -> None:
    spec = _spec({"f1": 0.72}, {"thresholds": [{"metric": "f1", "min": 0.99}]})
    status = gates_evaluated(ModelVersionStatus(), spec, None, now=NOW, generation=1)
    assert status.phase == "Rejected"
    assert status.gate_results[0].observed == 0.72 and status.gate_results[0].threshold == 0.99


@pytest.mark.parametrize(
    ("metric", "mine", "theirs", "min_improvement", "passed"),
    [
        ("f1", 0.80, 0.78, 0.0, True),
        ("f1", 0.78, 0.80, 0.0, False),
        ("f1", 0.795, 0.80, -0.01, True),  # tolerated small loss
        ("log_loss", 0.40, 0.45, 0.0, True),  # lower is better
        ("log_loss", 0.50, 0.45, 0.0, False),
    ],
)
def test_champion_gate(
    metric: str, mine: float, theirs: float, min_improvement: float, passed: bool
) -> None:
    spec = _spec(
        {metric: mine}, {"champion": {"metric": metric, "minImprovement": min_improvement}}
    )
    (result,) = evaluate_gates(spec, ("churn-v1", {metric: theirs}))
    assert result.passed is passed
    assert result.threshold == theirs
    assert "churn-v1" in result.message


@pytest.mark.parametrize(
    ("score", "reference", "basis"),
    [
        # Scored on this version's test set: that number decides, whatever the stored one says.
        ({"name": "churn-v1", "rows": 400, "metrics": {"f1": 0.81}}, 0.81, "both on this"),
        # The trainer could not score it: stored metric, and the reason is shown.
        ({"name": "churn-v1", "error": "churn-v1 needs column(s) ['x2']"}, 0.78, "needs column"),
        # Production changed since training: the scored one is not the champion any more.
        ({"name": "churn-v0", "metrics": {"f1": 0.5}}, 0.78, "the trainer scored churn-v0"),
        (None, 0.78, "was not scored on this version's test set"),
    ],
)
def test_champion_gate_prefers_the_score_on_the_same_test_set(
    score: dict[str, Any] | None, reference: float, basis: str
) -> None:
    spec = _spec({"f1": 0.80}, {"champion": {"metric": "f1"}})
    if score is not None:
        spec = spec.model_copy(update={"champion_score": ChampionScore.model_validate(score)})
    (result,) = evaluate_gates(spec, ("churn-v1", {"f1": 0.78}))
    assert result.threshold == reference
    assert result.passed is (reference <= 0.80)
    assert basis in result.message


def test_no_champion_passes_and_missing_metric_fails() -> None:
    spec = _spec(
        {"f1": 0.7},
        {"champion": {"metric": "f1"}, "thresholds": [{"metric": "roc_auc", "min": 0.5}]},
    )
    results = {r.gate: r for r in evaluate_gates(spec, None)}
    assert results["champion:f1"].passed is True
    assert results["threshold:roc_auc:min"].passed is False
    assert results["threshold:roc_auc:min"].message == "roc_auc was not measured"


def test_fairness_gate() -> None:
    fair = _spec({"demographic_parity_difference": 0.04}, {"maxFairnessGap": 0.1})
    unfair = _spec({"demographic_parity_difference": 0.2}, {"maxFairnessGap": 0.1})
    assert evaluate_gates(fair, None)[0].passed is True
    assert evaluate_gates(unfair, None)[0].passed is False


def test_all_passed_is_validated_with_a_headline_metric() -> None:
    spec = _spec(
        {"f1": 0.9, "accuracy": 0.93}, {"thresholds": [{"metric": "accuracy", "min": 0.9}]}
    )
    status = gates_evaluated(
        ModelVersionStatus(), spec, ("churn-v1", {"f1": 0.8}), now=NOW, generation=3
    )
    assert status.phase == "Validated"
    assert status.primary_metric == "accuracy=0.93"
    assert status.champion == "churn-v1"
    assert status.observed_generation == 3
    assert primary_metric(_spec({}, {})) is None


def test_a_bad_artifact_rejects_whatever_the_gates_say() -> None:
    spec = _spec({"f1": 0.9}, {"thresholds": [{"metric": "f1", "min": 0.5}]})
    bad = ArtifactCheck(False, "s3://b/m.onnx has sha256 abc, the ModelVersion says def")
    status = gates_evaluated(ModelVersionStatus(), spec, None, now=NOW, generation=1, artifact=bad)
    assert status.phase == "Rejected"
    assert status.artifact_verified is False
    assert status.message.startswith("artifact not verified: s3://b/m.onnx has sha256 abc")
    (condition,) = [c for c in status.conditions if c.type == "ArtifactVerified"]
    assert (condition.status, condition.reason) == ("False", "DigestMismatch")

    good = ArtifactCheck(True, "sha256 re-read")
    status = gates_evaluated(ModelVersionStatus(), spec, None, now=NOW, generation=1, artifact=good)
    assert (status.phase, status.artifact_verified) == ("Validated", True)

    unknown = ArtifactCheck(None, "not checked")
    status = gates_evaluated(
        ModelVersionStatus(), spec, None, now=NOW, generation=1, artifact=unknown
    )
    assert (status.phase, status.artifact_verified) == ("Validated", None)
