"""The retrain policy's I/O: read what a retrain depends on, carry out what it decided.

Called by the Deployment reconcile after the drift check, so ``status.lastRetrain`` is
written by the same handler as the drift verdict it reacts to. The decisions are the pure
state machine of ``status/retrain.py``; this module only reads the template TrainingRun,
the Dataset, the retrain's TrainingRun and its ModelVersion (and, while a rollout may fail,
the serving version's), and performs the idempotent actions: annotate the Dataset for a
refresh, create the TrainingRun if absent, set a ModelVersion's stage. Every action can run
twice without effect, which is what makes a retrain exactly-once across operator restarts
together with its deterministic name.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from kubeloop.api.dataset import REFRESH_ANNOTATION
from kubeloop.api.deployment import Deployment, DeploymentStatus
from kubeloop.controllers.common import Logger
from kubeloop.controllers.metrics import OperatorMetrics
from kubeloop.k8s import KubernetesAdapter
from kubeloop.resources.retrain import build_retrain_run
from kubeloop.status.deployment import Event, parse_timestamp
from kubeloop.status.retrain import (
    TERMINAL,
    CreateTrainingRun,
    DatasetView,
    Promote,
    RefreshDataset,
    RetrainDecision,
    RetrainInputs,
    RunView,
    VersionView,
    decide_retrain,
    ended_now,
    serving_version_name,
)


class RetrainController:
    """One step of a Deployment's retrain policy per reconcile."""

    def __init__(self, adapter: KubernetesAdapter, metrics: OperatorMetrics | None = None) -> None:
        self._adapter = adapter
        self._metrics = metrics

    def _read(
        self, plural: str, namespace: str, name: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """A kubeloop object's (spec, status), or None when unnamed or absent."""
        body = self._adapter.get_custom(plural, namespace, name) if name else None
        if body is None:
            return None
        return body.get("spec") or {}, body.get("status") or {}

    def _dataset(self, namespace: str, name: str | None) -> DatasetView | None:
        found = self._read("datasets", namespace, name)
        if found is None or name is None:
            return None
        status = found[1]
        return DatasetView(
            name=name,
            version=status.get("version"),
            phase=str(status.get("phase") or "Pending"),
            message=str(status.get("message") or ""),
            refresh_token=status.get("refreshToken"),
        )

    def _run(self, namespace: str, name: str | None) -> RunView | None:
        found = self._read("trainingruns", namespace, name)
        if found is None or name is None:
            return None
        status = found[1]
        return RunView(
            name=name,
            phase=str(status.get("phase") or "Pending"),
            message=str(status.get("message") or ""),
            model_version=status.get("modelVersion"),
        )

    def _version(self, namespace: str, name: str | None) -> VersionView | None:
        found = self._read("modelversions", namespace, name)
        if found is None or name is None:
            return None
        spec, status = found
        return VersionView(
            name=name,
            phase=str(status.get("phase") or "Pending"),
            stage=str(spec.get("stage") or "None"),
            message=str(status.get("message") or ""),
            model=spec.get("model"),
        )

    def step(
        self,
        deployment: Deployment,
        status: DeploymentStatus,
        *,
        namespace: str,
        created: str | None,
        now: datetime,
        logger: Logger,
    ) -> list[Event]:
        """Advance the retrain policy one step; writes into ``status``, returns Events."""
        policy = deployment.spec.retrain
        if policy is None:
            return []
        name = str(deployment.metadata.name)
        template = self._adapter.get_custom("trainingruns", namespace, policy.template)
        template_dataset = ((template or {}).get("spec") or {}).get("datasetRef") or {}
        dataset_name = policy.dataset or template_dataset.get("name")
        record = status.last_retrain
        in_flight = record is not None and record.phase not in TERMINAL
        run = self._run(namespace, record.name) if in_flight and record is not None else None
        model_version = None
        wanted = (record.model_version if record else None) or (run.model_version if run else None)
        if in_flight and wanted:
            model_version = self._version(namespace, wanted)
        serving = self._version(namespace, serving_version_name(record, status))
        track = deployment.spec.model.track
        inputs = RetrainInputs(
            deployment=name,
            spec=deployment.spec,
            status=status,
            now=now,
            created=parse_timestamp(created) if created else now,
            dataset=self._dataset(namespace, dataset_name),
            run=run,
            model_version=model_version,
            tracked_model=track.model if track and track.stage == "Production" else None,
            template_found=template is not None,
            serving_version=serving,
        )
        decision = decide_retrain(inputs)
        started = decision.record is not None and (
            record is None or decision.record.number != record.number
        )
        if started and decision.record is not None:
            # A run under the new name means this operator made it and died before the
            # record was written: decide again knowing it, which adopts it.
            existing = self._run(namespace, decision.record.name)
            if existing is not None:
                decision = decide_retrain(dataclasses.replace(inputs, run=existing))
        self._act(decision, template, namespace, name, logger)
        ended = ended_now(record, decision.record)
        if ended is not None and self._metrics is not None:
            self._metrics.observe_retrain_end(
                namespace, name, trigger=ended.trigger, outcome=ended.phase
            )
        status.last_retrain = decision.record
        status.last_scheduled_retrain = decision.last_scheduled
        return decision.events

    def _act(
        self,
        decision: RetrainDecision,
        template: dict[str, Any] | None,
        namespace: str,
        deployment: str,
        logger: Logger,
    ) -> None:
        for action in decision.actions:
            if isinstance(action, RefreshDataset):
                body = self._adapter.get_custom("datasets", namespace, action.dataset) or {}
                annotations = (body.get("metadata") or {}).get("annotations") or {}
                if annotations.get(REFRESH_ANNOTATION) != action.token:
                    self._adapter.annotate_custom(
                        "datasets", namespace, action.dataset, {REFRESH_ANNOTATION: action.token}
                    )
                    logger.info(
                        "asked Dataset %s for a fresh version (%s)", action.dataset, action.token
                    )
            elif isinstance(action, CreateTrainingRun):
                assert template is not None  # noqa: S101 - the decision checks it
                run = build_retrain_run(
                    template,
                    name=action.name,
                    namespace=namespace,
                    deployment=deployment,
                    number=action.number,
                    dataset=action.dataset,
                    version=action.version,
                )
                created = self._adapter.create_custom_if_absent("trainingruns", run)
                logger.info("TrainingRun %s %s", action.name, "created" if created else "exists")
            elif isinstance(action, Promote):
                self._adapter.patch_spec(
                    "modelversions", namespace, action.model_version, {"stage": action.stage}
                )
                logger.info("set the stage of %s to %s", action.model_version, action.stage)
