"""Serving and progressive delivery on the real cluster: real servers, router, NGINX, S3.

One module, one operator, one trained model family (``churn``): v1 and v2 from TrainingRuns,
v3 a genuinely slow copy of v1 (registered by hand, its artifact verified), v4 a forged entry
whose digest does not match its artifact, v5 a copy of v1 that answers the other class. Every request goes through the router's Service
(kube-proxy on the host) under a steady load, and every answer is recorded.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from tests.cluster.conftest import Kubectl, wait_until
from tests.cluster.load import SteadyLoad
from tests.cluster.model_copies import flipped_copy, slow_copy
from tests.cluster.operator_fixtures import DATA_BUCKET

from kubeloop.devenv.cluster import ClusterInfo
from kubeloop.devenv.demo import churn_csv
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri

pytestmark = pytest.mark.cluster

DEPLOYMENT = "churn"
LOAD_RATE = 150.0


def _train(
    kubectl: Kubectl,
    namespace: str,
    name: str,
    params: dict[str, Any],
    *,
    dataset: str = "churn",
    estimator: str = "RandomForestClassifier",
) -> str:
    run = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": dataset},
            "modelName": dataset,
            "estimator": {"name": estimator, "params": params},
            "seed": 5,
        },
    }
    kubectl.apply(namespace, run)
    status = wait_until(
        lambda: (
            (
                (s := kubectl.get(namespace, "trainingruns", name).get("status") or {}).get(
                    "modelVersion"
                )
                or s.get("phase") == "Failed"
            )
            and s
        ),
        timeout=300,
        interval=2,
        what=f"TrainingRun {name} to register its model",
    )
    assert status.get("modelVersion"), status
    return str(status["modelVersion"])


def _validated(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = wait_until(
        lambda: (
            (mv := kubectl.get(namespace, "modelversions", name)).get("status", {}).get("phase")
            in ("Validated", "Rejected")
            and mv
        ),
        timeout=90,
        what=f"gates of {name}",
    )
    return body


def _register_copy(
    kubectl: Kubectl,
    namespace: str,
    store: ObjectStore,
    source: dict[str, Any],
    *,
    version: int,
    model_bytes: bytes,
    sha256: str | None = None,
) -> str:
    """A hand-made ModelVersion: ``source``'s facts with another artifact (and digest)."""
    uri = f"s3://{store.bucket}/handmade/{namespace}/churn-v{version}/model.onnx"
    store.upload(model_bytes, S3Uri.parse(uri), content_type="application/onnx")
    name = f"churn-v{version}"
    spec = {k: v for k, v in source["spec"].items() if k not in ("stage", "championScore")}
    spec["version"] = version
    spec["artifact"] = {
        **source["spec"]["artifact"],
        "uri": uri,
        "sha256": sha256 or hashlib.sha256(model_bytes).hexdigest(),
        "sizeBytes": len(model_bytes),
    }
    body = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "labels": {"kubeloop.io/model": "churn"}},
        "spec": spec,
    }
    kubectl.apply(namespace, body)
    return name


@pytest.fixture(scope="module")
def versions(kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint) -> dict[str, Any]:
    """churn-v1, -v2 (trained), -v3 (slow copy of v1), -v4 (forged digest), -v5 (flipped v1)."""
    namespace = operator_namespace
    uri = f"s3://{DATA_BUCKET}/churn/serving.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(churn_csv(rows=800), S3Uri.parse(uri), content_type="text/csv")
        dataset = {
            "apiVersion": "kubeloop.io/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "churn"},
            "spec": {"source": {"uri": uri}, "target": "churned"},
        }
        kubectl.apply(namespace, dataset)
        v1 = _train(kubectl, namespace, "churn-a", {"n_estimators": 20, "max_depth": 5})
        v2 = _train(kubectl, namespace, "churn-b", {"n_estimators": 30, "max_depth": 4})
        first = _validated(kubectl, namespace, v1)
        assert first["status"]["phase"] == "Validated"
        assert _validated(kubectl, namespace, v2)["status"]["phase"] == "Validated"
        buffer = io.BytesIO()
        store.download(S3Uri.parse(first["spec"]["artifact"]["uri"]), buffer)
        original = buffer.getvalue()
        slow = _register_copy(
            kubectl, namespace, store, first, version=3, model_bytes=slow_copy(original)
        )
        forged = _register_copy(
            kubectl, namespace, store, first, version=4, model_bytes=original, sha256="0" * 64
        )
        labels = first["spec"]["signature"]["output"]["labels"]
        flipped = _register_copy(
            kubectl, namespace, store, first, version=5, model_bytes=flipped_copy(original, labels)
        )
        test_set = io.BytesIO()
        prefix = first["spec"]["artifact"]["uri"].rsplit("/", 1)[0]
        store.download(S3Uri.parse(f"{prefix}/test-set.parquet"), test_set)
    assert _validated(kubectl, namespace, slow)["status"]["phase"] == "Validated"
    assert _validated(kubectl, namespace, forged)["status"]["phase"] == "Rejected"
    assert _validated(kubectl, namespace, flipped)["status"]["phase"] == "Validated"
    frame = pd.read_parquet(io.BytesIO(test_set.getvalue()))
    return {
        "v1": v1,
        "v2": v2,
        "slow": slow,
        "forged": forged,
        "flipped": flipped,
        "test_set": frame,
        # Every test-set row as a /predict record (v1's signature; all copies share it).
        "records": _records(frame, first["spec"]["signature"]),
    }


def _records(frame: pd.DataFrame, signature: dict[str, Any]) -> list[dict[str, Any]]:
    columns = [item["name"] for item in signature["inputs"]]
    records = []
    for row in frame[columns].to_dict(orient="records"):
        records.append({k: (None if pd.isna(v) else _plain(v)) for k, v in row.items()})
    return records


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _deployment(version: str, **strategy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {
            "model": {"version": version},
            "replicas": 1,
            "strategy": strategy
            or {
                "type": "Canary",
                "canary": {
                    "steps": [
                        {"weight": 10, "pause": "20s"},
                        {"weight": 50, "pause": "20s"},
                        {"weight": 100, "pause": "0s"},
                    ],
                    "scaleDownDelay": "5s",
                    "analysis": {
                        "interval": "5s",
                        "minRequests": 20,
                        "maxErrorRate": 0.01,
                        "maxP99LatencyRatio": 4.0,
                        "maxPredictionDivergence": 0.5,
                        "maxInconclusive": 50,
                    },
                },
            },
        },
    }


def _status(kubectl: Kubectl, namespace: str, name: str = DEPLOYMENT) -> dict[str, Any]:
    """The status of the current spec: empty until the operator has observed its generation.

    Right after an apply the status still describes the previous spec (CI once read the last
    test's RolledBack as this test's outcome).
    """
    body = kubectl.get(namespace, "deployments.kubeloop.io", name)
    status: dict[str, Any] = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"]["generation"]:
        return {}
    return status


def _serves(version: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a status says ``version`` is stable and the rollout is over."""
    return lambda s: s.get("stableVersion") == version and s.get("phase") == "Healthy"


def _first_answer(url: str, records: list[dict[str, Any]], what: str) -> httpx.Response:
    """The first 200 from ``/predict`` for ``records`` (the router may still be catching up)."""
    response: httpx.Response = wait_until(
        lambda: (
            (r := httpx.post(f"{url}/predict", json={"records": records}, timeout=10)).status_code
            == httpx.codes.OK
            and r
        ),
        timeout=60,
        what=what,
    )
    return response


def _endpoint(kubectl: Kubectl, namespace: str, name: str = DEPLOYMENT) -> str:
    """The router Service's URL, once a stable version serves (Healthy, or after a rollback)."""
    status = wait_until(
        lambda: (
            (s := _status(kubectl, namespace, name)).get("phase")
            in ("Healthy", "RolledBack", "Failed")
            and s.get("stableVersion")
            and s
        ),
        timeout=240,
        interval=2,
        what="a stable version serving",
    )
    return kubectl.endpoint_url(namespace, status)


def test_first_version_serves_what_it_was_tested_to_predict(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    namespace = operator_namespace
    kubectl.apply(namespace, _deployment(versions["v1"]))
    url = _endpoint(kubectl, namespace)
    mv = kubectl.get(namespace, "modelversions", versions["v1"])
    frame: pd.DataFrame = versions["test_set"].head(200)
    records = _records(frame, mv["spec"]["signature"])
    response = _first_answer(url, records, "a 200 from /predict through the router")
    assert response.headers["x-kubeloop-version"] == versions["v1"]
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == [str(v) for v in frame["kubeloop:prediction"]]
    labels = mv["spec"]["signature"]["output"]["labels"]
    served = np.array([[p["probabilities"][label] for label in labels] for p in predictions])
    expected = frame[[f"kubeloop:probability:{label}" for label in labels]].to_numpy()
    np.testing.assert_allclose(served, expected, atol=1e-4)
    status = _status(kubectl, namespace)
    assert status["stableVersion"] == versions["v1"]
    assert [(v["version"], v["weight"]) for v in status["versions"]] == [(versions["v1"], 100)]


def test_a_v2_client_not_written_here_gets_the_same_predictions(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    """tritonclient[http] against a serving pod: Open Inference Protocol V2, unchanged."""
    namespace = operator_namespace
    mv = kubectl.get(namespace, "modelversions", versions["v1"])
    pods = kubectl.json(
        "get", "pods", "-n", namespace, "-l", f"kubeloop.io/modelversion={versions['v1']}"
    )["items"]
    ip = next(p["status"]["podIP"] for p in pods if p["status"].get("podIP"))
    client = triton.InferenceServerClient(url=f"{ip}:8080")
    number = str(mv["spec"]["version"])
    assert client.is_server_live() and client.is_model_ready("churn", number)
    frame: pd.DataFrame = versions["test_set"].head(100)
    inputs = []
    for feature in mv["spec"]["signature"]["inputs"]:
        values = frame[feature["name"]]
        if feature["type"] in ("number", "integer"):
            array = values.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
            tensor = triton.InferInput(feature["name"], list(array.shape), "FP32")
        else:
            texts = [_category_text(v) for v in values]
            array = np.array(texts, dtype=object).reshape(-1, 1)
            tensor = triton.InferInput(feature["name"], list(array.shape), "BYTES")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer("churn", inputs, model_version=number)
    labels = [v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("label")]
    assert labels == [str(v) for v in frame["kubeloop:prediction"]]
    order = mv["spec"]["signature"]["output"]["labels"]
    expected = frame[[f"kubeloop:probability:{label}" for label in order]].to_numpy()
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-4)


def _category_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def test_canary_walks_its_steps_under_load_without_a_failed_request(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    namespace = operator_namespace
    url = _endpoint(kubectl, namespace)
    records = versions["records"]
    weights: list[tuple[float, int | None, str | None]] = []
    with SteadyLoad(
        f"{url}/predict", lambda i: {"records": [records[i % len(records)]]}, rate=LOAD_RATE
    ) as load:
        time.sleep(3)
        kubectl.apply(namespace, _deployment(versions["v2"]))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = _status(kubectl, namespace)
            weights.append((load.now(), status.get("canaryWeight"), status.get("phase")))
            if status.get("stableVersion") == versions["v2"] and status.get("phase") == "Healthy":
                break
            time.sleep(0.5)
        time.sleep(2)
    status = _status(kubectl, namespace)
    assert status["stableVersion"] == versions["v2"], (
        status.get("message"),
        [(r["step"], r["verdict"], r["message"]) for r in status.get("analysis", [])][-6:],
        sorted({(w, p) for _, w, p in weights}, key=str),
    )
    failures = load.failures()
    assert failures == [], failures[:5]
    # The split at each step, over the requests sent while that weight held (a second of
    # margin at each end for the router's reload).
    for weight in (10, 50):
        times = [t for t, w, _ in weights if w == weight]
        assert times, f"weight {weight} never seen: {weights}"
        window = load.window(min(times) + 1.0, max(times) - 1.0)
        counts = Counter(o.version for o in window)
        share = 100.0 * counts[versions["v2"]] / len(window)
        assert len(window) >= 2000, (weight, len(window))
        assert abs(share - weight) <= 3.0, (weight, share, counts)
    runs = status["analysis"]
    assert runs and all(run["verdict"] in ("Pass", "Inconclusive") for run in runs)


def _watch(
    kubectl: Kubectl,
    namespace: str,
    load: SteadyLoad,
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout: float,
    name: str = DEPLOYMENT,
) -> list[tuple[float, dict[str, Any]]]:
    """Poll the status until ``done(status)``; every (time, status) seen."""
    seen: list[tuple[float, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(kubectl, namespace, name)
        seen.append((load.now(), status))
        if done(status):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"not done after {timeout}s: {seen[-1][1].get('message')}")


def _load(url: str, records: list[dict[str, Any]]) -> SteadyLoad:
    return SteadyLoad(
        f"{url}/predict", lambda i: {"records": [records[i % len(records)]]}, rate=LOAD_RATE
    )


def test_a_slow_canary_is_rolled_back_within_two_analyses_and_stable_keeps_answering(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    namespace = operator_namespace
    url = _endpoint(kubectl, namespace)
    with _load(url, versions["records"]) as load:
        time.sleep(2)
        kubectl.apply(namespace, _deployment(versions["slow"]))
        seen = _watch(
            kubectl, namespace, load, lambda s: s.get("phase") == "RolledBack", timeout=180
        )
        time.sleep(2)
    traffic = [t for t, s in seen if (s.get("canaryWeight") or 0) > 0]
    assert traffic, "the slow canary never received traffic"
    rolled_back = seen[-1][0]
    interval = 5.0
    assert rolled_back - min(traffic) <= 2 * interval + 2.0, rolled_back - min(traffic)
    status = seen[-1][1]
    assert status["stableVersion"] == versions["v2"]
    weights = {v["version"]: v["weight"] for v in status["versions"]}
    assert weights[versions["v2"]] == 100 and weights.get(versions["slow"], 0) == 0
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    failed = [result for result in status["analysis"][-1]["results"] if result["verdict"] == "Fail"]
    assert any("p99" in result["check"].lower() for result in failed), failed
    assert all(r["candidate"] is not None and r["threshold"] is not None for r in failed)
    assert "p99" in degraded["message"].lower()
    failures = load.failures()
    assert failures == [], failures[:5]
    # After the abort every answer is stable's.
    late = load.window(rolled_back + 2.0, load.now())
    assert late and {o.version for o in late} == {versions["v2"]}


def test_a_version_whose_digest_does_not_match_is_never_served(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    namespace = operator_namespace
    url = _endpoint(kubectl, namespace)
    with _load(url, versions["records"]) as load:
        kubectl.apply(namespace, _deployment(versions["forged"]))
        seen = _watch(kubectl, namespace, load, lambda s: s.get("phase") == "Failed", timeout=60)
        time.sleep(3)
    status = seen[-1][1]
    assert versions["forged"] in status["message"]
    assert "sha256" in status["message"] and "0" * 64 in status["message"], status["message"]
    assert all((s.get("canaryWeight") or 0) == 0 for _, s in seen)
    pods = kubectl.json(
        "get", "pods", "-n", namespace, "-l", f"kubeloop.io/modelversion={versions['forged']}"
    )["items"]
    assert pods == []
    assert load.failures() == []
    assert {o.version for o in load.outcomes} == {versions["v2"]}


def test_blue_green_switches_and_rolls_back_under_load_without_a_failed_request(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    namespace = operator_namespace
    url = _endpoint(kubectl, namespace)
    records = versions["records"]
    blue_green = {
        "type": "BlueGreen",
        "blueGreen": {
            "autoPromotion": True,
            "previewDuration": "5s",
            "scaleDownDelay": "120s",
            "smokeTest": {"records": records[:5]},
            "analysis": {"interval": "3s", "minRequests": 1, "maxInconclusive": 50},
        },
    }
    with _load(url, records) as load:
        kubectl.apply(namespace, _deployment(versions["v1"], **blue_green))
        seen = _watch(kubectl, namespace, load, _serves(versions["v1"]), timeout=180)
        switched = seen[-1][0]
        time.sleep(4)
        # Rollback: the old version is still up (scale-down delay), so it is instant.
        kubectl.apply(namespace, _deployment(versions["v2"], **blue_green))
        back = _watch(kubectl, namespace, load, _serves(versions["v2"]), timeout=30)
        rolled_back = back[-1][0]
        time.sleep(4)
    assert load.failures() == [], load.failures()[:5]
    # Never a split: before the switch only v2 answered, between switch and rollback only v1.
    before = {o.version for o in load.window(0, switched - 2.0)}
    assert before == {versions["v2"]}
    during = {o.version for o in load.window(switched + 2.0, rolled_back - 1.0)}
    assert during == {versions["v1"]}
    after = {o.version for o in load.window(rolled_back + 2.0, load.now())}
    assert after == {versions["v2"]}
    # The smoke test ran on the preview and is in the analysis record.
    smoke = [
        result
        for run in _status(kubectl, namespace)["analysis"]
        for result in run["results"]
        if result["check"] == "smokeTest"
    ]
    assert smoke and smoke[-1]["verdict"] == "Pass"


def test_shadow_gets_copies_and_clients_only_see_stable(
    cluster: ClusterInfo, kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    namespace = operator_namespace
    url = _endpoint(kubectl, namespace)
    records = versions["records"]
    shadow = {
        "type": "Shadow",
        "shadow": {
            "percent": 100,
            "duration": "10m",
            "promote": False,
            "analysis": {"interval": "3s", "minRequests": 20, "maxInconclusive": 500},
        },
    }
    kubectl.apply(namespace, _deployment(versions["v1"], **shadow))
    wait_until(
        lambda: any(
            v["version"] == versions["v1"] and v["role"] == "shadow" and v["readyReplicas"] > 0
            for v in _status(kubectl, namespace).get("versions", [])
        ),
        timeout=120,
        what="the shadow version to be ready",
    )
    before = _pod_requests(kubectl, namespace, versions["v1"])
    with _load(url, records) as load:
        time.sleep(10)
    time.sleep(2)
    copies = _pod_requests(kubectl, namespace, versions["v1"]) - before
    sent = len(load.outcomes)
    assert load.failures() == []
    assert {o.version for o in load.outcomes} == {versions["v2"]}
    # Fire-and-forget copies may be dropped under pressure (counted), never most of them.
    assert copies >= 0.9 * sent, (copies, sent)

    # The CLI's promote writes spec.promote: <candidate>, as a GitOps commit would.
    cli = [sys.executable, "-m", "kubeloop", "rollout"]
    where = [DEPLOYMENT, "-n", namespace, "--kubeconfig", str(cluster.kubeconfig)]
    promoted = subprocess.run(
        [*cli, "promote", *where], capture_output=True, text=True, check=False, timeout=60
    )
    assert promoted.returncode == 0, promoted.stderr
    assert f"spec.promote={versions['v1']}" in promoted.stdout
    wait_until(
        lambda: _status(kubectl, namespace).get("stableVersion") == versions["v1"],
        timeout=60,
        what="the promoted shadow to become stable",
    )
    shown = subprocess.run(
        [*cli, "status", *where], capture_output=True, text=True, check=False, timeout=60
    )
    assert f"stable {versions['v1']}" in shown.stdout, shown.stdout


def _pod_requests(kubectl: Kubectl, namespace: str, version: str) -> float:
    """Sum of the version's pods' predict requests, scraped from the pods themselves."""
    pods = kubectl.json(
        "get", "pods", "-n", namespace, "-l", f"kubeloop.io/modelversion={version}"
    )["items"]
    ips = [
        pod["status"]["podIP"]
        for pod in pods
        if pod["status"].get("podIP") and not pod["metadata"].get("deletionTimestamp")
    ]
    return _metric_sum(ips, 8080, "kubeloop_serve_requests_total{", 'endpoint="predict"')


def _metric_sum(ips: list[str], port: int, prefix: str, contains: str = "") -> float:
    """The sum over ``ips`` of the samples whose line starts with ``prefix`` (and has ``contains``)."""
    total = 0.0
    for ip in ips:
        text = httpx.get(f"http://{ip}:{port}/metrics", timeout=5).text
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(prefix) and contains in line
        )
    return total


NFT_PARTITION = """
table inet kubeloop_test_partition {
    chain input {
        type filter hook input priority -10; policy accept;
        ip saddr 10.88.0.0/16 ip saddr != 10.88.0.1 tcp dport 6443 reject with tcp reset
    }
}
"""


def test_the_router_keeps_serving_while_the_api_server_is_unreachable(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    """Pods cut off from the API server for 20 s (an nftables partition): no request fails."""
    namespace = operator_namespace
    url = _endpoint(kubectl, namespace)
    stable = _status(kubectl, namespace)["stableVersion"]
    routers = kubectl.json(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=router"
    )["items"]
    router_ips = [p["status"]["podIP"] for p in routers if p["status"].get("podIP")]
    assert router_ips
    before = _router_api_errors(router_ips)
    with _load(url, versions["records"]) as load:
        time.sleep(2)
        cut_at = load.now()
        subprocess.run(["nft", "-f", "-"], input=NFT_PARTITION, text=True, check=True)
        try:
            # A change the routers' watches carry: their answer to it hits the partition.
            kubectl.ok(
                "annotate",
                "deployments.kubeloop.io",
                DEPLOYMENT,
                "-n",
                namespace,
                f"kubeloop.io/test-touch={time.time()}",
                "--overwrite",
            )
            time.sleep(20)
            during_errors = _router_api_errors(router_ips)
        finally:
            subprocess.run(
                ["nft", "delete", "table", "inet", "kubeloop_test_partition"], check=True
            )
        healed_at = load.now()
        time.sleep(3)
    assert load.failures() == [], load.failures()[:5]
    during = load.window(cut_at + 1, healed_at)
    assert len(during) > 0.8 * LOAD_RATE * 19, len(during)
    assert {o.version for o in during} == {stable}
    # The routers saw their API calls fail (counted) and kept serving the last good config.
    assert during_errors > before, (before, during_errors)


def _router_api_errors(ips: list[str]) -> float:
    return _metric_sum(ips, 9090, "kubeloop_router_api_errors_total")


def test_following_production_rolls_out_a_newly_promoted_version_by_itself(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    """``model.track: {model, stage: Production}``: promoting v2 in the registry is the release.

    The Deployment also asks for an HPA and a PodDisruptionBudget per version: the API server
    accepts both and they follow the live versions.
    """
    namespace = operator_namespace
    kubectl.ok(
        "patch", "modelversion", versions["v1"], "-n", namespace,
        "--type=merge", "-p", '{"spec":{"stage":"Production"}}',
    )  # fmt: skip
    tracking = _deployment(versions["v1"])
    tracking["spec"]["model"] = {"track": {"model": "churn", "stage": "Production"}}
    tracking["spec"]["minAvailable"] = 1
    tracking["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2}
    kubectl.apply(namespace, tracking)
    url = _endpoint(kubectl, namespace)
    wait_until(
        lambda: _status(kubectl, namespace).get("stableVersion") == versions["v1"],
        timeout=120,
        what="the tracked Production version to be stable",
    )
    with _load(url, versions["records"]) as load:
        time.sleep(2)
        kubectl.ok(
            "patch", "modelversion", versions["v2"], "-n", namespace,
            "--type=merge", "-p", '{"spec":{"stage":"Production"}}',
        )  # fmt: skip
        _watch(kubectl, namespace, load, _serves(versions["v2"]), timeout=240)
    assert load.failures() == [], load.failures()[:5]
    assert {o.version for o in load.outcomes} == {versions["v1"], versions["v2"]}
    status = _status(kubectl, namespace)
    assert any(run["candidate"] == versions["v2"] for run in status["analysis"])
    selector = f"kubeloop.io/deployment={DEPLOYMENT},kubeloop.io/modelversion={versions['v2']}"
    hpas = kubectl.json("get", "hpa", "-n", namespace, "-l", selector)["items"]
    pdbs = kubectl.json("get", "pdb", "-n", namespace, "-l", selector)["items"]
    assert [h["spec"]["maxReplicas"] for h in hpas] == [2]
    assert [p["spec"]["minAvailable"] for p in pdbs] == [1]


# Judged on feedback alone: the flipped copy passes every traffic check.
LIVE_ACCURACY_ANALYSIS = {
    "interval": "5s",
    "minRequests": 20,
    "minLiveAccuracy": 0.6,
    "minFeedback": 30,
    "maxInconclusive": 50,
}


def _roll_out_flipped_with_feedback(
    kubectl: Kubectl, namespace: str, versions: dict[str, Any], strategy: dict[str, Any]
) -> tuple[SteadyLoad, str, dict[str, Any]]:
    """The flipped copy rolled out with ``strategy`` under a load with feedback, until RolledBack.

    Two replicas per version; every prediction is followed by its feedback. Returns the load,
    the stable version before, and the final status.
    """
    url = _endpoint(kubectl, namespace)
    stable = str(_status(kubectl, namespace)["stableVersion"])
    records = versions["records"]
    truths = [str(value) for value in versions["test_set"]["churned"]]  # the Dataset's target
    deployment = _deployment(versions["flipped"], **strategy)
    deployment["spec"]["replicas"] = 2
    load = SteadyLoad(
        f"{url}/predict",
        lambda i: {"records": [records[i % len(records)]]},
        rate=LOAD_RATE,
        feedback=lambda i, request_id: {"request_id": request_id, "label": truths[i % len(truths)]},
    )
    with load:
        time.sleep(2)
        kubectl.apply(namespace, deployment)
        seen = _watch(
            kubectl, namespace, load, lambda s: s.get("phase") == "RolledBack", timeout=240
        )
        time.sleep(2)
    status = seen[-1][1]
    assert status["stableVersion"] == stable
    assert load.failures() == [], load.failures()[:5]
    failed = [r for r in status["analysis"][-1]["results"] if r["verdict"] == "Fail"]
    assert [r["check"] for r in failed] == ["liveAccuracy"], failed
    assert failed[0]["candidate"] < 0.5 and failed[0]["threshold"] == 0.6, failed
    return load, stable, status


def test_feedback_reaches_the_version_that_answered_and_a_wrong_canary_is_rolled_back(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    """A copy of v1 answering the other class passes every traffic check; live accuracy fails it.

    Every prediction is followed by its feedback (the true label) through the router, with the
    answer's ``x-request-id`` and ``x-kubeloop-version``. Two replicas per version: the router
    must pick the version *and* the pod that made the prediction for the server to match it.
    """
    canary = {
        "type": "Canary",
        "canary": {
            "steps": [{"weight": 50, "pause": "60s"}, {"weight": 100, "pause": "0s"}],
            "scaleDownDelay": "5s",
            "analysis": {**LIVE_ACCURACY_ANALYSIS, "maxErrorRate": 0.01},
        },
    }
    load, stable, status = _roll_out_flipped_with_feedback(
        kubectl, operator_namespace, versions, canary
    )
    assert {o.version for o in load.outcomes} == {stable, versions["flipped"]}
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "accuracy" in degraded["message"].lower(), degraded
    # Feedback went to the version named and met the prediction on its pod: matched.
    answers = load.feedback_answers
    assert answers and all(code == httpx.codes.OK for code, _, _ in answers), answers[:3]
    assert {version for _, version, _ in answers} == {stable, versions["flipped"]}
    matched = sum(body["matched"] for _, _, body in answers)
    items = sum(body["matched"] + body["unmatched"] for _, _, body in answers)
    assert matched >= 0.98 * items, (matched, items)


def test_a_wrong_shadow_is_caught_by_feedback_copied_to_it(
    kubectl: Kubectl, operator_namespace: str, versions: dict[str, Any]
) -> None:
    """The flipped copy as a shadow: clients never see it; the feedback copies convict it.

    The router copies every prediction and every feedback to the shadow; the replayer sends a
    feedback copy to the shadow pod that got the prediction's copy (two replicas), so the
    shadow's live accuracy is measured on the same traffic as stable's.
    """
    shadow = {
        "type": "Shadow",
        "shadow": {
            "percent": 100,
            "duration": "10m",
            "promote": True,
            "analysis": LIVE_ACCURACY_ANALYSIS,
        },
    }
    load, stable, _ = _roll_out_flipped_with_feedback(kubectl, operator_namespace, versions, shadow)
    assert {o.version for o in load.outcomes} == {stable}  # users never saw the shadow


def test_a_regression_model_canaries_to_full_traffic_with_feedback(
    kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint, versions: dict[str, Any]
) -> None:
    """A regressor (``charges``) served, canaried 50 -> 100 under load, fed back its true values."""
    namespace = operator_namespace
    # Its router and servers would only take CPU from this rollout's.
    kubectl.ok(
        "delete", "deployments.kubeloop.io", DEPLOYMENT, "-n", namespace, "--ignore-not-found"
    )
    dataset = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "charges"},
        "spec": {"source": {"uri": f"s3://{DATA_BUCKET}/churn/serving.csv"}, "target": "charges"},
    }
    kubectl.apply(namespace, dataset)
    forest = "RandomForestRegressor"
    first = _train(kubectl, namespace, "charges-a", {"n_estimators": 20, "max_depth": 4},
                   dataset="charges", estimator=forest)  # fmt: skip
    second = _train(kubectl, namespace, "charges-b", {"n_estimators": 30, "max_depth": 5},
                    dataset="charges", estimator=forest)  # fmt: skip
    mv = _validated(kubectl, namespace, first)
    assert mv["status"]["phase"] == "Validated"
    assert _validated(kubectl, namespace, second)["status"]["phase"] == "Validated"
    test_set = io.BytesIO()
    with ObjectStore(s3.settings()) as store:
        prefix = mv["spec"]["artifact"]["uri"].rsplit("/", 1)[0]
        store.download(S3Uri.parse(f"{prefix}/test-set.parquet"), test_set)
    frame = pd.read_parquet(io.BytesIO(test_set.getvalue()))
    records = _records(frame, mv["spec"]["signature"])
    truths = [float(value) for value in frame["charges"]]

    deployment = _deployment(first)
    deployment["metadata"]["name"] = "charges"
    deployment["spec"]["strategy"]["canary"]["steps"] = [
        {"weight": 50, "pause": "15s"},
        {"weight": 100, "pause": "0s"},
    ]
    kubectl.apply(namespace, deployment)
    url = _endpoint(kubectl, namespace, "charges")
    assert _status(kubectl, namespace, "charges")["stableVersion"] == first
    response = _first_answer(url, records[:100], "a 200 from the regressor through the router")
    served = [p["value"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(served, frame["kubeloop:prediction"].head(100), rtol=1e-5)

    load = SteadyLoad(
        f"{url}/predict",
        lambda i: {"records": [records[i % len(records)]]},
        rate=100.0,
        feedback=lambda i, request_id: {"request_id": request_id, "value": truths[i % len(truths)]},
    )
    with load:
        time.sleep(2)
        deployment["spec"]["model"] = {"version": second}
        kubectl.apply(namespace, deployment)
        _watch(kubectl, namespace, load, _serves(second), timeout=240, name="charges")
    assert load.failures() == [], load.failures()[:5]
    assert {o.version for o in load.outcomes} == {first, second}
    status = _status(kubectl, namespace, "charges")
    divergences = [
        result["candidate"]
        for run in status["analysis"]
        if run["candidate"] == second
        for result in run["results"]
        if result["check"] == "predictionDivergence" and result["verdict"] == "Pass"
    ]
    assert divergences and all(0 <= value <= 0.5 for value in divergences), status["analysis"]
    answers = load.feedback_answers
    assert answers and all(code == httpx.codes.OK for code, _, _ in answers), answers[:3]
    matched = sum(body["matched"] for _, _, body in answers)
    assert matched >= 0.98 * len(answers), (matched, len(answers))
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", f"kubeloop.io/modelversion={second}")[
        "items"
    ]
    ips = [p["status"]["podIP"] for p in pods if p["status"].get("podIP")]
    errors = _metric_sum(ips, 8080, "kubeloop_serve_feedback_abs_error_count")
    assert errors > 0, "the regressor's feedback never reached its absolute-error histogram"
