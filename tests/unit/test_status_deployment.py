"""The rollout state machine, scenario by scenario: each row is a tick of the controller."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.api.deployment import (
    AnalysisResult,
    AnalysisRun,
    DeploymentSpec,
    DeploymentStatus,
    ModelSelector,
    Verdict,
)
from kubeloop.resources.common import Owner, WorkloadSettings
from kubeloop.resources.deployment import (
    LiveVersion,
    ServedVersion,
    build_children,
    child_key,
)
from kubeloop.status.conditions import condition
from kubeloop.status.deployment import (
    Decision,
    KnownVersion,
    RolloutInputs,
    VersionReadiness,
    analysis_due,
    desired_version,
    parse_timestamp,
    reconcile,
    scale_down_due,
    timestamp,
)

T0 = datetime(2026, 1, 2, 3, 0, 0, tzinfo=UTC)
READY = VersionReadiness(2, 2)
STARTING = VersionReadiness(0, 2)


def _version(number: int, stage: str = "None", phase: str = "Validated", **kw: Any) -> KnownVersion:
    return KnownVersion(f"iris-v{number}", "iris", number, phase, stage, **kw)  # type: ignore[arg-type]


def _spec(**overrides: Any) -> DeploymentSpec:
    body: dict[str, Any] = {"model": {"track": {"model": "iris"}}}
    body.update(overrides)
    return DeploymentSpec.model_validate(body)


CANARY = {
    "strategy": {
        "type": "Canary",
        "canary": {
            "steps": [{"weight": 10, "pause": "1m"}, {"weight": 50, "pause": "1m"}],
            "scaleDownDelay": "30s",
            "analysis": {"interval": "30s"},
        },
    }
}


@dataclass
class World:
    """The controller's view between ticks: status carries over, the rest is set per tick."""

    spec: DeploymentSpec
    known: dict[str, KnownVersion]
    ready: dict[str, VersionReadiness] = field(default_factory=dict)
    router: VersionReadiness | None = None
    status: DeploymentStatus = field(default_factory=DeploymentStatus)
    now: datetime = T0
    events: list[tuple[str, str]] = field(default_factory=list)
    last: Decision | None = None

    def tick(self, seconds: float = 0.0, verdict: Verdict | None = None, **why: Any) -> Decision:
        """Advance the clock, run the analysis if one is due (with ``verdict``), reconcile."""
        self.now += timedelta(seconds=seconds)
        run = None
        request = analysis_due(self.spec, self.status, self.now)
        if verdict is not None:
            assert request is not None, "an analysis verdict was given but none is due"
            run = _run(request.candidate, request.step, self.now, verdict, **why)
        decision = reconcile(
            RolloutInputs(
                spec=self.spec,
                status=self.status,
                known=self.known,
                readiness=self.ready,
                now=self.now,
                generation=3,
                analysis=run,
                endpoint="http://iris.ml.svc",
                router=self.router,
            )
        )
        self.status = decision.status
        self.events += [(e.type, e.reason) for e in decision.events]
        self.last = decision
        # what the API server would store: the wire form must round-trip
        assert DeploymentStatus.model_validate(self.status.to_wire()) == self.status
        return decision

    def weights(self) -> dict[str, tuple[str, int]]:
        return {v.version: (v.role, v.weight) for v in self.status.versions}

    def condition(self, type_: str) -> tuple[str, str]:
        found = condition(self.status.conditions, type_)
        assert found is not None
        return found.status, found.reason


def _run(candidate: str, step: int, now: datetime, verdict: Verdict, **why: Any) -> AnalysisRun:
    message = why.get("message", f"analysis said {verdict}")
    return AnalysisRun(
        step=step,
        time=timestamp(now),
        candidate=candidate,
        stable="iris-v1",
        verdict=verdict,
        message=message,
        results=[AnalysisResult(check="errorRate", verdict=verdict, message=message)],
    )


def _serving_v1(spec: DeploymentSpec, **known: KnownVersion) -> World:
    """v1 is stable and ready (after a first rollout)."""
    world = World(spec, {"iris-v1": _version(1, "Production"), **known}, {"iris-v1": READY})
    world.tick()
    assert world.status.stable_version == "iris-v1"
    world.events.clear()
    return world


def _release_v2(world: World) -> None:
    """The registry moves Production from v1 to v2 (the tracked stage changes)."""
    world.known = {"iris-v1": _version(1, "Archived"), "iris-v2": _version(2, "Production")}


# --- resolving what to serve ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "known", "expected"),
    [
        ({"version": "iris-v7"}, {}, "iris-v7"),
        ({"track": {"model": "iris"}}, {"a": _version(1, "Production")}, "iris-v1"),
        (
            {"track": {"model": "iris"}},
            {"a": _version(1, "Production"), "b": _version(3, "Production"), "c": _version(4)},
            "iris-v3",
        ),
        ({"track": {"model": "iris", "stage": "Staging"}}, {"a": _version(1, "Production")}, None),
        ({"track": {"model": "other"}}, {"a": _version(1, "Production")}, None),
    ],
)
def test_desired_version(
    model: dict[str, Any], known: dict[str, KnownVersion], expected: str | None
) -> None:
    assert desired_version(_spec(model=model), known) == expected


# --- first rollout --------------------------------------------------------------------------


def test_first_rollout_serves_at_100_percent_once_ready() -> None:
    world = World(_spec(), {"iris-v1": _version(1, "Production")}, {"iris-v1": STARTING})
    decision = world.tick()
    assert world.status.phase == "Progressing"
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert world.status.stable_version is None
    assert world.condition("Available") == ("False", "NoStableVersion")
    assert world.condition("Progressing") == ("True", "WaitingForPods")
    assert decision.requeue_after == 5.0
    world.ready["iris-v1"] = READY
    world.tick(10)
    assert world.status.phase == "Healthy"
    assert world.status.stable_version == "iris-v1"
    assert world.status.candidate_version is None
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert world.condition("Available") == ("True", "StableReady")
    assert world.condition("Degraded") == ("False", "AsExpected")
    assert world.events == [("Normal", "Serving")]
    assert world.status.model == "iris"
    assert world.status.endpoint == "http://iris.ml.svc"
    assert world.status.observed_generation == 3


def test_healthy_waits_for_a_ready_router() -> None:
    world = World(
        _spec(),
        {"iris-v1": _version(1, "Production")},
        {"iris-v1": READY},
        router=VersionReadiness(ready_replicas=0, desired_replicas=2),
    )
    decision = world.tick()
    assert world.status.stable_version == "iris-v1"  # its pods are ready: it is stable
    assert world.status.phase == "Progressing"  # but the endpoint cannot answer yet
    assert world.condition("Available") == ("False", "RouterNotReady")
    assert world.condition("Progressing") == ("True", "WaitingForRouter")
    assert "waiting for the router (0/2 pod(s) ready)" in world.status.message
    assert decision.requeue_after == 5.0
    assert ("Normal", "Serving") not in world.events  # not while nothing can answer
    world.tick(5)
    assert ("Normal", "Serving") not in world.events
    world.router = VersionReadiness(ready_replicas=1, desired_replicas=2)  # one is enough
    world.tick(5)
    assert world.events == [("Normal", "Serving")]  # once, when the endpoint answers
    world.tick(5)
    assert world.events == [("Normal", "Serving")]
    assert world.status.phase == "Healthy"
    assert world.condition("Available") == ("True", "StableReady")
    assert world.status.message == "iris-v1 serves all traffic"
    found = condition(world.status.conditions, "Available")
    assert (
        found is not None and found.message == "iris-v1 has 2 ready pod(s); router 1/2 pod(s) ready"
    )


def test_nothing_to_serve_is_pending() -> None:
    world = World(_spec(), {"iris-v1": _version(1, "Staging")})
    world.tick()
    assert world.status.phase == "Pending"
    assert world.status.versions == []
    assert "no version of iris in Production" in world.status.message


def test_waiting_for_the_gates() -> None:
    world = World(_spec(model={"version": "iris-v1"}), {"iris-v1": _version(1, phase="Pending")})
    world.tick()
    assert world.status.phase == "Pending"
    assert world.condition("Progressing") == ("True", "WaitingForModelVersion")


# --- canary ---------------------------------------------------------------------------------


def test_canary_walks_its_steps_and_promotes() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = STARTING
    world.tick()
    assert world.status.phase == "Progressing"
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v2": ("canary", 0)}
    assert world.status.candidate_version == "iris-v2"
    assert analysis_due(world.spec, world.status, world.now) is None  # not ready: no analysis

    world.ready["iris-v2"] = READY
    decision = world.tick(5)
    assert world.weights() == {"iris-v1": ("stable", 90), "iris-v2": ("canary", 10)}
    assert world.status.current_step == 0
    assert world.status.canary_weight == 10
    assert decision.requeue_after == 30.0  # the first analysis
    assert analysis_due(world.spec, world.status, world.now) is None

    world.tick(30, "Pass")
    assert world.weights()["iris-v2"] == ("canary", 10)  # pause is 1m
    world.tick(30, "Pass")
    assert world.weights() == {"iris-v1": ("stable", 50), "iris-v2": ("canary", 50)}
    assert world.status.current_step == 1
    world.tick(30, "Pass")
    world.tick(30, "Pass")
    assert world.status.stable_version == "iris-v2"
    assert world.status.candidate_version is None
    assert world.status.phase == "Healthy"
    assert world.status.message.startswith("iris-v2 takes all traffic (all 2 canary steps")
    assert world.weights() == {"iris-v2": ("stable", 100), "iris-v1": ("previous", 0)}
    previous = world.status.versions[1]
    assert previous.scale_down_at == timestamp(world.now + timedelta(seconds=30))
    assert world.last is not None and world.last.requeue_after == 30.0
    assert len(world.status.analysis) == 4
    assert world.events == [
        ("Normal", "RolloutStarted"),
        ("Normal", "StepStarted"),
        ("Normal", "StepAdvanced"),
        ("Normal", "Promoted"),
    ]

    assert scale_down_due(world.status, world.now + timedelta(seconds=31)) == ["iris-v1"]
    world.tick(31)
    assert world.weights() == {"iris-v2": ("stable", 100)}
    assert world.events[-1] == ("Normal", "ScaledDown")


def test_a_100_percent_step_promotes_when_its_pause_ends_without_a_pass_of_its_own() -> None:
    """At 100% stable gets nothing, so relative checks can only be Inconclusive there."""
    steps = [{"weight": 10, "pause": "1m"}, {"weight": 100, "pause": "1m"}]
    world = _serving_v1(
        _spec(
            strategy={
                "type": "Canary",
                "canary": {"steps": steps, "analysis": {"interval": "30s"}},
            }
        )
    )
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Pass")
    world.tick(30, "Pass")
    assert world.weights()["iris-v2"] == ("canary", 100)
    world.tick(30, "Inconclusive")
    assert world.status.stable_version == "iris-v1"  # the pause is not over
    world.tick(30, "Inconclusive")
    assert world.status.stable_version == "iris-v2"
    assert world.events[-1] == ("Normal", "Promoted")


def test_bad_canary_is_aborted_at_once_with_the_numbers() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Fail", message="errorRate: candidate 8.00% (80/1000) > 5.00%, p=6.7e-06")
    assert world.status.phase == "RolledBack"
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert world.status.aborted_version == "iris-v2"
    assert world.status.canary_weight == 0
    assert world.condition("Degraded") == ("True", "AnalysisFailed")
    degraded = condition(world.status.conditions, "Degraded")
    assert degraded is not None and "8.00% (80/1000)" in degraded.message
    assert world.condition("Available") == ("True", "StableReady")
    assert world.events[-1] == ("Warning", "AnalysisFailed")
    assert world.status.analysis[-1].verdict == "Fail"
    # it stays rolled back, is not analysed again and not retried by itself
    world.tick(60)
    assert world.status.phase == "RolledBack"
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert analysis_due(world.spec, world.status, world.now + timedelta(hours=1)) is None
    assert "8.00%" in world.status.message


def test_failure_limit_tolerates_single_failures() -> None:
    spec = _spec(
        strategy={
            "type": "Canary",
            "canary": {
                "steps": [{"weight": 20, "pause": "1m"}],
                "analysis": {"interval": "30s", "failureLimit": 2},
            },
        }
    )
    world = _serving_v1(spec)
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Fail")
    assert world.status.phase == "Progressing"
    assert world.status.failed_analyses == 1
    world.tick(30, "Fail")
    assert world.status.phase == "RolledBack"


def test_inconclusive_keeps_the_step() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Inconclusive")
    world.tick(30, "Inconclusive")
    assert world.status.current_step == 0
    assert world.status.inconclusive_streak == 2
    assert world.condition("Progressing") == ("True", "WaitingForAnalysis")
    world.tick(30, "Pass")
    assert world.status.current_step == 1
    assert world.status.inconclusive_streak == 0


def test_paused_holds_the_step_but_not_an_abort() -> None:
    world = _serving_v1(_spec(**CANARY, paused=True))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Pass")
    world.tick(30, "Pass")
    world.tick(30, "Pass")
    assert world.status.current_step == 0
    assert world.condition("Progressing") == ("Unknown", "Paused")
    world.spec = _spec(**CANARY, paused=False)
    world.tick(30, "Pass")
    assert world.status.current_step == 1
    world.spec = _spec(**CANARY, paused=True)
    world.tick(30, "Fail")
    assert world.status.phase == "RolledBack"


def test_manual_promote_names_the_candidate() -> None:
    world = _serving_v1(_spec(**CANARY, promote="iris-v3"))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    assert world.status.stable_version == "iris-v1"  # promote names another version: inert
    world.spec = _spec(**CANARY, promote="iris-v2")
    world.tick(1)
    assert world.status.stable_version == "iris-v2"
    assert world.weights() == {"iris-v2": ("stable", 100), "iris-v1": ("previous", 0)}
    assert world.events[-1] == ("Normal", "Promoted")
    # the token left in Git does nothing to the next version
    world.known["iris-v3"] = _version(3, "Production")
    world.known["iris-v2"] = _version(2, "Archived")
    world.ready["iris-v3"] = READY
    world.tick(1)
    assert world.status.stable_version == "iris-v2"
    assert world.status.candidate_version == "iris-v3"


def test_manual_abort_holds_and_lifting_it_starts_over() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Pass")
    world.spec = _spec(**CANARY, abort=True)
    world.tick(1)
    assert world.status.phase == "RolledBack"
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert world.condition("Degraded") == ("True", "Aborted")
    world.tick(60)
    assert world.status.phase == "RolledBack"
    world.spec = _spec(**CANARY)
    world.tick(1)
    assert world.status.phase == "Progressing"
    assert world.weights() == {"iris-v1": ("stable", 90), "iris-v2": ("canary", 10)}
    assert ("Normal", "RolloutRestarted") in world.events
    assert world.condition("Degraded") == ("False", "AsExpected")


def test_an_analysis_abort_is_lifted_only_by_promoting_by_name() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Fail")
    world.spec = _spec(**CANARY, promote="iris-v2")
    world.ready["iris-v2"] = STARTING  # its pods were pruned after the abort
    world.tick(1)
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v2": ("canary", 0)}
    world.ready["iris-v2"] = READY
    world.tick(5)
    assert world.status.stable_version == "iris-v2"


def test_a_newer_production_version_supersedes_the_candidate() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.known = {
        "iris-v1": _version(1, "Archived"),
        "iris-v2": _version(2, "Archived"),
        "iris-v3": _version(3, "Production"),
    }
    world.ready["iris-v3"] = STARTING
    world.tick(10)
    assert world.status.candidate_version == "iris-v3"
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v3": ("canary", 0)}
    assert ("Normal", "RolloutCancelled") in world.events


def test_spec_back_to_stable_cancels_the_rollout() -> None:
    world = _serving_v1(_spec(**CANARY, model={"version": "iris-v1"}), **{"iris-v2": _version(2)})
    world.spec = _spec(**CANARY, model={"version": "iris-v2"})
    world.ready["iris-v2"] = READY
    world.tick()
    assert world.weights()["iris-v2"] == ("canary", 10)
    world.spec = _spec(**CANARY, model={"version": "iris-v1"})
    world.tick(1)
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert world.status.phase == "Healthy"


def test_stale_analysis_runs_are_ignored() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    stale = _run("iris-v9", 0, world.now, "Fail")
    decision = reconcile(
        RolloutInputs(world.spec, world.status, world.known, world.ready, world.now, analysis=stale)
    )
    assert decision.status.phase == "Progressing"
    assert decision.status.analysis == []


def test_a_candidate_that_never_gets_ready_is_aborted() -> None:
    world = _serving_v1(_spec(**CANARY))
    _release_v2(world)
    world.ready["iris-v2"] = STARTING
    world.tick()
    world.tick(599)
    assert world.status.phase == "Progressing"
    world.tick(1)
    assert world.status.phase == "RolledBack"
    assert world.condition("Degraded") == ("True", "ProgressDeadlineExceeded")


# --- never served ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "reason", "words"),
    [
        (_version(2, "Production", "Rejected", message="f1 0.61 misses >= 0.9"), "CandidateRejected", "f1 0.61"),
        (
            _version(2, "Production", artifact_ok=False, message="sha256 ab12... != cd34..."),
            "ArtifactDigestMismatch",
            "sha256 ab12",
        ),
    ],
)  # fmt: skip
def test_a_bad_candidate_is_never_served(bad: KnownVersion, reason: str, words: str) -> None:
    world = _serving_v1(_spec(**CANARY))
    world.known = {"iris-v1": _version(1, "Archived"), "iris-v2": bad}
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(60)
    assert world.status.phase == "Failed"
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert world.status.failed_version == "iris-v2"
    assert world.condition("Degraded") == ("True", reason)
    assert world.condition("Available") == ("True", "StableReady")
    assert words in world.status.message and "iris-v1 keeps serving" in world.status.message
    assert world.events == [("Warning", reason)]  # once, not at every tick


def test_a_bad_first_version_is_never_served() -> None:
    world = World(
        _spec(model={"version": "iris-v1"}),
        {"iris-v1": _version(1, artifact_ok=False)},
        {"iris-v1": READY},
    )
    world.tick()
    assert world.status.phase == "Failed"
    assert world.status.versions == []
    assert world.condition("Available") == ("False", "NoStableVersion")


# --- blue-green -----------------------------------------------------------------------------

BLUE_GREEN = {
    "strategy": {
        "type": "BlueGreen",
        "blueGreen": {
            "previewDuration": "1m",
            "scaleDownDelay": "2m",
            "analysis": {"interval": "30s"},
            "smokeTest": {"records": [{"sepal_length": 5.1}]},
        },
    }
}


def test_blue_green_switches_at_once_and_rolls_back_instantly() -> None:
    world = _serving_v1(
        _spec(**BLUE_GREEN, model={"version": "iris-v1"}), **{"iris-v2": _version(2)}
    )
    world.spec = _spec(**BLUE_GREEN, model={"version": "iris-v2"})
    world.ready["iris-v2"] = READY
    world.tick()
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v2": ("preview", 0)}
    request = analysis_due(world.spec, world.status, world.now + timedelta(seconds=30))
    assert request is not None and request.require_traffic is False
    assert request.smoke_test is not None and request.candidate == "iris-v2"
    world.tick(30, "Pass")
    assert world.weights()["iris-v1"] == ("stable", 100)
    world.tick(30, "Pass")
    assert world.weights() == {"iris-v2": ("stable", 100), "iris-v1": ("previous", 0)}
    # rollback in the spec while v1 is still up: instant, and v2 now waits out its delay
    world.spec = _spec(**BLUE_GREEN, model={"version": "iris-v1"})
    world.tick(10)
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v2": ("previous", 0)}
    assert world.events[-1] == ("Normal", "RolledBackTo")


def test_blue_green_without_auto_promotion_waits_for_promote() -> None:
    manual = {
        "strategy": {
            "type": "BlueGreen",
            "blueGreen": {"autoPromotion": False, "previewDuration": "30s"},
        }
    }
    world = _serving_v1(_spec(**manual))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Pass")
    assert world.condition("Progressing") == ("True", "WaitingForPromotion")
    assert "spec.promote: iris-v2" in world.status.message
    world.spec = _spec(**manual, promote="iris-v2")
    world.tick(1)
    assert world.weights() == {"iris-v2": ("stable", 100), "iris-v1": ("previous", 0)}


def test_blue_green_preview_failing_analysis_is_removed() -> None:
    world = _serving_v1(_spec(**BLUE_GREEN))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Fail", message="smokeTest: 2 of 4 smoke records were not answered with 200")
    assert world.weights() == {"iris-v1": ("stable", 100)}
    assert world.status.phase == "RolledBack"


# --- shadow ---------------------------------------------------------------------------------

SHADOW = {
    "strategy": {
        "type": "Shadow",
        "shadow": {
            "percent": 40,
            "duration": "1m",
            "promote": True,
            "analysis": {"interval": "30s"},
        },
    }
}


def test_shadow_gets_copies_then_is_promoted() -> None:
    world = _serving_v1(_spec(**SHADOW))
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v2": ("shadow", 0)}
    assert world.status.versions[1].mirror_percent == 40
    request = analysis_due(world.spec, world.status, world.now + timedelta(seconds=30))
    assert request is not None and request.require_traffic is True
    world.tick(30, "Pass")
    world.tick(30, "Pass")
    assert world.status.stable_version == "iris-v2"


def test_shadow_without_promote_keeps_shadowing() -> None:
    spec = _spec(strategy={"type": "Shadow", "shadow": {"duration": "30s"}})
    world = _serving_v1(spec)
    _release_v2(world)
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Pass")
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v2": ("shadow", 0)}
    assert world.condition("Progressing") == ("True", "WaitingForPromotion")


# --- recreate and health --------------------------------------------------------------------


def test_recreate_switches_when_ready_and_drops_the_old_at_once() -> None:
    world = _serving_v1(_spec(strategy={"type": "Recreate"}))
    _release_v2(world)
    world.ready["iris-v2"] = STARTING
    world.tick()
    assert world.weights() == {"iris-v1": ("stable", 100), "iris-v2": ("canary", 0)}
    world.ready["iris-v2"] = READY
    world.tick(5)
    assert world.weights() == {"iris-v2": ("stable", 100)}


def test_stable_without_ready_pods_is_degraded() -> None:
    world = _serving_v1(_spec())
    world.ready["iris-v1"] = VersionReadiness(0, 2)
    world.tick(5)
    assert world.status.phase == "Degraded"
    assert world.condition("Available") == ("False", "NoReadyPods")
    assert world.condition("Degraded") == ("True", "StableUnavailable")


def test_conditions_keep_their_transition_time() -> None:
    world = _serving_v1(_spec())
    available = condition(world.status.conditions, "Available")
    assert available is not None
    world.tick(60)
    again = condition(world.status.conditions, "Available")
    assert again is not None and again.last_transition_time == available.last_transition_time
    assert {c.type for c in world.status.conditions} == {"Available", "Progressing", "Degraded"}


def test_timestamps_round_trip() -> None:
    assert parse_timestamp(timestamp(T0)) == T0
    assert timestamp(T0) == "2026-01-02T03:00:00Z"


# --- the pure pipeline on the examples ------------------------------------------------------

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("deployment-*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_examples_roll_out_through_state_machine_and_builders(path: Path) -> None:
    """What a handler does with each example: reconcile, then build the children."""
    manifest = yaml.safe_load(path.read_text())
    spec = DeploymentSpec.model_validate(manifest["spec"])
    stage = spec.model.track.stage if spec.model.track else "None"
    known = {"iris-v1": _version(1, stage), "iris-v2": _version(2)}
    served = {
        name: ServedVersion(name, "iris", v.number, f"s3://kubeloop/models/ml/iris/v{v.number}/model.onnx", "ab" * 32)
        for name, v in known.items()
    }  # fmt: skip
    world = World(spec, known, {"iris-v1": READY, "iris-v2": READY})
    world.tick()
    assert world.status.stable_version == "iris-v1"
    # then v2 is released and rolls out with the example's strategy
    if spec.model.track is not None:
        world.known = {"iris-v1": _version(1, "Archived"), "iris-v2": _version(2, stage)}
    else:
        world.spec = spec.model_copy(update={"model": ModelSelector(version="iris-v2")})
    world.tick(1)
    owner = Owner("Deployment", manifest["metadata"]["name"], "ml", "uid-1")
    settings = WorkloadSettings("img", ("kubeloop",), "http://s3:8333", "kubeloop", "s3")
    live = [LiveVersion.of(served[v.version], v) for v in world.status.versions]
    children = build_children(owner, world.spec, live, settings)
    keys = [child_key(c) for c in children]
    assert len(keys) == len(set(keys))
    assert {
        ("apps/v1", "Deployment", f"{owner.name}-{v.version}") for v in world.status.versions
    } <= set(keys)
    assert {v.version for v in world.status.versions} <= {"iris-v1", "iris-v2"}
    assert sum(v.weight for v in world.status.versions) == 100


def test_a_shadow_of_a_version_still_up_from_before_is_a_shadow_not_a_switch_back() -> None:
    """Users must never see a shadow's answers, even if its pods are warm from a rollback."""
    world = _serving_v1(
        _spec(**BLUE_GREEN, model={"version": "iris-v1"}), **{"iris-v2": _version(2)}
    )
    world.spec = _spec(**BLUE_GREEN, model={"version": "iris-v2"})
    world.ready["iris-v2"] = READY
    world.tick()
    world.tick(30, "Pass")
    world.tick(30, "Pass")
    assert world.weights() == {"iris-v2": ("stable", 100), "iris-v1": ("previous", 0)}
    shadow = {"strategy": {"type": "Shadow", "shadow": {"promote": False}}}
    world.spec = _spec(**shadow, model={"version": "iris-v1"})
    world.tick(5)
    assert world.weights() == {"iris-v2": ("stable", 100), "iris-v1": ("shadow", 0)}
