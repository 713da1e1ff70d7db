"""The ModelVersion the operator writes for the winning trial of a TrainingRun.

Everything in its spec is a fact about the artifact and where it came from (URI and sha256,
signature, test metrics, lineage); the API server keeps those immutable. The version number
is chosen by the caller (the next free one for the model); the name is ``<model>-v<N>``.
"""

from __future__ import annotations

from typing import Any

from kubeloop import API_GROUP, API_VERSION, __version__
from kubeloop.api.modelversion import Signature
from kubeloop.api.trainingrun import TrainingRunSpec

MODEL_FILE = "model.onnx"


def model_version_name(model: str, version: int) -> str:
    """``<model>-v<N>``."""
    return f"{model}-v{version}"


def build_model_version(
    *,
    namespace: str,
    run_name: str,
    spec: TrainingRunSpec,
    version: int,
    trial: int,
    answer: dict[str, Any],
    signature: Signature,
    dataset_version: str,
    image: str,
) -> dict[str, Any]:
    """The ModelVersion for the winning ``trial`` whose trainer answered ``answer``."""
    params = {**(spec.estimator.params or {}), **(answer.get("params") or {})}
    metrics = {
        k: float(v) for k, v in (answer.get("metrics") or {}).items() if isinstance(v, int | float)
    }
    artifact: dict[str, Any] = {
        "uri": str(answer["artifactURI"]) + MODEL_FILE,
        "sha256": str(answer["modelSHA256"]),
        "format": "onnx",
    }
    if answer.get("modelSizeBytes") is not None:
        artifact["sizeBytes"] = int(answer["modelSizeBytes"])
    if answer.get("opset") is not None:
        artifact["opset"] = int(answer["opset"])
    extra: dict[str, Any] = {}
    champion = answer.get("champion")
    if isinstance(champion, dict) and champion.get("name"):
        extra["championScore"] = {
            "name": str(champion["name"]),
            "metrics": {
                k: float(v)
                for k, v in (champion.get("metrics") or {}).items()
                if isinstance(v, int | float)
            },
            **({"rows": int(champion["rows"])} if champion.get("rows") is not None else {}),
            **({"error": str(champion["error"])[:1024]} if champion.get("error") else {}),
        }
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "ModelVersion",
        "metadata": {
            "name": model_version_name(spec.model_name, version),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "kubeloop",
                "app.kubernetes.io/managed-by": "kubeloop",
                "app.kubernetes.io/part-of": "kubeloop",
                f"{API_GROUP}/model": spec.model_name,
                f"{API_GROUP}/trainingrun": run_name,
            },
        },
        "spec": {
            "model": spec.model_name,
            "version": version,
            "artifact": artifact,
            "signature": signature.to_wire(),
            "metrics": metrics,
            "lineage": {
                "trainingRun": run_name,
                "trial": trial,
                "dataset": spec.dataset_ref.name,
                "datasetVersion": dataset_version,
                "estimator": spec.estimator.name,
                "params": params,
                "image": image,
                "seed": spec.seed,
                "kubeloopVersion": __version__,
            },
            "gates": spec.gates.to_wire(),
            **extra,
            "stage": "None",
        },
    }
