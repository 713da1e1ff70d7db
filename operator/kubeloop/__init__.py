"""kubeloop: a Kubernetes operator that closes the machine-learning loop.

Versioned Datasets feed TrainingRuns, whose best trial becomes a ModelVersion in a registry
with quality gates; Deployments serve Validated versions with onnxruntime behind canary,
blue-green and shadow rollouts; drift on live traffic starts new TrainingRuns.

Layout (see DESIGN.md §4): ``api`` holds the pydantic models that are the single source of
the CRDs, ``crdgen`` turns them into ``crds/``, ``storage`` talks S3, ``devenv`` starts the
local stack used by ``make demo`` and the tests.
"""

__version__ = "0.1.0"

API_GROUP = "kubeloop.io"
API_VERSION = "v1alpha1"
