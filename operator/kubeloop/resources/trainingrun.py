"""The Indexed Job that runs a TrainingRun's trials: one completion index per trial.

Every pod gets the same trial plan (``KUBELOOP_TRIAL_CONFIG``) and picks its trial from
``JOB_COMPLETION_INDEX``, which the Job controller sets; the search sampler is deterministic,
so index ``i`` always trains the same parameters. The Job's name is fixed per run, which is
what makes "create if absent" exactly-once across operator restarts.
"""

from __future__ import annotations

import json
from typing import Any

from kubeloop.api.meta import ResourceRequirements
from kubeloop.api.trainingrun import TrainingRunSpec
from kubeloop.resources.common import (
    SCRATCH_DIR,
    Owner,
    WorkloadSettings,
    child_name,
    container_security_context,
    kubeloop_version_annotation,
    labels,
    pod_security_context,
    resources_dict,
    s3_env,
)

COMPONENT = "trainer"
TERMINATION_LOG = "/dev/termination-log"


def training_job_name(run_name: str) -> str:
    """The one Job of a TrainingRun."""
    return child_name(run_name, "train")


def build_training_job(
    owner: Owner,
    spec: TrainingRunSpec,
    trials: int,
    trial_config: dict[str, Any],
    settings: WorkloadSettings,
) -> dict[str, Any]:
    """The Indexed Job for ``owner``: ``trials`` completions (the search plan's size, which
    the caller takes from the trainer's own sampler), each pod reading ``trial_config``."""
    parallelism = min(spec.search.parallelism, trials) if spec.search is not None else 1
    resources = spec.resources
    pod_labels = labels(owner, COMPONENT)
    container: dict[str, Any] = {
        "name": "trainer",
        "image": settings.image,
        "command": [*settings.command, "train"],
        "env": [
            # Native thread pools follow the CPU limit, not the node's core count.
            *(
                [{"name": "KUBELOOP_TRAINER_THREADS", "value": str(_cpu_threads(resources))}]
                if resources and resources.limits and resources.limits.cpu is not None
                else []
            ),
            *s3_env(settings),
            {"name": "KUBELOOP_TRIAL_CONFIG", "value": json.dumps(trial_config, sort_keys=True)},
            # Matplotlib and friends want a writable home; the root filesystem is read-only.
            {"name": "HOME", "value": SCRATCH_DIR},
            {"name": "MPLCONFIGDIR", "value": f"{SCRATCH_DIR}/matplotlib"},
        ],
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
    }
    block = resources_dict(
        resources.requests.to_wire() if resources and resources.requests else None,
        resources.limits.to_wire() if resources and resources.limits else None,
    )
    if block:
        container["resources"] = block
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "2Gi"}}],
        "automountServiceAccountToken": False,
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": training_job_name(owner.name),
            "namespace": owner.namespace,
            "labels": pod_labels,
            "annotations": kubeloop_version_annotation(),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": trials,
            "parallelism": parallelism,
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.active_deadline_seconds,
            # A finished run keeps its Job (and the pods' termination messages) until the
            # TrainingRun is deleted; the owner reference then collects it.
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }


def _cpu_threads(resources: ResourceRequirements) -> int:
    """Whole CPUs in the limit (at least one): '1500m' -> 1, 2 -> 2, '2.5' -> 2."""
    assert resources.limits is not None and resources.limits.cpu is not None  # noqa: S101
    text = str(resources.limits.cpu)
    cpus = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return max(1, int(cpus))
