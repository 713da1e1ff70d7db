"""The loop demo's manifests are valid kubeloop objects and its check lines say what happened."""

from __future__ import annotations

from kubeloop.api.dataset import Dataset
from kubeloop.api.deployment import Deployment
from kubeloop.api.trainingrun import TrainingRun
from kubeloop.devenv.demo_loop import drift_line, loop_deployment, loop_manifests


def test_the_manifests_are_valid_and_wired_to_each_other() -> None:
    training, template, feedback = loop_manifests("s3://demo/iris/iris-a.csv")
    Dataset.model_validate(training)
    run = TrainingRun.model_validate(template)
    live = Dataset.model_validate(feedback)
    deployment = Deployment.model_validate(loop_deployment())
    assert run.spec.dataset_ref.name == training["metadata"]["name"]
    retrain = deployment.spec.retrain
    assert retrain is not None
    assert retrain.template == template["metadata"]["name"]
    assert retrain.dataset == feedback["metadata"]["name"]
    assert live.spec.source.prediction_log is not None
    assert live.spec.source.prediction_log.deployment == deployment.metadata.name


def test_a_check_line_shows_verdict_streak_and_each_features_scores() -> None:
    drift = {
        "version": "iris-v1",
        "verdict": "Drifted",
        "consecutive": 2,
        "samples": 2400,
        "scores": [
            {"feature": "petal_length", "method": "psi", "score": 0.5381, "drifted": True},
            {"feature": "petal_length", "method": "ks", "score": 0.05, "drifted": False},
            {"feature": "prediction", "method": "psi", "score": 1.2, "drifted": True},
        ],
    }
    assert drift_line(drift) == (
        "  drift of iris-v1: Drifted (streak 2, 2400 predictions) | petal_length psi 0.538! ks 0.050"
    )
