"""The whole loop on the real cluster: drift on live traffic -> retraining -> promotion.

One operator, real servers, router, SeaweedFS. ``iris-v1`` is trained on distribution A
(``kubeloop.devenv.drift_data``) and serves, tracked as Production. Traffic from A must not
raise drift (no false positive over at least ten checks), also while the pods scale up, one
is deleted and replaced (a new process: its counters start again), and they scale down. Traffic then switches to B (the
petals read longer) and every answer gets its true label back through ``/feedback``: the
drift monitor must detect it, the retrain policy refresh the feedback Dataset (the
prediction log joined with the labels), train exactly one TrainingRun on it, gate the new
version against v1 on the same fresh rows, promote it, and the Deployment canary it to 100%;
afterwards the drift of the new stable version is low. The operator is SIGKILLed after the
drift verdict and before the TrainingRun exists: still exactly one TrainingRun.
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest
from tests.cluster.conftest import Kubectl, wait_until
from tests.cluster.load import SteadyLoad
from tests.cluster.operator_fixtures import DATA_BUCKET, OPERATORS

from kubeloop.controllers.scrape import ready_pod_targets
from kubeloop.devenv import demo_loop, drift_data
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri

pytestmark = pytest.mark.cluster

DEPLOYMENT = demo_loop.DEPLOYMENT
RATE = demo_loop.LOAD_RATE
RETRAIN_LABEL = f"kubeloop.io/deployment={DEPLOYMENT}"


def _status(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        kubectl.get(namespace, "deployments.kubeloop.io", DEPLOYMENT).get("status") or {}
    )
    return status


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def _retrain_runs(kubectl: Kubectl, namespace: str) -> list[str]:
    listed = kubectl.json("get", "trainingruns", "-n", namespace, "-l", RETRAIN_LABEL)
    return [item["metadata"]["name"] for item in listed["items"]]


def _psi(status: dict[str, Any]) -> dict[str, float]:
    return {
        s["feature"]: s["score"]
        for s in (status.get("drift") or {}).get("scores") or []
        if s["method"] == "psi" and s["feature"] != "prediction"
    }


def _ready_pods(kubectl: Kubectl, namespace: str, version: str) -> list[str]:
    listed = kubectl.json(
        "get", "pods", "-n", namespace, "-l", f"kubeloop.io/modelversion={version}"
    )["items"]
    # the drift monitor's own choice of pods to scrape (the port does not matter here)
    return [target.name for target in ready_pod_targets(listed, port=0)]


def _disturb(kubectl: Kubectl, namespace: str, checks: int, done: list[str]) -> None:
    """After 2, 5 and 8 drift checks: scale to 2, delete a pod once both serve, scale to 1."""

    def replicas(count: int) -> None:
        kubectl.ok(
            "patch", "deployments.kubeloop.io", DEPLOYMENT, "-n", namespace, "--type=merge",
            "-p", f'{{"spec":{{"replicas":{count}}}}}',
        )  # fmt: skip
        done.append(f"scaled to {count}")

    if checks >= 2 and not done:
        replicas(2)
    elif checks >= 5 and len(done) == 1:
        pods = _ready_pods(kubectl, namespace, "iris-v1")
        if len(pods) == 2:
            kubectl.ok("delete", "pod", pods[0], "-n", namespace, "--wait=false")
            done.append("deleted a pod")
    elif checks >= 8 and len(done) == 2 and len(_ready_pods(kubectl, namespace, "iris-v1")) == 2:
        replicas(1)


@pytest.fixture(scope="module")
def serving(kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint) -> dict[str, Any]:
    """iris-v1 trained on A, Production, served by a Deployment that monitors and retrains.

    The manifests are the demo's (``kubeloop.devenv.demo_loop``): what is judged is what is shown.
    """
    namespace = operator_namespace
    uri = f"s3://{DATA_BUCKET}/loop/iris-a.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(
            drift_data.csv_bytes(drift_data.sample(600, shifted=False, seed=1)),
            S3Uri.parse(uri),
            content_type="text/csv",
        )
    manifests = demo_loop.loop_manifests(uri)
    for manifest in manifests:
        kubectl.apply(namespace, manifest)
    run = wait_until(
        lambda: (
            (
                (s := kubectl.get(namespace, "trainingruns", "iris-a").get("status") or {}).get(
                    "modelVersion"
                )
                or s.get("phase") == "Failed"
            )
            and s
        ),
        timeout=300,
        interval=2,
        what="iris-v1 to be trained",
    )
    assert run.get("modelVersion") == "iris-v1", run
    wait_until(
        lambda: (
            kubectl.get(namespace, "modelversions", "iris-v1").get("status", {}).get("phase")
            == "Validated"
        ),
        timeout=90,
        what="iris-v1 to pass its gates",
    )
    kubectl.ok(
        "patch", "modelversion", "iris-v1", "-n", namespace,
        "--type=merge", "-p", '{"spec":{"stage":"Production"}}',
    )  # fmt: skip
    deployment = demo_loop.loop_deployment()
    kubectl.apply(namespace, deployment)
    status = wait_until(
        lambda: (
            (s := _status(kubectl, namespace)).get("stableVersion") == "iris-v1"
            and s.get("phase") == "Healthy"
            and s
        ),
        timeout=240,
        interval=2,
        what="iris-v1 serving",
    )
    return {"url": kubectl.endpoint_url(namespace, status)}


def test_drift_retrains_promotes_and_rolls_out_exactly_once(
    kubectl: Kubectl, operator_namespace: str, serving: dict[str, Any]
) -> None:
    namespace = operator_namespace
    url = serving["url"]
    a_records = drift_data.records(drift_data.sample(2000, shifted=False, seed=11))
    b_frame = drift_data.sample(4000, shifted=True, seed=12)
    b_records, b_truths = drift_data.records(b_frame), list(b_frame["species"])

    # -- A: at least ten verdicts over enough traffic, none of them drift, while the pods
    # scale 1 -> 2, one is deleted (its replacement's counters start from zero), and 2 -> 1.
    checks: dict[str, str] = {}
    disturbances: list[str] = []
    with SteadyLoad(
        f"{url}/predict", lambda i: {"records": [a_records[i % len(a_records)]]}, rate=RATE
    ) as load_a:
        deadline = time.monotonic() + 300
        while sum(1 for v in checks.values() if v == "NoDrift") < 10 or len(disturbances) < 3:
            assert time.monotonic() < deadline, f"too few drift checks on A: {checks}"
            status = _status(kubectl, namespace)
            drift = status.get("drift") or {}
            if drift.get("evaluatedAt") and drift.get("version") == "iris-v1":
                checks[drift["evaluatedAt"]] = drift["verdict"]
                assert drift["verdict"] != "Drifted", (disturbances, drift)
                assert _condition(status, "DriftDetected").get("status") != "True", status
            _disturb(kubectl, namespace, len(checks), disturbances)
            time.sleep(1)
    assert disturbances == ["scaled to 2", "deleted a pod", "scaled to 1"], disturbances
    assert load_a.failures() == [], load_a.failures()[:3]
    assert _retrain_runs(kubectl, namespace) == []
    assert "lastRetrain" not in _status(kubectl, namespace)

    # -- B with labels fed back: drift, one retrain (operator killed mid-way), v2 at 100%. --
    psi_seen: list[tuple[float, float]] = []
    killed = False
    switched = time.monotonic()
    load_b = SteadyLoad(
        f"{url}/predict",
        lambda i: {"records": [b_records[i % len(b_records)]]},
        rate=RATE,
        feedback=lambda i, request_id: {
            "request_id": request_id,
            "label": b_truths[i % len(b_truths)],
        },
    )
    with load_b:
        deadline = switched + 600
        while True:
            assert time.monotonic() < deadline, _status(kubectl, namespace)
            status = _status(kubectl, namespace)
            scores = _psi(status)
            if scores and (status.get("drift") or {}).get("version") == "iris-v1":
                psi_seen.append((time.monotonic() - switched, max(scores.values())))
            retrain = status.get("lastRetrain") or {}
            if not killed and retrain.get("phase") == "RefreshingData":
                # The verdict is in status, the TrainingRun does not exist yet: kill -9 now.
                assert _retrain_runs(kubectl, namespace) == []
                OPERATORS[namespace].kill()
                time.sleep(2)
                OPERATORS[namespace].start()
                killed = True
            if retrain.get("phase") in ("Succeeded", "Failed", "Rejected"):
                break
            time.sleep(1)
        loop_seconds = time.monotonic() - switched
        time.sleep(3)
    assert killed, "the retrain never waited for its data: nothing to kill in between"
    assert retrain["phase"] == "Succeeded", retrain
    assert retrain["trigger"] == "Drift" and retrain["modelVersion"] == "iris-v2", retrain
    assert _retrain_runs(kubectl, namespace) == [retrain["trainingRun"]]
    assert load_b.failures() == [], load_b.failures()[:3]
    status = _status(kubectl, namespace)
    assert status["stableVersion"] == "iris-v2" and status.get("candidateVersion") is None
    assert [v["weight"] for v in status["versions"] if v["version"] == "iris-v2"] == [100]
    peak = max(score for _, score in psi_seen)
    assert peak > 0.2, psi_seen

    # v2 beats v1 on the same fresh (B) test rows the trainer scored both on.
    v2 = kubectl.get(namespace, "modelversions", "iris-v2")
    champion = v2["spec"]["championScore"]
    assert champion["name"] == "iris-v1", champion
    assert v2["spec"]["metrics"]["accuracy"] > champion["metrics"]["accuracy"] + 0.3, v2["spec"]
    assert v2["status"]["phase"] == "Validated" and v2["spec"]["stage"] == "Production"
    assert v2["spec"]["lineage"]["dataset"] == "iris-live"

    # After the rollout the drift of the new stable version is low.
    with SteadyLoad(
        f"{url}/predict", lambda i: {"records": [b_records[-1 - i % len(b_records)]]}, rate=RATE
    ):
        after = wait_until(
            lambda: (
                (d := _status(kubectl, namespace).get("drift") or {}).get("version") == "iris-v2"
                and d.get("verdict") in ("NoDrift", "Drifted")
                and d
            ),
            timeout=120,
            what="a drift verdict on iris-v2",
        )
    assert after["verdict"] == "NoDrift", after
    low = max(s["score"] for s in after["scores"] if s["method"] == "psi")
    assert low < 0.2 < peak, (low, peak)
    print(
        f"\nloop: switch to B -> iris-v2 at 100% in {loop_seconds:.0f} s; "
        f"peak PSI {peak:.2f} on v1, {low:.3f} on v2"
    )


def test_a_retrained_version_whose_rollout_fails_gives_production_back(
    kubectl: Kubectl, operator_namespace: str, serving: dict[str, Any]
) -> None:
    """A manual retrain whose canary fails: the registry names what serves again.

    Runs after the loop (iris-v2 serves). The template's champion gate is relaxed so the
    retrained iris-v3 is Validated whatever its score, and with no traffic at all every
    analysis is Inconclusive, two in a row fail the step: v3 is rolled back. The retrain
    then puts v2 back in Production (Archived -> Staging -> Production) and the registry
    archives v3, so the Deployment is Healthy on v2 and the registry agrees.
    """
    namespace = operator_namespace
    before = _status(kubectl, namespace)
    assert before.get("stableVersion") == "iris-v2", "needs the loop's iris-v2 serving"
    assert (before.get("lastRetrain") or {}).get("phase") == "Succeeded", before
    kubectl.ok(
        "patch", "trainingrun", demo_loop.TEMPLATE_RUN, "-n", namespace, "--type=merge",
        "-p", '{"spec":{"gates":{"champion":{"minImprovement":-1.0}}}}',
    )  # fmt: skip
    kubectl.ok(
        "patch", "deployments.kubeloop.io", DEPLOYMENT, "-n", namespace, "--type=merge",
        "-p", '{"spec":{"strategy":{"canary":{"analysis":{"maxInconclusive":2}}},'
        '"retrain":{"request":"revert-check"}}}',
    )  # fmt: skip
    phases: list[str] = []

    def finished() -> dict[str, Any] | None:
        retrain = _status(kubectl, namespace).get("lastRetrain") or {}
        if retrain.get("number") != 2:
            return None
        if not phases or phases[-1] != retrain["phase"]:
            phases.append(retrain["phase"])
        return retrain if retrain["phase"] in ("Succeeded", "Failed", "Rejected") else None

    retrain = wait_until(finished, timeout=480, interval=1, what="the second retrain to end")
    assert retrain["trigger"] == "Manual" and retrain["request"] == "revert-check", retrain
    assert retrain["modelVersion"] == "iris-v3", retrain
    assert "RollingOut" in phases, phases
    assert retrain["phase"] == "Failed" and retrain["revertedTo"] == "iris-v2", retrain
    assert "the rollout of iris-v3 failed" in retrain["message"], retrain
    assert "inconclusive" in retrain["message"], retrain
    assert retrain["message"].endswith("iris-v2 is Production again (iris-v3 is Archived)")

    v2 = kubectl.get(namespace, "modelversions", "iris-v2")
    assert v2["spec"]["stage"] == "Production"
    moves = [(h["previous"], h["stage"]) for h in v2["status"]["stageHistory"]][-3:]
    assert moves == [("Production", "Archived"), ("Archived", "Staging"), ("Staging", "Production")]
    v3 = wait_until(
        lambda: (
            (mv := kubectl.get(namespace, "modelversions", "iris-v3"))["spec"]["stage"]
            == "Archived"
            and mv
        ),
        timeout=30,
        what="iris-v3 archived by the registry",
    )
    assert v3["status"]["phase"] == "Validated"
    status = wait_until(
        lambda: (
            (s := _status(kubectl, namespace)).get("phase") == "Healthy"
            and s.get("candidateVersion") is None
            and s
        ),
        timeout=60,
        what="the Deployment Healthy on iris-v2",
    )
    assert status["stableVersion"] == "iris-v2", status
    assert "abortedVersion" not in status and "failedVersion" not in status, status
    reverting = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", "reason=RetrainReverting"
    )["items"]
    assert [e["involvedObject"]["name"] for e in reverting] == [DEPLOYMENT], reverting
    # Both ends counted once by the operator that saw them (it was restarted mid-way through
    # the first retrain, before that one ended).
    port = OPERATORS[namespace].metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    labels = f'deployment="{DEPLOYMENT}",namespace="{namespace}"'
    assert f'kubeloop_retrains_total{{{labels},outcome="Succeeded",trigger="Drift"}} 1.0' in text
    assert f'kubeloop_retrains_total{{{labels},outcome="Failed",trigger="Manual"}} 1.0' in text
