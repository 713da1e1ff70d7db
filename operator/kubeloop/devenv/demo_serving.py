"""The serving half of ``make demo``: serve the new model, predict through the router, canary.

After the first half has registered a ModelVersion, this part applies a kubeloop Deployment
(canary strategy), waits until it serves, sends a few predictions through the router's
Service, trains a second version, and rolls it out 10 % → 50 % → 100 % while a small steady
load runs, printing the weights and every analysis as they change, and the failed requests
at the end (there should be none). Every answered prediction is followed by its feedback
(the row's true label, with the answer's ``x-request-id`` and ``x-kubeloop-version``), so the
analysis also judges live accuracy, and the demo prints how much feedback met its prediction.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import yaml

DEPLOYMENT = "churn"
LOAD_RATE = 40.0
_WAIT_SECONDS = 600

Kubectl = Callable[..., str]
KubectlJson = Callable[..., Any]


def deployment_manifest(version: str) -> dict[str, Any]:
    """The demo's kubeloop Deployment: one replica per version, a three-step canary."""
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "model": {"version": version},
            "replicas": 1,
            "strategy": {
                "type": "Canary",
                "canary": {
                    "steps": [
                        {"weight": 10, "pause": "15s"},
                        {"weight": 50, "pause": "15s"},
                        {"weight": 100, "pause": "0s"},
                    ],
                    "scaleDownDelay": "10s",
                    "analysis": {
                        "interval": "5s",
                        "minRequests": 10,
                        "maxErrorRate": 0.01,
                        "maxP99LatencyRatio": 5.0,
                        # Better than a coin: a sanity floor any real churn model clears.
                        "minLiveAccuracy": 0.5,
                        "minFeedback": 20,
                        "maxInconclusive": 50,
                    },
                },
            },
        },
    }


def second_run() -> dict[str, Any]:
    """One more TrainingRun of the same model: its best trial becomes the next version."""
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "churn-retrain"},
        "spec": {
            "datasetRef": {"name": "churn"},
            "modelName": "churn",
            "estimator": {
                "name": "RandomForestClassifier",
                "params": {"n_estimators": 60, "max_depth": 6, "class_weight": "balanced"},
            },
        },
    }


class _Load:
    """A few requests per second through the router, each followed by its feedback."""

    def __init__(self, url: str, records: list[dict[str, Any]], labels: list[str]) -> None:
        self.url, self.records, self.labels = url, records, labels
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.feedback: Counter[str] = Counter()  # matched / unmatched / failed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            number = 0
            start = time.monotonic()
            while not self._stop.is_set():
                record = self.records[number % len(self.records)]
                try:
                    response = client.post(f"{self.url}/predict", json={"records": [record]})
                    if response.status_code == httpx.codes.OK:
                        self.answers[response.headers.get("x-kubeloop-version", "?")] += 1
                        self._send_feedback(
                            client, response, self.labels[number % len(self.labels)]
                        )
                    else:
                        self.failures.append(f"HTTP {response.status_code}: {response.text[:100]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                number += 1
                delay = start + number / LOAD_RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def _send_feedback(self, client: httpx.Client, answer: httpx.Response, label: str) -> None:
        request_id = answer.headers.get("x-request-id", "")
        headers = {
            "x-request-id": request_id,
            "x-kubeloop-version": answer.headers.get("x-kubeloop-version", ""),
        }
        body = {"request_id": request_id, "label": label}
        try:
            response = client.post(f"{self.url}/feedback", json=body, headers=headers)
            result = response.json() if response.status_code == httpx.codes.OK else {}
        except (httpx.HTTPError, ValueError):
            result = {}
        if not result:
            self.feedback["failed"] += 1
        else:
            self.feedback["matched"] += result.get("matched", 0)
            self.feedback["unmatched"] += result.get("unmatched", 0)


def _apply(kubectl: Kubectl, namespace: str, body: dict[str, Any]) -> str:
    """``kubectl apply`` of one object; kubectl's answer."""
    return kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(body))


def _status(kubectl_json: KubectlJson, namespace: str) -> dict[str, Any]:
    body = kubectl_json("get", "deployments.kubeloop.io", DEPLOYMENT, "-n", namespace)
    status: dict[str, Any] = body.get("status") or {}
    return status


def router_url(kubectl_json: KubectlJson, namespace: str, status: dict[str, Any]) -> str:
    """The router Service's ClusterIP URL (reachable from this machine through kube-proxy)."""
    service = str(status["endpoint"]).removeprefix("http://").split(".")[0]
    cluster_ip = kubectl_json("get", "service", service, "-n", namespace)["spec"]["clusterIP"]
    return f"http://{cluster_ip}"


def _wait(
    kubectl_json: KubectlJson, namespace: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    deadline = time.monotonic() + _WAIT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        status = _status(kubectl_json, namespace)
        weights = ", ".join(
            f"{v['version']} {v['role']} {v['weight']}%" for v in status.get("versions", [])
        )
        if not status:  # the operator has not written a status yet
            line = "  waiting for the operator"
        else:
            line = f"  {status.get('phase')}: {weights or '-'} | {status.get('message', '')}"
        if line != last:
            print(line, flush=True)
            last = line
        if done(status):
            return status
        if status.get("phase") in ("Failed", "RolledBack"):
            return status
        time.sleep(1)
    print(f"  gave up after {_WAIT_SECONDS}s: see .run/operator.log")
    return None


def _result_text(result: dict[str, Any]) -> str:
    text = f"{result['check']} {result['verdict']}"
    if result["check"] == "liveAccuracy" and result.get("candidate") is not None:
        text += f" {100 * result['candidate']:.0f}%"
    return text


def _print_analyses(status: dict[str, Any], seen: int) -> int:
    runs = status.get("analysis") or []
    for run in runs[seen:]:
        checks = "; ".join(_result_text(r) for r in run.get("results", []))
        print(f"    analysis step {run['step']}: {run['verdict']} ({checks})", flush=True)
    return len(runs)


def run_serving_demo(
    kubectl: Kubectl,
    kubectl_json: KubectlJson,
    *,
    namespace: str,
    model_version: str,
    records: list[dict[str, Any]],
    labels: list[str],
    wait_for_run: Callable[[str], dict[str, Any] | None],
) -> int:
    """Serve ``model_version``, predict through the router, then canary the next version.

    ``labels`` are the true labels of ``records``, sent back as feedback.
    """
    print(f"\n== serving {model_version}: a kubeloop Deployment (router + one server pod)")
    if kubectl_json("get", "deployments.kubeloop.io", "-n", namespace)["items"]:
        # A rerun starts the serving half from its first version again, not as a rollout
        # of an earlier run's live version (which would wait for traffic that never comes).
        print("  (deleting the Deployment an earlier demo run left, and its pods)")
        kubectl(
            "delete", "deployments.kubeloop.io", DEPLOYMENT, "-n", namespace,
            "--cascade=foreground", "--wait=true", "--timeout=120s",
        )  # fmt: skip
    print(_apply(kubectl, namespace, deployment_manifest(model_version)))
    status = _wait(kubectl_json, namespace, lambda s: s.get("phase") == "Healthy")
    if status is None or status.get("phase") != "Healthy":
        return 1
    url = router_url(kubectl_json, namespace, status)
    print(kubectl("get", "deployments.kubeloop.io", "-n", namespace))
    response = httpx.post(f"{url}/predict", json={"records": records[:3]}, timeout=10)
    print(
        f"\nPOST {status['endpoint']}/predict (3 records) -> {response.status_code}, "
        f"x-kubeloop-version: {response.headers.get('x-kubeloop-version')}"
    )
    for record, prediction in zip(
        records[:3], response.json().get("predictions", []), strict=False
    ):
        shown = {k: record[k] for k in list(record)[:3]}
        print(f"  {shown}... -> {prediction}")

    print("\n== a second version: one more TrainingRun of the same model")
    print(_apply(kubectl, namespace, second_run()))
    run = wait_for_run("churn-retrain")
    if run is None:
        return 1
    candidate = str(run["modelVersion"])
    print(f"  {candidate} registered")

    print(f"\n== canary of {candidate}: 10% -> 50% -> 100% under {LOAD_RATE:g} requests/s")
    seen = 0
    with _Load(url, records, labels) as load:
        time.sleep(2)
        _apply(kubectl, namespace, deployment_manifest(candidate))
        deadline = time.monotonic() + _WAIT_SECONDS
        last = ""
        final: dict[str, Any] = {}
        while time.monotonic() < deadline:
            final = _status(kubectl_json, namespace)
            line = (
                f"  {final.get('phase')}: canary weight {final.get('canaryWeight', 0)}% "
                f"| {final.get('message', '')}"
            )
            if line != last:
                print(line, flush=True)
                last = line
            seen = _print_analyses(final, seen)
            if final.get("stableVersion") == candidate and final.get("phase") == "Healthy":
                break
            if final.get("phase") in ("RolledBack", "Failed"):
                break
            time.sleep(1)
        time.sleep(2)
    print(kubectl("get", "deployments.kubeloop.io", "-n", namespace))
    answered = ", ".join(f"{version}: {count}" for version, count in sorted(load.answers.items()))
    print(f"\nrequests answered during the rollout: {answered}; failed: {len(load.failures)}")
    for failure in load.failures[:5]:
        print(f"  {failure}")
    feedback = load.feedback
    print(
        f"feedback sent after each answer: {sum(feedback.values())}; met its prediction on the "
        f"pod that answered: {feedback['matched']}; unmatched: {feedback['unmatched']}; "
        f"failed: {feedback['failed']}"
    )
    ok = final.get("stableVersion") == candidate and not load.failures
    return 0 if ok else 1
