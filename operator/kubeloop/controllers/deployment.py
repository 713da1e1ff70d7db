"""kubeloop Deployment controller: serving children, rollouts and their live analysis.

One idempotent reconcile serves create, update, resume and a short timer (rollouts move with
time: pauses end, analyses fall due, old versions' scale-down delays pass). Its shape is the
one every kubeloop handler has:

1. parse the Deployment; read the registry (the model's ModelVersions), the per-version
   apps/v1 Deployments' readiness and, when an analysis is due, the live versions' pods'
   ``/metrics`` (``scrape.py``) and the blue-green smoke test's answers;
2. decide with the pure state machine (``status/deployment.py``) and the pure analysis
   (``analysis/``);
3. build the children with the pure builders (``resources/deployment.py``) and apply them
   server-side; prune the ones no longer wanted;
4. write the status the state machine returned and post its Events.

Analysis windows need a baseline: the first scrape of a step is kept in memory (per object
and step) and every later analysis of that step compares against it, so evidence
accumulates while the weights stay the same. After an operator restart the first scrape
becomes the new baseline; counters are cumulative in the pods, so nothing is double counted.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

import httpx
import kopf

from kubeloop import API_GROUP, API_VERSION
from kubeloop.analysis.checks import analysis_run, smoke_test_result
from kubeloop.analysis.exposition import PodMetrics, parse_pod_metrics
from kubeloop.analysis.smoke import smoke_records
from kubeloop.analysis.window import version_window
from kubeloop.api.deployment import AnalysisResult, AnalysisRun, Deployment, DeploymentStatus
from kubeloop.api.meta import duration_seconds
from kubeloop.controllers.common import Logger, merge_patch
from kubeloop.controllers.drift import DriftMonitor
from kubeloop.controllers.metrics import OperatorMetrics
from kubeloop.controllers.retrain import RetrainController
from kubeloop.controllers.scrape import (
    Scrape,
    ready_endpoint_targets,
    ready_pod_targets,
    scrape_pods,
)
from kubeloop.k8s import KubernetesAdapter
from kubeloop.resources.common import COMPONENT_LABEL, Owner, WorkloadSettings
from kubeloop.resources.deployment import (
    PORT_NAME,
    ROUTER_COMPONENT,
    SERVER_PORT,
    VERSION_LABEL,
    LiveVersion,
    ServedVersion,
    build_children,
    children_selector,
    endpoint_url,
    label_value,
    stale_children,
    version_object_name,
    version_selector,
)
from kubeloop.settings import OperatorSettings
from kubeloop.status.deployment import (
    AnalysisRequest,
    Event,
    KnownVersion,
    RolloutInputs,
    VersionReadiness,
    analysis_due,
    parse_timestamp,
    reconcile,
    timestamp,
)
from kubeloop.status.drift import (
    DRIFT_CONDITION,
    apply_drift,
    drift_detected,
    monitoring_off,
    next_drift,
)
from kubeloop.storage import ObjectStore, S3Uri, prediction_log_prefix

PLURAL = "deployments"
MODEL_VERSIONS = "modelversions"
TIMER_SECONDS = 2.0
# Children are re-applied when the desired set changes, and at least this often to undo drift.
REAPPLY_SECONDS = 60.0
SMOKE_TIMEOUT_SECONDS = 5.0

# Kinds a Deployment may own, for pruning (the adapter's table has them all).
_CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
)
_GATEWAY_ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute")
Phase = Literal["Pending", "Validated", "Rejected"]


@dataclass
class _Memory:
    """What the controller remembers about one Deployment between reconciles (not state:
    losing it on restart costs one baseline scrape and one re-apply)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    applied_hash: str = ""
    applied_at: float = 0.0
    baseline_key: str = ""
    baselines: dict[str, dict[str, PodMetrics]] = field(default_factory=dict)
    baseline_at: float = 0.0


def _selector(owner: Owner, version: str) -> str:
    """The label selector of one version's pods (and of its Service's EndpointSlices, which
    carry the Service's labels)."""
    return ",".join(f"{k}={v}" for k, v in version_selector(owner, version).items())


class DeploymentController:
    """The reconcile of one kubeloop Deployment, with the adapter and settings it needs."""

    def __init__(
        self,
        adapter: KubernetesAdapter,
        settings: OperatorSettings,
        workloads: WorkloadSettings,
        *,
        store: ObjectStore | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self._adapter = adapter
        self._settings = settings
        self._workloads = workloads
        self._drift = DriftMonitor(store)
        self._retrain = RetrainController(adapter, metrics)
        self._metrics = metrics
        self._memory: dict[str, _Memory] = {}
        self._memory_lock = threading.Lock()
        self._profiles: dict[tuple[str, str, str], str] = {}

    def memory(self, uid: str) -> _Memory:
        with self._memory_lock:
            return self._memory.setdefault(uid, _Memory())

    def forget(self, uid: str, namespace: str = "", name: str = "") -> None:
        with self._memory_lock:
            self._memory.pop(uid, None)
        self._drift.forget(uid)
        if self._metrics is not None:
            self._metrics.forget_drift(namespace, name)

    # -- reading the world --

    def _known_versions(
        self, deployment: Deployment, namespace: str
    ) -> tuple[dict[str, KnownVersion], dict[str, ServedVersion]]:
        selector = deployment.spec.model
        if selector.track is not None:
            model: str | None = selector.track.model
        else:
            assert selector.version is not None  # noqa: S101 - the API requires one of them
            body = self._adapter.get_custom(MODEL_VERSIONS, namespace, selector.version)
            model = str(body["spec"]["model"]) if body else None
        if model is None:
            return {}, {}
        known: dict[str, KnownVersion] = {}
        served: dict[str, ServedVersion] = {}
        for body in self._adapter.list_custom(
            MODEL_VERSIONS, namespace, f"{API_GROUP}/model={model}"
        ):
            name = str(body["metadata"]["name"])
            spec, status = body.get("spec") or {}, body.get("status") or {}
            phase = status.get("phase") or "Pending"
            verified = status.get("artifactVerified")
            known[name] = KnownVersion(
                name=name,
                model=str(spec.get("model", model)),
                number=int(spec.get("version", 0)),
                phase=cast(Phase, phase if phase in ("Validated", "Rejected") else "Pending"),
                stage=str(spec.get("stage") or "None"),
                artifact_ok=verified if isinstance(verified, bool) else None,
                message=str(status.get("artifactMessage") or status.get("message") or ""),
            )
            artifact = spec.get("artifact") or {}
            served[name] = ServedVersion(
                name=name,
                model=known[name].model,
                number=known[name].number,
                artifact_uri=str(artifact.get("uri", "")),
                sha256=str(artifact.get("sha256", "")),
                profile_uri=self._profile_uri(namespace, spec.get("lineage") or {}),
            )
        return known, served

    def _profile_uri(self, namespace: str, lineage: Mapping[str, Any]) -> str | None:
        """The training Dataset version's profile.json: the server's histogram buckets.

        A Dataset version is a content digest, so its profile never changes: found ones are
        remembered, and a reconcile does not read the Dataset again for every ModelVersion.
        """
        dataset, version = lineage.get("dataset"), lineage.get("datasetVersion")
        if not dataset or not version:
            return None
        key = (namespace, str(dataset), str(version))
        if key in self._profiles:
            return self._profiles[key]
        body = self._adapter.get_custom("datasets", namespace, str(dataset))
        for record in ((body or {}).get("status") or {}).get("history") or []:
            if record.get("version") == version and record.get("profileURI"):
                self._profiles[key] = str(record["profileURI"])
                return self._profiles[key]
        return None

    def _readiness(
        self, name: str, namespace: str, versions: list[str]
    ) -> tuple[dict[str, VersionReadiness], VersionReadiness | None]:
        """Readiness per version's apps/v1 Deployment, and the router's (None: none yet)."""
        by_label = {label_value(version): version for version in versions}
        readiness: dict[str, VersionReadiness] = {}
        router: VersionReadiness | None = None
        for child in self._adapter.list_objects(
            "apps/v1", "Deployment", namespace, children_selector(name)
        ):
            child_labels = child["metadata"].get("labels") or {}
            status = child.get("status") or {}
            desired = int((child.get("spec") or {}).get("replicas") or 0)
            if child_labels.get(COMPONENT_LABEL) == ROUTER_COMPONENT:
                ready = int(status.get("readyReplicas") or 0)
                router = VersionReadiness(ready_replicas=ready, desired_replicas=desired)
                continue
            version = by_label.get(child_labels.get(VERSION_LABEL, ""))
            if version is None:
                continue
            # Pods of an older template do not count: while the pod template itself rolls,
            # only as many pods are ready as have been updated.
            ready = min(
                int(status.get("readyReplicas") or 0), int(status.get("updatedReplicas") or 0)
            )
            readiness[version] = VersionReadiness(ready_replicas=ready, desired_replicas=desired)
        return readiness, router

    def _pods(self, owner: Owner, version: str) -> list[dict[str, Any]]:
        return self._adapter.list_objects("v1", "Pod", owner.namespace, _selector(owner, version))

    def _scrape(
        self, owner: Owner, version: str, known: KnownVersion, logger: Logger
    ) -> dict[str, PodMetrics]:
        pods = self._pods(owner, version)
        uids = {str(p["metadata"]["name"]): str(p["metadata"]["uid"]) for p in pods}
        metrics: dict[str, PodMetrics] = {}
        scrapes: list[Scrape] = scrape_pods(ready_pod_targets(pods, SERVER_PORT))
        for scrape in scrapes:
            if scrape.text is None:
                logger.warning("scrape of %s (%s) failed: %s", scrape.pod, version, scrape.error)
                continue
            try:
                metrics[uids[scrape.pod]] = parse_pod_metrics(
                    scrape.text, version=str(known.number), model=known.model
                )
            except ValueError as exc:
                logger.warning("metrics of %s (%s) unreadable: %s", scrape.pod, version, exc)
        return metrics

    # -- analysis --

    def _analysis(
        self,
        owner: Owner,
        status: DeploymentStatus,
        *,
        request: AnalysisRequest,
        known: Mapping[str, KnownVersion],
        logger: Logger,
        now: datetime,
    ) -> AnalysisRun | None:
        memory = self.memory(owner.uid)
        versions = [request.candidate] + ([request.stable] if request.stable else [])
        current = {v: self._scrape(owner, v, known[v], logger) for v in versions if v in known}
        step_key = f"{request.candidate}/{request.step}/{status.step_started_at}"
        if memory.baseline_key != step_key:
            # First look at this step: what has happened so far is the baseline.
            memory.baseline_key, memory.baselines = step_key, current
            memory.baseline_at = now.timestamp()
            return None
        baseline = memory.baselines
        candidate = version_window(
            baseline.get(request.candidate, {}), current.get(request.candidate, {})
        )
        stable = (
            version_window(baseline.get(request.stable, {}), current.get(request.stable, {}))
            if request.stable
            else None
        )
        extra: list[AnalysisResult] = []
        if request.smoke_test is not None:
            extra.append(self._smoke(owner, request, logger))
        return analysis_run(
            request.analysis,
            candidate,
            stable,
            step=request.step,
            now=timestamp(now),
            candidate_version=request.candidate,
            stable_version=request.stable,
            window_seconds=round(now.timestamp() - memory.baseline_at, 1),
            inconclusive_streak=request.inconclusive_streak,
            require_traffic=request.require_traffic,
            extra=extra,
        )

    def _smoke(self, owner: Owner, request: AnalysisRequest, logger: Logger) -> AnalysisResult:
        """Send the smoke records to the preview's pods (and stable's, to compare)."""
        test = request.smoke_test
        assert test is not None  # noqa: S101 - checked by the caller
        try:
            data = None
            if test.config_map_ref is not None:
                config_map = self._adapter.get_object(
                    "v1", "ConfigMap", owner.namespace, test.config_map_ref.name
                )
                data = (config_map or {}).get("data")
            records = smoke_records(test, data)
        except ValueError as exc:
            return AnalysisResult(check="smokeTest", verdict="Fail", message=str(exc))
        preview = self._predict(owner, request.candidate, records, logger)
        stable = self._predict(owner, request.stable, records, logger) if request.stable else None
        succeeded = sum(1 for answer in preview if answer is not None)
        agreed = None
        if stable is not None and test.min_agreement is not None:
            agreed = sum(
                1
                for mine, theirs in zip(preview, stable, strict=True)
                if mine is not None and theirs is not None and mine == theirs
            )
        return smoke_test_result(
            sent=len(records), succeeded=succeeded, agreed=agreed, min_agreement=test.min_agreement
        )

    def _predict(
        self, owner: Owner, version: str, records: list[dict[str, Any]], logger: Logger
    ) -> list[Any]:
        """Each record's prediction from one ready pod of ``version`` (None: not answered 200)."""
        targets = ready_pod_targets(self._pods(owner, version), SERVER_PORT)
        if not targets:
            return [None] * len(records)
        target = targets[0]
        answers: list[Any] = []
        with httpx.Client(timeout=SMOKE_TIMEOUT_SECONDS) as client:
            for record in records:
                try:
                    response = client.post(
                        f"http://{target.ip}:{target.port}/predict", json={"records": [record]}
                    )
                except httpx.HTTPError as exc:
                    logger.warning("smoke request to %s failed: %s", target.name, exc)
                    answers.append(None)
                    continue
                if response.status_code != httpx.codes.OK:
                    answers.append(None)
                    continue
                prediction = (response.json().get("predictions") or [{}])[0]
                answers.append(prediction.get("label", prediction.get("value")))
        return answers

    # -- the reconcile --

    def reconcile(self, body: kopf.Body, patch: kopf.Patch, logger: Logger) -> float | None:
        """Run one reconcile of ``body``; returns when to look again (seconds), if ever."""
        name, namespace = str(body.metadata.name), str(body.metadata.namespace)
        uid = str(body.metadata.uid)
        memory = self.memory(uid)
        with memory.lock:
            deployment = Deployment.model_validate(dict(body))
            status = deployment.status or DeploymentStatus()
            owner = Owner("Deployment", name, namespace, uid)
            now = datetime.now(UTC).replace(microsecond=0)
            known, served = self._known_versions(deployment, namespace)
            live = [v.version for v in status.versions] + [
                n for n in (status.candidate_version, status.stable_version) if n
            ]
            readiness, router = self._readiness(name, namespace, sorted(set(live) | set(known)))
            run = None
            request = analysis_due(deployment.spec, status, now)
            if request is not None and request.candidate in known:
                run = self._analysis(
                    owner, status, request=request, known=known, logger=logger, now=now
                )
            decision = reconcile(
                RolloutInputs(
                    spec=deployment.spec,
                    status=status,
                    known=known,
                    readiness=readiness,
                    now=now,
                    generation=body.metadata.get("generation"),
                    analysis=run,
                    endpoint=endpoint_url(name, namespace, deployment.spec),
                    router=router if deployment.spec.traffic.router == "Builtin" else None,
                )
            )
            versions = [
                LiveVersion.of(served[entry.version], entry)
                for entry in decision.status.versions
                if entry.version in served
            ]
            children = build_children(
                owner,
                deployment.spec,
                versions,
                self._workloads,
                prediction_log_uri=str(
                    S3Uri(self._settings.artifact_bucket, prediction_log_prefix(namespace, name))
                ),
            )
            self._apply(owner, deployment, children, memory, now)
            events = list(decision.events)
            events += self._monitor(
                owner,
                deployment,
                decision.status,
                known=known,
                served=served,
                now=now,
                generation=body.metadata.get("generation"),
                logger=logger,
            )
            events += self._retrain.step(
                deployment,
                decision.status,
                namespace=namespace,
                created=body.metadata.get("creationTimestamp"),
                now=now,
                logger=logger,
            )
            patch.status.update(
                merge_patch(dict(body.get("status") or {}), decision.status.to_wire())
            )
            for event in events:
                kopf.event(body, type=event.type, reason=event.reason, message=event.message[:1000])
                logger.info("%s: %s", event.reason, event.message)
            return decision.requeue_after

    # -- drift --

    def _monitor(
        self,
        owner: Owner,
        deployment: Deployment,
        status: DeploymentStatus,
        *,
        known: Mapping[str, KnownVersion],
        served: Mapping[str, ServedVersion],
        now: datetime,
        generation: int | None,
        logger: Logger,
    ) -> list[Event]:
        """Run a drift check of the stable version when one is due; its Events."""
        monitoring = deployment.spec.monitoring
        stable = status.stable_version
        stamp = timestamp(now)
        if not monitoring.enabled or stable is None or stable not in known:
            if status.drift is not None or any(
                c.type == DRIFT_CONDITION for c in status.conditions
            ):
                monitoring_off(status, now=stamp, generation=generation)
                status.drift = None
            if self._metrics is not None:
                self._metrics.forget_drift(owner.namespace, owner.name)
            return []
        previous = status.drift
        if (
            previous is not None
            and previous.version == stable
            and previous.evaluated_at is not None
            and (now - parse_timestamp(previous.evaluated_at)).total_seconds()
            < duration_seconds(monitoring.interval)
        ):
            return []
        slices = self._adapter.list_objects(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            owner.namespace,
            _selector(owner, stable),
        )
        targets = ready_endpoint_targets(slices, version_object_name(owner.name, stable), PORT_NAME)
        version = known[stable]
        check = self._drift.check(
            uid=owner.uid,
            version=stable,
            model=version.model,
            number=version.number,
            profile_uri=served[stable].profile_uri if stable in served else None,
            targets=targets,
            monitoring=monitoring,
            now=now,
            logger=logger,
        )
        drift = next_drift(
            previous,
            check.evaluation,
            version=stable,
            now=stamp,
            window_seconds=check.window_seconds,
            pods=check.pods,
        )
        events = apply_drift(status, drift, monitoring, now=stamp, generation=generation)
        if self._metrics is not None:
            self._metrics.observe_drift(
                owner.namespace,
                owner.name,
                stable,
                [(s.feature, s.method, s.score) for s in drift.scores],
                detected=drift_detected(drift, monitoring),
                samples=drift.samples,
                live_accuracy=drift.live_accuracy,
            )
        logger.info(
            "drift of %s over %d pods: %s (%s)", stable, drift.pods, drift.verdict, drift.message
        )
        return events

    def _apply(
        self,
        owner: Owner,
        deployment: Deployment,
        children: list[dict[str, Any]],
        memory: _Memory,
        now: datetime,
    ) -> None:
        digest = hashlib.sha256(json.dumps(children, sort_keys=True).encode()).hexdigest()
        if digest == memory.applied_hash and now.timestamp() - memory.applied_at < REAPPLY_SECONDS:
            return
        for child in children:
            self._adapter.apply(child)
        kinds = list(_CHILD_KINDS)
        if deployment.spec.traffic.router == "GatewayAPI":
            kinds.append(_GATEWAY_ROUTE)
        existing: list[dict[str, Any]] = []
        for api_version, kind in kinds:
            listed = self._adapter.list_objects(
                api_version, kind, owner.namespace, children_selector(owner.name)
            )
            # List responses leave apiVersion and kind out of their items: the keys need them.
            existing += [{**item, "apiVersion": api_version, "kind": kind} for item in listed]
        for api_version, kind, child_name in stale_children(owner, existing, children):
            self._adapter.delete_object(api_version, kind, owner.namespace, child_name)
        memory.applied_hash, memory.applied_at = digest, now.timestamp()


def register(
    settings: OperatorSettings,
    adapter: KubernetesAdapter,
    metrics: OperatorMetrics,
    store: ObjectStore | None = None,
) -> None:
    """Register the Deployment handlers with Kopf.

    One timer does it all: a spec change is seen on the next tick (at most
    :data:`TIMER_SECONDS` later), and a single entry point means two reconciles of the same
    object never race on its status.
    """
    controller = DeploymentController(
        adapter, settings, settings.workloads(), store=store, metrics=metrics
    )

    @kopf.timer(API_GROUP, API_VERSION, PLURAL, interval=TIMER_SECONDS)
    @metrics.instrumented("Deployment")
    def deployment_tick(body: kopf.Body, patch: kopf.Patch, logger: Logger, **_: Any) -> None:
        controller.reconcile(body, patch, logger)

    @kopf.on.delete(API_GROUP, API_VERSION, PLURAL, optional=True)
    def deployment_deleted(body: kopf.Body, **_: Any) -> None:
        # Children go with the owner (garbage collection); only our memory is left to drop.
        controller.forget(
            str(body.metadata.uid), str(body.metadata.namespace), str(body.metadata.name)
        )
