"""The ModelVersion written for a winning trial: name, immutable facts, lineage, valid per the API."""

from __future__ import annotations

from kubeloop.api.modelversion import ModelVersion, Signature
from kubeloop.api.trainingrun import TrainingRunSpec
from kubeloop.resources.modelversion import build_model_version, model_version_name

SPEC = TrainingRunSpec.model_validate(
    {
        "datasetRef": {"name": "churn"},
        "modelName": "churn",
        "estimator": {
            "name": "RandomForestClassifier",
            "params": {"n_estimators": 50, "max_depth": 3},
        },
        "gates": {"thresholds": [{"metric": "f1", "min": 0.5}]},
    }
)
SIGNATURE = Signature.model_validate(
    {
        "inputs": [
            {"name": "tenure", "type": "integer"},
            {"name": "plan", "type": "category", "categories": ["a"]},
        ],
        "output": {"task": "classification", "labels": ["no", "yes"]},
    }
)
ANSWER = {
    "ok": True,
    "trial": 3,
    "params": {"max_depth": 8},
    "score": 0.71,
    "metrics": {"f1": 0.7, "accuracy": 0.8},
    "artifactURI": "s3://kubeloop/runs/ml/churn-search/trials/3/",
    "modelSHA256": "a" * 64,
    "modelSizeBytes": 1234,
    "opset": 17,
}


def test_model_version_is_valid_and_carries_the_facts() -> None:
    body = build_model_version(
        namespace="ml",
        run_name="churn-search",
        spec=SPEC,
        version=4,
        trial=3,
        answer=ANSWER,
        signature=SIGNATURE,
        dataset_version="sha256:" + "b" * 64,
        image="ghcr.io/kubeloop/kubeloop:0.1.0",
    )
    model = ModelVersion.model_validate(body)  # what the API server will accept
    assert body["metadata"]["name"] == model_version_name("churn", 4) == "churn-v4"
    assert body["metadata"]["labels"]["kubeloop.io/trainingrun"] == "churn-search"
    assert model.spec.artifact.uri == "s3://kubeloop/runs/ml/churn-search/trials/3/model.onnx"
    assert model.spec.artifact.sha256 == "a" * 64
    assert model.spec.artifact.size_bytes == 1234 and model.spec.artifact.opset == 17
    # The trial's search params override the fixed ones.
    assert model.spec.lineage.params == {"n_estimators": 50, "max_depth": 8}
    assert model.spec.lineage.trial == 3
    assert model.spec.metrics == {"f1": 0.7, "accuracy": 0.8}
    assert model.spec.stage == "None"
    assert model.spec.gates.thresholds[0].metric == "f1"
    assert "ownerReferences" not in body["metadata"]  # registry entries outlive their runs
    assert model.spec.champion_score is None  # no Production version when it was trained


def test_the_champion_scored_by_the_trainer_is_recorded() -> None:
    answer = {
        **ANSWER,
        "champion": {"name": "churn-v3", "sha256": "c" * 64, "rows": 400, "metrics": {"f1": 0.66}},
    }
    body = build_model_version(
        namespace="ml",
        run_name="churn-search",
        spec=SPEC,
        version=4,
        trial=3,
        answer=answer,
        signature=SIGNATURE,
        dataset_version="sha256:" + "b" * 64,
        image="img",
    )
    score = ModelVersion.model_validate(body).spec.champion_score
    assert score is not None
    assert (score.name, score.rows, score.metrics, score.error) == (
        "churn-v3",
        400,
        {"f1": 0.66},
        "",
    )
