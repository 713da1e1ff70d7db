"""The admission policy's CEL judges estimator parameter values as offline validation does.

For every allowlisted (estimator, parameter) a spread of values and search ranges is applied
to the real API server (``--dry-run=server``, one kubectl call for all of them) and the answer
compared with :func:`kubeloop.api.validation.validate_manifest`: accepted by both, or refused
by both with the same message. ``tests/unit/test_api_estimator_params.py`` ties the Python
side to scikit-learn, so the three agree.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from tests.cluster.conftest import Kubectl

from kubeloop.api.estimators import ESTIMATORS
from kubeloop.api.meta import ParamValue
from kubeloop.api.validation import ManifestError, validate_manifest

pytestmark = pytest.mark.cluster

VALUES: list[ParamValue] = [
    -1, 0, 1, 2, 255, 256, 0.0, 0.5, 1.0, 1.5, 2.0, True, "many", "auto", "balanced", "sqrt",
    "gini", "lbfgs", "squared_error",
]  # fmt: skip
RANGES: list[dict[str, Any]] = [
    {"min": 0.0, "max": 1.0},
    {"min": 0.5, "max": 1.0},
    {"min": 1, "max": 10},
    {"min": 1, "max": 10, "integer": True},
    {"min": 0.5, "max": 300, "integer": True},
    {"min": 2, "max": 255, "integer": True},
]
_OFFLINE_PREFIX = 'spec: Invalid value: "object": '
_REFUSED = re.compile(r'"(?P<name>case-[0-9]+)" is (?:invalid|forbidden): (?P<message>.*)$')


def _manifest(index: int, estimator: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": f"case-{index:04d}"},
        "spec": {
            "datasetRef": {"name": "data"},
            "modelName": "model",
            "estimator": {"name": estimator, **spec.get("estimator", {})},
            **({"search": spec["search"]} if "search" in spec else {}),
        },
    }


def _cases() -> list[dict[str, Any]]:
    manifests: list[dict[str, Any]] = []
    for estimator, info in ESTIMATORS.items():
        metric = "accuracy" if info.task == "classification" else "rmse"
        for param in info.params:
            for value in VALUES:
                spec = {"estimator": {"params": {param: value}}}
                manifests.append(_manifest(len(manifests), estimator, spec))
            for bounds in RANGES:
                search = {"metric": metric, "space": {param: {"range": bounds}}}
                manifests.append(_manifest(len(manifests), estimator, {"search": search}))
            search = {"metric": metric, "space": {param: {"values": VALUES[:4] + VALUES[-3:]}}}
            manifests.append(_manifest(len(manifests), estimator, {"search": search}))
    return manifests


def _offline(manifest: dict[str, Any]) -> str | None:
    try:
        validate_manifest(manifest)
    except ManifestError as error:
        assert len(error.errors) == 1, error.errors
        return error.errors[0].removeprefix(_OFFLINE_PREFIX)
    return None


def test_api_server_and_offline_validation_agree_on_every_parameter(
    kubectl: Kubectl, crds_installed: None
) -> None:
    manifests = _cases()
    text = "".join("---\n" + yaml.safe_dump(m, sort_keys=False) for m in manifests)
    result = kubectl.run(
        "apply", "--dry-run=server", "-n", "default", "-f", "-", stdin=text, timeout=600
    )
    refused = {
        match["name"]: match["message"]
        for line in (result.stdout + result.stderr).splitlines()
        if (match := _REFUSED.search(line))
    }
    accepted = set(re.findall(r"trainingrun\.kubeloop\.io/(case-[0-9]+) created", result.stdout))
    disagreements: list[str] = []
    refusals = 0
    for manifest in manifests:
        name = manifest["metadata"]["name"]
        expected = _offline(manifest)
        cell = f"{name} {manifest['spec']['estimator']} {manifest['spec'].get('search')}"
        if expected is None:
            if name not in accepted:
                disagreements.append(f"{cell}: offline accepts, server says {refused.get(name)}")
            continue
        refusals += 1
        server = refused.get(name)
        if server is None or not server.endswith(expected):
            disagreements.append(f"{cell}:\n  offline: {expected}\n  server:  {server}")
    assert not disagreements, "\n".join(disagreements)
    # The spread is wide enough to exercise both answers often.
    assert refusals > len(manifests) / 3
    assert len(accepted) > len(manifests) / 5
