"""ModelVersion controller: gates once per version, and the stage rules of the registry.

Gates run when a version first appears (its facts never change afterwards), against its
metrics and the model's Production version at that moment. When a version enters
Production, the previous Production version of the same model is archived, so a model has
at most one. Stage changes are recorded in the status history with the field manager that
made them (the admission webhook that records the requesting user comes next).
"""

from __future__ import annotations

from typing import Any, cast

import kopf

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.modelversion import ModelVersion, ModelVersionStatus, StageChange
from kubeloop.controllers.admission import CHANGED_BY, OVERRIDE
from kubeloop.controllers.common import Logger, now
from kubeloop.controllers.metrics import OperatorMetrics
from kubeloop.k8s import KubernetesAdapter
from kubeloop.status.modelversion import ArtifactCheck, gates_evaluated
from kubeloop.storage import (
    AccessDenied,
    BucketNotFound,
    DigestMismatch,
    ObjectNotFound,
    ObjectStore,
    S3Uri,
    StorageError,
)

PLURAL = "modelversions"
_HISTORY = 50


def _stage_manager(body: dict[str, Any]) -> str:
    """Who last wrote spec.stage, as the API server recorded it in managedFields."""
    for entry in reversed(body.get("metadata", {}).get("managedFields") or []):
        fields = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:stage" in fields:
            return str(entry.get("manager", ""))
    return ""


class _Discard:
    """A sink for bytes that only need hashing."""

    def write(self, data: bytes, /) -> int:
        return len(data)


def verify_artifact(store: ObjectStore | None, uri: str, sha256: str) -> ArtifactCheck:
    """Re-read the artifact from S3 and compare its sha256 with the registry's.

    Problems that say the artifact is wrong or gone are a verdict (False); an unreachable
    store is not, so it raises and Kopf retries.
    """
    if store is None:
        return ArtifactCheck(None, "not checked: the operator has no S3 settings (KUBELOOP_S3_*)")
    try:
        result = store.download_verified(S3Uri.parse(uri), _Discard(), sha256)
    except DigestMismatch as exc:
        return ArtifactCheck(
            False, f"{uri} has sha256 {exc.actual}, the ModelVersion says {sha256}"
        )
    except (ObjectNotFound, BucketNotFound, AccessDenied) as exc:
        return ArtifactCheck(False, f"{uri} cannot be read: {exc}")
    except ValueError as exc:  # a URI the storage layer refuses
        return ArtifactCheck(False, f"{uri} is not a usable artifact URI: {exc}")
    return ArtifactCheck(True, f"sha256 {sha256[:12]}... re-read from S3 ({result.size} bytes)")


def register(
    adapter: KubernetesAdapter, store: ObjectStore | None, metrics: OperatorMetrics
) -> None:
    """Register the ModelVersion handlers with Kopf."""

    @kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
    @kopf.on.create(API_GROUP, API_VERSION, PLURAL)
    @metrics.instrumented("ModelVersion")
    def evaluate_gates(body: kopf.Body, patch: kopf.Patch, logger: Logger, **_: Any) -> None:
        version = ModelVersion.model_validate(dict(body))
        status = version.status or ModelVersionStatus()
        if status.phase != "Pending":
            return  # gates ran when the version appeared; its facts cannot change
        namespace = str(body.metadata.namespace)
        champion = next(
            (
                (str(other["metadata"]["name"]), dict(other["spec"].get("metrics") or {}))
                for other in adapter.list_custom(
                    PLURAL, namespace, f"{API_GROUP}/model={version.spec.model}"
                )
                if other["spec"].get("stage") == "Production"
                and other["metadata"]["name"] != body.metadata.name
            ),
            None,
        )
        try:
            artifact = verify_artifact(
                store, version.spec.artifact.uri, version.spec.artifact.sha256
            )
        except StorageError as exc:
            raise kopf.TemporaryError(f"cannot verify the artifact yet: {exc}", delay=15) from exc
        evaluated = gates_evaluated(
            status,
            version.spec,
            champion,
            now=now(),
            generation=body.metadata.get("generation"),
            artifact=artifact,
        )
        evaluated.stage = version.spec.stage
        patch.status.update(evaluated.to_wire())
        event = kopf.info if evaluated.phase == "Validated" else kopf.warn
        event(body, reason=evaluated.phase, message=evaluated.message[:1000])
        logger.info(
            "ModelVersion %s: %s (%s)", body.metadata.name, evaluated.phase, evaluated.message
        )

    @kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec.stage")
    @metrics.instrumented("ModelVersion")
    def stage_changed(
        body: kopf.Body, patch: kopf.Patch, old: Any, new: Any, logger: Logger, **_: Any
    ) -> None:
        version = ModelVersion.model_validate(dict(body))
        status = version.status or ModelVersionStatus()
        change = StageChange(
            stage=new or "None",
            previous=old or "None",
            changed_at=now(),
            changed_by=(body.metadata.annotations or {}).get(CHANGED_BY)
            or _stage_manager(dict(body)),
            reason=(body.metadata.annotations or {}).get(OVERRIDE, "")
            if new == "Production"
            else "",
        )
        patch.status["stage"] = change.stage
        patch.status["stageHistory"] = [
            entry.to_wire() for entry in [*status.stage_history, change][-_HISTORY:]
        ]
        kopf.info(body, reason="StageChanged", message=f"{change.previous} -> {change.stage}")
        if change.stage != "Production":
            return
        namespace = str(body.metadata.namespace)
        for other in adapter.list_custom(
            PLURAL, namespace, f"{API_GROUP}/model={version.spec.model}"
        ):
            name = str(other["metadata"]["name"])
            if name != body.metadata.name and other["spec"].get("stage") == "Production":
                adapter.patch_spec(PLURAL, namespace, name, {"stage": "Archived"})
                kopf.info(
                    kopf.Body(cast(kopf.RawBody, other)),
                    reason="Archived",
                    message=f"{body.metadata.name} was promoted to Production",
                )
                logger.info("archived %s: %s is now Production", name, body.metadata.name)
