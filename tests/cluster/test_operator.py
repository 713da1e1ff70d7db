"""The operator on the real cluster, with workloads on the process node and S3 in SeaweedFS.

Dataset: a profiling Job's answer becomes the status; bad new data is Invalid and the last
good version stays. TrainingRun: one Indexed Job runs a random search; the trials table and
the best trial come from the trainer pods' own answers; a bad parameter fails the run with
the trainer's reason.
"""

from __future__ import annotations

import io
import json
import os
import urllib.request
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.cluster.conftest import Kubectl, wait_until
from tests.cluster.operator_fixtures import DATA_BUCKET, OPERATORS

from kubeloop.devenv.demo import churn_csv, iris_csv
from kubeloop.devenv.seaweedfs import S3Endpoint
from kubeloop.storage import ObjectStore, S3Uri

pytestmark = pytest.mark.cluster


def _dataset(uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "iris"},
        "spec": {"source": {"uri": uri}, "target": "species", "validation": {"minRows": 100}},
    }


def test_dataset_becomes_ready_then_bad_data_is_invalid_and_last_good_kept(
    kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint
) -> None:
    namespace = operator_namespace
    good_uri = f"s3://{DATA_BUCKET}/iris/iris.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(iris_csv(), S3Uri.parse(good_uri), content_type="text/csv")
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(_dataset(good_uri)))

    ready = wait_until(
        lambda: (s := _status_of(kubectl, namespace, "iris")).get("phase") == "Ready" and s,
        timeout=180,
        what="Dataset iris Ready",
    )
    version = ready["version"]
    assert version.startswith("sha256:")
    assert ready["rows"] == 150
    assert {c["name"] for c in ready["columns"]} >= {"petal_length", "species"}
    with ObjectStore(s3.settings()) as store:
        assert store.exists(S3Uri.parse(ready["profileURI"]))
        assert store.exists(S3Uri.parse(ready["snapshotURI"]))

    # New content where a numeric column turned into text: Invalid, column named, v1 kept.
    frame = pd.read_csv(io.BytesIO(iris_csv()))
    frame["petal_length"] = frame["petal_length"].map(lambda value: f"{value} cm")
    bad_uri = f"s3://{DATA_BUCKET}/iris/iris-v2.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(
            frame.to_csv(index=False).encode(), S3Uri.parse(bad_uri), content_type="text/csv"
        )
    kubectl.ok(
        "patch", "datasets.kubeloop.io", "iris", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"source": {"uri": bad_uri}}}),
    )  # fmt: skip
    invalid = wait_until(
        lambda: (s := _status_of(kubectl, namespace, "iris")).get("phase") == "Invalid" and s,
        timeout=180,
        what="Dataset iris Invalid",
    )
    assert "petal_length" in invalid["message"]
    assert invalid["version"] == version  # the last good version stays usable
    conditions = {c["type"]: c for c in invalid["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Validated"]["status"] == "False"

    jobs = kubectl.json("get", "jobs", "-n", namespace, "-l", "kubeloop.io/dataset=iris")["items"]
    assert sorted(job["metadata"]["name"] for job in jobs) == ["iris-profile-g1", "iris-profile-g2"]
    events = kubectl.ok(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=iris"
    )
    assert "Profiling" in events


def _run(name: str, params: dict[str, Any], search: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "datasetRef": {"name": "churn"},
        "modelName": "churn",
        "estimator": {"name": "RandomForestClassifier", "params": params},
        "seed": 11,
    }
    if search is not None:
        spec["search"] = search
    return {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": spec,
    }


def _wait_run_end(kubectl: Kubectl, namespace: str, name: str, *, timeout: float) -> dict[str, Any]:
    """Wait until TrainingRun ``name`` has Succeeded or Failed; return its status."""
    status: dict[str, Any] = wait_until(
        lambda: (
            (s := _run_status(kubectl, namespace, name)).get("phase") in ("Succeeded", "Failed")
            and s
        ),
        timeout=timeout,
        interval=2,
        what=f"TrainingRun {name} to finish",
    )
    return status


def _run_status(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        kubectl.json("get", "trainingruns", name, "-n", namespace).get("status") or {}
    )
    return status


def test_trainingrun_searches_in_one_indexed_job_and_reports_the_best_trial(
    kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint
) -> None:
    namespace = operator_namespace
    uri = f"s3://{DATA_BUCKET}/churn/churn.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(churn_csv(rows=600), S3Uri.parse(uri), content_type="text/csv")
    dataset = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "churn"},
        "spec": {"source": {"uri": uri}, "target": "churned", "sliceColumns": ["region"]},
    }
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(dataset))
    search = {
        "strategy": "random",
        "trials": 6,
        "parallelism": 2,
        "metric": "f1",
        "space": {
            "n_estimators": {"range": {"min": 10, "max": 40, "integer": True}},
            "max_depth": {"values": [3, 5, 8]},
        },
    }
    kubectl.ok(
        "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(_run("churn-search", {}, search))
    )
    done = _wait_run_end(kubectl, namespace, "churn-search", timeout=420)
    assert done["phase"] == "Succeeded", done
    dataset_version = kubectl.json("get", "datasets.kubeloop.io", "churn", "-n", namespace)[
        "status"
    ]["version"]
    assert done["datasetVersion"] == dataset_version
    assert done["trials"]["total"] == 6 and done["trials"]["succeeded"] == 6
    assert sorted(t["index"] for t in done["trialResults"]) == list(range(6))
    scores = {t["index"]: t["score"] for t in done["trialResults"]}
    assert done["bestScore"] == max(scores.values())
    assert scores[done["bestTrial"]] == done["bestScore"]
    best = next(t for t in done["trialResults"] if t["index"] == done["bestTrial"])
    assert set(best["params"]) >= {"n_estimators", "max_depth"}
    assert best["artifactURI"].endswith(
        f"/runs/{namespace}/churn-search/trials/{done['bestTrial']}/"
    )
    with ObjectStore(s3.settings()) as store:
        for artifact in (
            "model.onnx",
            "metrics.json",
            "signature.json",
            "model-card.md",
            "report.html",
        ):
            assert store.exists(S3Uri.parse(best["artifactURI"] + artifact)), artifact
    # The winner is registered as churn-v1, exactly once, with facts read back from S3.
    registered = wait_until(
        lambda: _run_status(kubectl, namespace, "churn-search").get("modelVersion"),
        timeout=60,
        what="the ModelVersion of churn-search",
    )
    assert registered == "churn-v1"
    mv = kubectl.json("get", "modelversions", "churn-v1", "-n", namespace)
    assert mv["spec"]["model"] == "churn" and mv["spec"]["version"] == 1
    assert mv["spec"]["artifact"]["uri"] == best["artifactURI"] + "model.onnx"
    assert mv["spec"]["artifact"]["format"] == "onnx"
    assert mv["spec"]["lineage"]["datasetVersion"] == dataset_version
    assert mv["spec"]["lineage"]["trainingRun"] == "churn-search"
    assert mv["spec"]["lineage"]["trial"] == done["bestTrial"]
    assert mv["spec"]["metrics"]["f1"] == pytest.approx(best["metrics"]["f1"])
    inputs = {i["name"] for i in mv["spec"]["signature"]["inputs"]}
    assert inputs == {"tenure", "charges", "plan", "region"}
    with ObjectStore(s3.settings()) as store:
        stored = store.stat(S3Uri.parse(mv["spec"]["artifact"]["uri"])).sha256
    assert stored == mv["spec"]["artifact"]["sha256"]
    mvs = kubectl.json("get", "modelversions", "-n", namespace, "-l", "kubeloop.io/model=churn")
    assert len(mvs["items"]) == 1
    jobs = kubectl.json(
        "get", "jobs", "-n", namespace, "-l", "kubeloop.io/trainingrun=churn-search"
    )["items"]
    assert [job["metadata"]["name"] for job in jobs] == ["churn-search-train"]
    assert jobs[0]["spec"]["completionMode"] == "Indexed" and jobs[0]["spec"]["parallelism"] == 2


def test_trainingrun_failure_carries_the_trainers_reason(
    kubectl: Kubectl, operator_namespace: str
) -> None:
    namespace = operator_namespace
    wait_until(
        lambda: _status_of(kubectl, namespace, "churn").get("phase") == "Ready",
        timeout=180,
        what="Dataset churn Ready (made by the previous test)",
    )
    # Each value passes admission (n_estimators: -5 is refused there now); only the
    # combination is refused, by scikit-learn when the trainer fits.
    bad = _run("churn-bad-param", {"solver": "newton-cg", "l1_ratio": 1.0}, None)
    bad["spec"]["estimator"]["name"] = "LogisticRegression"
    bad["spec"]["backoffLimit"] = 0
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(bad))
    done = _wait_run_end(kubectl, namespace, "churn-bad-param", timeout=240)
    assert done["phase"] == "Failed"
    assert "supports only 'l2'" in done["message"], done["message"]


def _status_of(kubectl: Kubectl, namespace: str, dataset: str) -> dict[str, Any]:
    status: dict[str, Any] = (
        kubectl.json("get", "datasets.kubeloop.io", dataset, "-n", namespace).get("status") or {}
    )
    return status


def _mv(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    body: dict[str, Any] = kubectl.json("get", "modelversions", name, "-n", namespace)
    return body


def _finished_run(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: (s := _run_status(kubectl, namespace, name)).get("modelVersion") and s,
        timeout=300,
        interval=2,
        what=f"TrainingRun {name} to register its model",
    )


def test_gates_reject_with_numbers_and_promotion_archives_the_previous_production(
    kubectl: Kubectl, operator_namespace: str
) -> None:
    namespace = operator_namespace
    first = wait_until(
        lambda: (
            _mv(kubectl, namespace, "churn-v1").get("status", {}).get("phase")
            in ("Validated", "Rejected")
            and _mv(kubectl, namespace, "churn-v1")
        ),
        timeout=60,
        what="gates of churn-v1",
    )
    assert first["status"]["phase"] == "Validated"  # no gates declared on churn-search

    strict = _run("churn-strict", {"n_estimators": 20}, None)
    strict["spec"]["gates"] = {"thresholds": [{"metric": "f1", "min": 0.99}]}
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(strict))
    name = _finished_run(kubectl, namespace, "churn-strict")["modelVersion"]
    assert name == "churn-v2"
    rejected = wait_until(
        lambda: (mv := _mv(kubectl, namespace, name)).get("status", {}).get("phase") and mv,
        timeout=60,
        what="gates of churn-v2",
    )
    assert rejected["status"]["phase"] == "Rejected"
    (gate,) = rejected["status"]["gateResults"]
    assert gate["threshold"] == 0.99 and gate["passed"] is False
    assert gate["observed"] == pytest.approx(rejected["spec"]["metrics"]["f1"])
    assert "misses >= 0.99" in rejected["status"]["message"]

    # The admission webhook refuses to promote a Rejected version, in the user's terminal.
    refused = kubectl.run(
        "patch",
        "modelversion",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"stage":"Production"}}',
    )
    assert refused.returncode != 0
    assert "churn-v2 is Rejected, not Validated" in refused.stderr, refused.stderr
    assert _mv(kubectl, namespace, name)["spec"]["stage"] == "None"

    kubectl.ok(
        "patch",
        "modelversion",
        "churn-v1",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"stage":"Production"}}',
    )
    # Trained while churn-v1 is Production: every trial scores churn-v1 on its own test rows.
    challenger = _run("churn-next", {"n_estimators": 15}, None)
    challenger["spec"]["gates"] = {"champion": {"metric": "f1", "minImprovement": -1.0}}
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(challenger))
    successor = _finished_run(kubectl, namespace, "churn-next")["modelVersion"]
    assert successor == "churn-v3"
    validated = wait_until(
        lambda: (
            (mv := _mv(kubectl, namespace, successor)).get("status", {}).get("phase") == "Validated"
            and mv
        ),
        timeout=60,
        what="churn-v3 Validated",
    )
    score = validated["spec"]["championScore"]
    assert score["name"] == "churn-v1" and score["rows"] > 0 and "f1" in score["metrics"]
    (champion_gate,) = validated["status"]["gateResults"]
    assert champion_gate["threshold"] == pytest.approx(score["metrics"]["f1"])
    assert "both on this version's test set" in champion_gate["message"]
    kubectl.ok(
        "patch",
        "modelversion",
        successor,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"stage":"Production"}}',
    )
    archived = wait_until(
        lambda: (mv := _mv(kubectl, namespace, "churn-v1"))["spec"]["stage"] == "Archived" and mv,
        timeout=60,
        what="churn-v1 archived after churn-v3's promotion",
    )
    history = wait_until(
        lambda: _mv(kubectl, namespace, successor).get("status", {}).get("stageHistory"),
        timeout=30,
        what="stage history of churn-v3",
    )
    assert history[-1]["stage"] == "Production" and history[-1]["previous"] == "None"
    # The user as the API server authenticated them (the admin client certificate's CN).
    assert history[-1]["changedBy"] == "kubeloop-admin"
    assert archived["status"]["stage"] in ("Production", "Archived")
    followed = wait_until(
        lambda: _mv(kubectl, namespace, "churn-v1").get("status", {}).get("stage") == "Archived",
        timeout=30,
        what="churn-v1's status to record the archiving",
    )
    assert followed is True
    productions = [
        mv["metadata"]["name"]
        for mv in kubectl.json(
            "get", "modelversions", "-n", namespace, "-l", "kubeloop.io/model=churn"
        )["items"]
        if mv["spec"]["stage"] == "Production"
    ]
    assert productions == ["churn-v3"]


def test_a_model_version_whose_artifact_has_another_digest_is_rejected(
    kubectl: Kubectl, operator_namespace: str
) -> None:
    namespace = operator_namespace
    original = _mv(kubectl, namespace, "churn-v1")
    assert original["status"]["artifactVerified"] is True  # re-read from S3 by the operator
    forged = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": "churn-v90", "labels": {"kubeloop.io/model": "churn-forged"}},
        "spec": {
            **{k: v for k, v in original["spec"].items() if k not in ("stage", "championScore")},
            "model": "churn-forged",
            "version": 90,
            "artifact": {**original["spec"]["artifact"], "sha256": "0" * 64},
        },
    }
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(forged))
    rejected = wait_until(
        lambda: (mv := _mv(kubectl, namespace, "churn-v90")).get("status", {}).get("phase") and mv,
        timeout=60,
        what="gates of churn-v90",
    )
    assert rejected["status"]["phase"] == "Rejected"
    assert rejected["status"]["artifactVerified"] is False
    assert rejected["status"]["message"].startswith("artifact not verified: ")
    assert original["spec"]["artifact"]["sha256"] in rejected["status"]["message"]


def test_operator_killed_mid_training_makes_exactly_one_job_and_one_model_version(
    kubectl: Kubectl, operator_namespace: str
) -> None:
    namespace = operator_namespace
    search = {
        "strategy": "random",
        "trials": 4,
        "parallelism": 1,
        "metric": "f1",
        "space": {"max_depth": {"values": [2, 3, 4, 5]}},
    }
    kubectl.ok(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=yaml.safe_dump(_run("churn-restart", {"n_estimators": 10}, search)),
    )
    wait_until(
        lambda: kubectl.json("get", "pods", "-n", namespace, "-l", "job-name=churn-restart-train")[
            "items"
        ],
        timeout=60,
        what="the first trial pod",
    )
    operator = OPERATORS[namespace]
    operator.kill()  # while the Job runs
    operator.start()
    done = _finished_run(kubectl, namespace, "churn-restart")
    assert done["phase"] == "Succeeded"
    assert done["trials"]["succeeded"] == 4
    jobs = kubectl.json(
        "get", "jobs", "-n", namespace, "-l", "kubeloop.io/trainingrun=churn-restart"
    )["items"]
    assert [job["metadata"]["name"] for job in jobs] == ["churn-restart-train"]
    versions = kubectl.json(
        "get", "modelversions", "-n", namespace, "-l", "kubeloop.io/trainingrun=churn-restart"
    )
    assert [mv["metadata"]["name"] for mv in versions["items"]] == [done["modelVersion"]]


def test_operator_metrics_count_reconciles_and_objects_by_phase(operator_namespace: str) -> None:
    port = OPERATORS[operator_namespace].metrics_port
    text = wait_until(
        lambda: _metrics_text(port),
        timeout=30,
        what="the operator's /metrics",
    )
    assert (
        'kubeloop_reconcile_total{handler="start_training",kind="TrainingRun",result="ok"}' in text
    )
    assert 'kubeloop_reconcile_duration_seconds_count{kind="Dataset"}' in text
    assert 'kubeloop_objects{kind="TrainingRun",phase="Succeeded"}' in text
    # churn-v2 (its gate) and churn-v90 (its forged digest)
    assert 'kubeloop_objects{kind="ModelVersion",phase="Rejected"} 2.0' in text


def _metrics_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def test_refresh_interval_turns_new_content_into_a_new_version(
    kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint
) -> None:
    namespace = operator_namespace
    uri = f"s3://{DATA_BUCKET}/iris/live.csv"
    with ObjectStore(s3.settings()) as store:
        store.upload(iris_csv(), S3Uri.parse(uri), content_type="text/csv")
    dataset = _dataset(uri)
    dataset["metadata"]["name"] = "iris-live"
    dataset["spec"]["refreshInterval"] = "2s"
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(dataset))
    first = wait_until(
        lambda: (s := _status_of(kubectl, namespace, "iris-live")).get("phase") == "Ready" and s,
        timeout=120,
        what="iris-live Ready",
    )
    # New rows at the same key: the next refresh profiles them into a new version.
    frame = pd.read_csv(io.BytesIO(iris_csv()))
    grown = pd.concat([frame, frame.head(30)], ignore_index=True)
    with ObjectStore(s3.settings()) as store:
        store.upload(grown.to_csv(index=False).encode(), S3Uri.parse(uri), content_type="text/csv")
    second = wait_until(
        lambda: (
            (s := _status_of(kubectl, namespace, "iris-live")).get("version")
            not in (None, first["version"])
            and s
        ),
        timeout=120,
        what="a new version of iris-live after its refresh",
    )
    assert second["rows"] == 180
    assert [entry["version"] for entry in second["history"]] == [
        second["version"],
        first["version"],
    ]
    assert second["refreshCount"] >= 1


def test_random_bytes_or_a_missing_object_end_invalid_with_the_cause(
    kubectl: Kubectl, operator_namespace: str, s3: S3Endpoint
) -> None:
    namespace = operator_namespace
    noise = os.urandom(200_000)
    with ObjectStore(s3.settings()) as store:
        for key in ("noise.csv", "noise.parquet"):
            store.upload(noise, S3Uri(DATA_BUCKET, f"bad/{key}"))
    cases = {
        "noise-csv": (f"s3://{DATA_BUCKET}/bad/noise.csv", "UnreadableSource", "binary data"),
        "noise-parquet": (f"s3://{DATA_BUCKET}/bad/noise.parquet", "UnreadableSource", "PARQUET"),
        "absent": (f"s3://{DATA_BUCKET}/bad/absent.csv", "SourceNotFound", "does not exist"),
    }
    for name, (uri, _, _) in cases.items():
        dataset = _dataset(uri)
        dataset["metadata"]["name"] = name
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(dataset))
    for name, (uri, reason, cause) in cases.items():
        status = wait_until(
            _phase_is(kubectl, namespace, name, "Invalid"),
            timeout=120,
            what=f"Dataset {name} Invalid",
        )
        assert status["message"].startswith(f"{reason}: "), status
        assert cause in status["message"] and uri in status["message"], status
        assert status["message"].isprintable(), status["message"]
        validated = {c["type"]: c for c in status["conditions"]}["Validated"]
        assert (validated["status"], validated["reason"]) == ("False", reason)
        assert _warnings(kubectl, namespace, name, reason) == 1

    # A restarted operator sees the finished profiling Jobs again: their answers are already
    # in the status and must not be applied (nor announced) twice.
    OPERATORS[namespace].kill()
    OPERATORS[namespace].start()
    marker = _dataset(f"s3://{DATA_BUCKET}/bad/absent-after-restart.csv")
    marker["metadata"]["name"] = "absent-after-restart"
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(marker))
    # The restarted operator lists every Job before it handles the new Dataset's Job.
    wait_until(
        _phase_is(kubectl, namespace, "absent-after-restart", "Invalid"),
        timeout=120,
        what="a Dataset made after the restart Invalid",
    )
    for name, (_, reason, _) in cases.items():
        assert _warnings(kubectl, namespace, name, reason) == 1, name


def _warnings(kubectl: Kubectl, namespace: str, dataset: str, reason: str) -> int:
    """How many times ``reason`` was announced for ``dataset`` (Events count repeats)."""
    events = json.loads(
        kubectl.ok(
            "get",
            "events",
            "-n",
            namespace,
            "-o",
            "json",
            "--field-selector",
            f"involvedObject.name={dataset},reason={reason}",
        )
    )["items"]
    return sum(int(event.get("count") or 1) for event in events)


def _phase_is(
    kubectl: Kubectl, namespace: str, dataset: str, phase: str
) -> Callable[[], dict[str, Any] | None]:
    """A probe for wait_until: the Dataset's status once it has ``phase``."""

    def probe() -> dict[str, Any] | None:
        status = _status_of(kubectl, namespace, dataset)
        return status if status.get("phase") == phase else None

    return probe
