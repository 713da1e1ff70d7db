"""The TrainingRun API: train one model, or search for the best one, on a pinned Dataset version.

One Indexed Job runs the trials (one per index). Each trial writes ONNX, metrics, a
signature, a model card and a report to S3; the best trial becomes a ModelVersion, exactly
once. Gates declared here travel to that ModelVersion and decide Validated or Rejected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubeloop.api.estimators import (
    ESTIMATORS,
    GENERAL_METRICS,
    EstimatorName,
    GateMetric,
    MetricName,
    cel_is_classification_metric,
    cel_is_classifier,
    cel_is_general_metric,
    cel_param_allowed,
    estimator_task,
    metrics_for,
)
from kubeloop.api.meta import (
    CelRule,
    Condition,
    DatasetVersion,
    KubeloopModel,
    ModelName,
    ObjectMeta,
    ParamValue,
    ResourceName,
    ResourceRequirements,
    S3Uri,
    Timestamp,
    conditions_field,
    object_default_field,
    observed_generation_field,
)
from kubeloop.api.params import (
    PARAMS_MESSAGE,
    PARAMS_VARIABLE,
    RANGE_VARIABLE,
    SPACE_MESSAGE,
    VALUES_VARIABLE,
    cel_message,
    cel_param_problems,
    cel_range_problems,
    cel_rule,
    cel_values_problems,
    explain,
    param_problems,
    space_problems,
)

TrainingRunPhase = Literal["Pending", "Running", "Succeeded", "Failed"]


class DatasetRef(KubeloopModel):
    """Which Dataset, and optionally which of its versions, to train on."""

    name: ResourceName = Field(description="Name of a Dataset in the same namespace.")
    version: DatasetVersion | None = Field(
        default=None,
        description=(
            "Dataset version to train on. When omitted, the Dataset's current version is pinned "
            "when the run starts and recorded in status.datasetVersion."
        ),
    )


class Estimator(KubeloopModel):
    """A scikit-learn estimator from the allowlist, with its parameters."""

    name: EstimatorName = Field(
        description=(
            "Estimator from the allowlist: LogisticRegression, RandomForestClassifier, "
            "HistGradientBoostingClassifier, GradientBoostingClassifier, RandomForestRegressor, "
            "HistGradientBoostingRegressor, GradientBoostingRegressor, Ridge, LinearRegression."
        )
    )
    params: dict[str, ParamValue] | None = Field(
        default=None,
        description=(
            "Constructor parameters in scikit-learn's own names, e.g. {n_estimators: 200}. "
            "Values must meet scikit-learn's constraints (type, range, options); the API "
            "server refuses those that do not, naming the parameter."
        ),
        json_schema_extra={"maxProperties": 32},
    )


class ParamRange(KubeloopModel):
    """A continuous or integer interval to sample from."""

    cel_rules = (
        CelRule(
            rule="!has(self.min) || !has(self.max) || self.min < self.max",
            message="range.min must be below range.max",
            holds=lambda r: r.min < r.max,
        ),
        CelRule(
            rule="!self.log || !has(self.min) || self.min > 0.0",
            message="a log-scaled range needs min > 0",
            holds=lambda r: not r.log or r.min > 0,
        ),
    )

    min: float = Field(description="Lower bound (inclusive).")
    max: float = Field(description="Upper bound (inclusive for integers, exclusive for floats).")
    log: bool = Field(
        default=False, description="Sample uniformly in log space (e.g. learning rates)."
    )
    integer: bool = Field(default=False, description="Sample whole numbers (e.g. max_depth).")


class ParamSpace(KubeloopModel):
    """The values one parameter may take in a search: exactly one of ``values`` or ``range``."""

    values: list[ParamValue] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Explicit candidate values (needed for grid search).",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    range: ParamRange | None = Field(
        default=None, description="Interval to sample from (random search)."
    )


class SearchSpec(KubeloopModel):
    """Hyper-parameter search: several trials, the best one by ``metric`` wins."""

    cel_rules = (
        CelRule(
            rule="has(self.space) && size(self.space) > 0",
            message="a search needs a space with at least one parameter",
            holds=lambda s: len(s.space) > 0,
        ),
        CelRule(
            rule="self.parallelism <= self.trials",
            message="search.parallelism cannot exceed search.trials",
            holds=lambda s: s.parallelism <= s.trials,
        ),
    )

    strategy: Literal["grid", "random"] = Field(
        default="random", description="grid: every combination (up to trials); random: sampled."
    )
    space: dict[str, ParamSpace] = Field(
        description="Parameter name (scikit-learn's) to its candidate values or range.",
        json_schema_extra={"maxProperties": 16},
    )
    trials: int = Field(default=8, ge=1, le=500, description="Number of trials (Job completions).")
    parallelism: int = Field(
        default=2, ge=1, le=64, description="Trials that run at the same time."
    )
    metric: MetricName = Field(description="Validation metric that picks the best trial.")
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None,
        description="Whether higher or lower is better; defaults to the metric's natural direction.",
    )


class SplitSpec(KubeloopModel):
    """How rows are split into train, validation and test sets."""

    cel_rules = (
        CelRule(
            rule="self.validationFraction + self.testFraction < 0.9",
            message="validationFraction + testFraction must leave at least 10% of rows for training",
            holds=lambda s: s.validation_fraction + s.test_fraction < 0.9,
        ),
    )

    validation_fraction: float = Field(
        default=0.15, gt=0.0, lt=1.0, description="Fraction of rows for model selection."
    )
    test_fraction: float = Field(
        default=0.15, gt=0.0, lt=1.0, description="Fraction of rows held out for final metrics."
    )
    stratify: bool = Field(
        default=True, description="Stratify splits by class (classification only)."
    )


class MetricThreshold(KubeloopModel):
    """An absolute bound on one test metric."""

    cel_rules = (
        CelRule(
            rule="has(self.min) || has(self.max)",
            message="a gate threshold needs min, max or both",
            holds=lambda t: t.min is not None or t.max is not None,
        ),
        CelRule(
            rule="!has(self.min) || !has(self.max) || self.min <= self.max",
            message="a gate threshold's min must not be greater than its max",
            holds=lambda t: t.min is None or t.max is None or t.min <= t.max,
        ),
    )

    metric: GateMetric = Field(
        description=(
            "Test-set metric, e.g. accuracy, f1, roc_auc, rmse, or one every task reports: "
            "latency_p50_ms, latency_p99_ms (single-row ONNX), demographic_parity_difference, "
            "disparate_impact_ratio, equal_opportunity_difference."
        )
    )
    min: float | None = Field(default=None, description="The metric must be at least this.")
    max: float | None = Field(default=None, description="The metric must be at most this.")


class ChampionGate(KubeloopModel):
    """Champion/challenger: the new version must not lose to the current Production version."""

    metric: MetricName = Field(description="Metric compared on the new version's test set.")
    min_improvement: float = Field(
        default=0.0,
        ge=-1.0,
        le=1.0,
        description=(
            "How much better than Production the challenger must be, in the metric's units "
            "(negative tolerates a small loss)."
        ),
    )


class Gates(KubeloopModel):
    """Quality gates a ModelVersion must pass to become Validated."""

    thresholds: list[MetricThreshold] = Field(
        default_factory=list,
        max_length=16,
        description="Absolute bounds on test metrics.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["metric"],
        },
    )
    champion: ChampionGate | None = Field(
        default=None, description="Comparison against the model's current Production version."
    )
    max_fairness_gap: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="Largest demographic parity difference allowed across the sensitive column.",
    )


class TrainingRunSpec(KubeloopModel):
    """Desired state of a TrainingRun."""

    cel_rules = (
        # Policy rules: they read free-form parameter values the CRD's CEL cannot type.
        CelRule(
            rule="!has(object.spec.estimator.params) || object.spec.estimator.params.all(k, "
            + cel_param_allowed("object.spec.estimator.name", "k")
            + ")",
            message="estimator.params names a parameter this estimator does not accept",
            holds=lambda s: all(
                k in ESTIMATORS[s.estimator.name].params for k in s.estimator.params or {}
            ),
            scope="policy",
        ),
        CelRule(
            rule="!has(object.spec.search) || object.spec.search.space.all(k, "
            "has(object.spec.search.space[k].values) != has(object.spec.search.space[k].range))",
            message="exactly one of values or range must be set for a search parameter",
            holds=lambda s: (
                s.search is None
                or all((p.values is None) != (p.range is None) for p in s.search.space.values())
            ),
            scope="policy",
        ),
        # Values against scikit-learn's constraints (kubeloop.api.params); after the name
        # rules, so an unknown parameter is reported as such.
        CelRule(
            rule=cel_rule(PARAMS_VARIABLE),
            message=PARAMS_MESSAGE,
            message_expression=cel_message(PARAMS_MESSAGE, PARAMS_VARIABLE),
            variables=((PARAMS_VARIABLE, cel_param_problems("object.spec")),),
            holds=lambda s: not param_problems(s.estimator.name, s.estimator.params or {}),
            explain=lambda s: explain(
                PARAMS_MESSAGE, param_problems(s.estimator.name, s.estimator.params or {})
            ),
            scope="policy",
        ),
        CelRule(
            rule=cel_rule(VALUES_VARIABLE, RANGE_VARIABLE),
            message=SPACE_MESSAGE,
            message_expression=cel_message(SPACE_MESSAGE, VALUES_VARIABLE, RANGE_VARIABLE),
            variables=(
                (VALUES_VARIABLE, cel_values_problems("object.spec")),
                (RANGE_VARIABLE, cel_range_problems("object.spec")),
            ),
            holds=lambda s: (
                s.search is None or not space_problems(s.estimator.name, s.search.space)
            ),
            explain=lambda s: explain(
                SPACE_MESSAGE, space_problems(s.estimator.name, s.search.space)
            ),
            scope="policy",
        ),
        CelRule(
            rule="!has(object.spec.search) || object.spec.search.strategy != 'grid' || "
            "object.spec.search.space.all(k, has(object.spec.search.space[k].values))",
            message="grid search needs explicit values for every parameter (ranges only work with random)",
            holds=lambda s: (
                s.search is None
                or s.search.strategy != "grid"
                or all(p.values is not None for p in s.search.space.values())
            ),
            scope="policy",
        ),
        CelRule(
            rule="!has(self.search) || "
            + cel_is_classifier("self.estimator.name")
            + " == "
            + cel_is_classification_metric("self.search.metric"),
            message="search.metric must be a metric of the estimator's task "
            "(classification: accuracy, precision, recall, f1, roc_auc, log_loss; regression: rmse, mae, r2)",
            holds=lambda s: (
                s.search is None or s.search.metric in metrics_for(estimator_task(s.estimator.name))
            ),
        ),
        CelRule(
            rule="!has(self.search) || self.search.space.all(k, "
            + cel_param_allowed("self.estimator.name", "k")
            + ")",
            message="search.space names a parameter this estimator does not accept",
            holds=lambda s: (
                s.search is None
                or all(k in ESTIMATORS[s.estimator.name].params for k in s.search.space)
            ),
        ),
        CelRule(
            rule="!has(self.gates) || !has(self.gates.thresholds) || self.gates.thresholds.all(t, "
            + cel_is_general_metric("t.metric")
            + " || "
            + cel_is_classifier("self.estimator.name")
            + " == "
            + cel_is_classification_metric("t.metric")
            + ")",
            message="gates.thresholds must use metrics of the estimator's task",
            holds=lambda s: all(
                t.metric in GENERAL_METRICS
                or t.metric in metrics_for(estimator_task(s.estimator.name))
                for t in s.gates.thresholds
            ),
        ),
    )

    dataset_ref: DatasetRef = Field(description="Dataset (and optionally version) to train on.")
    model_name: ModelName = Field(
        description="Registry name; the winning trial becomes the ModelVersion '<modelName>-v<N>'."
    )
    estimator: Estimator = Field(description="Estimator and its fixed parameters.")
    search: SearchSpec | None = Field(
        default=None, description="Hyper-parameter search; omitted means a single trial."
    )
    split: SplitSpec = object_default_field(SplitSpec, "Train / validation / test split.")
    gates: Gates = object_default_field(Gates, "Quality gates for the resulting ModelVersion.")
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory of each trial's pod."
    )
    active_deadline_seconds: int = Field(
        default=3600, ge=30, le=604800, description="Wall-clock limit of the whole training Job."
    )
    backoff_limit: int = Field(
        default=1, ge=0, le=10, description="Retries of failed trial pods before the run fails."
    )
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="Seed for splits and sampling.")


class TrialResult(KubeloopModel):
    """One trial's outcome."""

    index: int = Field(ge=0, description="Job completion index of the trial.")
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] = Field(description="Trial phase.")
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="Parameters the trial used.",
        json_schema_extra={"maxProperties": 48},
    )
    score: float | None = Field(default=None, description="Validation value of the search metric.")
    metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Test-set metrics.",
        json_schema_extra={"maxProperties": 64},
    )
    artifact_uri: S3Uri | None = Field(
        default=None, alias="artifactURI", description="Prefix holding the trial's artifacts."
    )
    message: str = Field(default="", description="Trainer's reason when the trial failed.")


class TrialCounts(KubeloopModel):
    """Trial progress."""

    total: int = Field(ge=0, description="Trials in the run.")
    succeeded: int = Field(default=0, ge=0, description="Trials that finished.")
    failed: int = Field(default=0, ge=0, description="Trials that failed.")
    active: int = Field(default=0, ge=0, description="Trials running now.")


class TrainingRunStatus(KubeloopModel):
    """Observed state of a TrainingRun."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field()
    phase: TrainingRunPhase = Field(
        default="Pending", description="Pending, Running, Succeeded or Failed."
    )
    message: str = Field(
        default="", description="Why the run is in this phase; the trainer's reason on failure."
    )
    dataset_version: DatasetVersion | None = Field(
        default=None, description="Dataset version pinned when the run started."
    )
    job_name: str | None = Field(default=None, description="The Indexed Job running the trials.")
    trials: TrialCounts | None = Field(default=None, description="Trial progress.")
    trial_results: list[TrialResult] = Field(
        default_factory=list,
        max_length=500,
        description="Per-trial outcomes.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["index"],
        },
    )
    best_trial: int | None = Field(default=None, ge=0, description="Index of the winning trial.")
    metric: str | None = Field(default=None, description="Metric that picked the winner.")
    best_score: float | None = Field(default=None, description="Winner's validation score.")
    model_version: str | None = Field(
        default=None, description="ModelVersion created from the winner."
    )
    start_time: Timestamp | None = Field(default=None, description="When the Job started.")
    completion_time: Timestamp | None = Field(default=None, description="When the run finished.")


class TrainingRun(KubeloopModel):
    """Train one model, or search for the best one, on a pinned Dataset version."""

    api_version: Literal["kubeloop.io/v1alpha1"] = Field(
        default="kubeloop.io/v1alpha1", description="kubeloop.io/v1alpha1"
    )
    kind: Literal["TrainingRun"] = Field(default="TrainingRun", description="TrainingRun")
    metadata: ObjectMeta = Field(
        default_factory=ObjectMeta, description="Standard object metadata."
    )
    spec: TrainingRunSpec = Field(description="Desired state.")
    status: TrainingRunStatus | None = Field(default=None, description="Observed state.")
