"""TrainingRun controller: pin the dataset version, run one Indexed Job, follow its trials.

The run's Job has a fixed name and is created only if absent, and the pinned version and Job
name are recorded in status before anything else happens, so an operator restarted at any
point adopts the Job it made instead of starting a second one. The trials table comes from
the trainer pods' own termination messages, so a failed run says what the trainer said.
"""

from __future__ import annotations

import io
import json
from typing import Any, cast

import kopf

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.dataset import Dataset
from kubeloop.api.modelversion import Signature
from kubeloop.api.trainingrun import TrainingRun, TrainingRunStatus
from kubeloop.controllers.common import Logger, job_outcome, now, on_owned_job
from kubeloop.controllers.metrics import OperatorMetrics
from kubeloop.k8s import KubernetesAdapter
from kubeloop.resources.common import Owner
from kubeloop.resources.modelversion import MODEL_FILE, build_model_version, model_version_name
from kubeloop.resources.trainingrun import COMPONENT, build_training_job, training_job_name
from kubeloop.settings import OperatorSettings
from kubeloop.status.trainingrun import JobProgress, direction_of, run_started, trials_observed
from kubeloop.storage import ObjectStore, S3Uri
from kubeloop.trainer.config import ChampionRef, TrialConfig
from kubeloop.trainer.search import trial_count

PLURAL = "trainingruns"
MODEL_VERSIONS = "modelversions"
_VERSION_ATTEMPTS = 5
_TERMINAL = ("Succeeded", "Failed")


def _primary_metric(run: TrainingRun) -> str:
    if run.spec.search is not None:
        return run.spec.search.metric
    from kubeloop.api.estimators import estimator_task  # noqa: PLC0415

    return "f1" if estimator_task(run.spec.estimator.name) == "classification" else "rmse"


def _answers(messages: dict[int, str]) -> dict[int, dict[str, Any]]:
    answers: dict[int, dict[str, Any]] = {}
    for index, message in messages.items():
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError:
            parsed = {"ok": False, "reason": "TrialFailed", "message": message[-500:]}
        answers[index] = parsed if isinstance(parsed, dict) else {"ok": False, "message": message}
    return answers


def _job_progress(job_status: dict[str, Any]) -> JobProgress:
    conditions = job_status.get("conditions") or []
    outcome = job_outcome(job_status)
    failed_message = next(
        (str(c.get("message", "")) for c in conditions if c.get("type") == "Failed"), ""
    )
    return JobProgress(
        active=int(job_status.get("active") or 0),
        succeeded=int(job_status.get("succeeded") or 0),
        failed=int(job_status.get("failed") or 0),
        outcome=cast(Any, outcome),
        message=failed_message,
    )


def _snapshot_of(dataset: Dataset, version: str) -> str | None:
    """The snapshot URI of ``version`` of ``dataset`` (current or in its history)."""
    status = dataset.status
    if status is None:
        return None
    if version == status.version and status.snapshot_uri:
        return status.snapshot_uri
    return next((r.snapshot_uri for r in status.history if r.version == version), None)


def _champion(adapter: KubernetesAdapter, namespace: str, model: str) -> ChampionRef | None:
    """The model's Production version now: the trials score it on their own test rows."""
    for body in adapter.list_custom(MODEL_VERSIONS, namespace, f"{API_GROUP}/model={model}"):
        spec = body.get("spec") or {}
        artifact = spec.get("artifact") or {}
        if spec.get("stage") == "Production" and artifact.get("uri") and artifact.get("sha256"):
            return ChampionRef.model_validate(
                {
                    "name": body["metadata"]["name"],
                    "artifactURI": artifact["uri"],
                    "sha256": artifact["sha256"],
                }
            )
    return None


def _trial_config(
    run: TrainingRun,
    dataset: Dataset,
    version: str,
    snapshot: str,
    bucket: str,
    *,
    champion: ChampionRef | None,
) -> TrialConfig:
    """What every trial pod of ``run`` reads: data, columns, and the run's output prefix."""
    name, namespace = str(run.metadata.name), str(run.metadata.namespace)
    unique_key = dataset.spec.validation.unique_key
    return TrialConfig(
        spec=run.spec,
        snapshot_uri=snapshot,
        target=dataset.spec.target,
        slice_columns=dataset.spec.slice_columns or [],
        sensitive_columns=dataset.spec.sensitive_columns or [],
        exclude_columns=[unique_key] if unique_key else [],
        output_prefix=f"s3://{bucket}/runs/{namespace}/{name}/",
        dataset_name=dataset.metadata.name,
        dataset_version=version,
        training_run=name,
        namespace=namespace,
        champion=champion,
    )


class ModelRegistrationError(RuntimeError):
    """The winning trial could not become a ModelVersion (yet)."""


def register_model_version(
    adapter: KubernetesAdapter,
    store: ObjectStore | None,
    *,
    run: TrainingRun,
    status: TrainingRunStatus,
    answers: dict[int, dict[str, Any]],
    image: str,
) -> str:
    """Create the run's ModelVersion exactly once and return its name.

    The label ``kubeloop.io/trainingrun`` finds one made before a crash, so a restarted
    operator adopts it; the version number is the next free one for the model, and a name
    taken by a concurrent run moves on to the next number.
    """
    namespace, run_name = str(run.metadata.namespace), str(run.metadata.name)
    existing = adapter.list_custom(MODEL_VERSIONS, namespace, f"{API_GROUP}/trainingrun={run_name}")
    if existing:
        return str(existing[0]["metadata"]["name"])
    if store is None:
        raise ModelRegistrationError(
            "the operator has no S3 settings (KUBELOOP_S3_*) to read the artifacts"
        )
    best = status.best_trial
    answer = answers.get(best) if best is not None else None
    if best is None or answer is None or not answer.get("modelSHA256"):
        raise ModelRegistrationError(f"the answer of trial {best} is not available")
    prefix = str(answer["artifactURI"])
    stored = store.stat(S3Uri.parse(prefix + MODEL_FILE)).sha256
    if stored != answer["modelSHA256"]:
        raise ModelRegistrationError(
            f"{prefix}{MODEL_FILE} has sha256 {stored}, the trainer reported {answer['modelSHA256']}"
        )
    buffer = io.BytesIO()
    store.download(S3Uri.parse(prefix + "signature.json"), buffer)
    signature = Signature.model_validate(json.loads(buffer.getvalue()))
    model = run.spec.model_name
    taken = adapter.list_custom(MODEL_VERSIONS, namespace, f"{API_GROUP}/model={model}")
    version = max((int(mv["spec"]["version"]) for mv in taken), default=0) + 1
    for _ in range(_VERSION_ATTEMPTS):
        body = build_model_version(
            namespace=namespace,
            run_name=run_name,
            spec=run.spec,
            version=version,
            trial=best,
            answer=answer,
            signature=signature,
            dataset_version=str(status.dataset_version),
            image=image,
        )
        if adapter.create_custom_if_absent(MODEL_VERSIONS, body):
            return model_version_name(model, version)
        version += 1
    raise ModelRegistrationError(
        f"no free version number for model {model} after {_VERSION_ATTEMPTS} tries"
    )


def register(
    settings: OperatorSettings,
    adapter: KubernetesAdapter,
    store: ObjectStore | None,
    metrics: OperatorMetrics,
) -> None:
    """Register the TrainingRun handlers with Kopf."""
    workloads = settings.workloads()

    @kopf.on.resume(API_GROUP, API_VERSION, PLURAL)
    @kopf.on.create(API_GROUP, API_VERSION, PLURAL)
    @metrics.instrumented("TrainingRun")
    def start_training(body: kopf.Body, patch: kopf.Patch, logger: Logger, **_: Any) -> None:
        run = TrainingRun.model_validate(dict(body))
        status = run.status or TrainingRunStatus()
        name, namespace = str(body.metadata.name), str(body.metadata.namespace)
        job_name = training_job_name(name)
        if status.phase in _TERMINAL or status.job_name == job_name:
            return  # started (or finished) before: the Job's events carry it on
        dataset_body = adapter.get_custom("datasets", namespace, run.spec.dataset_ref.name)
        if dataset_body is None:
            patch.status["message"] = f"waiting for Dataset {run.spec.dataset_ref.name}"
            raise kopf.TemporaryError(
                f"Dataset {run.spec.dataset_ref.name} does not exist", delay=15
            )
        dataset = Dataset.model_validate(dataset_body)
        ds_status = dataset.status
        version = run.spec.dataset_ref.version or (ds_status.version if ds_status else None)
        if ds_status is None or version is None:
            patch.status["message"] = f"waiting for Dataset {dataset.metadata.name} to be Ready"
            raise kopf.TemporaryError("the Dataset has no Ready version yet", delay=10)
        snapshot = _snapshot_of(dataset, version)
        if snapshot is None:
            failed = status.model_copy(update={"phase": "Failed"})
            failed.message = f"Dataset version {version} is not in the Dataset's history"
            patch.status.update(failed.to_wire())
            raise kopf.PermanentError(failed.message)
        champion = _champion(adapter, namespace, run.spec.model_name)
        config = _trial_config(
            run, dataset, version, snapshot, settings.artifact_bucket, champion=champion
        )
        trials = trial_count(run.spec)
        owner = Owner("TrainingRun", name, namespace, str(body.metadata.uid))
        job = build_training_job(owner, run.spec, trials, config.to_wire(), workloads)
        created = adapter.create_job_if_absent(job)
        logger.info("training Job %s %s", job_name, "created" if created else "already existed")
        started = run_started(
            status,
            job=job_name,
            dataset_version=version,
            trials=trials,
            metric=_primary_metric(run),
            now=now(),
            generation=body.metadata.get("generation"),
        )
        patch.status.update(started.to_wire())
        if created:
            kopf.info(
                body,
                reason="TrainingStarted",
                message=f"Job {job_name}: {trials} trial(s) on {dataset.metadata.name}@{version[:19]}",
            )

    _register_progress(adapter, store, settings.workload_image, metrics)


def _register_progress(
    adapter: KubernetesAdapter, store: ObjectStore | None, image: str, metrics: OperatorMetrics
) -> None:
    @on_owned_job(COMPONENT)
    @metrics.instrumented("TrainingRun")
    def training_job_event(body: kopf.Body, logger: Logger, **_: Any) -> None:
        namespace, job_name = str(body.metadata.namespace), str(body.metadata.name)
        run_name = body.metadata.labels.get(f"{API_GROUP}/trainingrun")
        if not run_name:
            return
        current = adapter.get_custom(PLURAL, namespace, run_name)
        if current is None:
            return
        run = TrainingRun.model_validate(current)
        status = run.status or TrainingRunStatus()
        if status.job_name != job_name or status.phase in _TERMINAL:
            return
        progress = _job_progress(dict(body.get("status") or {}))
        answers = _answers(adapter.indexed_termination_messages(namespace, job_name))
        direction = direction_of(
            status.metric or _primary_metric(run),
            run.spec.search.direction if run.spec.search else None,
        )
        observed = trials_observed(
            status,
            answers=answers,
            progress=progress,
            direction=direction,
            now=now(),
            generation=current["metadata"].get("generation"),
        )
        if observed.phase == "Succeeded":
            observed = _with_model_version(
                adapter,
                store,
                run=run,
                status=observed,
                answers=answers,
                image=image,
                logger=logger,
            )
        if observed.to_wire() == status.to_wire():
            return
        adapter.patch_status(PLURAL, namespace, run_name, observed.to_wire())
        if observed.phase in _TERMINAL:
            event = kopf.info if observed.phase == "Succeeded" else kopf.warn
            event(
                kopf.Body(cast(kopf.RawBody, current)),
                reason=observed.phase,
                message=observed.message[:1000],
            )
            logger.info(
                "TrainingRun %s/%s %s: %s", namespace, run_name, observed.phase, observed.message
            )

    # Only finished runs whose model is not registered yet need the retry.
    @kopf.timer(
        API_GROUP,
        API_VERSION,
        PLURAL,
        interval=15,
        idle=15,
        when=lambda status, **_: (
            status.get("phase") == "Succeeded" and not status.get("modelVersion")
        ),
    )
    @metrics.instrumented("TrainingRun")
    def retry_model_registration(body: kopf.Body, logger: Logger, **_: Any) -> None:
        run = TrainingRun.model_validate(dict(body))
        status = run.status
        if (
            status is None
            or status.phase != "Succeeded"
            or status.model_version
            or not status.job_name
        ):
            return
        namespace = str(body.metadata.namespace)
        answers = _answers(adapter.indexed_termination_messages(namespace, status.job_name))
        updated = _with_model_version(
            adapter, store, run=run, status=status, answers=answers, image=image, logger=logger
        )
        if updated.model_version:
            adapter.patch_status(PLURAL, namespace, str(body.metadata.name), updated.to_wire())


def _with_model_version(
    adapter: KubernetesAdapter,
    store: ObjectStore | None,
    *,
    run: TrainingRun,
    status: TrainingRunStatus,
    answers: dict[int, dict[str, Any]],
    image: str,
    logger: Logger,
) -> TrainingRunStatus:
    """``status`` with the run's ModelVersion registered, or saying why it is not (yet)."""
    if status.model_version:
        return status
    updated = status.model_copy(deep=True)
    try:
        name = register_model_version(
            adapter, store, run=run, status=status, answers=answers, image=image
        )
    except ModelRegistrationError as error:
        updated.message = f"{status.message}; model not registered yet: {error}"
        logger.warning("TrainingRun %s: %s", run.metadata.name, error)
        return updated
    updated.model_version = name
    updated.message = f"{status.message}; registered as ModelVersion {name}"
    kopf.info(
        kopf.Body(cast(kopf.RawBody, run.to_wire())),
        reason="ModelVersionCreated",
        message=f"best trial {status.best_trial} registered as {name}",
    )
    return updated
