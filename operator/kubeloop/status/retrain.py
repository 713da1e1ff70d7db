"""The retrain policy as a pure state machine: when to start a retrain and how it goes on.

A retrain is one record, ``status.lastRetrain``, that moves through phases; each reconcile
hands this module what the cluster shows (the Dataset, the TrainingRun, the ModelVersion)
and gets back the next record and the idempotent actions to take:

``RefreshingData``
    ask the Dataset for a fresh version (annotation ``kubeloop.io/refresh`` = the retrain's
    name) and wait until its status says that refresh is done;
``Training``
    create the TrainingRun ``<deployment>-retrain-<n>`` (create-if-absent) pinned to that
    Dataset version, and wait for its ModelVersion and the gates' verdict;
``Promoting``
    with ``autoPromote``, move a Validated version to that stage;
``RollingOut``
    a Production version tracked by this Deployment: wait until it serves all traffic;
``Reverting``
    its rollout failed (``revertOnFailure``): put the version still serving back in
    Production (Archived → Staging → Production, one stage per step; the registry then
    archives the failed one), so the registry names what serves;
``Succeeded`` / ``Rejected`` / ``Failed``
    the end, with the reason in ``message``.

Starting: with no retrain in flight, the first trigger that holds starts one: a new
``spec.retrain.request`` value (Manual, no cooldown), then Drift (DriftDetected with enough
drifted features), Accuracy (live accuracy below the floor over enough feedback), Schedule
(a schedule time not yet handled); the automatic ones only once ``cooldown`` has passed since
the last start. The retrain's number is the last one's plus one and its name follows from
it, so a restarted operator computes the same name again: the record is written before the
TrainingRun is created, and a TrainingRun found under the next name (the operator died
after creating it, before writing the record) is adopted rather than duplicated. Either
way a trigger makes exactly one TrainingRun.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from kubeloop.analysis.drift_check import PREDICTION
from kubeloop.api.deployment import (
    DeploymentSpec,
    DeploymentStatus,
    DriftStatus,
    FeatureDrift,
    RetrainCause,
    RetrainPolicy,
    RetrainRecord,
)
from kubeloop.api.meta import duration_seconds
from kubeloop.resources.retrain import retrain_name
from kubeloop.status.cron import latest_fire, parse_schedule
from kubeloop.status.deployment import Event, EventType, parse_timestamp, timestamp
from kubeloop.status.drift import drift_detected

TERMINAL = ("Succeeded", "Rejected", "Failed")
# A Dataset refresh is one profiling Job (deadline 30 min); past this the retrain gives up.
REFRESH_TIMEOUT_SECONDS = 35 * 60


@dataclass(frozen=True)
class DatasetView:
    """What the retrain needs of the Dataset it trains on."""

    name: str
    version: str | None
    phase: str
    message: str
    refresh_token: str | None


@dataclass(frozen=True)
class RunView:
    """The retrain's TrainingRun as the cluster shows it."""

    name: str
    phase: str
    message: str
    model_version: str | None


@dataclass(frozen=True)
class VersionView:
    """The ModelVersion the retrain produced."""

    name: str
    phase: str
    stage: str
    message: str
    model: str | None = None


@dataclass(frozen=True)
class RefreshDataset:
    """Set ``kubeloop.io/refresh: token`` on the Dataset (a no-op when already set)."""

    dataset: str
    token: str


@dataclass(frozen=True)
class CreateTrainingRun:
    """Create the TrainingRun ``name`` from the template, pinned to ``dataset``@``version``."""

    name: str
    number: int
    dataset: str
    version: str


@dataclass(frozen=True)
class Promote:
    """Set ``spec.stage`` of the ModelVersion (the admission webhook still checks it)."""

    model_version: str
    stage: str


Action = RefreshDataset | CreateTrainingRun | Promote


@dataclass(frozen=True)
class RetrainInputs:
    """Everything one step of the retrain policy looks at."""

    deployment: str
    spec: DeploymentSpec
    status: DeploymentStatus
    now: datetime
    created: datetime
    dataset: DatasetView | None
    """The Dataset retrains learn from (policy's, else the template's); None: not found."""
    run: RunView | None = None
    """The in-flight retrain's TrainingRun, or for none in flight the next name's (adoption)."""
    model_version: VersionView | None = None
    tracked_model: str | None = None
    """The model whose Production stage this Deployment follows, if it follows one."""
    template_found: bool = True
    """Whether the policy's template TrainingRun exists."""
    serving_version: VersionView | None = None
    """What a failed rollout reverts to: the stable version's ModelVersion while RollingOut,
    ``revertedTo``'s while Reverting."""


@dataclass
class RetrainDecision:
    record: RetrainRecord | None
    last_scheduled: str | None
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class _Trigger:
    kind: RetrainCause
    reason: str
    drift: list[FeatureDrift] = field(default_factory=list)
    scheduled_for: str | None = None


def _words(scores: list[FeatureDrift]) -> str:
    return ", ".join(f"{s.feature} {s.method}={s.score:.3g}" for s in scores[:5])


def _since(text: str, now: datetime) -> float:
    return (now - parse_timestamp(text)).total_seconds()


def _drift_trigger(
    inputs: RetrainInputs, policy: RetrainPolicy, drift: DriftStatus
) -> _Trigger | None:
    if not drift_detected(drift, inputs.spec.monitoring):
        return None
    if drift.drifted_features < policy.min_drifted_features:
        return None
    flagged = [s for s in drift.scores if s.drifted and s.feature != PREDICTION]
    reason = (
        f"drift detected on {drift.version}: {drift.drifted_features} features over "
        f"{drift.consecutive} checks ({_words(flagged)})"
    )
    return _Trigger("Drift", reason, flagged[:20])


def _accuracy_trigger(policy: RetrainPolicy, drift: DriftStatus) -> _Trigger | None:
    floor, accuracy = policy.min_live_accuracy, drift.live_accuracy
    if floor is None or accuracy is None or drift.feedback < policy.min_feedback:
        return None
    if accuracy >= floor:
        return None
    reason = (
        f"live accuracy of {drift.version} is {accuracy:.3f} over {drift.feedback} labels, "
        f"below {floor:g}"
    )
    return _Trigger("Accuracy", reason)


def _schedule_trigger(inputs: RetrainInputs, policy: RetrainPolicy) -> _Trigger | None:
    """The latest schedule time not handled yet (missed ones are not replayed)."""
    if policy.schedule is None:
        return None
    try:
        fire = latest_fire(parse_schedule(policy.schedule), inputs.now)
    except ValueError:
        return None  # the admission pattern lets field ranges through; nothing fires
    last = inputs.status.last_scheduled_retrain or timestamp(inputs.created)
    if fire is None or _since(last, fire) <= 0:
        return None
    when = timestamp(fire)
    return _Trigger("Schedule", f"schedule {policy.schedule!r} at {when}", scheduled_for=when)


def _trigger(inputs: RetrainInputs, policy: RetrainPolicy) -> _Trigger | None:
    """The first trigger that holds now, if any: Manual, then Drift, Accuracy, Schedule."""
    status, record = inputs.status, inputs.status.last_retrain
    if policy.request is not None and policy.request != (record.request if record else None):
        return _Trigger("Manual", f"spec.retrain.request is {policy.request!r}")
    if record is not None and _since(record.started_at, inputs.now) < duration_seconds(
        policy.cooldown
    ):
        return None  # a due schedule time stays due until the cooldown ends
    drift = status.drift
    if (
        drift is not None
        and status.stable_version is not None
        and drift.version == status.stable_version
    ):
        found = ("Drift" in policy.triggers and _drift_trigger(inputs, policy, drift)) or (
            "Accuracy" in policy.triggers and _accuracy_trigger(policy, drift)
        )
        if found:
            return found
    return _schedule_trigger(inputs, policy) if "Schedule" in policy.triggers else None


def _start(inputs: RetrainInputs, policy: RetrainPolicy, trigger: _Trigger) -> RetrainDecision:
    previous = inputs.status.last_retrain
    number = (previous.number if previous is not None else 0) + 1
    name = retrain_name(inputs.deployment, number)
    dataset = inputs.dataset
    record = RetrainRecord(
        name=name,
        number=number,
        trigger=trigger.kind,
        reason=trigger.reason,
        request=policy.request
        if trigger.kind == "Manual"
        else (previous.request if previous else None),
        scheduled_for=trigger.scheduled_for,
        drift=trigger.drift,
        live_accuracy=inputs.status.drift.live_accuracy if inputs.status.drift else None,
        phase="RefreshingData" if policy.refresh_dataset else "Training",
        message="",
        dataset=dataset.name if dataset else None,
        started_at=timestamp(inputs.now),
    )
    decision = RetrainDecision(
        record=record,
        last_scheduled=trigger.scheduled_for or inputs.status.last_scheduled_retrain,
        events=[Event("Normal", "RetrainStarted", f"{name}: {trigger.reason}")],
    )
    if inputs.run is not None and inputs.run.name == name:
        # The operator created this run and died before writing the record: adopt it.
        record.phase, record.training_run = "Training", name
        record.message = f"adopted TrainingRun {name}"
        return decision
    return _advance(inputs, policy, record, decision)


def _finish(
    record: RetrainRecord,
    decision: RetrainDecision,
    phase: Literal["Succeeded", "Rejected", "Failed"],
    message: str,
    now: datetime,
) -> RetrainDecision:
    record.phase, record.message, record.finished_at = phase, message, timestamp(now)
    kind: EventType = "Normal" if phase == "Succeeded" else "Warning"
    decision.events.append(Event(kind, f"Retrain{phase}", f"{record.name}: {message}"))
    return decision


def _advance(
    inputs: RetrainInputs, policy: RetrainPolicy, record: RetrainRecord, decision: RetrainDecision
) -> RetrainDecision:
    now = inputs.now
    if record.phase == "RefreshingData":
        dataset = inputs.dataset
        if dataset is None:
            return _finish(record, decision, "Failed", f"Dataset {record.dataset} not found", now)
        if dataset.refresh_token != record.name:
            if _since(record.started_at, now) > REFRESH_TIMEOUT_SECONDS:
                return _finish(
                    record, decision, "Failed", f"Dataset {dataset.name} did not refresh", now
                )
            decision.actions.append(RefreshDataset(dataset.name, record.name))
            record.message = f"waiting for a fresh version of Dataset {dataset.name}"
            return decision
        if dataset.version is None:
            return _finish(
                record,
                decision,
                "Failed",
                f"Dataset {dataset.name} has no Ready version: {dataset.message}",
                now,
            )
        record.phase, record.dataset_version = "Training", dataset.version
        if dataset.phase != "Ready":
            record.message = (
                f"the refresh of {dataset.name} was {dataset.phase} ({dataset.message}); "
                f"training on its last good version"
            )
    if record.phase == "Training":
        return _training(inputs, policy, record, decision)
    if record.phase == "Promoting":
        return _promoting(inputs, record, decision)
    if record.phase == "RollingOut":
        return _rolling_out(inputs, record, decision)
    if record.phase == "Reverting":
        return _reverting(inputs, record, decision)
    return decision


def _training(
    inputs: RetrainInputs, policy: RetrainPolicy, record: RetrainRecord, decision: RetrainDecision
) -> RetrainDecision:
    now, run = inputs.now, inputs.run
    if run is None or run.name != record.name:
        if not inputs.template_found:
            return _finish(
                record, decision, "Failed", f"template TrainingRun {policy.template} not found", now
            )
        if record.dataset_version is None:
            dataset = inputs.dataset
            if dataset is None or dataset.version is None:
                why = "not found" if dataset is None else "without a Ready version"
                return _finish(record, decision, "Failed", f"Dataset {record.dataset} {why}", now)
            record.dataset_version = dataset.version
        assert record.dataset is not None  # noqa: S101 - set with the dataset version
        decision.actions.append(
            CreateTrainingRun(record.name, record.number, record.dataset, record.dataset_version)
        )
        record.training_run = record.name
        record.message = (
            f"TrainingRun {record.name} on {record.dataset}@{record.dataset_version[:19]}"
        )
        return decision
    record.training_run = run.name
    if run.phase == "Failed":
        return _finish(record, decision, "Failed", f"TrainingRun failed: {run.message}", now)
    if run.phase != "Succeeded" or run.model_version is None:
        record.message = f"TrainingRun {run.name} is {run.phase}"
        return decision
    record.model_version = run.model_version
    version = inputs.model_version
    if version is None or version.name != run.model_version or version.phase == "Pending":
        record.message = f"{run.model_version} is waiting for its gates"
        return decision
    if version.phase == "Rejected":
        return _finish(record, decision, "Rejected", f"{version.name}: {version.message}", now)
    if policy.auto_promote == "None":
        return _finish(
            record,
            decision,
            "Succeeded",
            f"{version.name} is Validated (autoPromote None: promote it by hand)",
            now,
        )
    record.phase = "Promoting"
    return _promoting(inputs, record, decision)


def _promoting(
    inputs: RetrainInputs, record: RetrainRecord, decision: RetrainDecision
) -> RetrainDecision:
    policy = inputs.spec.retrain
    version = inputs.model_version
    assert policy is not None  # noqa: S101 - only called with a policy
    if version is None or version.name != record.model_version:
        return _finish(
            record, decision, "Failed", f"ModelVersion {record.model_version} is gone", inputs.now
        )
    stage = policy.auto_promote
    if version.stage != stage:
        decision.actions.append(Promote(version.name, stage))
        record.message = f"promoting {version.name} to {stage}"
        return decision
    if stage == "Production" and inputs.tracked_model is not None:
        record.phase = "RollingOut"
        decision.events.append(
            Event("Normal", "RetrainPromoted", f"{record.name}: {version.name} is {stage}")
        )
        return _rolling_out(inputs, record, decision)
    return _finish(record, decision, "Succeeded", f"{version.name} is {stage}", inputs.now)


def _rolling_out(
    inputs: RetrainInputs, record: RetrainRecord, decision: RetrainDecision
) -> RetrainDecision:
    status, version = inputs.status, record.model_version
    if inputs.spec.abort and status.aborted_version == version:
        # A person holds the rollout: lifting the abort goes on, so nothing is undone yet.
        record.message = f"rolling out {version}: held by spec.abort (set it to false to go on)"
        return decision
    promoted = inputs.model_version
    if promoted is not None and promoted.name == version and promoted.stage != "Production":
        left = f"{version} left Production ({promoted.stage}) before it served all traffic"
        return _finish(record, decision, "Failed", left, inputs.now)
    if version in (status.aborted_version, status.failed_version):
        # While Reverting the message keeps the failure: the end appends what came of it.
        record.message = f"the rollout of {version} failed: {status.message}"
        target = _revert_target(inputs, version)
        if target is None:
            return _finish(record, decision, "Failed", record.message, inputs.now)
        record.phase, record.reverted_to = "Reverting", target
        decision.events.append(
            Event(
                "Warning",
                "RetrainReverting",
                f"{record.name}: {record.message}; putting {target} back in Production",
            )
        )
        return _reverting(inputs, record, decision)
    if status.stable_version == version and status.candidate_version is None:
        return _finish(record, decision, "Succeeded", f"{version} serves all traffic", inputs.now)
    record.message = f"rolling out {version}: {status.message}"
    return decision


def _revert_target(inputs: RetrainInputs, failed: str | None) -> str | None:
    """The version a failed rollout of ``failed`` puts back in Production, if any."""
    policy, serving = inputs.spec.retrain, inputs.serving_version
    assert policy is not None  # noqa: S101 - only called with a policy
    if not policy.revert_on_failure or serving is None or serving.name == failed:
        return None
    return serving.name if serving.model == inputs.tracked_model else None


def _reverting(
    inputs: RetrainInputs, record: RetrainRecord, decision: RetrainDecision
) -> RetrainDecision:
    """One stage per step towards Production for ``revertedTo``; the registry controller
    archives the failed version when it gets there."""
    name, failed, failure = record.reverted_to, record.model_version, record.message
    target = inputs.serving_version
    if target is None or target.name != name:
        why = f"{name} is gone, so {failed} stays Production"
        return _finish(record, decision, "Failed", f"{failure}; {why}", inputs.now)
    if target.stage == "Production":
        back = f"{name} is Production again ({failed} is Archived)"
        return _finish(record, decision, "Failed", f"{failure}; {back}", inputs.now)
    if target.phase != "Validated":
        why = f"{name} is {target.phase}, so {failed} stays Production (set the stages by hand)"
        return _finish(record, decision, "Failed", f"{failure}; {why}", inputs.now)
    decision.actions.append(
        Promote(target.name, "Staging" if target.stage == "Archived" else "Production")
    )
    return decision


def serving_version_name(record: RetrainRecord | None, status: DeploymentStatus) -> str | None:
    """The ModelVersion to read as ``RetrainInputs.serving_version`` (None: none needed)."""
    if record is None or record.phase not in ("RollingOut", "Reverting"):
        return None
    return record.reverted_to if record.phase == "Reverting" else status.stable_version


def ended_now(before: RetrainRecord | None, after: RetrainRecord | None) -> RetrainRecord | None:
    """``after`` when this step ended it (it was in flight, or started and ended at once)."""
    if after is None or after.phase not in TERMINAL:
        return None
    if before is None or before.number != after.number or before.phase not in TERMINAL:
        return after
    return None


def decide_retrain(inputs: RetrainInputs) -> RetrainDecision:
    """The next retrain record, schedule mark, actions and Events."""
    policy = inputs.spec.retrain
    record = inputs.status.last_retrain
    last_scheduled = inputs.status.last_scheduled_retrain
    if policy is None:
        return RetrainDecision(record=record, last_scheduled=last_scheduled)
    if record is not None and record.phase not in TERMINAL:
        current = record.model_copy(deep=True)
        decision = RetrainDecision(record=current, last_scheduled=last_scheduled)
        return _advance(inputs, policy, current, decision)
    trigger = _trigger(inputs, policy)
    if trigger is None:
        return RetrainDecision(record=record, last_scheduled=last_scheduled)
    return _start(inputs, policy, trigger)
