"""The retrain policy's state machine: triggers, cooldown, deduplication, phases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubeloop.api.deployment import (
    DeploymentSpec,
    DeploymentStatus,
    DriftStatus,
    FeatureDrift,
    RetrainRecord,
)
from kubeloop.resources.retrain import build_retrain_run, retrain_name
from kubeloop.status.retrain import (
    CreateTrainingRun,
    DatasetView,
    Promote,
    RefreshDataset,
    RetrainInputs,
    RunView,
    VersionView,
    decide_retrain,
    ended_now,
    serving_version_name,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CREATED = NOW - timedelta(days=2)
DATASET = DatasetView("iris-feedback", "sha256:" + "a" * 64, "Ready", "", None)


def _spec(**retrain: Any) -> DeploymentSpec:
    policy = {"template": "iris-logreg", "dataset": "iris-feedback", **retrain}
    return DeploymentSpec.model_validate(
        {"model": {"track": {"model": "iris"}}, "monitoring": {"consecutive": 3}, "retrain": policy}
    )


def _drift(*, streak: int = 3, drifted: int = 2, accuracy: float | None = None) -> DriftStatus:
    scores = [
        FeatureDrift(
            feature=f, kind="numeric", method="psi", score=0.9, threshold=0.2, drifted=True
        )
        for f in ("petal_length", "petal_width")[:drifted]
    ]
    return DriftStatus(
        evaluated_at="2026-12-07T11:59:30Z",
        version="iris-v1",
        verdict="Drifted" if drifted else "NoDrift",
        samples=900,
        drifted_features=drifted,
        consecutive=streak,
        live_accuracy=accuracy,
        feedback=400 if accuracy is not None else 0,
        scores=scores,
    )


def _status(**fields: Any) -> DeploymentStatus:
    return DeploymentStatus(stable_version="iris-v1", **fields)


def _inputs(spec: DeploymentSpec, status: DeploymentStatus, **more: Any) -> RetrainInputs:
    fields: dict[str, Any] = {
        "deployment": "iris",
        "spec": spec,
        "status": status,
        "now": NOW,
        "created": CREATED,
        "dataset": DATASET,
        "tracked_model": "iris",
    }
    fields.update(more)
    return RetrainInputs(**fields)


def _record(**fields: Any) -> RetrainRecord:
    base: dict[str, Any] = {
        "name": "iris-retrain-1",
        "number": 1,
        "trigger": "Drift",
        "reason": "drift",
        "phase": "Training",
        "dataset": "iris-feedback",
        "dataset_version": DATASET.version,
        "started_at": "2026-12-07T11:00:00Z",
    }
    base.update(fields)
    return RetrainRecord(**base)


def test_drift_detected_starts_one_retrain_that_first_refreshes_the_data() -> None:
    decision = decide_retrain(_inputs(_spec(), _status(drift=_drift())))
    record = decision.record
    assert record is not None
    assert (record.name, record.number, record.trigger, record.phase) == (
        "iris-retrain-1", 1, "Drift", "RefreshingData",
    )  # fmt: skip
    assert "petal_length psi=0.9" in record.reason
    assert decision.actions == [RefreshDataset("iris-feedback", "iris-retrain-1")]
    assert [e.reason for e in decision.events] == ["RetrainStarted"]


@pytest.mark.parametrize(
    ("drift", "why"),
    [
        (_drift(streak=2), "the streak has not reached monitoring.consecutive"),
        (_drift(drifted=1), "fewer drifted features than minDriftedFeatures"),
        (_drift().model_copy(update={"version": "iris-v0"}), "an old version's drift"),
        (None, "no drift check yet"),
    ],
)
def test_no_retrain_without_a_drift_verdict_that_counts(
    drift: DriftStatus | None, why: str
) -> None:
    decision = decide_retrain(_inputs(_spec(minDriftedFeatures=2), _status(drift=drift)))
    assert decision.record is None, why
    assert decision.actions == []


def test_at_most_one_in_flight_and_cooldown_between_automatic_ones() -> None:
    spec = _spec(cooldown="1h")
    in_flight = _status(drift=_drift(), last_retrain=_record(phase="Training"))
    run = RunView("iris-retrain-1", "Running", "", None)
    decision = decide_retrain(_inputs(spec, in_flight, run=run))
    assert decision.record is not None and decision.record.number == 1  # no second one
    done_recently = _status(
        drift=_drift(),
        last_retrain=_record(phase="Succeeded", started_at="2026-12-07T11:30:00Z"),
    )
    assert decide_retrain(_inputs(spec, done_recently)).record == done_recently.last_retrain
    done_long_ago = _status(
        drift=_drift(),
        last_retrain=_record(phase="Rejected", started_at="2026-12-07T10:30:00Z"),
    )
    next_one = decide_retrain(_inputs(spec, done_long_ago)).record
    assert next_one is not None and (next_one.name, next_one.number) == ("iris-retrain-2", 2)


def test_a_request_token_retrains_once_and_ignores_cooldown() -> None:
    spec = _spec(triggers=[], request="2026-12-07T12-00", cooldown="24h")
    recent = _status(last_retrain=_record(phase="Succeeded", started_at="2026-12-07T11:59:00Z"))
    decision = decide_retrain(_inputs(spec, recent))
    assert decision.record is not None and decision.record.trigger == "Manual"
    assert decision.record.request == "2026-12-07T12-00"
    # The same value left in Git does not retrain again once handled.
    handled = _status(last_retrain=decision.record.model_copy(update={"phase": "Succeeded"}))
    assert decide_retrain(_inputs(spec, handled)).record == handled.last_retrain


def test_live_accuracy_below_the_floor_with_enough_feedback_triggers() -> None:
    spec = _spec(triggers=["Accuracy"], minLiveAccuracy=0.85, minFeedback=100)
    low = decide_retrain(_inputs(spec, _status(drift=_drift(drifted=0, streak=0, accuracy=0.6))))
    assert low.record is not None and low.record.trigger == "Accuracy"
    assert "0.600 over 400 labels" in low.record.reason
    fine = decide_retrain(_inputs(spec, _status(drift=_drift(drifted=0, streak=0, accuracy=0.9))))
    assert fine.record is None


def test_a_schedule_fires_once_per_schedule_time() -> None:
    spec = _spec(triggers=["Schedule"], schedule="0 3 * * *", cooldown="1m")
    first = decide_retrain(_inputs(spec, _status()))
    assert first.record is not None and first.record.trigger == "Schedule"
    assert first.last_scheduled == "2026-12-07T03:00:00Z"
    after = _status(
        last_retrain=first.record.model_copy(update={"phase": "Succeeded"}),
        last_scheduled_retrain=first.last_scheduled,
    )
    assert decide_retrain(_inputs(spec, after, now=NOW + timedelta(hours=1))).record == (
        after.last_retrain
    )
    tomorrow = decide_retrain(_inputs(spec, after, now=NOW + timedelta(days=1)))
    assert tomorrow.record is not None and tomorrow.record.number == 2


def test_a_run_found_under_the_next_name_is_adopted_not_duplicated() -> None:
    # The operator created iris-retrain-1 and was killed before writing lastRetrain.
    existing = RunView("iris-retrain-1", "Running", "", None)
    decision = decide_retrain(_inputs(_spec(), _status(drift=_drift()), run=existing))
    assert decision.record is not None
    assert (decision.record.phase, decision.record.training_run) == ("Training", "iris-retrain-1")
    assert decision.actions == []


def test_refreshed_data_pins_the_version_and_creates_the_run() -> None:
    waiting = _status(
        last_retrain=_record(
            phase="RefreshingData", dataset_version=None, started_at="2026-12-07T11:59:00Z"
        )
    )
    still = decide_retrain(_inputs(_spec(), waiting))
    assert still.actions == [RefreshDataset("iris-feedback", "iris-retrain-1")]
    fresh = DatasetView("iris-feedback", "sha256:" + "b" * 64, "Ready", "", "iris-retrain-1")
    done = decide_retrain(_inputs(_spec(), waiting, dataset=fresh))
    assert done.record is not None and done.record.phase == "Training"
    assert done.actions == [
        CreateTrainingRun("iris-retrain-1", 1, "iris-feedback", "sha256:" + "b" * 64)
    ]
    invalid = DatasetView("iris-feedback", None, "Invalid", "0 labeled rows", "iris-retrain-1")
    failed = decide_retrain(_inputs(_spec(), waiting, dataset=invalid))
    assert failed.record is not None and failed.record.phase == "Failed"
    assert "0 labeled rows" in failed.record.message


def test_a_validated_version_is_promoted_then_followed_until_it_serves() -> None:
    spec = _spec(autoPromote="Production")
    training = _status(last_retrain=_record())
    run = RunView("iris-retrain-1", "Succeeded", "", "iris-v2")
    gated = VersionView("iris-v2", "Validated", "None", "")
    promote = decide_retrain(_inputs(spec, training, run=run, model_version=gated))
    assert promote.record is not None and promote.record.phase == "Promoting"
    assert promote.actions == [Promote("iris-v2", "Production")]
    promoting = _status(last_retrain=promote.record)
    production = VersionView("iris-v2", "Validated", "Production", "")
    rolling = decide_retrain(_inputs(spec, promoting, run=run, model_version=production))
    assert rolling.record is not None and rolling.record.phase == "RollingOut"
    canary = _status(
        last_retrain=rolling.record, candidate_version="iris-v2", message="canary step 1: 10%"
    )
    still = decide_retrain(_inputs(spec, canary, run=run, model_version=production)).record
    assert still is not None and still.phase == "RollingOut"
    serving = DeploymentStatus(stable_version="iris-v2", last_retrain=rolling.record)
    finished = decide_retrain(_inputs(spec, serving, run=run, model_version=production)).record
    assert finished is not None and finished.phase == "Succeeded"
    assert finished.finished_at == "2026-12-07T12:00:00Z"


def test_rejected_and_failed_runs_end_the_retrain_with_their_reason() -> None:
    training = _status(last_retrain=_record())
    failed = decide_retrain(
        _inputs(_spec(), training, run=RunView("iris-retrain-1", "Failed", "trainer: OOM", None))
    ).record
    assert failed is not None and (failed.phase, failed.message) == (
        "Failed", "TrainingRun failed: trainer: OOM",
    )  # fmt: skip
    run = RunView("iris-retrain-1", "Succeeded", "", "iris-v2")
    lost = VersionView("iris-v2", "Rejected", "None", "champion:f1 0.81 < 0.93")
    rejected = decide_retrain(_inputs(_spec(), training, run=run, model_version=lost)).record
    assert rejected is not None and rejected.phase == "Rejected"
    assert "champion:f1" in rejected.message


def test_the_training_run_is_the_template_on_the_pinned_version_with_a_champion_gate() -> None:
    template = {
        "metadata": {"name": "iris-logreg", "namespace": "ml"},
        "spec": {
            "datasetRef": {"name": "iris"},
            "modelName": "iris",
            "estimator": {"name": "LogisticRegression", "params": {"C": 1.0}},
            "gates": {"thresholds": [{"metric": "accuracy", "min": 0.9}]},
        },
    }
    run = build_retrain_run(
        template,
        name=retrain_name("iris", 3),
        namespace="ml",
        deployment="iris",
        number=3,
        dataset="iris-feedback",
        version="sha256:" + "c" * 64,
    )
    assert run["metadata"]["name"] == "iris-retrain-3"
    assert run["spec"]["datasetRef"] == {"name": "iris-feedback", "version": "sha256:" + "c" * 64}
    assert run["spec"]["gates"]["champion"] == {"metric": "f1", "minImprovement": 0.0}
    assert run["spec"]["estimator"] == template["spec"]["estimator"]
    assert run["metadata"]["labels"]["kubeloop.io/retrain"] == "3"
    assert template["spec"]["datasetRef"] == {"name": "iris"}  # the template is not changed


def _failed_rollout() -> DeploymentStatus:
    return _status(
        aborted_version="iris-v2",
        phase="RolledBack",
        message="iris-v2 failed analysis: error-rate 0.31 > 0.05",
        last_retrain=_record(phase="RollingOut", model_version="iris-v2"),
    )


def test_a_failed_rollout_puts_the_serving_version_back_in_production_a_stage_a_step() -> None:
    spec = _spec(autoPromote="Production")
    production = VersionView("iris-v2", "Validated", "Production", "", "iris")
    archived = VersionView("iris-v1", "Validated", "Archived", "", "iris")
    first = decide_retrain(
        _inputs(spec, _failed_rollout(), model_version=production, serving_version=archived)
    )
    assert first.record is not None and first.record.phase == "Reverting"
    assert first.record.reverted_to == "iris-v1"
    assert first.actions == [Promote("iris-v1", "Staging")]
    assert [e.reason for e in first.events] == ["RetrainReverting"]
    assert first.events[0].message.endswith("; putting iris-v1 back in Production")
    assert "error-rate 0.31" in first.record.message
    # the Deployment's message changes while reverting: the record keeps the failure's
    reverting = _status(last_retrain=first.record, message="iris-v1 serves all traffic")
    staging = VersionView("iris-v1", "Validated", "Staging", "", "iris")
    second = decide_retrain(_inputs(spec, reverting, serving_version=staging))
    assert second.actions == [Promote("iris-v1", "Production")]
    assert second.record is not None and second.record.phase == "Reverting"
    back = VersionView("iris-v1", "Validated", "Production", "", "iris")
    done = decide_retrain(_inputs(spec, reverting, serving_version=back))
    assert done.actions == [] and done.record is not None
    assert (done.record.phase, done.record.message) == (
        "Failed",
        "the rollout of iris-v2 failed: iris-v2 failed analysis: error-rate 0.31 > 0.05; "
        "iris-v1 is Production again (iris-v2 is Archived)",
    )
    assert done.record.finished_at == "2026-12-07T12:00:00Z"


@pytest.mark.parametrize(
    ("policy", "serving"),
    [
        ({"revertOnFailure": False}, VersionView("iris-v1", "Validated", "Archived", "", "iris")),
        ({}, None),
        ({}, VersionView("iris-v1", "Validated", "Archived", "", "other-model")),
    ],
    ids=["revert-off", "nothing-serving", "another-model"],
)
def test_a_failed_rollout_without_a_version_to_revert_to_just_fails(
    policy: dict[str, Any], serving: VersionView | None
) -> None:
    spec = _spec(autoPromote="Production", **policy)
    decision = decide_retrain(_inputs(spec, _failed_rollout(), serving_version=serving))
    assert decision.actions == [] and decision.record is not None
    assert decision.record.phase == "Failed" and decision.record.reverted_to is None
    assert decision.record.message.endswith("error-rate 0.31 > 0.05")


def test_a_revert_target_that_cannot_go_back_ends_the_retrain_saying_so() -> None:
    spec = _spec(autoPromote="Production")
    reverting = _status(
        last_retrain=_record(
            phase="Reverting",
            model_version="iris-v2",
            reverted_to="iris-v1",
            message="the rollout of iris-v2 failed: slow",
        )
    )
    gone = decide_retrain(_inputs(spec, reverting, serving_version=None)).record
    assert gone is not None and gone.phase == "Failed"
    assert (
        gone.message
        == "the rollout of iris-v2 failed: slow; iris-v1 is gone, so iris-v2 stays Production"
    )
    rejected = VersionView("iris-v1", "Rejected", "Archived", "digest mismatch", "iris")
    held = decide_retrain(_inputs(spec, reverting, serving_version=rejected))
    assert held.actions == [] and held.record is not None and held.record.phase == "Failed"
    assert "iris-v1 is Rejected, so iris-v2 stays Production" in held.record.message


def test_a_rollout_held_by_hand_waits_and_one_given_up_in_the_registry_ends() -> None:
    held_spec = DeploymentSpec.model_validate(
        {**_spec(autoPromote="Production").to_wire(), "abort": True}
    )
    production = VersionView("iris-v2", "Validated", "Production", "", "iris")
    archived = VersionView("iris-v1", "Validated", "Archived", "", "iris")
    held = decide_retrain(
        _inputs(held_spec, _failed_rollout(), model_version=production, serving_version=archived)
    )
    assert held.actions == [] and held.record is not None
    assert held.record.phase == "RollingOut" and "held by spec.abort" in held.record.message
    spec = _spec(autoPromote="Production")
    moved = VersionView("iris-v2", "Validated", "Staging", "", "iris")
    rolling = _status(
        candidate_version="iris-v2",
        last_retrain=_record(phase="RollingOut", model_version="iris-v2"),
    )
    given_up = decide_retrain(_inputs(spec, rolling, model_version=moved)).record
    assert given_up is not None and (given_up.phase, given_up.message) == (
        "Failed", "iris-v2 left Production (Staging) before it served all traffic",
    )  # fmt: skip


def test_the_version_to_revert_to_is_read_only_while_a_rollout_can_fail() -> None:
    serving = DeploymentStatus(stable_version="iris-v1", candidate_version="iris-v2")
    assert serving_version_name(None, serving) is None
    assert serving_version_name(_record(), serving) is None  # Training
    assert serving_version_name(_record(phase="RollingOut"), serving) == "iris-v1"
    reverting = _record(phase="Reverting", reverted_to="iris-v0")
    assert serving_version_name(reverting, serving) == "iris-v0"
    assert serving_version_name(_record(phase="Failed", reverted_to="iris-v0"), serving) is None


def test_a_retrain_counts_as_ended_once_on_the_step_that_ends_it() -> None:
    training, done = _record(), _record(phase="Succeeded", finished_at="2026-12-07T12:00:00Z")
    assert ended_now(training, done) is done
    assert ended_now(done, done.model_copy()) is None  # later steps see it ended already
    assert ended_now(None, done) is done  # started and ended in one step
    assert ended_now(done, _record(number=2, name="iris-retrain-2", phase="Failed")) is not None
    assert ended_now(done, _record(number=2, name="iris-retrain-2")) is None
    assert ended_now(training, None) is None
