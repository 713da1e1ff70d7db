"""The rollout state machine of a kubeloop Deployment, as one pure function.

:func:`reconcile` takes what the controller observed (the spec, the current status, the
ModelVersions of the model, each live version's readiness, an analysis run if one was just
computed, and ``now``) and returns the next status, the Events to post and when to look again.
It never talks to the API server and never reads a clock, so every transition is a table row
in ``tests/unit/test_status_deployment.py``.

How a Kopf handler uses this module (one idempotent function for create, resume, update and a
timer)::

    spec = DeploymentSpec.model_validate(body["spec"])
    status = DeploymentStatus.model_validate(body.get("status") or {})
    known = {mv.name: KnownVersion(...) for mv in model_versions}   # ModelVersions of the model
    ready = {v: VersionReadiness(ready, desired) for v, ... in per_version_deployments}
    request = analysis_due(spec, status, now)                       # None: nothing to analyse
    run = None
    if request is not None:
        # scrape the pods of request.candidate and request.stable (selector:
        # resources.deployment.version_selector(owner, version); port 8080, GET /metrics),
        # parse each page with analysis.exposition.parse_pod_metrics(text,
        # version=str(known[v].number), model=known[v].model), keyed by pod UID; the window is
        # analysis.window.version_window(baseline, current) where the baseline is the scrape
        # taken when the step started (status.stepStartedAt; weights are constant within a
        # step, so the window grows and evidence accumulates), or the previous scrape when the
        # operator restarted and has none; then
        run = kubeloop.analysis.checks.analysis_run(
            request.analysis, candidate_window, stable_window, step=request.step, now=now_text,
            candidate_version=request.candidate, stable_version=request.stable,
            window_seconds=..., inconclusive_streak=request.inconclusive_streak,
            require_traffic=request.require_traffic,
            extra=[smoke_test_result(...)] if request.smoke_test else None)
    decision = reconcile(RolloutInputs(spec=spec, generation=meta.generation, status=status,
                                       known=known, readiness=ready, analysis=run, now=now,
                                       endpoint=endpoint_url(name, namespace, spec)))
    live = [LiveVersion.of(served[v.version], v) for v in decision.status.versions]
    children = build_children(owner, spec, live, settings, prediction_log_uri=...)
    # server-side apply children; delete stale_children(owner, listed, children)
    # patch status with decision.status.to_wire(); post decision.events;
    # look again after decision.requeue_after seconds (None: only on changes)

Rules, in order of precedence:

1. **Nothing to serve** (no explicit version, or no version of the tracked model in its
   stage): Pending; a stable version already serving keeps serving.
2. **A candidate that can never be served** (ModelVersion Rejected, or its artifact failed
   the digest check): Failed with that reason; it gets no traffic and no pods; stable keeps
   100%.
3. **First rollout** (no stable yet): the version takes 100% at once and becomes stable
   when its pods are ready.
4. **Desired is stable**: Healthy; any candidate is dropped at once (the user rolled back in
   the spec).
5. **A rollout** (desired is not stable): a previous version still inside its scale-down
   delay is switched back to at once (that is what the delay is for; not with the Shadow
   strategy, which never shows users a candidate's answers); ``abort`` drops the candidate to 0 at once and holds
   it there (RolledBack); ``promote: <candidate>`` switches to it as soon as it is ready; a
   candidate aborted by analysis stays aborted until promoted by name or replaced by another
   version; otherwise the strategy runs:

   * Canary — wait until the candidate is ready, then step ``i`` sends ``steps[i].weight``
     percent to it for ``steps[i].pause``; analysis runs every ``interval`` during the pause;
     the step advances when the pause is over and the latest analysis at that step passed;
     after the last step the candidate becomes stable. A 100% step needs no Pass of its own
     (stable has no traffic left to compare with): its pause only gives absolute checks time
     to fail.
   * BlueGreen — the candidate runs at full size as ``preview`` with 0%; after
     ``previewDuration`` and a passing analysis (smoke test included) it takes 100% at once
     when ``autoPromotion``, else it waits for ``promote``.
   * Shadow — the candidate gets ``percent`` of requests copied (role ``shadow``, 0%); after
     ``duration`` and a passing analysis it is promoted when ``shadow.promote``, else it keeps
     shadowing until ``promote``.
   * Recreate — switch as soon as the candidate is ready.

   A Fail verdict (``failureLimit`` of them) aborts at once: weight 0, RolledBack, Degraded
   with the failed checks and their numbers, a Warning Event. ``paused`` holds the step but
   never holds an abort. A candidate not ready within :data:`PROGRESS_DEADLINE_SECONDS` is
   aborted as well.
6. On promotion the old stable becomes ``previous`` (0%) until ``scaleDownDelay`` has passed,
   then it is dropped (its children are pruned).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from kubeloop.api.deployment import (
    Analysis,
    AnalysisRun,
    DeploymentPhase,
    DeploymentSpec,
    DeploymentStatus,
    SmokeTest,
    VersionRole,
    VersionWeight,
)
from kubeloop.api.meta import ConditionStatus, duration_seconds
from kubeloop.status.conditions import condition, set_condition

PROGRESS_DEADLINE_SECONDS = 600.0
"""A candidate whose pods are not ready this long after its rollout started is aborted."""
ANALYSIS_HISTORY = 20
WAIT_SECONDS = 5.0
"""How soon to look again while waiting for pods (readiness changes also trigger a look)."""

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class KnownVersion:
    """A ModelVersion of the served model, as the registry says."""

    name: str
    model: str
    number: int
    phase: Literal["Pending", "Validated", "Rejected"]
    stage: str = "None"
    artifact_ok: bool | None = None
    """False when the artifact failed its digest check (or could not be read); None: unknown."""
    message: str = ""
    """Why it is Rejected or why the artifact is bad, in the registry's or server's words."""


@dataclass(frozen=True)
class VersionReadiness:
    """Readiness of one version's apps/v1 Deployment."""

    ready_replicas: int
    desired_replicas: int

    @property
    def ready(self) -> bool:
        """At least one pod, and all that were asked for, are ready."""
        return self.ready_replicas > 0 and self.ready_replicas >= self.desired_replicas


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the Deployment."""

    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class RolloutInputs:
    """Everything :func:`reconcile` looks at."""

    spec: DeploymentSpec
    status: DeploymentStatus
    known: Mapping[str, KnownVersion]
    readiness: Mapping[str, VersionReadiness]
    now: datetime
    generation: int | None = None
    analysis: AnalysisRun | None = None
    endpoint: str | None = None
    router: VersionReadiness | None = None
    """The built-in router's readiness (None with the Gateway API, or before it exists)."""


@dataclass
class Decision:
    """What the controller should make true now."""

    status: DeploymentStatus
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


@dataclass(frozen=True)
class AnalysisRequest:
    """An analysis the controller should run now (see :func:`analysis_due`)."""

    candidate: str
    stable: str | None
    step: int
    analysis: Analysis
    require_traffic: bool
    inconclusive_streak: int
    smoke_test: SmokeTest | None = None


# --- time -----------------------------------------------------------------------------------


def timestamp(moment: datetime) -> str:
    """RFC 3339, UTC, whole seconds: how status stores times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """The inverse of :func:`timestamp` (any RFC 3339 form)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _after(moment: datetime, seconds: float) -> str:
    return timestamp(moment + timedelta(seconds=seconds))


# --- strategy helpers -----------------------------------------------------------------------


def _strategy_analysis(spec: DeploymentSpec) -> Analysis | None:
    strategy = spec.strategy
    if strategy.type == "Canary":
        return strategy.effective_canary().analysis
    if strategy.type == "BlueGreen":
        return strategy.effective_blue_green().analysis
    if strategy.type == "Shadow":
        return strategy.effective_shadow().analysis
    return None


def _candidate_role(spec: DeploymentSpec) -> VersionRole:
    return {"BlueGreen": "preview", "Shadow": "shadow"}.get(spec.strategy.type, "canary")  # type: ignore[return-value]


def _scale_down_delay(spec: DeploymentSpec) -> float:
    strategy = spec.strategy
    if strategy.type == "Canary":
        return duration_seconds(strategy.effective_canary().scale_down_delay)
    if strategy.type == "BlueGreen":
        return duration_seconds(strategy.effective_blue_green().scale_down_delay)
    if strategy.type == "Shadow":
        return duration_seconds(strategy.effective_shadow().scale_down_delay)
    return 0.0


def _step_seconds(spec: DeploymentSpec, step: int) -> float:
    """How long the candidate stays at ``step`` before it may advance."""
    strategy = spec.strategy
    if strategy.type == "Canary":
        steps = strategy.effective_canary().steps
        return duration_seconds(steps[min(step, len(steps) - 1)].pause)
    if strategy.type == "BlueGreen":
        return duration_seconds(strategy.effective_blue_green().preview_duration)
    if strategy.type == "Shadow":
        return duration_seconds(strategy.effective_shadow().duration)
    return 0.0


def _candidate_weight(spec: DeploymentSpec, step: int | None) -> int:
    if spec.strategy.type != "Canary" or step is None:
        return 0
    steps = spec.strategy.effective_canary().steps
    return steps[min(step, len(steps) - 1)].weight


def _auto_promotes(spec: DeploymentSpec) -> bool:
    strategy = spec.strategy
    if strategy.type == "BlueGreen":
        return strategy.effective_blue_green().auto_promotion
    if strategy.type == "Shadow":
        return strategy.effective_shadow().promote
    return True


def desired_version(spec: DeploymentSpec, known: Mapping[str, KnownVersion]) -> str | None:
    """The version the spec asks for: the explicit one, or the newest in the tracked stage."""
    if spec.model.version is not None:
        return spec.model.version
    track = spec.model.track
    assert track is not None  # noqa: S101 - the API requires exactly one
    staged = [v for v in known.values() if v.model == track.model and v.stage == track.stage]
    return max(staged, key=lambda v: v.number).name if staged else None


def _model_name(spec: DeploymentSpec, known: Mapping[str, KnownVersion]) -> str | None:
    if spec.model.track is not None:
        return spec.model.track.model
    version = known.get(spec.model.version or "")
    return version.model if version else None


# --- analysis scheduling --------------------------------------------------------------------


def analysis_due(
    spec: DeploymentSpec, status: DeploymentStatus, now: datetime
) -> AnalysisRequest | None:
    """The analysis to run now, or None (no candidate at a step, or not yet time)."""
    analysis = _strategy_analysis(spec)
    candidate = status.candidate_version
    if analysis is None or candidate is None or status.current_step is None:
        return None
    if status.aborted_version == candidate:
        return None
    if status.next_analysis_at is not None and parse_timestamp(status.next_analysis_at) > now:
        return None
    blue_green = spec.strategy.type == "BlueGreen"
    return AnalysisRequest(
        candidate=candidate,
        stable=status.stable_version,
        step=status.current_step,
        analysis=analysis,
        require_traffic=not blue_green,
        inconclusive_streak=status.inconclusive_streak,
        smoke_test=spec.strategy.effective_blue_green().smoke_test if blue_green else None,
    )


# --- the state machine ----------------------------------------------------------------------


class _Machine:
    """One reconciliation: mutable scratch state around a copy of the status."""

    def __init__(self, inputs: RolloutInputs) -> None:
        self.inputs = inputs
        self.spec = inputs.spec
        self.now = inputs.now
        self.now_text = timestamp(inputs.now)
        self.status = inputs.status.model_copy(deep=True)
        self.events: list[Event] = []
        self.wakeups: list[float] = []
        self.phase: DeploymentPhase = self.status.phase
        self.progressing: tuple[ConditionStatus, str, str] = ("False", "Idle", "")
        self.degraded: tuple[ConditionStatus, str, str] = ("False", "AsExpected", "")
        # A first version just became stable: finish() says "Serving" once the router is ready.
        self.first_served = False
        # previous versions still inside their delay: version -> scale-down time
        self.previous: dict[str, str] = {
            v.version: v.scale_down_at
            for v in self.status.versions
            if v.role == "previous" and v.scale_down_at is not None
        }

    # -- small helpers --

    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def wake_in(self, seconds: float) -> None:
        self.wakeups.append(max(0.0, seconds))

    def router_ready(self) -> bool:
        """Whether the endpoint can answer: one ready router pod is enough (or no router)."""
        router = self.inputs.router
        return router is None or router.ready_replicas > 0

    def ready(self, version: str | None) -> bool:
        readiness = self.inputs.readiness.get(version or "")
        return readiness is not None and readiness.ready

    def ready_replicas(self, version: str) -> int:
        readiness = self.inputs.readiness.get(version)
        return readiness.ready_replicas if readiness else 0

    def record_analysis(self) -> AnalysisRun | None:
        """Keep the run if it is about the current candidate and step; count its verdict."""
        run = self.inputs.analysis
        status = self.status
        if (
            run is None
            or run.candidate != status.candidate_version
            or run.step != status.current_step
            or status.aborted_version == status.candidate_version
        ):
            return None
        status.analysis = [*status.analysis, run][-ANALYSIS_HISTORY:]
        if run.verdict == "Inconclusive":
            status.inconclusive_streak += 1
        else:
            status.inconclusive_streak = 0
        if run.verdict == "Fail":
            status.failed_analyses += 1
        analysis = _strategy_analysis(self.spec)
        interval = duration_seconds(analysis.interval) if analysis else 30.0
        status.next_analysis_at = _after(self.now, interval)
        return run

    def latest_verdict_at_step(self) -> str | None:
        status = self.status
        started = status.step_started_at
        for run in reversed(status.analysis):
            if run.candidate != status.candidate_version or run.step != status.current_step:
                continue
            if started is not None and parse_timestamp(run.time) < parse_timestamp(started):
                continue
            return run.verdict
        return None

    def start_step(self, step: int) -> None:
        status = self.status
        status.current_step = step
        status.step_started_at = self.now_text
        status.inconclusive_streak = 0
        analysis = _strategy_analysis(self.spec)
        if analysis is not None:
            status.next_analysis_at = _after(self.now, duration_seconds(analysis.interval))

    def clear_candidate(self) -> None:
        status = self.status
        status.candidate_version = None
        status.current_step = None
        status.step_started_at = None
        status.next_analysis_at = None
        status.inconclusive_streak = 0
        status.failed_analyses = 0

    def retire(self, version: str | None) -> None:
        """``version`` stops serving but stays up for the strategy's scale-down delay."""
        if version is None:
            return
        delay = _scale_down_delay(self.spec)
        if delay > 0:
            self.previous[version] = _after(self.now, delay)
        else:
            self.previous.pop(version, None)

    # -- transitions --

    def promote(self, reason: str, how: str) -> None:
        status = self.status
        candidate = status.candidate_version
        old = status.stable_version
        self.retire(old)
        self.previous.pop(candidate or "", None)
        status.stable_version = candidate
        status.aborted_version = None
        self.clear_candidate()
        self.phase = "Healthy"
        self.progressing = ("False", "RolloutComplete", f"{candidate} is stable ({how})")
        delay = _scale_down_delay(self.spec)
        tail = f"; {old} stays up {delay:g}s for a fast rollback" if old and delay else ""
        status.message = f"{candidate} takes all traffic ({how}){tail}"
        self.event("Normal", reason, status.message)

    def abort(self, reason: str, message: str) -> None:
        status = self.status
        candidate = status.candidate_version
        status.aborted_version = candidate
        status.current_step = None
        status.step_started_at = None
        status.next_analysis_at = None
        status.inconclusive_streak = 0
        self.phase = "RolledBack"
        self.progressing = ("False", reason, message)
        self.degraded = ("True", reason, message)
        self.event(
            "Warning",
            reason,
            f"{candidate} rolled back to 0%, {status.stable_version} serves all traffic: {message}",
        )

    # -- the main path --

    def run(self) -> Decision:
        spec, status = self.spec, self.status
        known = self.inputs.known
        status.observed_generation = self.inputs.generation
        status.model = _model_name(spec, known) or status.model
        if self.inputs.endpoint is not None:
            status.endpoint = self.inputs.endpoint
        self.expire_previous()
        desired = desired_version(spec, known)
        if desired is None:
            self.nothing_to_serve()
        elif (problem := self.unservable(desired)) is not None:
            self.failed(desired, *problem)
        elif known.get(desired) is None or known[desired].phase == "Pending":
            self.waiting_for_registry(desired)
        elif status.stable_version is None:
            self.first_rollout(desired)
        elif desired == status.stable_version:
            self.steady(desired)
        else:
            self.rollout(desired)
        return self.finish()

    def expire_previous(self) -> None:
        for version, at in list(self.previous.items()):
            if parse_timestamp(at) <= self.now:
                del self.previous[version]
                self.event("Normal", "ScaledDown", f"{version} scaled down after its delay")
            else:
                self.wake_in((parse_timestamp(at) - self.now).total_seconds())

    def unservable(self, desired: str) -> tuple[str, str] | None:
        version = self.inputs.known.get(desired)
        if version is None:
            return None
        if version.phase == "Rejected":
            why = version.message or "its gates failed"
            return "CandidateRejected", f"ModelVersion {desired} is Rejected: {why}"
        if version.artifact_ok is False:
            why = version.message or "sha256 does not match the registry"
            return (
                "ArtifactDigestMismatch",
                f"ModelVersion {desired}'s artifact failed its check: {why}",
            )
        return None

    def nothing_to_serve(self) -> None:
        track = self.spec.model.track
        what = f"no version of {track.model} in {track.stage}" if track else "no version named"
        self.drop_candidate(None)
        self.phase = "Healthy" if self.ready(self.status.stable_version) else "Pending"
        message = what + (
            f"; {self.status.stable_version} keeps serving" if self.status.stable_version else ""
        )
        self.progressing = ("False", "NothingToServe", message)
        self.status.message = message

    def waiting_for_registry(self, desired: str) -> None:
        version = self.inputs.known.get(desired)
        message = (
            f"waiting for ModelVersion {desired}"
            if version is None
            else f"waiting for ModelVersion {desired}'s gates (phase Pending)"
        )
        if self.status.stable_version is not None and self.status.stable_version != desired:
            self.drop_candidate(desired)
        self.phase = "Healthy" if self.ready(self.status.stable_version) else "Pending"
        self.progressing = ("True", "WaitingForModelVersion", message)
        self.status.message = message
        self.wake_in(WAIT_SECONDS * 6)

    def failed(self, desired: str, reason: str, message: str) -> None:
        status = self.status
        if status.failed_version != desired:
            self.event("Warning", reason, f"{message}; it will not be served")
        status.failed_version = desired
        if status.candidate_version == desired:
            self.clear_candidate()
        self.drop_candidate(None)
        self.phase = "Failed"
        self.progressing = ("False", reason, message)
        self.degraded = ("True", reason, message)
        status.message = message + (
            f"; {status.stable_version} keeps serving" if status.stable_version else ""
        )

    def drop_candidate(self, keep: str | None) -> None:
        """Forget a candidate other than ``keep`` (its weight is 0 from now on)."""
        status = self.status
        if status.candidate_version is not None and status.candidate_version != keep:
            self.event(
                "Normal",
                "RolloutCancelled",
                f"{status.candidate_version} is no longer wanted; its traffic goes back to "
                f"{status.stable_version}",
            )
            self.clear_candidate()
            status.aborted_version = None

    def first_rollout(self, desired: str) -> None:
        status = self.status
        status.failed_version = None
        if self.ready(desired):
            status.stable_version = desired
            self.clear_candidate()
            self.phase = "Healthy"
            self.progressing = ("False", "RolloutComplete", f"{desired} serves all traffic")
            status.message = f"{desired} serves all traffic"
            self.first_served = True
            return
        if status.candidate_version != desired:
            status.candidate_version = desired
            status.step_started_at = self.now_text
            status.current_step = None
        self.phase = "Progressing"
        self.progressing = ("True", "WaitingForPods", f"waiting for {desired}'s pods to be ready")
        status.message = f"{desired} is starting"
        self.wake_in(WAIT_SECONDS)

    def steady(self, desired: str) -> None:
        status = self.status
        status.failed_version = None
        status.aborted_version = None
        self.drop_candidate(None)
        if self.ready(desired):
            self.phase = "Healthy"
            self.progressing = ("False", "RolloutComplete", f"{desired} serves all traffic")
            status.message = f"{desired} serves all traffic"
        else:
            self.phase = "Degraded"
            message = f"{desired} has no ready pods"
            self.degraded = ("True", "StableUnavailable", message)
            status.message = message
            self.wake_in(WAIT_SECONDS)

    def rollout(self, desired: str) -> None:
        spec, status = self.spec, self.status
        status.failed_version = None
        # Back to a version that is still up inside its scale-down delay: switch at once. Not
        # for a shadow rollout: its promise is that users never see the candidate's answers.
        if desired in self.previous and self.ready(desired) and spec.strategy.type != "Shadow":
            self.drop_candidate(None)
            old = status.stable_version
            status.candidate_version = desired
            self.promote("RolledBackTo", "its pods were still up")
            status.message = f"switched back to {desired}; {old} stays up for its delay"
            return
        if status.candidate_version != desired:
            self.start_rollout(desired)
        run = self.record_analysis()
        if status.aborted_version == desired and self.stays_aborted(desired):
            return
        if spec.abort:
            self.abort("Aborted", "spec.abort is true")
            status.message = f"{desired} aborted by spec.abort"
            return
        if not self.ready(desired):
            self.wait_for_pods(desired)
            return
        if spec.promote == desired:
            self.promote("Promoted", "promoted by spec.promote")
            return
        if spec.strategy.type == "Recreate":
            self.promote("Promoted", "Recreate switches as soon as the new version is ready")
            return
        if status.current_step is None:
            self.start_step(0)
            self.event("Normal", "StepStarted", self._step_words())
        analysis = _strategy_analysis(spec)
        if (
            run is not None
            and run.verdict == "Fail"
            and analysis is not None
            and status.failed_analyses >= analysis.failure_limit
        ):
            self.abort("AnalysisFailed", run.message)
            status.message = f"{desired} failed analysis: {run.message}"
            return
        self.advance()

    def start_rollout(self, desired: str) -> None:
        status = self.status
        self.drop_candidate(None)
        status.candidate_version = desired
        status.aborted_version = None
        status.failed_analyses = 0
        status.current_step = None
        status.step_started_at = self.now_text
        self.event(
            "Normal",
            "RolloutStarted",
            f"rolling out {desired} over {status.stable_version} ({self.spec.strategy.type})",
        )

    def stays_aborted(self, desired: str) -> bool:
        """An aborted candidate: promoted by name, restarted when a manual abort is lifted,
        else it stays at 0% (True)."""
        spec, status = self.spec, self.status
        if spec.promote == desired and self.ready(desired):
            self.promote("Promoted", "promoted by spec.promote")
            return True
        if spec.promote != desired and not spec.abort and self._aborted_by_hand():
            status.aborted_version = None  # abort lifted: start over from the first step
            status.current_step = None
            status.step_started_at = self.now_text
            self.event("Normal", "RolloutRestarted", f"abort lifted: rolling out {desired} again")
            return False
        if spec.promote == desired:
            # promoted, but its pods are gone since the abort: bring them back first
            status.aborted_version = None
            status.current_step = None
            status.step_started_at = self.now_text
            return False
        previous = condition(status.conditions, "Degraded")
        held = previous is not None and previous.status == "True"
        reason = previous.reason if previous is not None and held else "Aborted"
        message = previous.message if previous is not None and held else ""
        self.phase = "RolledBack"
        self.progressing = ("False", reason, message)
        self.degraded = ("True", reason, message)
        status.message = (
            f"{desired} rolled back: {message}" if message else f"{desired} rolled back"
        )
        return True

    def wait_for_pods(self, desired: str) -> None:
        status = self.status
        started = parse_timestamp(status.step_started_at or self.now_text)
        waited = (self.now - started).total_seconds()
        if status.current_step is None and waited >= PROGRESS_DEADLINE_SECONDS:
            self.abort(
                "ProgressDeadlineExceeded",
                f"{desired}'s pods were not ready within {PROGRESS_DEADLINE_SECONDS:g}s",
            )
            status.message = f"{desired} never became ready"
            return
        if status.current_step is not None:
            # It was ready and lost its pods: no traffic until it is back.
            status.current_step = None
            status.step_started_at = self.now_text
        self.phase = "Progressing"
        self.progressing = ("True", "WaitingForPods", f"waiting for {desired}'s pods to be ready")
        status.message = f"{desired} is starting"
        self.wake_in(WAIT_SECONDS)

    def _aborted_by_hand(self) -> bool:
        degraded = condition(self.status.conditions, "Degraded")
        return degraded is not None and degraded.reason == "Aborted"

    def _step_words(self) -> str:
        status, spec = self.status, self.spec
        candidate = status.candidate_version
        if spec.strategy.type == "Canary":
            steps = spec.strategy.effective_canary().steps
            step = status.current_step or 0
            return (
                f"step {step + 1}/{len(steps)}: {candidate} at {steps[step].weight}% "
                f"for {steps[step].pause}"
            )
        if spec.strategy.type == "BlueGreen":
            return f"{candidate} is up as the preview (0%)"
        percent = spec.strategy.effective_shadow().percent
        return f"{candidate} receives a copy of {percent}% of requests (shadow)"

    def advance(self) -> None:
        """Hold or move on at the current step, given time, pause and the latest verdict."""
        spec, status = self.spec, self.status
        step = status.current_step or 0
        started = parse_timestamp(status.step_started_at or self.now_text)
        remaining = _step_seconds(spec, step) - (self.now - started).total_seconds()
        verdict = self.latest_verdict_at_step()
        self.phase = "Progressing"
        if status.next_analysis_at is not None:
            self.wake_in((parse_timestamp(status.next_analysis_at) - self.now).total_seconds())
        if spec.paused:
            self.progressing = ("Unknown", "Paused", f"paused by spec.paused: {self._step_words()}")
            status.message = f"paused at {self._step_words()}"
            return
        if remaining > 0:
            self.wake_in(remaining)
            self.progressing = ("True", "StepInProgress", self._step_words())
            status.message = self._step_words()
            return
        if spec.strategy.type == "Canary" and _candidate_weight(spec, step) >= 100:
            # At 100% stable gets no traffic, so nothing can be compared with it: the steps
            # before decided, and a Fail during this pause (absolute checks) still aborts.
            steps = spec.strategy.effective_canary().steps
            self.promote("Promoted", f"all {len(steps)} canary steps passed analysis")
            return
        if verdict != "Pass":
            waiting = "no analysis yet" if verdict is None else "analysis inconclusive"
            self.progressing = ("True", "WaitingForAnalysis", f"{self._step_words()}: {waiting}")
            status.message = f"{self._step_words()}: {waiting}"
            return
        if spec.strategy.type == "Canary":
            steps = spec.strategy.effective_canary().steps
            if step + 1 < len(steps):
                self.start_step(step + 1)
                self.event("Normal", "StepAdvanced", self._step_words())
                self.progressing = ("True", "StepInProgress", self._step_words())
                status.message = self._step_words()
                self.wake_in(_step_seconds(spec, step + 1))
                return
            self.promote("Promoted", f"all {len(steps)} canary steps passed analysis")
            return
        if _auto_promotes(spec):
            how = (
                "preview passed analysis"
                if spec.strategy.type == "BlueGreen"
                else "shadow passed analysis"
            )
            self.promote("Promoted", how)
            return
        self.progressing = (
            "True",
            "WaitingForPromotion",
            f"{status.candidate_version} passed analysis; set spec.promote: "
            f"{status.candidate_version} to switch",
        )
        status.message = self.progressing[2]

    # -- the result --

    def versions(self) -> list[VersionWeight]:
        status, spec = self.status, self.spec
        stable, candidate = status.stable_version, status.candidate_version
        entries: list[VersionWeight] = []
        active = candidate is not None and status.aborted_version != candidate
        weight = _candidate_weight(spec, status.current_step) if active else 0
        if stable is not None:
            entries.append(
                VersionWeight(
                    version=stable,
                    weight=100 - weight,
                    role="stable",
                    ready_replicas=self.ready_replicas(stable),
                )
            )
        if candidate is not None and active:
            first = stable is None
            role: VersionRole = "stable" if first else _candidate_role(spec)
            entries.append(
                VersionWeight(
                    version=candidate,
                    weight=100 if first else weight,
                    role=role,
                    mirror_percent=(
                        spec.strategy.effective_shadow().percent if role == "shadow" else None
                    ),
                    ready_replicas=self.ready_replicas(candidate),
                )
            )
        listed = {entry.version for entry in entries}
        entries.extend(
            VersionWeight(
                version=version,
                weight=0,
                role="previous",
                ready_replicas=self.ready_replicas(version),
                scale_down_at=at,
            )
            for version, at in sorted(self.previous.items())
            if version not in listed
        )
        return entries[:4]

    def _router_words(self) -> str:
        router = self.inputs.router
        if router is None:
            return ""
        return f"{router.ready_replicas}/{router.desired_replicas} pod(s) ready"

    def finish(self) -> Decision:
        status = self.status
        status.versions = self.versions()
        candidate_entry = next(
            (v for v in status.versions if v.version == status.candidate_version), None
        )
        if candidate_entry is not None:
            status.canary_weight = candidate_entry.weight
        else:
            status.canary_weight = 0 if status.candidate_version is not None else None
        stable = status.stable_version
        serving = self.ready(stable) or (stable is None and self.ready(status.candidate_version))
        router = self.inputs.router
        router_ready = self.router_ready()
        waited = condition(status.conditions, "Progressing")
        # "Serving" when the endpoint can first answer: a first version whose router is ready,
        # or the end of a wait for the router (the status said WaitingForRouter until now).
        if (
            self.phase == "Healthy"
            and router_ready
            and (self.first_served or (waited and waited.reason == "WaitingForRouter"))
        ):
            self.event("Normal", "Serving", f"{stable} is ready and serves all traffic")
        if self.phase == "Healthy" and not router_ready:
            # The endpoint is the router: Healthy would promise answers it cannot give yet.
            self.phase = "Progressing"
            words = f"waiting for the router ({self._router_words()})"
            self.progressing = ("True", "WaitingForRouter", words)
            status.message = f"{status.message}; {words}" if status.message else words
            self.wake_in(WAIT_SECONDS)
        status.phase = self.phase
        available = serving and router_ready
        if available:
            reason = "StableReady"
        elif not serving:
            reason = "NoStableVersion" if stable is None else "NoReadyPods"
        else:
            reason = "RouterNotReady"
        message = (
            f"{stable} has {self.ready_replicas(stable)} ready pod(s)"
            if stable
            else "no version serves yet"
        )
        if router is not None:
            message += f"; router {self._router_words()}"
        generation = self.inputs.generation
        conditions = set_condition(
            status.conditions,
            type_="Available",
            status="True" if available else "False",
            reason=reason,
            message=message,
            now=self.now_text,
            generation=generation,
        )
        for type_, (state, reason, message) in (
            ("Progressing", self.progressing),
            ("Degraded", self.degraded),
        ):
            conditions = set_condition(
                conditions,
                type_=type_,
                status=state,
                reason=reason,
                message=message[:32768],
                now=self.now_text,
                generation=generation,
            )
        status.conditions = conditions
        status.message = status.message[:4000]
        wakeups = [seconds for seconds in self.wakeups if seconds >= 0]
        return Decision(
            status=status,
            events=self.events,
            requeue_after=min(wakeups) if wakeups else None,
        )


def reconcile(inputs: RolloutInputs) -> Decision:
    """The next status, Events and requeue delay of a kubeloop Deployment (see module doc)."""
    return _Machine(inputs).run()


def scale_down_due(status: DeploymentStatus, now: datetime) -> list[str]:
    """Previous versions whose delay is over (the next :func:`reconcile` drops them)."""
    return [
        v.version
        for v in status.versions
        if v.role == "previous"
        and v.scale_down_at is not None
        and parse_timestamp(v.scale_down_at) <= now
    ]
