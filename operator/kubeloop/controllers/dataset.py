"""Dataset controller: one profiling Job per spec generation, its answer becomes the status.

A spec change (or the operator finding a Dataset at start) makes sure the Job for the current
generation exists, with a deterministic name, so a restarted operator adopts the Job it made
instead of making another. When the Job finishes, the pod's termination message (the
profiler's own result) is turned into the status by :func:`kubeloop.status.dataset.profiling_finished`.
"""

from __future__ import annotations

import json
from typing import Any, cast

import kopf

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.dataset import Dataset, DatasetStatus
from kubeloop.controllers.common import Logger, job_outcome, now, on_owned_job
from kubeloop.controllers.metrics import OperatorMetrics
from kubeloop.data.models import ProfileRequest
from kubeloop.k8s import KubernetesAdapter
from kubeloop.resources.common import Owner
from kubeloop.resources.dataset import COMPONENT, build_profile_job, profile_job_name
from kubeloop.settings import OperatorSettings
from kubeloop.status.dataset import profiling_finished, profiling_started

PLURAL = "datasets"


def register(
    settings: OperatorSettings, adapter: KubernetesAdapter, metrics: OperatorMetrics
) -> None:
    """Register the Dataset handlers with Kopf."""
    workloads = settings.workloads()

    @kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
    @kopf.on.create(API_GROUP, API_VERSION, PLURAL)
    @kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
    @metrics.instrumented("Dataset")
    def reconcile_dataset(body: kopf.Body, patch: kopf.Patch, logger: Logger, **_: Any) -> None:
        dataset = Dataset.model_validate(dict(body))
        name, namespace = str(body.metadata.name), str(body.metadata.namespace)
        generation = body.metadata.get("generation")
        status = dataset.status or DatasetStatus()
        job_name = profile_job_name(name, f"g{generation}")
        if status.profile_job == job_name:
            return  # this generation's Job exists already; its completion updates the status
        request = ProfileRequest(
            namespace=namespace,
            dataset=name,
            spec=dataset.spec,
            pinned_schema=status.columns or None,
            previous_version=status.version,
            bucket=settings.artifact_bucket,
        )
        owner = Owner("Dataset", name, namespace, str(body.metadata.uid))
        job = build_profile_job(owner, f"g{generation}", request.to_wire(), workloads)
        created = adapter.create_job_if_absent(job)
        logger.info("profiling Job %s %s", job_name, "created" if created else "already existed")
        started = profiling_started(status, job=job_name, now=now(), generation=generation)
        patch.status.update(started.to_wire())
        if created:
            kopf.info(body, reason="Profiling", message=f"profiling Job {job_name} started")

    @on_owned_job(COMPONENT)
    @metrics.instrumented("Dataset")
    def profile_job_event(body: kopf.Body, logger: Logger, **_: Any) -> None:
        outcome = job_outcome(dict(body.get("status") or {}))
        if outcome is None:
            return
        namespace, job_name = str(body.metadata.namespace), str(body.metadata.name)
        dataset_name = body.metadata.labels.get(f"{API_GROUP}/dataset")
        if not dataset_name:
            return
        current = adapter.get_custom(PLURAL, namespace, dataset_name)
        if current is None:
            return
        dataset = Dataset.model_validate(current)
        status = dataset.status or DatasetStatus()
        if status.profile_job != job_name:
            return  # an older Job finished after a newer one started: its answer is stale
        messages = adapter.termination_messages(namespace, job_name)
        result = _parse_result(messages, outcome, job_name)
        if (
            status.validation is not None
            and status.validation.version == result.get("version")
            and (status.validation.checked_at is not None)
        ):
            return  # this answer is already in the status (a later event of the same Job)
        finished = profiling_finished(
            status, result, now=now(), generation=current["metadata"].get("generation")
        )
        adapter.patch_status(PLURAL, namespace, dataset_name, finished.to_wire())
        reason = "Ready" if result.get("ok") else str(result.get("reason", "ProfilingFailed"))
        event = kopf.info if result.get("ok") else kopf.warn
        event(
            kopf.Body(cast(kopf.RawBody, current)), reason=reason, message=finished.message[:1000]
        )
        logger.info("Dataset %s/%s: %s", namespace, dataset_name, finished.message)


def _parse_result(messages: list[tuple[str, str]], outcome: str, job_name: str) -> dict[str, Any]:
    for pod, message in messages:
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError:
            return {
                "ok": False,
                "reason": "ProfilingFailed",
                "message": f"pod {pod} ended without a result: {message[-500:]}",
            }
        if isinstance(parsed, dict):
            return parsed
    return {
        "ok": False,
        "reason": "ProfilingFailed",
        "message": f"Job {job_name} is {outcome} and its pod left no termination message",
    }
