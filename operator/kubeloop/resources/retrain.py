"""The TrainingRun a retrain creates: the policy's template, on a pinned Dataset version.

The copy keeps what the template says about *how* to train (estimator, search, split,
gates, resources, deadline, seed) and changes only *what on*: the Dataset (the policy's, e.g.
one built from production feedback) at the version the retrain pinned. It always carries a
champion gate, so the new version is compared with the current Production version on the
same fresh test rows (the trainer scores both on them): a template without one gets
``minImprovement: 0`` on its primary metric. No owner reference: the run and its
ModelVersion are registry history and outlive the Deployment that asked for them.
"""

from __future__ import annotations

import copy
from typing import Any

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.estimators import estimator_task
from kubeloop.resources.common import MANAGED_BY, PART_OF, child_name, kubeloop_version_annotation

COMPONENT = "retrain"


def retrain_name(deployment: str, number: int) -> str:
    """The deterministic name of a Deployment's ``number``-th retrain (and its TrainingRun)."""
    return child_name(deployment, f"retrain-{number}", max_length=253)


def primary_metric(spec: dict[str, Any]) -> str:
    """The metric a run's champion comparison uses when the template names none."""
    search = spec.get("search") or {}
    if search.get("metric"):
        return str(search["metric"])
    name = str((spec.get("estimator") or {}).get("name", ""))
    return "f1" if estimator_task(name) == "classification" else "rmse"


def build_retrain_run(
    template: dict[str, Any],
    *,
    name: str,
    namespace: str,
    deployment: str,
    number: int,
    dataset: str,
    version: str,
) -> dict[str, Any]:
    """The TrainingRun ``name`` copied from ``template`` (a TrainingRun object as read)."""
    spec = copy.deepcopy(template.get("spec") or {})
    spec["datasetRef"] = {"name": dataset, "version": version}
    gates = spec.setdefault("gates", {})
    if not gates.get("champion"):
        gates["champion"] = {"metric": primary_metric(spec), "minImprovement": 0.0}
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TrainingRun",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "kubeloop",
                "app.kubernetes.io/instance": deployment,
                "app.kubernetes.io/component": COMPONENT,
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "app.kubernetes.io/part-of": PART_OF,
                f"{API_GROUP}/deployment": deployment,
                f"{API_GROUP}/retrain": str(number),
            },
            "annotations": {
                **kubeloop_version_annotation(),
                f"{API_GROUP}/template": str((template.get("metadata") or {}).get("name", "")),
            },
        },
        "spec": spec,
    }
