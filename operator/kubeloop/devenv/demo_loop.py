"""The last part of ``make demo``: drift on live traffic starts a retrain that rolls itself out.

``iris-v1`` is trained on distribution A (:mod:`kubeloop.devenv.drift_data`), made Production
and served by a kubeloop Deployment that tracks Production, monitors drift and retrains on a
feedback Dataset (its own prediction log joined with the labels sent to ``/feedback``).
Traffic from A first: the checks say NoDrift. Then traffic from B with every answer labelled:
the demo prints the drift scores as they rise, the verdict, the retrain the operator starts
(refresh, TrainingRun, gate against the champion, promotion) and the canary of the new
version to 100 %, then the time the loop took and the drift of the new version.

The manifests are shared with ``tests/cluster/test_loop.py``, which judges the same loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import yaml

from kubeloop.devenv import drift_data

DEPLOYMENT = "iris"
MODEL = "iris"
TRAINING_DATASET = "iris-a"
FEEDBACK_DATASET = "iris-live"
TEMPLATE_RUN = "iris-a"
LOAD_RATE = 40.0
MIN_SAMPLES = 150
_A_CHECKS = 4
_WAIT_SECONDS = 600

Kubectl = Callable[..., str]
KubectlJson = Callable[..., Any]


def loop_manifests(training_uri: str) -> list[dict[str, Any]]:
    """The Dataset of distribution A, v1's TrainingRun (the retrain template), the feedback Dataset."""
    return [
        {
            "apiVersion": "kubeloop.io/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": TRAINING_DATASET},
            "spec": {"source": {"uri": training_uri}, "target": "species"},
        },
        {
            "apiVersion": "kubeloop.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": TEMPLATE_RUN},
            "spec": {
                "datasetRef": {"name": TRAINING_DATASET},
                "modelName": MODEL,
                "estimator": {"name": "LogisticRegression", "params": {"max_iter": 500}},
                "gates": {
                    "thresholds": [{"metric": "accuracy", "min": 0.8}],
                    "champion": {"metric": "accuracy", "minImprovement": 0.0},
                },
                "seed": 3,
            },
        },
        {
            # Production traffic as training data: the Deployment's log joined with its labels.
            "apiVersion": "kubeloop.io/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": FEEDBACK_DATASET},
            "spec": {
                "source": {"predictionLog": {"deployment": DEPLOYMENT, "window": "1h"}},
                "target": "species",
                "validation": {"minRows": 200},
            },
        },
    ]


def loop_deployment() -> dict[str, Any]:
    """Serve the Production iris model, check drift every 5 s, retrain on drift, canary it."""
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "model": {"track": {"model": MODEL, "stage": "Production"}},
            "replicas": 1,
            "strategy": {
                "type": "Canary",
                "canary": {
                    "steps": [{"weight": 50, "pause": "10s"}, {"weight": 100, "pause": "0s"}],
                    "scaleDownDelay": "5s",
                    "analysis": {
                        "interval": "5s",
                        "minRequests": 20,
                        "maxErrorRate": 0.05,
                        # v1 and v2 answer differently on B on purpose: that is the point.
                        "maxPredictionDivergence": 1.0,
                        "minLiveAccuracy": 0.8,
                        "minFeedback": 20,
                        "maxInconclusive": 60,
                    },
                },
            },
            "monitoring": {
                "methods": ["psi", "ks"],
                "interval": "5s",
                "window": "60s",
                "minSamples": MIN_SAMPLES,
                "consecutive": 3,
            },
            "retrain": {
                "triggers": ["Drift"],
                "minDriftedFeatures": 1,
                "template": TEMPLATE_RUN,
                "dataset": FEEDBACK_DATASET,
                "cooldown": "1h",
                "autoPromote": "Production",
            },
        },
    }


class _Traffic:
    """Requests at a steady rate; each answer labelled through /feedback while labels are set."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.records: list[dict[str, Any]] = []
        self.labels: list[str] | None = None
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def send(self, records: list[dict[str, Any]], labels: list[str] | None) -> None:
        """From now on send ``records`` (and their ``labels`` as feedback, when given)."""
        self.records, self.labels = records, labels

    def __enter__(self) -> _Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            number, start = 0, time.monotonic()
            while not self._stop.is_set():
                records, labels = self.records, self.labels
                index = number % len(records)
                try:
                    answer = client.post(f"{self.url}/predict", json={"records": [records[index]]})
                    if answer.status_code != httpx.codes.OK:
                        self.failures.append(f"HTTP {answer.status_code}: {answer.text[:100]}")
                    else:
                        self.answered += 1
                        if labels is not None:
                            self._label(client, answer, labels[index])
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                number += 1
                delay = start + number / LOAD_RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def _label(self, client: httpx.Client, answer: httpx.Response, label: str) -> None:
        request_id = answer.headers.get("x-request-id", "")
        headers = {
            "x-request-id": request_id,
            "x-kubeloop-version": answer.headers.get("x-kubeloop-version", ""),
        }
        body = {"request_id": request_id, "label": label}
        try:
            client.post(f"{self.url}/feedback", json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.failures.append(f"feedback: {exc!r}")


def drift_line(drift: dict[str, Any]) -> str:
    """One check as a line: version, verdict, streak, window, the PSI/KS of each feature."""
    scores: dict[str, list[str]] = {}
    for score in drift.get("scores") or []:
        if score["feature"] == "prediction":
            continue
        mark = "!" if score.get("drifted") else ""
        scores.setdefault(score["feature"], []).append(
            f"{score['method']} {score['score']:.3f}{mark}"
        )
    shown = "; ".join(f"{feature} {' '.join(parts)}" for feature, parts in scores.items())
    return (
        f"  drift of {drift.get('version')}: {drift.get('verdict')} "
        f"(streak {drift.get('consecutive', 0)}, {drift.get('samples', 0)} predictions)"
        + (f" | {shown}" if shown else "")
    )


def _status(kubectl_json: KubectlJson, namespace: str) -> dict[str, Any]:
    body = kubectl_json("get", "deployments.kubeloop.io", DEPLOYMENT, "-n", namespace)
    status: dict[str, Any] = body.get("status") or {}
    return status


def _wait_for(
    what: str, probe: Callable[[], Any], timeout: float = _WAIT_SECONDS
) -> dict[str, Any] | None:
    """The first truthy answer of ``probe`` (a dict), polled every 2 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return dict(found)
        time.sleep(2)
    print(f"  gave up waiting for {what} after {timeout:.0f}s: see .run/operator.log")
    return None


def _clean(kubectl: Kubectl, namespace: str) -> None:
    """Remove what an earlier demo run left of this loop, so it starts from v1 again.

    The model's versions go too: the registry keeps them after their runs are deleted, and
    an earlier run's Production version (or an Archived v1, which may only go back to
    Staging) would otherwise be what the new Deployment serves.
    """
    for kind, selector in (
        ("deployments.kubeloop.io", DEPLOYMENT),
        ("modelversions", f"-l=kubeloop.io/model={MODEL}"),
        ("trainingruns", f"-l=kubeloop.io/deployment={DEPLOYMENT}"),
        ("trainingruns", TEMPLATE_RUN),
        ("datasets.kubeloop.io", FEEDBACK_DATASET),
        ("datasets.kubeloop.io", TRAINING_DATASET),
    ):
        kubectl("delete", kind, selector, "-n", namespace, "--ignore-not-found", "--wait=true")


def run_loop_demo(
    kubectl: Kubectl,
    kubectl_json: KubectlJson,
    *,
    namespace: str,
    training_uri: str,
    router_url: Callable[[dict[str, Any]], str],
) -> int:
    """Run the loop; ``training_uri`` already holds distribution A as CSV."""
    print("\n== the loop: drift on live traffic -> retraining -> promotion")
    _clean(kubectl, namespace)
    for manifest in loop_manifests(training_uri):
        print(kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(manifest)))
    run = _wait_for(
        "v1 to be trained",
        lambda: (
            (s := kubectl_json("get", "trainingruns", TEMPLATE_RUN, "-n", namespace).get("status"))
            and (s.get("modelVersion") or s.get("phase") == "Failed")
            and s
        ),
    )
    if run is None or not run.get("modelVersion"):
        print(f"  v1 was not trained: {(run or {}).get('message')}")
        return 1
    v1 = str(run["modelVersion"])
    validated = _wait_for(
        f"{v1} to pass its gates",
        lambda: (
            (m := kubectl_json("get", "modelversions", v1, "-n", namespace))
            .get("status", {})
            .get("phase")
            in ("Validated", "Rejected")
            and m
        ),
    )
    if validated is None or validated["status"]["phase"] != "Validated":
        return 1
    print(f"  {v1} trained on A: accuracy {validated['spec']['metrics']['accuracy']:.2f}")
    answer = kubectl(
        "patch", "modelversion", v1, "-n", namespace,
        "--type=merge", "-p", '{"spec":{"stage":"Production"}}',
    )  # fmt: skip
    stage = kubectl_json("get", "modelversions", v1, "-n", namespace).get("spec", {}).get("stage")
    if stage != "Production":
        print(f"  {v1} could not be made Production: {answer}")
        return 1
    print(f"  {v1} is Production; the Deployment tracks Production, monitors and retrains")
    print(kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(loop_deployment())))
    serving = _wait_for(
        f"{v1} serving",
        lambda: (
            (s := _status(kubectl_json, namespace)).get("stableVersion") == v1
            and s.get("phase") == "Healthy"
            and s
        ),
    )
    if serving is None:
        return 1
    a_records = drift_data.records(drift_data.sample(2000, shifted=False, seed=11))
    b_frame = drift_data.sample(4000, shifted=True, seed=12)
    b_records, b_labels = drift_data.records(b_frame), [str(s) for s in b_frame["species"]]
    with _Traffic(router_url(serving)) as traffic:
        traffic.send(a_records, None)
        print(f"\n  traffic from A at {LOAD_RATE:g}/s (no labels): expect NoDrift")
        result = _follow(
            kubectl_json, namespace, traffic, v1=v1, b_records=b_records, b_labels=b_labels
        )
    print(kubectl("get", "deployments.kubeloop.io,trainingruns,modelversions", "-n", namespace))
    return result


def _follow(
    kubectl_json: KubectlJson,
    namespace: str,
    traffic: _Traffic,
    *,
    v1: str,
    b_records: list[dict[str, Any]],
    b_labels: list[str],
) -> int:
    """Print checks, switch to B after a few clean ones, follow the retrain to its end."""
    seen_checks: set[str] = set()
    clean_checks = 0
    switched: float | None = None
    finished: tuple[dict[str, Any], dict[str, Any], float] | None = None
    last_retrain = last_rollout = ""
    deadline = time.monotonic() + _WAIT_SECONDS
    while time.monotonic() < deadline:
        status = _status(kubectl_json, namespace)
        drift = status.get("drift") or {}
        if drift.get("evaluatedAt") and drift["evaluatedAt"] not in seen_checks:
            seen_checks.add(drift["evaluatedAt"])
            print(drift_line(drift), flush=True)
            decided = drift.get("verdict") in ("NoDrift", "Drifted")
            if finished is not None and drift.get("version") != v1 and decided:
                return _summary(*finished, traffic, v1)
            if switched is None and drift.get("verdict") == "NoDrift":
                clean_checks += 1
                if clean_checks >= _A_CHECKS:
                    traffic.send(b_records, b_labels)
                    switched = time.monotonic()
                    print("\n  traffic switches to B (petals longer), every answer labelled")
        retrain = status.get("lastRetrain") or {}
        line = (
            f"  retrain {retrain.get('name')}: {retrain.get('phase')} | {retrain.get('message')}"
            if retrain
            else ""
        )
        if line and line != last_retrain:
            print(line, flush=True)
            last_retrain = line
        weights = ", ".join(f"{v['version']} {v['weight']}%" for v in status.get("versions", []))
        rollout = f"  serving: {weights}" if weights else ""
        if rollout and rollout != last_rollout:
            print(rollout, flush=True)
            last_rollout = rollout
        ended = retrain.get("phase") in ("Succeeded", "Failed", "Rejected")
        if ended and switched is not None and finished is None:
            finished = (status, retrain, time.monotonic() - switched)
            if retrain["phase"] != "Succeeded":
                return _summary(*finished, traffic, v1)
            print("  waiting for a drift check of the new version on the same B traffic")
            deadline = min(deadline, time.monotonic() + 120)
        time.sleep(1)
    if finished is not None:
        return _summary(*finished, traffic, v1)
    print(f"  gave up after {_WAIT_SECONDS}s: see .run/operator.log")
    return 1


def _summary(
    status: dict[str, Any],
    retrain: dict[str, Any],
    seconds: float,
    traffic: _Traffic,
    v1: str,
) -> int:
    print(
        f"\n  retrain {retrain['name']} {retrain['phase']}: trigger {retrain.get('trigger')}, "
        f"TrainingRun {retrain.get('trainingRun')}, ModelVersion {retrain.get('modelVersion')}"
        f"\n  switch to B -> {status.get('stableVersion')} serving 100%: {seconds:.0f} s; "
        f"{traffic.answered} requests answered, {len(traffic.failures)} failed"
    )
    for failure in traffic.failures[:5]:
        print(f"    {failure}")
    ok = retrain["phase"] == "Succeeded" and status.get("stableVersion") != v1
    return 0 if ok and not traffic.failures else 1
