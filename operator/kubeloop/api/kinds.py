"""The four kinds as the API server sees them: names, short names and printer columns.

This table plus the models is everything CRD generation needs. Short names avoid the
built-in ones (``ds``, ``deploy``, ``po``, ...) so ``kubectl get`` never becomes ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.dataset import Dataset
from kubeloop.api.deployment import Deployment
from kubeloop.api.meta import KubeloopModel
from kubeloop.api.modelversion import ModelVersion
from kubeloop.api.trainingrun import TrainingRun

CATEGORY = "kubeloop"


@dataclass(frozen=True)
class PrinterColumn:
    """One column of ``kubectl get``."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


@dataclass(frozen=True)
class KindInfo:
    """Everything about a kind that is not in its model."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    model: type[KubeloopModel]
    columns: tuple[PrinterColumn, ...]

    @property
    def crd_name(self) -> str:
        """``<plural>.<group>``, the CRD's own name."""
        return f"{self.plural}.{API_GROUP}"

    @property
    def api_version(self) -> str:
        """``group/version`` of the kind."""
        return f"{API_GROUP}/{API_VERSION}"


_AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation.")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        kind="Dataset",
        plural="datasets",
        singular="dataset",
        short_names=("mldata", "kds"),
        model=Dataset,
        columns=(
            PrinterColumn(
                "Phase", "string", ".status.phase", "Pending, Profiling, Ready or Invalid."
            ),
            PrinterColumn("Version", "string", ".status.version", "Digest of the current version."),
            PrinterColumn("Rows", "integer", ".status.rows", "Rows of the current version."),
            PrinterColumn("Columns", "integer", ".status.columnCount", "Columns.", priority=1),
            PrinterColumn("Source", "string", ".spec.source.uri", "Source object.", priority=1),
            _AGE,
        ),
    ),
    KindInfo(
        kind="TrainingRun",
        plural="trainingruns",
        singular="trainingrun",
        short_names=("trun", "mlrun"),
        model=TrainingRun,
        columns=(
            PrinterColumn(
                "Phase", "string", ".status.phase", "Pending, Running, Succeeded or Failed."
            ),
            PrinterColumn("Dataset", "string", ".spec.datasetRef.name", "Dataset trained on."),
            PrinterColumn("Estimator", "string", ".spec.estimator.name", "Estimator.", priority=1),
            PrinterColumn("Trials", "integer", ".status.trials.succeeded", "Trials finished."),
            PrinterColumn("Metric", "string", ".status.metric", "Metric of the search."),
            PrinterColumn("Best", "number", ".status.bestScore", "Best validation score."),
            PrinterColumn(
                "Model-Version", "string", ".status.modelVersion", "ModelVersion created."
            ),
            _AGE,
        ),
    ),
    KindInfo(
        kind="ModelVersion",
        plural="modelversions",
        singular="modelversion",
        short_names=("mv", "mlmodel"),
        model=ModelVersion,
        columns=(
            PrinterColumn("Model", "string", ".spec.model", "Registry name."),
            PrinterColumn("Version", "integer", ".spec.version", "Version number."),
            PrinterColumn(
                "Stage", "string", ".spec.stage", "None, Staging, Production or Archived."
            ),
            PrinterColumn("Phase", "string", ".status.phase", "Pending, Validated or Rejected."),
            PrinterColumn("Metric", "string", ".status.primaryMetric", "Headline test metric."),
            PrinterColumn("Run", "string", ".spec.lineage.trainingRun", "TrainingRun.", priority=1),
            _AGE,
        ),
    ),
    KindInfo(
        kind="Deployment",
        plural="deployments",
        singular="deployment",
        short_names=("mldeploy", "mld"),
        model=Deployment,
        columns=(
            PrinterColumn("Model", "string", ".status.model", "Registry name of the model."),
            PrinterColumn(
                "Stable", "string", ".status.stableVersion", "Version serving most traffic."
            ),
            PrinterColumn("Canary", "string", ".status.candidateVersion", "Version rolling out."),
            PrinterColumn(
                "Weight", "integer", ".status.canaryWeight", "Candidate's traffic percent."
            ),
            PrinterColumn("Phase", "string", ".status.phase", "Rollout phase."),
            PrinterColumn(
                "Drift", "string", ".status.drift.verdict", "Drift verdict of the last check."
            ),
            PrinterColumn(
                "Retrain", "string", ".status.lastRetrain.phase", "Phase of the last retrain."
            ),
            PrinterColumn(
                "Strategy", "string", ".spec.strategy.type", "Rollout strategy.", priority=1
            ),
            PrinterColumn("Endpoint", "string", ".status.endpoint", "Stable endpoint.", priority=1),
            _AGE,
        ),
    ),
)

KINDS_BY_NAME: dict[str, KindInfo] = {info.kind: info for info in KINDS}
