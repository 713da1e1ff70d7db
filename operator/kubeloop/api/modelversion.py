"""The ModelVersion API: one immutable entry of the model registry, with a writable stage.

The operator creates a ModelVersion from the best trial of a TrainingRun. Everything that
describes the artifact (its URI and sha256, signature, metrics and lineage) is written once
and the API server refuses later changes (CEL transition rules). ``spec.stage`` is the one
field people change: None → Staging → Production → Archived. Gates decide whether the
version is Validated (servable) or Rejected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubeloop.api.estimators import EstimatorName, Task
from kubeloop.api.meta import (
    CelRule,
    ColumnName,
    Condition,
    DatasetVersion,
    KubeloopModel,
    ModelName,
    ObjectMeta,
    ParamValue,
    ResourceName,
    S3Uri,
    Timestamp,
    conditions_field,
    object_default_field,
    observed_generation_field,
)
from kubeloop.api.trainingrun import Gates

Stage = Literal["None", "Staging", "Production", "Archived"]
ModelVersionPhase = Literal["Pending", "Validated", "Rejected"]
FeatureType = Literal["number", "integer", "category", "boolean"]
OTHER_CATEGORY = "__other__"
"""Where the server counts a category it was not told about (and a label not in the signature)."""


def spell_category(value: object) -> str:
    """A category as the model sees it: booleans as true/false, anything else as its text.

    The server counts profile categories by this spelling and the drift monitor reads the
    profile's baseline by it, so the two always name a category the same way.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_IMMUTABLE = CelRule(
    rule="self == oldSelf", message="is immutable once the ModelVersion exists", holds=None
)


class Artifact(KubeloopModel):
    """The model file. Servers verify ``sha256`` before they load it."""

    cel_rules = (_IMMUTABLE,)

    uri: S3Uri = Field(description="s3:// URI of model.onnx.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="Hex sha256 of the model file, computed while it was uploaded.",
    )
    format: Literal["onnx"] = Field(
        default="onnx", description="Model format. Only ONNX is served; nothing is ever unpickled."
    )
    size_bytes: int | None = Field(default=None, ge=0, description="Size of the model file.")
    opset: int | None = Field(
        default=None, ge=1, description="ONNX opset the model was exported with."
    )


class FeatureSpec(KubeloopModel):
    """One input column of the model."""

    name: ColumnName = Field(description="Column name, as in the training data.")
    type: FeatureType = Field(description="number, integer, category or boolean.")
    nullable: bool = Field(
        default=False, description="Whether a missing value is accepted (imputed)."
    )
    categories: list[str] | None = Field(
        default=None,
        max_length=10000,
        description="Categories seen in training (unknown ones are accepted and ignored by the encoder).",
    )


class OutputSpec(KubeloopModel):
    """What the model returns."""

    task: Task = Field(description="classification or regression.")
    labels: list[str] | None = Field(
        default=None,
        max_length=10000,
        description="Class labels in the order of the probability outputs (classification).",
    )


class Signature(KubeloopModel):
    """The model's inputs and outputs; requests are validated against it."""

    cel_rules = (_IMMUTABLE,)

    inputs: list[FeatureSpec] = Field(
        min_length=1,
        max_length=2000,
        description="Input columns in model order.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    output: OutputSpec = Field(description="Output of the model.")


class Lineage(KubeloopModel):
    """Where the version came from, enough to reproduce it."""

    cel_rules = (_IMMUTABLE,)

    training_run: str = Field(description="TrainingRun that produced the version.")
    trial: int | None = Field(default=None, ge=0, description="Winning trial index.")
    dataset: str = Field(description="Dataset trained on.")
    dataset_version: DatasetVersion = Field(description="Pinned Dataset version.")
    estimator: EstimatorName = Field(description="Estimator class from the allowlist.")
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Effective estimator parameters.",
        json_schema_extra={"maxProperties": 48},
    )
    image: str | None = Field(default=None, description="Trainer image (with digest when known).")
    seed: int | None = Field(default=None, description="Seed of the run.")
    kubeloop_version: str | None = Field(
        default=None, description="kubeloop version of the trainer."
    )


class ChampionScore(KubeloopModel):
    """The Production version at training time, scored by the trainer on this version's test set.

    The champion gate compares like with like: both models on the same rows. ``error`` says why
    the champion could not be scored (then the gate falls back to its stored metrics and says so).
    """

    cel_rules = (_IMMUTABLE,)

    name: ResourceName = Field(description="The Production ModelVersion that was scored.")
    rows: int | None = Field(default=None, ge=0, description="Test rows it was scored on.")
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Its metrics on this version's test set.",
        json_schema_extra={"maxProperties": 64},
    )
    error: str = Field(default="", max_length=1024, description="Why it could not be scored.")


class ModelVersionSpec(KubeloopModel):
    """Desired state of a ModelVersion: immutable facts plus a writable stage."""

    cel_rules = (
        CelRule(
            rule="self.model == oldSelf.model && self.version == oldSelf.version",
            message="model and version are immutable once the ModelVersion exists",
            holds=None,
        ),
        CelRule(
            rule="!has(oldSelf.metrics) || (has(self.metrics) && self.metrics == oldSelf.metrics)",
            message="metrics are immutable once written",
            holds=None,
        ),
        CelRule(
            rule="has(self.championScore) == has(oldSelf.championScore)",
            message="championScore is immutable once the ModelVersion exists",
            holds=None,
        ),
        CelRule(
            rule="oldSelf.stage != 'Archived' || self.stage in ['Archived', 'Staging']",
            message="an Archived version can only move back to Staging",
            holds=None,
        ),
    )

    model: ModelName = Field(description="Registry name of the model.")
    version: int = Field(ge=1, description="Version number, increasing per model.")
    artifact: Artifact = Field(description="The ONNX file and its digest.")
    signature: Signature = Field(description="Inputs and outputs.")
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Test-set metrics of the version (accuracy, f1, rmse, ...).",
        json_schema_extra={"maxProperties": 64},
    )
    lineage: Lineage = Field(description="How the version was made.")
    gates: Gates = object_default_field(Gates, "Gates evaluated to decide Validated or Rejected.")
    champion_score: ChampionScore | None = Field(
        default=None,
        description="The Production version at training time scored on this version's test set.",
    )
    stage: Stage = Field(
        default="None",
        description="Lifecycle stage, changed by people or by retrain policies: None, Staging, Production, Archived.",
    )
    description: str = Field(default="", max_length=4096, description="Free-form notes.")


class GateResult(KubeloopModel):
    """Outcome of one gate."""

    gate: str = Field(description="Which gate, e.g. 'threshold:accuracy' or 'champion:f1'.")
    metric: str = Field(description="Metric compared.")
    observed: float | None = Field(default=None, description="The version's value.")
    threshold: float | None = Field(default=None, description="The bound or the champion's value.")
    passed: bool = Field(description="Whether the gate passed.")
    message: str = Field(default="", description="The comparison in words.")


class StageChange(KubeloopModel):
    """One entry of the stage history."""

    stage: Stage = Field(description="Stage entered.")
    previous: Stage | None = Field(default=None, description="Stage left.")
    changed_at: Timestamp = Field(description="When the change was observed.")
    changed_by: str = Field(default="", description="Field manager or user that made the change.")
    reason: str = Field(default="", description="Why, when known (e.g. 'retrain auto-promotion').")


class ModelVersionStatus(KubeloopModel):
    """Observed state of a ModelVersion."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field()
    phase: ModelVersionPhase = Field(
        default="Pending", description="Pending, Validated or Rejected."
    )
    message: str = Field(default="", description="Why the version is in this phase.")
    gate_results: list[GateResult] = Field(
        default_factory=list, max_length=32, description="Outcome of every gate."
    )
    champion: str | None = Field(
        default=None, description="Production version the gates compared against, if any."
    )
    artifact_verified: bool | None = Field(
        default=None,
        description=(
            "Whether the artifact re-read from S3 has spec.artifact.sha256; false makes the "
            "version Rejected (it is never served); unset when the operator cannot read S3."
        ),
    )
    artifact_message: str = Field(
        default="", max_length=1024, description="What the artifact check found."
    )
    stage: Stage | None = Field(default=None, description="Stage last acted on by the operator.")
    stage_history: list[StageChange] = Field(
        default_factory=list, max_length=50, description="Stage changes, newest last."
    )
    primary_metric: str | None = Field(
        default=None, description="Headline metric for kubectl, e.g. 'f1=0.931'."
    )
    model_card_uri: S3Uri | None = Field(
        default=None, alias="modelCardURI", description="model-card.md of the version."
    )
    report_uri: S3Uri | None = Field(
        default=None, alias="reportURI", description="report.html of the version."
    )


class ModelVersion(KubeloopModel):
    """One immutable entry of the model registry, with a writable stage."""

    api_version: Literal["kubeloop.io/v1alpha1"] = Field(
        default="kubeloop.io/v1alpha1", description="kubeloop.io/v1alpha1"
    )
    kind: Literal["ModelVersion"] = Field(default="ModelVersion", description="ModelVersion")
    metadata: ObjectMeta = Field(
        default_factory=ObjectMeta, description="Standard object metadata."
    )
    spec: ModelVersionSpec = Field(description="Desired state.")
    status: ModelVersionStatus | None = Field(default=None, description="Observed state.")
