"""The API models: allowlist against scikit-learn, rules, durations, wire format, error wording."""

from __future__ import annotations

import importlib
from typing import Any, get_args

import pytest

from kubeloop.api.deployment import CanaryStrategy, DeploymentSpec
from kubeloop.api.estimators import ESTIMATORS, EstimatorName
from kubeloop.api.meta import KubeloopModel, duration_seconds
from kubeloop.api.trainingrun import TrainingRunSpec
from kubeloop.api.validation import ManifestError, field_path, validate_manifest


def test_allowlist_matches_the_literal() -> None:
    assert set(ESTIMATORS) == set(get_args(EstimatorName))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_allowlisted_params_exist_in_sklearn(name: str) -> None:
    info = ESTIMATORS[name]
    module_name, class_name = info.sklearn_class.rsplit(".", 1)
    estimator = getattr(importlib.import_module(module_name), class_name)()
    accepted = set(estimator.get_params())
    assert set(info.params) <= accepted, set(info.params) - accepted
    is_classifier = hasattr(estimator, "predict_proba") or hasattr(estimator, "decision_function")
    assert is_classifier == (info.task == "classification")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "m", "5x", "1h5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        duration_seconds(text)


def test_field_path_renders_indices() -> None:
    assert field_path(("spec", "strategy", "canary", "steps", 1, "weight")) == (
        "spec.strategy.canary.steps[1].weight"
    )


def test_wire_format_is_camel_case_and_round_trips() -> None:
    spec = TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "iris"},
            "modelName": "iris",
            "estimator": {"name": "RandomForestClassifier", "params": {"n_estimators": 50}},
            "search": {
                "space": {"max_depth": {"range": {"min": 2, "max": 8, "integer": True}}},
                "metric": "f1",
                "trials": 4,
            },
        }
    )
    wire = spec.to_wire()
    assert wire["datasetRef"] == {"name": "iris"}
    assert wire["split"]["validationFraction"] == 0.15
    assert wire["activeDeadlineSeconds"] == 3600
    assert TrainingRunSpec.model_validate(wire) == spec


def test_strict_types_refuse_coercion() -> None:
    with pytest.raises(ManifestError, match="must be of type integer"):
        validate_manifest(
            {
                "apiVersion": "kubeloop.io/v1alpha1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {"model": {"version": "iris-v1"}, "replicas": "3"},
            }
        )


@pytest.mark.parametrize(
    ("weights", "ok"),
    [
        ([10, 50, 100], True),
        ([10], True),
        ([10, 10], False),
        ([50, 20], False),
        ([5, 50, 40], False),
    ],
)
def test_canary_steps_strictly_increasing(weights: list[int], ok: bool) -> None:
    steps: list[dict[str, Any]] = [{"weight": weight} for weight in weights]
    if ok:
        CanaryStrategy.model_validate({"steps": steps})
    else:
        with pytest.raises(ValueError, match="strictly increasing"):
            CanaryStrategy.model_validate({"steps": steps})


def test_defaults_fill_nested_objects() -> None:
    spec = DeploymentSpec.model_validate({"model": {"track": {"model": "iris"}}})
    assert spec.strategy.type == "Canary"
    assert spec.monitoring.methods == ["psi"]
    assert spec.traffic.router == "Builtin"
    assert spec.model.track is not None and spec.model.track.stage == "Production"


def _all_models() -> list[type[KubeloopModel]]:
    found: list[type[KubeloopModel]] = []
    pending: list[type[KubeloopModel]] = [KubeloopModel]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


def test_every_field_is_described() -> None:
    importlib.import_module("kubeloop.api")
    undocumented = [
        f"{model.__name__}.{name}"
        for model in _all_models()
        if model.__module__.startswith("kubeloop.api")
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert undocumented == []


def test_object_defaults_are_complete_and_valid() -> None:
    """The API server checks an object default against CEL without applying nested defaults,
    so every object default must be complete and valid as written."""
    importlib.import_module("kubeloop.api")
    defaulted = [
        (field.annotation, field.json_schema_extra["default"])
        for model in _all_models()
        for field in model.model_fields.values()
        if isinstance(field.json_schema_extra, dict)
        and isinstance(field.json_schema_extra.get("default"), dict)
    ]
    assert len(defaulted) >= 5
    for annotation, default in defaulted:
        assert isinstance(annotation, type) and issubclass(annotation, KubeloopModel)
        parsed = annotation.model_validate(default)
        assert parsed.to_wire() == default  # nothing left for nested defaulting to fill


def test_latency_and_fairness_gates_fit_every_task() -> None:
    spec = TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "houses"},
            "modelName": "houses",
            "estimator": {"name": "Ridge"},
            "gates": {
                "thresholds": [
                    {"metric": "latency_p99_ms", "max": 5},
                    {"metric": "rmse", "max": 30000},
                ]
            },
        }
    )
    assert [t.metric for t in spec.gates.thresholds] == ["latency_p99_ms", "rmse"]
    with pytest.raises(
        ValueError, match=r"gates\.thresholds must use metrics of the estimator's task"
    ):
        TrainingRunSpec.model_validate(
            {
                "datasetRef": {"name": "houses"},
                "modelName": "houses",
                "estimator": {"name": "Ridge"},
                "gates": {"thresholds": [{"metric": "f1", "min": 0.5}]},
            }
        )
