"""``TrialConfig``: everything one trial needs, as the operator hands it to the trainer pod.

The operator writes it as JSON (camelCase, like every kubeloop API object) into the pod's
``KUBELOOP_TRIAL_CONFIG`` environment variable or a mounted file. One config serves every pod
of the Indexed Job: each pod's ``JOB_COMPLETION_INDEX`` replaces ``trial``, and the search
plan is recomputed from the spec and the seed (``search.py``), so no pod needs to know what
the others do. The pinned dataset version and the snapshot location are resolved by the
operator before the Job exists; the trainer never looks anything up in the cluster.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from kubeloop.api.meta import (
    ColumnName,
    DatasetVersion,
    KubeloopModel,
    ModelName,
    ResourceName,
    S3Uri,
)
from kubeloop.api.trainingrun import TrainingRunSpec

# Defaults for the report's optional, costly parts; see the benchmark for what they cost.
DEFAULT_LATENCY_RUNS = 200
DEFAULT_IMPORTANCE_ROWS = 1000
DEFAULT_IMPORTANCE_REPEATS = 3


class ChampionRef(KubeloopModel):
    """The model's Production version when the run started: scored on each trial's test set."""

    name: ResourceName = Field(description="ModelVersion name, e.g. churn-v3.")
    artifact_uri: S3Uri = Field(alias="artifactURI", description="Its model.onnx.")
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Its artifact digest; checked on download."
    )


class TrialConfig(KubeloopModel):
    """One trial of a TrainingRun: which data, which estimator, where the outputs go."""

    trial: int = Field(
        default=0,
        ge=0,
        description="Trial index; JOB_COMPLETION_INDEX replaces it in an Indexed Job pod.",
    )
    spec: TrainingRunSpec = Field(description="The TrainingRun's spec, as applied.")
    snapshot_uri: S3Uri = Field(
        alias="snapshotURI",
        description="Parquet snapshot of the pinned dataset version (s3://.../snapshot.parquet).",
    )
    snapshot_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Expected sha256 of the snapshot file; checked while it is downloaded.",
    )
    target: ColumnName = Field(description="Target column.")
    slice_columns: list[ColumnName] = Field(
        default_factory=list, max_length=32, description="Columns to report per-slice metrics for."
    )
    sensitive_columns: list[ColumnName] = Field(
        default_factory=list,
        max_length=16,
        description="Fairness attributes: never features, reported in the fairness section.",
    )
    exclude_columns: list[ColumnName] = Field(
        default_factory=list,
        max_length=256,
        description="Columns that are never features, e.g. the Dataset's unique key.",
    )
    output_prefix: S3Uri = Field(
        description=(
            "Prefix of the whole run, ending in '/'; trial i writes under '<prefix>trials/<i>/', "
            "so every pod of the Indexed Job can share one config."
        ),
    )
    model_name: ModelName | None = Field(
        default=None, description="Registry name; defaults to spec.modelName."
    )
    dataset_name: ResourceName | None = Field(
        default=None, description="Dataset name; defaults to spec.datasetRef.name."
    )
    dataset_version: DatasetVersion = Field(description="Pinned dataset version (sha256:…).")
    training_run: ResourceName | None = Field(
        default=None, description="Name of the TrainingRun, for the model card."
    )
    namespace: str | None = Field(default=None, description="Namespace of the TrainingRun.")
    champion: ChampionRef | None = Field(
        default=None,
        description="The Production version to score on this trial's test set, if there is one.",
    )
    latency_runs: int = Field(
        default=DEFAULT_LATENCY_RUNS,
        ge=10,
        le=100_000,
        description="Single-row ONNX inferences timed for the latency percentiles.",
    )
    importance_rows: int = Field(
        default=DEFAULT_IMPORTANCE_ROWS,
        ge=0,
        le=1_000_000,
        description="Test rows sampled for permutation importance (0 turns it off).",
    )
    importance_repeats: int = Field(
        default=DEFAULT_IMPORTANCE_REPEATS,
        ge=1,
        le=50,
        description="Shuffles per feature for permutation importance.",
    )

    @model_validator(mode="after")
    def _check_columns(self) -> Self:
        if not str(self.output_prefix).endswith("/"):
            raise ValueError("outputPrefix must end with '/' (it names a prefix)")
        if self.target in self.sensitive_columns:
            raise ValueError(f"the target {self.target!r} cannot also be a sensitive column")
        if self.target in self.exclude_columns:
            raise ValueError(f"the target {self.target!r} cannot also be an excluded column")
        return self

    @property
    def effective_model_name(self) -> str:
        """``model_name``, or the spec's."""
        return self.model_name or self.spec.model_name

    @property
    def effective_dataset_name(self) -> str:
        """``dataset_name``, or the spec's dataset reference."""
        return self.dataset_name or self.spec.dataset_ref.name

    @property
    def trial_prefix(self) -> str:
        """Where this trial's artifacts go: ``<outputPrefix>trials/<trial>/``."""
        return f"{self.output_prefix}trials/{self.trial}/"
