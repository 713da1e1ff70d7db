"""The four kubeloop APIs (``kubeloop.io/v1alpha1``) as pydantic models.

These models are the single source of truth: ``kubeloop.crdgen`` turns them into the CRDs in
``crds/``, the controllers parse objects with them, and ``validation`` checks manifests
offline with the API server's wording. One module per kind.
"""

from kubeloop.api.dataset import Dataset, DatasetSpec, DatasetStatus
from kubeloop.api.deployment import Deployment, DeploymentSpec, DeploymentStatus
from kubeloop.api.kinds import KINDS, KINDS_BY_NAME, KindInfo
from kubeloop.api.meta import Condition, KubeloopModel
from kubeloop.api.modelversion import ModelVersion, ModelVersionSpec, ModelVersionStatus
from kubeloop.api.trainingrun import TrainingRun, TrainingRunSpec, TrainingRunStatus

__all__ = [
    "KINDS",
    "KINDS_BY_NAME",
    "Condition",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "KindInfo",
    "KubeloopModel",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "TrainingRun",
    "TrainingRunSpec",
    "TrainingRunStatus",
]
