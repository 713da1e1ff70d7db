"""Dataset controller: one profiling Job per spec generation, its answer becomes the status.

A spec change (or the operator finding a Dataset at start) makes sure the Job for the current
generation exists, with a deterministic name, so a restarted operator adopts the Job it made
instead of making another. When the Job finishes, the pod's termination message (the
profiler's own result) is turned into the status by :func:`kubeloop.status.dataset.profiling_finished`.

Two more things start a profiling: ``spec.refreshInterval`` (a timer) and the
``kubeloop.io/refresh`` annotation (a retrain asking for the newest data). The annotation's
Job is named after its value, so a token is profiled once however often the operator
restarts, and ``status.refreshToken`` takes the value when that Job has answered.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from typing import Any, cast

import kopf

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.dataset import REFRESH_ANNOTATION, Dataset, DatasetStatus
from kubeloop.api.meta import duration_seconds
from kubeloop.controllers.common import Logger, job_outcome, now, on_owned_job
from kubeloop.controllers.metrics import OperatorMetrics
from kubeloop.data.models import ProfileRequest
from kubeloop.k8s import KubernetesAdapter
from kubeloop.resources.common import Owner
from kubeloop.resources.dataset import COMPONENT, build_profile_job, profile_job_name
from kubeloop.settings import OperatorSettings
from kubeloop.status.dataset import profiling_finished, profiling_started

PLURAL = "datasets"
# How often Datasets with spec.refreshInterval or a kubeloop.io/refresh annotation are looked
# at; each refreshes on its own interval, a token once.
REFRESH_TICK_SECONDS = 2.0


def _create_profile_job(
    adapter: KubernetesAdapter,
    settings: OperatorSettings,
    *,
    dataset: Dataset,
    status: DatasetStatus,
    attempt: str,
    uid: str,
) -> bool:
    """Create the profiling Job of ``attempt`` unless it exists; True when it was created."""
    name, namespace = str(dataset.metadata.name), str(dataset.metadata.namespace)
    request = ProfileRequest(
        namespace=namespace,
        dataset=name,
        spec=dataset.spec,
        pinned_schema=status.columns or None,
        previous_version=status.version,
        bucket=settings.artifact_bucket,
        base_snapshot_uri=_base_snapshot(adapter, dataset),
    )
    owner = Owner("Dataset", name, namespace, uid)
    job = build_profile_job(owner, attempt, request.to_wire(), settings.workloads())
    return adapter.create_job_if_absent(job)


class WaitingForBase(kopf.TemporaryError):
    """The base Dataset of a prediction log has no Ready snapshot yet; try again later."""


def _base_snapshot(adapter: KubernetesAdapter, dataset: Dataset) -> str | None:
    """The snapshot of ``source.predictionLog.baseDataset``, if the source names one."""
    log = dataset.spec.source.prediction_log
    if log is None or log.base_dataset is None:
        return None
    namespace = str(dataset.metadata.namespace)
    base = adapter.get_custom(PLURAL, namespace, log.base_dataset)
    uri = ((base or {}).get("status") or {}).get("snapshotURI")
    if not uri:
        state = "does not exist" if base is None else "has no Ready version yet"
        raise WaitingForBase(f"base Dataset {log.base_dataset} {state}", delay=10)
    return str(uri)


def refresh_attempt(token: str) -> str:
    """The profiling attempt of a ``kubeloop.io/refresh`` token: short, stable, DNS-safe."""
    return "t" + hashlib.sha256(token.encode()).hexdigest()[:10]


def requested_refresh(body: kopf.Body) -> str | None:
    """The refresh token of the annotation, when it has not been answered yet."""
    token = (body.metadata.annotations or {}).get(REFRESH_ANNOTATION)
    answered = (body.get("status") or {}).get("refreshToken")
    return str(token) if token and token != answered else None


def _refresh_due(status: DatasetStatus, interval: str, created: str, now_text: str) -> bool:
    """Whether ``interval`` has passed since the last check (or the creation)."""
    since = status.last_refresh or created
    elapsed = datetime.datetime.fromisoformat(now_text) - datetime.datetime.fromisoformat(since)
    return elapsed.total_seconds() >= duration_seconds(interval)


def _start_refresh(
    adapter: KubernetesAdapter,
    settings: OperatorSettings,
    *,
    body: kopf.Body,
    patch: kopf.Patch,
    dataset: Dataset,
    status: DatasetStatus,
    logger: Logger,
) -> None:
    """Start the profiling Job of an unanswered ``kubeloop.io/refresh`` token (idempotent)."""
    token = requested_refresh(body)
    if token is None:
        return
    attempt = refresh_attempt(token)
    job_name = profile_job_name(str(body.metadata.name), attempt)
    if status.profile_job == job_name:
        return  # this token's Job runs; its completion records the token
    created = _create_profile_job(
        adapter,
        settings,
        dataset=dataset,
        status=status,
        attempt=attempt,
        uid=str(body.metadata.uid),
    )
    started = profiling_started(
        status, job=job_name, now=now(), generation=body.metadata.get("generation")
    )
    patch.status.update(started.to_wire())
    logger.info("refresh %s: profiling Job %s", token, "created" if created else "adopted")
    if created:
        kopf.info(body, reason="Refreshing", message=f"refresh {token}: Job {job_name}")


def register(
    settings: OperatorSettings, adapter: KubernetesAdapter, metrics: OperatorMetrics
) -> None:
    """Register the Dataset handlers with Kopf."""

    @kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
    @kopf.on.create(API_GROUP, API_VERSION, PLURAL)
    @kopf.on.update(API_GROUP, API_VERSION, PLURAL, field="spec")
    @metrics.instrumented("Dataset")
    def reconcile_dataset(body: kopf.Body, patch: kopf.Patch, logger: Logger, **_: Any) -> None:
        dataset = Dataset.model_validate(dict(body))
        name = str(body.metadata.name)
        generation = body.metadata.get("generation")
        status = dataset.status or DatasetStatus()
        job_name = profile_job_name(name, f"g{generation}")
        if status.profile_job == job_name or (
            status.observed_generation == generation and status.profile_job is not None
        ):
            # This generation's Job (or a refresh after it) exists already; its completion
            # updates the status. A refresh asked for while the operator was down starts now.
            _start_refresh(
                adapter,
                settings,
                body=body,
                patch=patch,
                dataset=dataset,
                status=status,
                logger=logger,
            )
            return
        created = _create_profile_job(
            adapter,
            settings,
            dataset=dataset,
            status=status,
            attempt=f"g{generation}",
            uid=str(body.metadata.uid),
        )
        logger.info("profiling Job %s %s", job_name, "created" if created else "already existed")
        started = profiling_started(status, job=job_name, now=now(), generation=generation)
        patch.status.update(started.to_wire())
        if created:
            kopf.info(body, reason="Profiling", message=f"profiling Job {job_name} started")

    # A timer, not a field handler: seen on the cluster, an annotation patch from the retrain
    # controller did not reach an on.field handler, so the refresh waited for a restart. The
    # filter keeps the timer to Datasets that carry the annotation; answered tokens cost a
    # dictionary look-up.
    @kopf.timer(
        API_GROUP,
        API_VERSION,
        PLURAL,
        interval=REFRESH_TICK_SECONDS,
        annotations={REFRESH_ANNOTATION: kopf.PRESENT},
    )
    @metrics.instrumented("Dataset")
    def refresh_requested(body: kopf.Body, patch: kopf.Patch, logger: Logger, **_: Any) -> None:
        dataset = Dataset.model_validate(dict(body))
        status = dataset.status or DatasetStatus()
        _start_refresh(
            adapter, settings, body=body, patch=patch, dataset=dataset, status=status, logger=logger
        )

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
        token = (current["metadata"].get("annotations") or {}).get(REFRESH_ANNOTATION)
        answers_token = bool(token) and job_name == profile_job_name(
            dataset_name, refresh_attempt(str(token))
        )
        applied = status.answered_job == job_name or (
            # statuses written before answeredJob existed: a validated answer shows itself
            status.validation is not None
            and status.validation.version == result.get("version")
            and status.validation.checked_at is not None
        )
        if applied and (not answers_token or status.refresh_token == token):
            return  # this answer is already in the status (a later event of the same Job)
        finished = profiling_finished(
            status, result, now=now(), generation=current["metadata"].get("generation")
        )
        finished.answered_job = job_name
        if answers_token:
            finished.refresh_token = str(token)
        adapter.patch_status(PLURAL, namespace, dataset_name, finished.to_wire())
        reason = "Ready" if result.get("ok") else str(result.get("reason", "ProfilingFailed"))
        event = kopf.info if result.get("ok") else kopf.warn
        event(
            kopf.Body(cast(kopf.RawBody, current)), reason=reason, message=finished.message[:1000]
        )
        logger.info("Dataset %s/%s: %s", namespace, dataset_name, finished.message)

    _register_refresh(settings, adapter, metrics)


def _register_refresh(
    settings: OperatorSettings, adapter: KubernetesAdapter, metrics: OperatorMetrics
) -> None:
    # Only Datasets that ask for refreshes get a timer task at all.
    @kopf.timer(
        API_GROUP,
        API_VERSION,
        PLURAL,
        interval=REFRESH_TICK_SECONDS,
        idle=REFRESH_TICK_SECONDS,
        field="spec.refreshInterval",
        value=kopf.PRESENT,
    )
    @metrics.instrumented("Dataset")
    def refresh_dataset(body: kopf.Body, logger: Logger, **_: Any) -> None:
        dataset = Dataset.model_validate(dict(body))
        interval = dataset.spec.refresh_interval
        status = dataset.status or DatasetStatus()
        if interval is None or status.profile_job is None:
            return  # no refresh asked for, or the first profiling has not started
        current = now()
        created = str(body.metadata.get("creationTimestamp"))
        if not _refresh_due(status, interval, created, current):
            return
        namespace = str(body.metadata.namespace)
        if not adapter.job_finished(namespace, status.profile_job):
            return  # one profiling at a time
        count = status.refresh_count + 1
        attempt = f"r{count}"
        _create_profile_job(
            adapter,
            settings,
            dataset=dataset,
            status=status,
            attempt=attempt,
            uid=str(body.metadata.uid),
        )
        refreshed = status.model_copy(
            update={
                "profile_job": profile_job_name(str(body.metadata.name), attempt),
                "refresh_count": count,
                "last_refresh": current,
            }
        )
        adapter.patch_status(PLURAL, namespace, str(body.metadata.name), refreshed.to_wire())
        logger.info(
            "refresh %d of %s: checking the source for new content", count, body.metadata.name
        )


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
