"""The Deployment API (``deployments.kubeloop.io``): serve a model and roll out new versions safely.

A kubeloop Deployment serves one ModelVersion (or follows the Production stage of a model)
through a stable router endpoint. A new version rolls out by a strategy (canary steps with
analysis of live metrics, blue-green with a preview, or shadow traffic) and rolls back by
itself when analysis fails. Monitoring computes drift from the serving pods' metrics, and a
retrain policy starts a new TrainingRun when drift or live accuracy says so.

The kind is called Deployment because users asked for it; code always uses the qualified
``deployments.kubeloop.io`` and never the bare word.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kubeloop.api.meta import (
    CelRule,
    ColumnName,
    Condition,
    Duration,
    Fraction,
    KubeloopModel,
    ModelName,
    ObjectMeta,
    ParamValue,
    ResourceName,
    ResourceRequirements,
    Timestamp,
    conditions_field,
    object_default_field,
    observed_generation_field,
)

DeploymentPhase = Literal["Pending", "Progressing", "Healthy", "Degraded", "RolledBack", "Failed"]
StrategyType = Literal["Canary", "BlueGreen", "Shadow", "Recreate"]
DriftMethod = Literal["psi", "js", "ks", "chi2", "linf"]
DriftVerdict = Literal["NoDrift", "Drifted", "InsufficientData", "NoBaseline"]
RetrainPhase = Literal[
    "RefreshingData",
    "Training",
    "Promoting",
    "RollingOut",
    "Reverting",
    "Succeeded",
    "Rejected",
    "Failed",
]
Verdict = Literal["Pass", "Fail", "Inconclusive"]


class ModelTrack(KubeloopModel):
    """Follow the registry: serve whichever version of ``model`` is in ``stage``."""

    model: ModelName = Field(description="Registry name of the model.")
    stage: Literal["Staging", "Production"] = Field(
        default="Production", description="Stage to follow: Production or Staging."
    )


class ModelSelector(KubeloopModel):
    """What to serve: exactly one of an explicit version or a stage to track."""

    cel_rules = (
        CelRule(
            rule="has(self.version) != has(self.track)",
            message="exactly one of model.version or model.track must be set",
            holds=lambda m: (m.version is None) != (m.track is None),
        ),
    )

    version: ResourceName | None = Field(
        default=None,
        max_length=63,
        description=(
            "Name of a Validated ModelVersion, e.g. 'churn-v3' (at most 63 characters: it "
            "becomes a label value of the serving pods)."
        ),
    )
    track: ModelTrack | None = Field(
        default=None,
        description="Serve the version in this stage; a newly promoted version rolls out by itself.",
    )


class Autoscaling(KubeloopModel):
    """Horizontal autoscaling of each live version's pods."""

    cel_rules = (
        CelRule(
            rule="!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            message="autoscaling.minReplicas must not be greater than maxReplicas",
            holds=lambda a: a.min_replicas <= a.max_replicas,
        ),
    )

    min_replicas: int = Field(default=1, ge=1, le=100, description="Fewest pods.")
    max_replicas: int = Field(ge=1, le=100, description="Most pods.")
    target_cpu_utilization_percentage: int = Field(
        default=70,
        alias="targetCPUUtilizationPercentage",
        ge=1,
        le=100,
        description="Average CPU utilisation the HPA aims for.",
    )


class Analysis(KubeloopModel):
    """Checks on live metrics that decide whether a candidate may go further.

    Each check compares the candidate with stable on the same window; with enough samples the
    decision uses a statistical test at ``confidence``, with too few it is Inconclusive and
    the rollout waits.
    """

    interval: Duration = Field(
        default="30s", description="How often metrics are scraped and judged."
    )
    min_requests: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Requests the candidate needs before a verdict.",
    )
    max_error_rate: Fraction | None = Field(
        default=0.05, description="Largest 5xx error rate of the candidate (absolute)."
    )
    max_error_rate_increase: Fraction | None = Field(
        default=None,
        description=(
            "Largest error-rate increase over stable in absolute points, e.g. 0.01 (relative "
            "check; fails only when the two-proportion test says the increase is real)."
        ),
    )
    max_p99_latency_ms: float | None = Field(
        default=None, gt=0.0, le=600_000.0, description="Largest p99 latency of the candidate, ms."
    )
    max_p99_latency_ratio: float | None = Field(
        default=None, ge=1.0, le=100.0, description="Largest candidate/stable p99 latency ratio."
    )
    min_live_accuracy: Fraction | None = Field(
        default=None,
        description="Smallest live accuracy from feedback (absolute; used when feedback exists).",
    )
    max_live_accuracy_drop: Fraction | None = Field(
        default=None,
        description=(
            "Largest drop of live accuracy below stable's, from feedback (relative check; "
            "fails only when the two-proportion test says the drop is real)."
        ),
    )
    min_feedback: int = Field(
        default=50,
        ge=1,
        le=10_000_000,
        description="Feedback labels each version needs before the accuracy checks decide.",
    )
    max_prediction_divergence: Fraction | None = Field(
        default=0.2,
        description=(
            "Largest Jensen-Shannon divergence (base 2, 0..1) between the candidate's and "
            "stable's prediction distributions in the same window."
        ),
    )
    min_prediction_samples: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Predictions each version needs before the divergence check decides.",
    )
    confidence: float = Field(
        default=0.95, ge=0.5, le=0.999, description="Confidence of the statistical tests."
    )
    failure_limit: int = Field(
        default=1, ge=1, le=100, description="Failed analyses tolerated before rolling back."
    )
    max_inconclusive: int = Field(
        default=20,
        ge=1,
        le=10000,
        description="Inconclusive analyses in a row before the step counts as failed.",
    )


class CanaryStep(KubeloopModel):
    """Send ``weight`` percent of traffic to the candidate, then wait ``pause``."""

    weight: int = Field(
        ge=1, le=100, description="Percent of requests sent to the candidate (1..100)."
    )
    pause: Duration = Field(default="1m", description="Time at this weight while analysis runs.")


class CanaryStrategy(KubeloopModel):
    """Shift traffic to the candidate step by step, analysing at each step."""

    cel_rules = (
        CelRule(
            rule="self.steps.map(s, s.weight).isSorted() && "
            "self.steps.all(s, size(self.steps.filter(t, t.weight == s.weight)) == 1)",
            message="canary step weights must be strictly increasing",
            holds=lambda c: all(
                a.weight < b.weight for a, b in zip(c.steps, c.steps[1:], strict=False)
            ),
        ),
    )

    steps: list[CanaryStep] = Field(
        min_length=1,
        max_length=20,
        description="Traffic steps; after the last one the candidate takes all traffic.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    scale_down_delay: Duration = Field(
        default="30s",
        description=(
            "Time the previous stable version stays up (at 0%) after the candidate took all "
            "traffic, so in-flight requests finish and a rollback needs no cold start."
        ),
    )
    analysis: Analysis = object_default_field(Analysis, "Checks at every step.")


class ConfigMapKeyRef(KubeloopModel):
    """A key of a ConfigMap in the same namespace."""

    name: ResourceName = Field(description="Name of the ConfigMap.")
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key within the ConfigMap's data.",
    )


class SmokeTest(KubeloopModel):
    """A few known requests sent to the preview before it may take traffic.

    Every record must get a 200 from the preview's ``/predict``; with ``minAgreement`` the
    preview's predictions must also match stable's on that share of the records.
    """

    # "Exactly one of records or configMapRef" is a policy rule on DeploymentSpec: records are
    # free-form (number|string|bool values), which CRD CEL cannot type.

    records: list[dict[str, ParamValue]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="/predict records keyed by column name, e.g. [{sepal_length: 5.1, ...}].",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None,
        description="A ConfigMap key holding the records as JSON Lines (one record a line).",
    )
    min_agreement: Fraction | None = Field(
        default=None,
        description="Share of records on which the preview must predict what stable predicts.",
    )


class BlueGreenStrategy(KubeloopModel):
    """Bring the new version up beside the old, test it on a preview endpoint, then switch."""

    auto_promotion: bool = Field(
        default=True, description="Switch by itself once the preview passes analysis."
    )
    preview_duration: Duration = Field(
        default="5m", description="Time the preview is analysed before an automatic switch."
    )
    scale_down_delay: Duration = Field(
        default="2m",
        description="Time the old version stays up after the switch, for a fast rollback.",
    )
    smoke_test: SmokeTest | None = Field(
        default=None, description="Known requests the preview must answer before the switch."
    )
    analysis: Analysis = object_default_field(Analysis, "Checks on the preview.")


class ShadowStrategy(KubeloopModel):
    """Copy live traffic to the candidate; users only ever see stable's answers."""

    percent: int = Field(default=100, ge=1, le=100, description="Percent of requests copied.")
    duration: Duration = Field(default="10m", description="How long to shadow before deciding.")
    promote: bool = Field(
        default=False, description="Switch to the candidate when the shadow analysis passes."
    )
    scale_down_delay: Duration = Field(
        default="30s",
        description="Time the previous stable version stays up after a promotion.",
    )
    analysis: Analysis = object_default_field(Analysis, "Checks on the shadow copies.")


class Strategy(KubeloopModel):
    """How a new version replaces the current one."""

    cel_rules = (
        CelRule(
            rule="self.type == 'Canary' || !has(self.canary)",
            message="strategy.canary is only valid when strategy.type is Canary",
            holds=lambda s: s.type == "Canary" or s.canary is None,
        ),
        CelRule(
            rule="self.type == 'BlueGreen' || !has(self.blueGreen)",
            message="strategy.blueGreen is only valid when strategy.type is BlueGreen",
            holds=lambda s: s.type == "BlueGreen" or s.blue_green is None,
        ),
        CelRule(
            rule="self.type == 'Shadow' || !has(self.shadow)",
            message="strategy.shadow is only valid when strategy.type is Shadow",
            holds=lambda s: s.type == "Shadow" or s.shadow is None,
        ),
    )

    type: StrategyType = Field(
        default="Canary", description="Canary, BlueGreen, Shadow or Recreate (switch at once)."
    )
    canary: CanaryStrategy | None = Field(
        default=None,
        description="Canary steps and analysis; when omitted with type Canary: 10% then 50%, 1m each.",
    )
    blue_green: BlueGreenStrategy | None = Field(
        default=None, description="Blue-green settings; defaults apply when omitted."
    )
    shadow: ShadowStrategy | None = Field(
        default=None, description="Shadow settings; defaults apply when omitted."
    )

    def effective_canary(self) -> CanaryStrategy:
        """The canary block in force: the declared one or the default steps."""
        return self.canary or CanaryStrategy(
            steps=[CanaryStep(weight=10, pause="1m"), CanaryStep(weight=50, pause="1m")]
        )

    def effective_blue_green(self) -> BlueGreenStrategy:
        """The blue-green block in force."""
        return self.blue_green or BlueGreenStrategy()

    def effective_shadow(self) -> ShadowStrategy:
        """The shadow block in force."""
        return self.shadow or ShadowStrategy()


class ParentRef(KubeloopModel):
    """A Gateway API Gateway the HTTPRoute attaches to."""

    name: ResourceName = Field(description="Gateway name.")
    namespace: ResourceName | None = Field(
        default=None, description="Gateway namespace (default: same)."
    )
    section_name: str | None = Field(default=None, max_length=253, description="Listener name.")


class Traffic(KubeloopModel):
    """How requests reach the live versions."""

    cel_rules = (
        CelRule(
            rule="!(has(self.stickyHeader) && has(self.stickyCookie))",
            message="set at most one of traffic.stickyHeader or traffic.stickyCookie",
            holds=lambda t: t.sticky_header is None or t.sticky_cookie is None,
        ),
        CelRule(
            rule="self.router != 'GatewayAPI' || has(self.parentRef)",
            message="traffic.parentRef is required when traffic.router is GatewayAPI",
            holds=lambda t: t.router != "GatewayAPI" or t.parent_ref is not None,
        ),
        CelRule(
            rule="self.router == 'Builtin' || !(has(self.stickyHeader) || has(self.stickyCookie))",
            message="traffic.stickyHeader and traffic.stickyCookie need traffic.router Builtin",
            holds=lambda t: (
                t.router == "Builtin" or (t.sticky_header is None and t.sticky_cookie is None)
            ),
        ),
    )

    router: Literal["Builtin", "GatewayAPI"] = Field(
        default="Builtin",
        description="Builtin: kubeloop's NGINX router; GatewayAPI: weights written to an HTTPRoute.",
    )
    sticky_header: str | None = Field(
        default=None,
        max_length=256,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Requests with the same value of this header go to the same version.",
    )
    sticky_cookie: str | None = Field(
        default=None,
        max_length=256,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Requests with the same value of this cookie go to the same version.",
    )
    parent_ref: ParentRef | None = Field(default=None, description="Gateway for the HTTPRoute.")
    port: int = Field(default=80, ge=1, le=65535, description="Port of the stable Service.")


class DriftThresholds(KubeloopModel):
    """Where each drift measure says a feature has drifted.

    psi, js, ks and linf are distances: a feature drifted when its score is above the
    threshold. chi2 is the p-value of a chi-square goodness-of-fit test (Evidently's
    convention): a feature drifted when its p-value is below the threshold.
    """

    psi: float = Field(
        default=0.2, gt=0.0, le=10.0, description="Population stability index above which."
    )
    js: float = Field(
        default=0.1, gt=0.0, le=1.0, description="Jensen-Shannon distance (base 2) above which."
    )
    ks: float = Field(
        default=0.1, gt=0.0, le=1.0, description="Kolmogorov-Smirnov statistic above which."
    )
    chi2: float = Field(
        default=0.05, gt=0.0, lt=1.0, description="Chi-square test p-value below which."
    )
    linf: float = Field(
        default=0.1, gt=0.0, le=1.0, description="Largest category share difference above which."
    )


class FeatureThresholds(KubeloopModel):
    """Thresholds of one feature that differ from ``monitoring.thresholds``."""

    feature: str = Field(
        min_length=1,
        max_length=256,
        description="Feature name, or 'prediction' for the model's output distribution.",
    )
    psi: float | None = Field(default=None, gt=0.0, le=10.0, description="PSI threshold.")
    js: float | None = Field(default=None, gt=0.0, le=1.0, description="JS distance threshold.")
    ks: float | None = Field(default=None, gt=0.0, le=1.0, description="KS statistic threshold.")
    chi2: float | None = Field(default=None, gt=0.0, lt=1.0, description="Chi-square p-value.")
    linf: float | None = Field(default=None, gt=0.0, le=1.0, description="L-infinity threshold.")


class Monitoring(KubeloopModel):
    """Drift and live-accuracy monitoring of the stable version.

    Every ``interval`` the operator scrapes each serving pod of the stable version, adds up
    the per-feature histograms the pods count on the training profile's bins, and compares
    the traffic of the window with the training Dataset version's profile. Numeric features
    are scored with psi, js and ks; categorical ones with psi, js, chi2 and linf (a method
    that does not fit a feature's kind is skipped for it).
    """

    enabled: bool = Field(default=True, description="Scrape the serving pods and compute drift.")
    methods: list[DriftMethod] = Field(
        default_factory=lambda: list[DriftMethod](["psi"]),
        min_length=1,
        max_length=5,
        description="Drift measures: psi, js, ks (numeric), chi2, linf (categorical).",
        json_schema_extra={"x-kubernetes-list-type": "set", "default": ["psi"]},
    )
    thresholds: DriftThresholds = object_default_field(DriftThresholds, "Drift thresholds.")
    feature_thresholds: list[FeatureThresholds] | None = Field(
        default=None,
        max_length=2000,
        description="Per-feature thresholds overriding monitoring.thresholds.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["feature"],
        },
    )
    window: Duration = Field(
        default="1h", description="Longest stretch of traffic a drift score covers."
    )
    window_samples: int | None = Field(
        default=None,
        ge=10,
        le=100_000_000,
        description=(
            "Window by count: the newest traffic holding at least this many predictions "
            "(never older than window). When omitted the window is all traffic of window."
        ),
    )
    interval: Duration = Field(default="30s", description="How often drift is computed.")
    min_samples: int = Field(
        default=500,
        ge=10,
        le=100_000_000,
        description="Predictions the window needs before a drift verdict (fewer: InsufficientData).",
    )
    consecutive: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Checks in a row that must find drift before DriftDetected is set.",
    )
    prediction_drift: bool = Field(
        default=True,
        description=(
            "Also score the prediction distribution against the training target's "
            "(reported as feature 'prediction'; it does not count as a drifted feature)."
        ),
    )
    features: list[ColumnName] | None = Field(
        default=None,
        max_length=2000,
        description="Features to watch; all inputs when omitted.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


RetrainTrigger = Literal["Drift", "Accuracy", "Schedule"]
RetrainCause = Literal["Drift", "Accuracy", "Schedule", "Manual"]
_CRON_FIELD = r"[0-9*/,-]+"
CRON_PATTERN = rf"^{_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD} {_CRON_FIELD}$"


class RetrainPolicy(KubeloopModel):
    """Start a new TrainingRun when the live model degrades, on a schedule, or on request.

    A retrain copies ``template`` into a TrainingRun named ``<deployment>-retrain-<n>``
    (deterministic, so an operator restarted at any moment adopts the run it made instead of
    making a second one), trained on the newest version of ``dataset``: with
    ``refreshDataset`` the Dataset is first asked for a fresh version (a Dataset with
    ``source.predictionLog`` then includes the latest production feedback). Its ModelVersion
    passes the template's gates, the champion gate scoring the Production version on the
    same fresh test rows; with ``autoPromote`` a Validated one is moved to that stage, and a
    Deployment tracking the stage rolls it out by its strategy. At most one retrain is in
    flight per Deployment, and automatic triggers wait ``cooldown`` after the last start.
    """

    cel_rules = (
        CelRule(
            rule="!('Accuracy' in self.triggers) || has(self.minLiveAccuracy)",
            message="retrain.minLiveAccuracy is required when retrain.triggers has Accuracy",
            holds=lambda r: "Accuracy" not in r.triggers or r.min_live_accuracy is not None,
        ),
        CelRule(
            rule="('Schedule' in self.triggers) == has(self.schedule)",
            message="retrain.schedule is required with trigger Schedule, and only then",
            holds=lambda r: ("Schedule" in r.triggers) == (r.schedule is not None),
        ),
    )

    triggers: list[RetrainTrigger] = Field(
        default_factory=lambda: list[RetrainTrigger](["Drift"]),
        max_length=3,
        description=(
            "What starts a retrain by itself: Drift (DriftDetected with at least "
            "minDriftedFeatures features), Accuracy (live accuracy from feedback below "
            "minLiveAccuracy), Schedule (the cron schedule). Empty: only on request."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set", "default": ["Drift"]},
    )
    min_drifted_features: int = Field(
        default=1, ge=1, le=2000, description="Drifted features needed to trigger."
    )
    min_live_accuracy: Fraction | None = Field(
        default=None, description="Live accuracy below this triggers a retrain."
    )
    min_feedback: int = Field(
        default=50,
        ge=1,
        le=10_000_000,
        description="Feedback labels in the drift window before the Accuracy trigger decides.",
    )
    schedule: str | None = Field(
        default=None,
        max_length=100,
        pattern=CRON_PATTERN,
        description="Cron schedule (5 fields, UTC), e.g. '0 3 * * 1' for Mondays at 03:00.",
    )
    template: ResourceName = Field(
        description="TrainingRun to copy: estimator, search, gates, resources, deadline."
    )
    dataset: ResourceName | None = Field(
        default=None,
        description=(
            "Dataset the retrained model learns from, e.g. one with source.predictionLog; "
            "the template's Dataset when omitted."
        ),
    )
    refresh_dataset: bool = Field(
        default=True,
        description="Ask the Dataset for a fresh version (kubeloop.io/refresh) before training.",
    )
    cooldown: Duration = Field(
        default="6h", description="Least time between two automatic retrains."
    )
    auto_promote: Literal["None", "Staging", "Production"] = Field(
        default="None",
        description="Stage a Validated retrained version is moved to by itself.",
    )
    revert_on_failure: bool = Field(
        default=True,
        description=(
            "With autoPromote Production: when the promoted version's rollout fails, put the "
            "version still serving back in Production (the failed one is then Archived), so "
            "the registry names what serves. false: the failed version stays Production."
        ),
    )
    request: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$",
        description=(
            "Retrain now: set to a new value (e.g. a timestamp; 'kubeloop rollout retrain' "
            "does). Acts once per value (the value handled is in status.lastRetrain.request), "
            "so leaving it in a Git repository does not retrain again. Ignores cooldown."
        ),
    )


class DeploymentSpec(KubeloopModel):
    """Desired state of a kubeloop Deployment.

    Manual controls are declarative, so a GitOps repository can hold them without replaying
    them: ``paused`` and ``abort`` are states that hold while set, and ``promote`` names the
    candidate it is meant for. A one-shot ``promote: true`` would stay true in Git and silently
    promote every later candidate as well; ``promote: iris-v3`` acts once, on iris-v3 only,
    and is inert for any other version, so leaving it in the repository is harmless.
    """

    cel_rules = (
        CelRule(
            rule="!(has(self.promote) && self.abort)",
            message="spec.promote and spec.abort cannot be set together",
            holds=lambda s: s.promote is None or not s.abort,
        ),
        CelRule(
            rule="!has(object.spec.strategy.blueGreen) || "
            "!has(object.spec.strategy.blueGreen.smokeTest) || "
            "has(object.spec.strategy.blueGreen.smokeTest.records) != "
            "has(object.spec.strategy.blueGreen.smokeTest.configMapRef)",
            message="exactly one of smokeTest.records or smokeTest.configMapRef must be set",
            holds=lambda s: (
                s.strategy.blue_green is None
                or s.strategy.blue_green.smoke_test is None
                or (s.strategy.blue_green.smoke_test.records is None)
                != (s.strategy.blue_green.smoke_test.config_map_ref is None)
            ),
            scope="policy",
        ),
    )

    model: ModelSelector = Field(description="The ModelVersion to serve, or the stage to follow.")
    replicas: int = Field(
        default=1, ge=0, le=100, description="Pods per live version when autoscaling is off."
    )
    autoscaling: Autoscaling | None = Field(default=None, description="HPA per live version.")
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory of each serving pod."
    )
    strategy: Strategy = object_default_field(Strategy, "How new versions roll out.")
    traffic: Traffic = object_default_field(Traffic, "Routing of requests.")
    monitoring: Monitoring = object_default_field(Monitoring, "Drift monitoring.")
    retrain: RetrainPolicy | None = Field(default=None, description="Automatic retraining.")
    max_batch_size: int = Field(
        default=32, ge=1, le=4096, description="Largest micro-batch the server forms."
    )
    max_batch_wait_ms: float = Field(
        default=2.0, ge=0.0, le=1000.0, description="Longest a request waits for a batch to fill."
    )
    min_available: int = Field(
        default=1, ge=0, le=100, description="PodDisruptionBudget minAvailable per live version."
    )
    paused: bool = Field(
        default=False,
        description=(
            "Hold the rollout at its current step: weights stay, no step advances and nothing "
            "is promoted by analysis. Analysis keeps running and a failed check still rolls "
            "back (pausing never makes a bad candidate safer)."
        ),
    )
    promote: ResourceName | None = Field(
        default=None,
        description=(
            "Name of the candidate ModelVersion to promote now: it takes all traffic at once, "
            "skipping remaining steps and analysis. Acts only while that version is the "
            "candidate (also after an analysis abort) and is ignored otherwise."
        ),
    )
    abort: bool = Field(
        default=False,
        description=(
            "Roll back: the candidate's weight goes to 0 at once and stays there while true. "
            "Setting it back to false restarts the rollout of the desired version from the "
            "first step."
        ),
    )


VersionRole = Literal["stable", "canary", "preview", "shadow", "previous"]


class VersionWeight(KubeloopModel):
    """A live version and its share of traffic (what the router and the HTTPRoute follow)."""

    version: str = Field(description="ModelVersion name.")
    weight: int = Field(ge=0, le=100, description="Percent of requests.")
    role: VersionRole = Field(
        description=(
            "Role in the rollout: stable, canary, preview (blue-green, 0% until the switch), "
            "shadow (gets copies only) or previous (old stable kept up until scaleDownAt)."
        )
    )
    mirror_percent: int | None = Field(
        default=None, ge=0, le=100, description="Percent of requests copied to a shadow version."
    )
    ready_replicas: int = Field(default=0, ge=0, description="Ready pods of this version.")
    scale_down_at: Timestamp | None = Field(
        default=None, description="When this previous version's pods are removed."
    )


class AnalysisResult(KubeloopModel):
    """One check of one analysis run, with the numbers it saw."""

    check: str = Field(
        description="Check name, e.g. errorRate, p99LatencyMs, predictionDivergence."
    )
    stable: float | None = Field(default=None, description="Stable's value.")
    candidate: float | None = Field(default=None, description="Candidate's value.")
    threshold: float | None = Field(default=None, description="Bound applied.")
    samples: int | None = Field(default=None, ge=0, description="Candidate requests in the window.")
    p_value: float | None = Field(
        default=None, description="p-value of the statistical test, if any."
    )
    verdict: Verdict = Field(description="Pass, Fail or Inconclusive.")
    message: str = Field(default="", description="The comparison in words.")


class AnalysisRun(KubeloopModel):
    """An analysis at one step."""

    step: int = Field(ge=0, description="Canary step index (0 for blue-green and shadow).")
    time: Timestamp = Field(description="When the analysis ran.")
    candidate: str | None = Field(default=None, description="Candidate version analysed.")
    stable: str | None = Field(default=None, description="Stable version compared against.")
    window_seconds: float | None = Field(
        default=None, ge=0.0, description="Length of the metric window analysed, seconds."
    )
    verdict: Verdict = Field(description="Overall verdict.")
    message: str = Field(default="", description="Why the verdict, in words with numbers.")
    results: list[AnalysisResult] = Field(
        default_factory=list, max_length=32, description="Checks."
    )


class FeatureDrift(KubeloopModel):
    """One drift measure of one feature (or of the predictions) over the window."""

    feature: str = Field(description="Feature name, or 'prediction' for the model's output.")
    kind: Literal["numeric", "categorical"] = Field(
        description="numeric (bins of the training deciles) or categorical (training categories)."
    )
    method: DriftMethod = Field(description="psi, js, ks, chi2 or linf.")
    score: float = Field(description="The score (chi2: the test's p-value).")
    threshold: float = Field(description="Threshold applied.")
    drifted: bool = Field(
        description="Whether the score crossed the threshold (above; chi2: below)."
    )


class DriftStatus(KubeloopModel):
    """The latest drift check of the stable version."""

    evaluated_at: Timestamp | None = Field(default=None, description="When drift was computed.")
    version: str | None = Field(default=None, description="ModelVersion monitored (stable).")
    verdict: DriftVerdict = Field(
        default="InsufficientData",
        description=(
            "NoDrift, Drifted (this check found drifted features), InsufficientData (fewer "
            "than minSamples predictions in the window) or NoBaseline (no training profile)."
        ),
    )
    message: str = Field(default="", description="The verdict in words, with numbers.")
    window_seconds: float | None = Field(
        default=None, ge=0.0, description="Length of traffic the scores cover, seconds."
    )
    samples: int = Field(default=0, ge=0, description="Predictions in the window.")
    pods: int = Field(default=0, ge=0, description="Serving pods scraped for this check.")
    drifted_features: int = Field(default=0, ge=0, description="Features that drifted.")
    consecutive: int = Field(
        default=0, ge=0, description="Checks in a row that found drift (DriftDetected at spec's)."
    )
    live_accuracy: float | None = Field(
        default=None, description="Accuracy of the window's feedback labels (classification)."
    )
    live_mean_absolute_error: float | None = Field(
        default=None, description="Mean absolute error of the window's feedback (regression)."
    )
    feedback: int = Field(default=0, ge=0, description="Feedback labels in the window.")
    scores: list[FeatureDrift] = Field(
        default_factory=list,
        max_length=4000,
        description="Scores per feature and method, drifted first, then by feature.",
    )


class RetrainRecord(KubeloopModel):
    """The last retrain kubeloop started, from trigger to rollout."""

    name: str = Field(description="Retrain name, <deployment>-retrain-<number>; also the run's.")
    number: int = Field(ge=1, description="How many retrains this Deployment started.")
    trigger: RetrainCause = Field(description="What started it.")
    reason: str = Field(description="Why, with the numbers the trigger saw.")
    request: str | None = Field(
        default=None, description="spec.retrain.request value handled (Manual, and since)."
    )
    scheduled_for: Timestamp | None = Field(
        default=None, description="The schedule time this retrain stands for (Schedule)."
    )
    drift: list[FeatureDrift] = Field(
        default_factory=list, max_length=20, description="Drifted scores that triggered it."
    )
    live_accuracy: float | None = Field(default=None, description="Live accuracy when it started.")
    phase: RetrainPhase = Field(
        description=(
            "RefreshingData, Training, Promoting, RollingOut, Reverting (a failed rollout's "
            "registry change undone), then Succeeded, Rejected (gates) or Failed."
        )
    )
    message: str = Field(default="", description="The phase in words.")
    dataset: str | None = Field(default=None, description="Dataset trained on.")
    dataset_version: str | None = Field(default=None, description="Its version pinned.")
    training_run: str | None = Field(default=None, description="TrainingRun created.")
    model_version: str | None = Field(default=None, description="ModelVersion it produced.")
    reverted_to: str | None = Field(
        default=None,
        description="The version put back in Production after this one's rollout failed.",
    )
    started_at: Timestamp = Field(description="When the trigger fired.")
    finished_at: Timestamp | None = Field(
        default=None, description="When it reached Succeeded, Rejected or Failed."
    )


class DeploymentStatus(KubeloopModel):
    """Observed state of a kubeloop Deployment."""

    observed_generation: int | None = observed_generation_field()
    conditions: list[Condition] = conditions_field()
    phase: DeploymentPhase = Field(
        default="Pending",
        description="Pending, Progressing, Healthy, Degraded, RolledBack or Failed.",
    )
    message: str = Field(default="", description="Why the Deployment is in this phase.")
    model: str | None = Field(default=None, description="Registry name of the model served.")
    stable_version: str | None = Field(default=None, description="Version serving most traffic.")
    candidate_version: str | None = Field(default=None, description="Version being rolled out.")
    canary_weight: int | None = Field(
        default=None, ge=0, le=100, description="Candidate's percent."
    )
    current_step: int | None = Field(default=None, ge=0, description="Canary step index.")
    step_started_at: Timestamp | None = Field(
        default=None, description="When the current step (or preview, or shadow) began."
    )
    next_analysis_at: Timestamp | None = Field(
        default=None, description="When the next analysis is due."
    )
    inconclusive_streak: int = Field(
        default=0, ge=0, description="Inconclusive analyses in a row at this step."
    )
    failed_analyses: int = Field(
        default=0, ge=0, description="Failed analyses of the current candidate."
    )
    aborted_version: str | None = Field(
        default=None,
        description=(
            "Candidate rolled back by analysis or abort; it is not retried by itself (promote "
            "it by name, or roll out another version)."
        ),
    )
    failed_version: str | None = Field(
        default=None,
        description="Desired version that can never be served (Rejected, or a bad artifact digest).",
    )
    versions: list[VersionWeight] = Field(
        default_factory=list,
        max_length=4,
        description="Live versions and weights.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["version"],
        },
    )
    analysis: list[AnalysisRun] = Field(
        default_factory=list, max_length=20, description="Recent analyses, newest last."
    )
    drift: DriftStatus | None = Field(default=None, description="Latest drift evaluation.")
    last_retrain: RetrainRecord | None = Field(default=None, description="Last retrain started.")
    last_scheduled_retrain: Timestamp | None = Field(
        default=None, description="The last schedule time a retrain was started for."
    )
    endpoint: str | None = Field(default=None, description="In-cluster URL of the stable endpoint.")


class Deployment(KubeloopModel):
    """Serve a model and roll out new versions safely (deployments.kubeloop.io)."""

    api_version: Literal["kubeloop.io/v1alpha1"] = Field(
        default="kubeloop.io/v1alpha1", description="kubeloop.io/v1alpha1"
    )
    kind: Literal["Deployment"] = Field(default="Deployment", description="Deployment")
    metadata: ObjectMeta = Field(
        default_factory=ObjectMeta, description="Standard object metadata."
    )
    spec: DeploymentSpec = Field(description="Desired state.")
    status: DeploymentStatus | None = Field(default=None, description="Observed state.")
