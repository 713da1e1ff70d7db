"""The Job that validates, snapshots and profiles one Dataset version.

The operator never loads data itself: a short Job runs ``kubeloop data profile`` with the
request in ``KUBELOOP_PROFILE_REQUEST`` and reports back through its termination message
(and ``profile.json`` in S3). ``attempt`` names each profiling of the same Dataset (the spec
generation or a refresh tick), so a restarted operator finds the Job it already made.
"""

from __future__ import annotations

import json
from typing import Any

from kubeloop.resources.common import (
    SCRATCH_DIR,
    Owner,
    WorkloadSettings,
    child_name,
    container_security_context,
    kubeloop_version_annotation,
    labels,
    pod_security_context,
    s3_env,
)

COMPONENT = "profiler"
TERMINATION_LOG = "/dev/termination-log"
PROFILE_DEADLINE_SECONDS = 1800


def profile_job_name(dataset_name: str, attempt: str) -> str:
    """The profiling Job of one attempt (``g3`` for generation 3, ``r17`` for refresh 17)."""
    return child_name(dataset_name, f"profile-{attempt}")


def source_credentials_env(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The source's own key pair (``source.credentialsSecretRef``), as Secret references only.

    The names are the profiler's (``kubeloop.data.cli``); the snapshot is still written with
    kubeloop's own credentials.
    """
    secret = ((request.get("spec") or {}).get("source") or {}).get("credentialsSecretRef")
    if not secret:
        return []
    return [
        {
            "name": f"KUBELOOP_SOURCE_{name}",
            "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
        }
        for name, key in (("ACCESS_KEY", "accessKey"), ("SECRET_KEY", "secretKey"))
    ]


def build_profile_job(
    owner: Owner,
    attempt: str,
    request: dict[str, Any],
    settings: WorkloadSettings,
) -> dict[str, Any]:
    """The profiling Job for ``owner``; ``request`` is what the profiler reads."""
    pod_labels = labels(owner, COMPONENT)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "profiler",
                "image": settings.image,
                "command": [*settings.command, "data", "profile"],
                "env": [
                    *s3_env(settings),
                    *source_credentials_env(request),
                    {
                        "name": "KUBELOOP_PROFILE_REQUEST",
                        "value": json.dumps(request, sort_keys=True),
                    },
                    {"name": "HOME", "value": SCRATCH_DIR},
                ],
                "securityContext": container_security_context(),
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH_DIR}],
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "4Gi"}}],
    }
    if settings.service_account:
        pod_spec["serviceAccountName"] = settings.service_account
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": profile_job_name(owner.name, attempt),
            "namespace": owner.namespace,
            "labels": pod_labels,
            "annotations": kubeloop_version_annotation(),
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            # The profiler's own failures are data problems or missing sources: a retry
            # would say the same thing, so the first answer stands.
            "backoffLimit": 0,
            "activeDeadlineSeconds": PROFILE_DEADLINE_SECONDS,
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    }
