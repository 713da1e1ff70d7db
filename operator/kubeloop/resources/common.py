"""What every object kubeloop creates shares: names, labels, owners, security, S3 access."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from kubeloop import API_GROUP, API_VERSION, __version__

MANAGED_BY = "kubeloop"
PART_OF = "kubeloop"
COMPONENT_LABEL = "app.kubernetes.io/component"
# Non-root, numeric: what the image's USER is and what "restricted" requires.
WORKLOAD_UID = 65532
# The pod's only writable path: an emptyDir (the root filesystem is read-only).
SCRATCH_DIR = "/tmp"  # noqa: S108 - a per-pod emptyDir, not the host's /tmp


@dataclass(frozen=True)
class WorkloadSettings:
    """How the operator's workloads (profiling and training pods) are run.

    ``command`` is the kubeloop entrypoint: ``kubeloop`` in the image; on the local cluster,
    whose node runs host processes, the absolute path of the virtualenv's ``kubeloop``.
    S3 credentials come from ``s3_secret`` (keys ``accessKey`` and ``secretKey``) through
    ``secretKeyRef``, so they never appear in a pod spec, a log or a status.
    """

    image: str
    command: tuple[str, ...]
    s3_endpoint: str
    s3_bucket: str
    s3_secret: str
    s3_region: str = "us-east-1"
    service_account: str | None = None


@dataclass(frozen=True)
class Owner:
    """The kubeloop object that owns a child (garbage collection deletes the child with it)."""

    kind: str
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """An ownerReference that makes the owner the controller of the child."""
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def labels(owner: Owner, component: str) -> dict[str, str]:
    """The labels every child carries (DESIGN.md §1)."""
    return {
        "app.kubernetes.io/name": "kubeloop",
        "app.kubernetes.io/instance": owner.name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
        f"{API_GROUP}/{owner.kind.lower()}": owner.name,
    }


def child_name(owner_name: str, suffix: str, *, max_length: int = 63) -> str:
    """``<owner>-<suffix>``, shortened with a stable hash when too long for a label value."""
    name = f"{owner_name}-{suffix}"
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = max_length - len(suffix) - len(digest) - 2
    return f"{owner_name[:keep].rstrip('-')}-{digest}-{suffix}"


def pod_security_context() -> dict[str, Any]:
    """Pod-level settings of the Pod Security ``restricted`` profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": WORKLOAD_UID,
        "runAsGroup": WORKLOAD_UID,
        "fsGroup": WORKLOAD_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level settings of the Pod Security ``restricted`` profile."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def s3_env(settings: WorkloadSettings) -> list[dict[str, Any]]:
    """``KUBELOOP_S3_*`` for the workload; the keys only as references to the Secret."""
    return [
        {"name": "KUBELOOP_S3_ENDPOINT", "value": settings.s3_endpoint},
        {"name": "KUBELOOP_S3_BUCKET", "value": settings.s3_bucket},
        {"name": "KUBELOOP_S3_REGION", "value": settings.s3_region},
        {
            "name": "KUBELOOP_S3_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": "accessKey"}},
        },
        {
            "name": "KUBELOOP_S3_SECRET_KEY",
            "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": "secretKey"}},
        },
    ]


def resources_dict(
    requests: dict[str, Any] | None, limits: dict[str, Any] | None
) -> dict[str, Any]:
    """A container ``resources`` block, leaving out what was not asked for."""
    block: dict[str, Any] = {}
    if requests:
        block["requests"] = {key: str(value) for key, value in requests.items()}
    if limits:
        block["limits"] = {key: str(value) for key, value in limits.items()}
    return block


def kubeloop_version_annotation() -> dict[str, str]:
    """Which kubeloop built the object (for lineage and upgrades)."""
    return {f"{API_GROUP}/version": __version__}
