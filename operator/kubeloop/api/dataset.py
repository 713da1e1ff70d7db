"""The Dataset API: a versioned, validated, profiled table in S3.

A Dataset names a source (a CSV or Parquet object in S3, or the production prediction log
of a kubeloop Deployment joined with its feedback labels), the target column and the rules
the data must satisfy. The profiling Job turns each distinct content into an immutable,
content-addressed version; ``status.version`` is the digest TrainingRuns pin.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubeloop.api.meta import (
    CelRule,
    ColumnName,
    Condition,
    DatasetVersion,
    Duration,
    Fraction,
    KubeloopModel,
    ObjectMeta,
    ResourceName,
    S3Uri,
    Timestamp,
    conditions_field,
    object_default_field,
    observed_generation_field,
)

# Setting this annotation asks for a profiling of the source now (a retrain sets it to its own
# name); status.refreshToken echoes the value once that profiling has answered.
REFRESH_ANNOTATION = "kubeloop.io/refresh"

ColumnType = Literal["number", "integer", "category", "boolean"]
DatasetPhase = Literal["Pending", "Profiling", "Ready", "Invalid"]


class PredictionLogSource(KubeloopModel):
    """Production traffic of a kubeloop Deployment, joined with the feedback labels sent to it."""

    deployment: ResourceName = Field(
        description="Name of the kubeloop Deployment whose prediction log is read."
    )
    window: Duration = Field(
        default="168h", description="How far back to read the prediction log, e.g. '168h'."
    )
    require_feedback: bool = Field(
        default=True,
        description=(
            "Keep only predictions that received a feedback label (the label becomes the "
            "target); the others are left out and counted in the status message. When false "
            "they are kept with a missing target."
        ),
    )
    max_rows: int | None = Field(
        default=None,
        ge=1,
        le=100_000_000,
        description="Keep only the newest this many joined rows (recency), after the window.",
    )
    base_dataset: ResourceName | None = Field(
        default=None,
        description=(
            "A Dataset in the same namespace whose current Ready snapshot is put before the "
            "log rows (e.g. the original training data); the log may not add columns to it."
        ),
    )


class DatasetSource(KubeloopModel):
    """Where the rows come from: exactly one of ``uri`` or ``predictionLog``."""

    cel_rules = (
        CelRule(
            rule="has(self.uri) != has(self.predictionLog)",
            message="exactly one of source.uri or source.predictionLog must be set",
            holds=lambda s: (s.uri is None) != (s.prediction_log is None),
        ),
    )

    uri: S3Uri | None = Field(
        default=None,
        description="s3://bucket/key of one CSV or Parquet object.",
    )
    format: Literal["csv", "parquet"] | None = Field(
        default=None,
        description="File format; when omitted it is taken from the key's extension (.csv, .parquet).",
    )
    csv_delimiter: str = Field(
        default=",",
        min_length=1,
        max_length=1,
        description="Field delimiter of a CSV source.",
    )
    credentials_secret_ref: ResourceName | None = Field(
        default=None,
        description=(
            "Secret with 'accessKey' and 'secretKey' for this source's bucket; the operator's "
            "own S3 credentials are used when omitted."
        ),
    )
    prediction_log: PredictionLogSource | None = Field(
        default=None,
        description="Read production predictions and feedback of a kubeloop Deployment instead of a file.",
    )


class ColumnSchema(KubeloopModel):
    """What one column must look like."""

    cel_rules = (
        CelRule(
            rule="!has(self.minimum) || !has(self.maximum) || self.minimum <= self.maximum",
            message="minimum must not be greater than maximum",
            holds=lambda c: c.minimum is None or c.maximum is None or c.minimum <= c.maximum,
        ),
        CelRule(
            rule="!has(self.allowedValues) || self.type == 'category'",
            message="allowedValues is only valid for columns of type category",
            holds=lambda c: c.allowed_values is None or c.type == "category",
        ),
        CelRule(
            rule="(!has(self.minimum) && !has(self.maximum)) || self.type in ['number', 'integer']",
            message="minimum and maximum are only valid for number and integer columns",
            holds=lambda c: (
                (c.minimum is None and c.maximum is None) or c.type in ("number", "integer")
            ),
        ),
    )

    name: ColumnName = Field(description="Column name as in the header.")
    type: ColumnType = Field(description="Logical type: number, integer, category or boolean.")
    nullable: bool = Field(default=True, description="Whether missing values are allowed at all.")
    minimum: float | None = Field(
        default=None, description="Smallest allowed value (numeric columns)."
    )
    maximum: float | None = Field(
        default=None, description="Largest allowed value (numeric columns)."
    )
    allowed_values: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="The only values a category column may take.",
    )


class ValidationRules(KubeloopModel):
    """Rules a version must satisfy to become Ready."""

    min_rows: int = Field(default=1, ge=1, description="Fewest rows a version may have.")
    max_missing_fraction: Fraction = Field(
        default=1.0,
        description="Largest fraction of missing values allowed in any column (0..1).",
    )
    column_max_missing_fraction: dict[str, Fraction] | None = Field(
        default=None,
        description="Per-column limit on the fraction of missing values, overriding the global one.",
        json_schema_extra={"maxProperties": 256},
    )
    unique_key: ColumnName | None = Field(
        default=None,
        description="A column whose values must be unique (an ID); duplicates fail validation.",
    )


class DatasetSpec(KubeloopModel):
    """Desired state of a Dataset."""

    cel_rules = (
        CelRule(
            rule="!has(self.sliceColumns) || !(self.target in self.sliceColumns)",
            message="the target column cannot also be a slice column",
            holds=lambda s: s.target not in (s.slice_columns or []),
        ),
        CelRule(
            rule="!has(self.sensitiveColumns) || !(self.target in self.sensitiveColumns)",
            message="the target column cannot also be a sensitive column",
            holds=lambda s: s.target not in (s.sensitive_columns or []),
        ),
        CelRule(
            rule="!has(self.columns) || self.columns.exists(c, c.name == self.target)",
            message="a declared schema must include the target column",
            holds=lambda s: s.columns is None or any(c.name == s.target for c in s.columns),
        ),
    )

    source: DatasetSource = Field(description="Where the rows come from.")
    target: ColumnName = Field(description="The column a model learns to predict.")
    columns: list[ColumnSchema] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description=(
            "Declared schema. When omitted, the schema of the first Ready version is pinned and "
            "later versions must keep it (a column that disappears or changes type is invalid)."
        ),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    validation: ValidationRules = object_default_field(
        ValidationRules, "Rules each version must pass."
    )
    slice_columns: list[ColumnName] | None = Field(
        default=None,
        max_length=16,
        description="Columns whose values define slices for per-slice metrics.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    sensitive_columns: list[ColumnName] | None = Field(
        default=None,
        max_length=8,
        description="Sensitive attributes (e.g. age band) for fairness metrics; never used as features.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    refresh_interval: Duration | None = Field(
        default=None,
        description="How often to check the source for new content; a changed digest is a new version.",
    )


class ValidationFailure(KubeloopModel):
    """One rule a version broke."""

    column: str | None = Field(default=None, description="Column the rule applies to, if any.")
    rule: str = Field(
        description="The rule, e.g. maxMissingFraction, type, allowedValues, minRows."
    )
    observed: str = Field(description="What the data showed, e.g. '0.31' or 'string'.")
    expected: str = Field(default="", description="What the rule requires, e.g. '<= 0.1'.")
    message: str = Field(description="The failure in one sentence.")


class ValidationReport(KubeloopModel):
    """Outcome of validating the newest content of the source."""

    passed: bool = Field(description="Whether every rule passed.")
    checked_at: Timestamp | None = Field(default=None, description="When validation ran.")
    version: DatasetVersion | None = Field(
        default=None, description="Digest of the content validated."
    )
    failures: list[ValidationFailure] = Field(
        default_factory=list, max_length=100, description="Rules that failed (empty when passed)."
    )


class ObservedColumn(KubeloopModel):
    """A column as the profiler saw it."""

    name: str = Field(description="Column name.")
    type: ColumnType = Field(description="Inferred or declared logical type.")
    nullable: bool = Field(description="Whether missing values occurred or are allowed.")


class DatasetVersionRecord(KubeloopModel):
    """One Ready version in the history."""

    version: DatasetVersion = Field(description="Content digest.")
    rows: int = Field(ge=0, description="Row count.")
    created_at: Timestamp = Field(description="When the version was profiled.")
    snapshot_uri: S3Uri = Field(alias="snapshotURI", description="Immutable Parquet snapshot.")
    profile_uri: S3Uri = Field(alias="profileURI", description="profile.json of this version.")


class DatasetStatus(KubeloopModel):
    """Observed state of a Dataset."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field()
    phase: DatasetPhase = Field(
        default="Pending", description="Pending, Profiling, Ready or Invalid."
    )
    message: str = Field(default="", description="Why the Dataset is in this phase.")
    version: DatasetVersion | None = Field(
        default=None, description="Digest of the current Ready version (what TrainingRuns pin)."
    )
    rows: int | None = Field(default=None, ge=0, description="Rows of the current version.")
    column_count: int | None = Field(
        default=None, ge=0, description="Columns of the current version."
    )
    columns: list[ObservedColumn] = Field(
        default_factory=list, max_length=1000, description="Schema of the current version."
    )
    snapshot_uri: S3Uri | None = Field(
        default=None, alias="snapshotURI", description="Immutable snapshot of the current version."
    )
    profile_uri: S3Uri | None = Field(
        default=None,
        alias="profileURI",
        description="profile.json of the current version: the drift baseline.",
    )
    validation: ValidationReport | None = Field(
        default=None, description="Validation of the newest content seen."
    )
    history: list[DatasetVersionRecord] = Field(
        default_factory=list, max_length=10, description="The last 10 Ready versions, newest first."
    )
    profile_job: str | None = Field(
        default=None, description="Name of the running or last profiling Job."
    )
    answered_job: str | None = Field(
        default=None,
        max_length=253,
        description="The profiling Job whose answer this status holds, Ready or not: a later "
        "event of that Job (or a restart of the operator) does not apply it again.",
    )
    refresh_count: int = Field(
        default=0, ge=0, description="Refreshes started because of spec.refreshInterval."
    )
    last_refresh: Timestamp | None = Field(
        default=None, description="When the source was last checked for new content."
    )
    refresh_token: str | None = Field(
        default=None,
        max_length=253,
        description=(
            "The last kubeloop.io/refresh annotation value whose profiling has answered; a "
            "retrain waits for its own token here before training on the newest version."
        ),
    )
    source_summary: str | None = Field(
        default=None,
        max_length=1000,
        description=(
            "What the last profiling read, e.g. for a prediction log: predictions, labelled "
            "rows and unlabelled rows excluded."
        ),
    )


class Dataset(KubeloopModel):
    """A versioned, validated, profiled table in S3."""

    api_version: Literal["kubeloop.io/v1alpha1"] = Field(
        default="kubeloop.io/v1alpha1", description="kubeloop.io/v1alpha1"
    )
    kind: Literal["Dataset"] = Field(default="Dataset", description="Dataset")
    metadata: ObjectMeta = Field(
        default_factory=ObjectMeta, description="Standard object metadata."
    )
    spec: DatasetSpec = Field(description="Desired state.")
    status: DatasetStatus | None = Field(default=None, description="Observed state.")
