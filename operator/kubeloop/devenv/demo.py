"""``make demo``: the whole loop on the local stack, with nothing to set up.

It brings up the local Kubernetes cluster (built from Go modules on first use), installs the
CRDs, applies every example and shows bad input refused by the API server; then it runs the
first half of the loop for real: SeaweedFS on the cluster bridge, the operator, a demo
dataset uploaded, a Dataset profiled, a TrainingRun searching in one Indexed Job on the
process node, and the new ModelVersion with its metrics, gates and report; then the second
half (``demo_serving.py``): the model served behind the router, predictions through it, and
a canary of a second version to 100 % under load; and last the loop itself
(``demo_loop.py``): drift on live traffic, the retrain it starts, its promotion and canary.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.datasets import load_iris

from kubeloop.devenv import drift_data
from kubeloop.devenv.cluster import ClusterConfig, LocalCluster
from kubeloop.devenv.demo_loop import run_loop_demo
from kubeloop.devenv.demo_serving import router_url, run_serving_demo
from kubeloop.devenv.pki import ClusterPKI
from kubeloop.devenv.runtime import ensure_runtime
from kubeloop.devenv.seaweedfs import S3Endpoint, s3_up
from kubeloop.storage import ObjectStore, S3Uri

DEMO_BUCKET = "kubeloop-demo"
DEMO_NAMESPACE = "kubeloop-demo"
EXAMPLES_NAMESPACE = "kubeloop-examples"
DEMO_S3_DIR = "s3-cluster"  # under the run dir; its SeaweedFS is bound to the cluster bridge
CHURN_URI = f"s3://{DEMO_BUCKET}/churn/churn.csv"
IRIS_A_URI = f"s3://{DEMO_BUCKET}/iris/iris-a.csv"
_REPO = Path(__file__).resolve().parents[3]
_WAIT_SECONDS = 900


def iris_csv() -> bytes:
    """The iris data set (shipped inside scikit-learn) as the CSV the examples expect."""
    frame = load_iris(as_frame=True).frame
    frame.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    frame["species"] = frame["species"].map(dict(enumerate(load_iris().target_names)))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def churn_csv(rows: int = 2000, seed: int = 7) -> bytes:
    """A synthetic customer-churn table: numeric and categorical features, a region to slice by."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 20, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    region = rng.choice(["north", "south"], rows)
    logit = -1.5 + 0.04 * (70 - tenure) + 0.02 * (charges - 70) + (plan == "basic") * 0.8
    churned = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "yes", "no")
    frame = pd.DataFrame(
        {"tenure": tenure, "charges": charges, "plan": plan, "region": region, "churned": churned}
    )
    text: str = frame.to_csv(index=False)
    return text.encode()


def _say(title: str) -> None:
    print(f"\n== {title}", flush=True)


class _Kubectl:
    def __init__(self, cluster: LocalCluster) -> None:
        self._cluster = cluster

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(  # noqa: S603 - our kubectl, our arguments
            self._cluster.kubectl_command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        return (result.stdout + result.stderr).rstrip()

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


def _start_operator(state_dir: Path, kubeconfig: Path, endpoint: S3Endpoint, kubeloop: Path) -> int:
    """Start ``kubeloop operator`` detached and return its pid.

    An operator left by an earlier run is stopped first, not reused: it would run the code
    of that earlier checkout, and a change made since would not show in the demo.
    """
    pid_file = state_dir / "operator.pid"
    if pid_file.exists():
        old = int(pid_file.read_text().split()[0])
        if stop_operator(state_dir):
            _wait_for_exit(old)
    env = {
        **os.environ,
        **endpoint.env(),
        "KUBECONFIG": str(kubeconfig),
        "KUBELOOP_NAMESPACES": json.dumps([DEMO_NAMESPACE]),
        "KUBELOOP_WORKLOAD_COMMAND": json.dumps([str(kubeloop)]),
        "KUBELOOP_WORKLOAD_S3_ENDPOINT": endpoint.url,
        "KUBELOOP_ARTIFACT_BUCKET": endpoint.bucket,
        "KUBELOOP_METRICS_PORT": "0",
        **_webhook_env(state_dir),
    }
    with (state_dir / "operator.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubeloop", "operator"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    return process.pid


def _webhook_env(state_dir: Path) -> dict[str, str]:
    """The admission webhook on the bridge, with a certificate from the cluster's CA."""
    config = ClusterConfig(state_dir=state_dir / "cluster")
    pki = ClusterPKI(config.state_dir / "pki")
    pair = pki.serving(
        "operator-webhook",
        "kubeloop-operator",
        dns_names=("kubeloop-operator",),
        ip_addresses=(config.bridge_ip,),
    )
    return {
        "KUBELOOP_WEBHOOK_HOST": config.bridge_ip,
        "KUBELOOP_WEBHOOK_PORT": "9443",
        "KUBELOOP_WEBHOOK_CERTFILE": str(pair.cert),
        "KUBELOOP_WEBHOOK_KEYFILE": str(pair.key),
        "KUBELOOP_WEBHOOK_CAFILE": str(pki.ca.cert),
    }


def _wait_for_exit(pid: int, timeout: float = 30.0) -> None:
    """Wait until ``pid`` is gone (its leader lease and webhook port with it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):  # it went away since the last look
        os.killpg(pid, signal.SIGKILL)


def stop_operator(state_dir: Path) -> bool:
    """Stop the demo's operator, if it runs."""
    pid_file = state_dir / "operator.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    pid_file.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def _show_examples(kubectl: _Kubectl) -> None:
    _say("CRDs generated from the models (crds/), installed and Established")
    print(kubectl("apply", "--server-side", "--force-conflicts", "-f", str(_REPO / "crds")))
    print(
        kubectl(
            "wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=kubeloop"
        )
    )
    _say(
        f"examples/ applied with kubectl into namespace {EXAMPLES_NAMESPACE} (not watched by the demo operator)"
    )
    kubectl("create", "namespace", EXAMPLES_NAMESPACE)
    print(kubectl("apply", "-n", EXAMPLES_NAMESPACE, "-f", str(_REPO / "examples")))
    print(kubectl("get", "kubeloop", "-n", EXAMPLES_NAMESPACE))
    _say("bad input is refused by the API server itself (tests/samples/invalid/)")
    samples = sorted((_REPO / "tests" / "samples" / "invalid").glob("*.yaml"))
    for path in samples[:: max(1, len(samples) // 5)][:5]:
        answer = kubectl("apply", "--dry-run=server", "-n", EXAMPLES_NAMESPACE, "-f", str(path))
        lines = [
            line
            for line in answer.splitlines()
            if "some validation rules were not checked" not in line
        ]
        print(f"  {path.name}:\n    " + "\n    ".join(line[:200] for line in lines[:2]))
    print(f"  ... {len(samples)} invalid samples in the catalogue, each refused with its message")


CHURN_TARGET = "churned"


def _manifests() -> list[dict[str, Any]]:
    dataset = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "churn"},
        "spec": {
            "source": {"uri": CHURN_URI},
            "target": CHURN_TARGET,
            "sliceColumns": ["region"],
            "validation": {"minRows": 500, "maxMissingFraction": 0.05},
        },
    }
    run = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "churn-search"},
        "spec": {
            "datasetRef": {"name": "churn"},
            "modelName": "churn",
            "estimator": {"name": "RandomForestClassifier", "params": {"class_weight": "balanced"}},
            "search": {
                "strategy": "random",
                "trials": 6,
                "parallelism": 2,
                "metric": "f1",
                "space": {
                    "n_estimators": {"range": {"min": 20, "max": 80, "integer": True}},
                    "max_depth": {"values": [3, 5, 8]},
                },
            },
            "gates": {"thresholds": [{"metric": "roc_auc", "min": 0.6}]},
        },
    }
    return [dataset, run]


def _wait_for_model(kubectl: _Kubectl, run_name: str = "churn-search") -> dict[str, Any] | None:
    deadline = time.monotonic() + _WAIT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        dataset = kubectl.json("get", "datasets.kubeloop.io", "churn", "-n", DEMO_NAMESPACE).get(
            "status", {}
        )
        run = kubectl.json("get", "trainingruns", run_name, "-n", DEMO_NAMESPACE).get("status", {})
        trials = run.get("trials") or {}
        line = (
            f"  Dataset {dataset.get('phase', 'Pending')}, TrainingRun {run.get('phase', 'Pending')}: "
            f"{trials.get('succeeded', 0)}/{trials.get('total', '?')} trials done, "
            f"{trials.get('active', 0)} running"
        )
        if line != last:
            print(line, flush=True)
            last = line
        if run.get("phase") == "Failed" or dataset.get("phase") == "Invalid":
            print(f"  stopped: {run.get('message') or dataset.get('message')}")
            return None
        if run.get("modelVersion"):
            finished: dict[str, Any] = run
            return finished
        time.sleep(3)
    print(f"  gave up after {_WAIT_SECONDS}s: see .run/operator.log")
    return None


def _rows_and_labels(mv: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The first 200 rows of the demo table as request records, and their true labels."""
    inputs = [item["name"] for item in mv["spec"]["signature"]["inputs"]]
    table = pd.read_csv(io.BytesIO(churn_csv())).head(200)
    frame = table[inputs]
    labels = [str(value) for value in table[CHURN_TARGET]]
    records = [
        {
            k: (None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v))
            for k, v in row.items()
        }
        for row in frame.to_dict(orient="records")
    ]
    return records, labels


def _upload_demo_data(endpoint: S3Endpoint) -> None:
    """The churn table (first half) and iris distribution A (the loop)."""
    with ObjectStore(endpoint.settings()) as store:
        store.ensure_bucket(DEMO_BUCKET)
        uploaded = store.upload(churn_csv(), S3Uri.parse(CHURN_URI), content_type="text/csv")
        print(
            f"S3 at {endpoint.url}; uploaded {uploaded.uri} ({uploaded.size} bytes, sha256 {uploaded.sha256[:16]}…)"
        )
        iris = store.upload(
            drift_data.csv_bytes(drift_data.sample(600, shifted=False, seed=1)),
            S3Uri.parse(IRIS_A_URI),
            content_type="text/csv",
        )
        print(f"uploaded {iris.uri} (iris, distribution A: the loop's first training data)")


def run_demo(state_dir: Path) -> int:
    """Run the demo; returns the process exit status."""
    _say("local Kubernetes v1.37 (first run builds it from Go modules: about 10 minutes)")
    cluster = LocalCluster(ClusterConfig(state_dir=state_dir / "cluster"))
    info = cluster.up()
    print(f"cluster ready at {info.server} ({info.started_in_seconds:.1f}s)")
    kubectl = _Kubectl(cluster)
    print(kubectl("get", "nodes", "-o", "wide"))
    _show_examples(kubectl)

    _say("object storage: SeaweedFS on the cluster bridge, so pods reach it")
    endpoint = s3_up(state_dir / DEMO_S3_DIR, bind_ip=ClusterConfig(state_dir=state_dir).bridge_ip)
    _upload_demo_data(endpoint)

    _say("workload runtime for the process node (first run: about 40 s) and the operator")
    kubeloop = ensure_runtime()
    kubectl("create", "namespace", DEMO_NAMESPACE)
    kubectl(
        "label",
        "namespace",
        DEMO_NAMESPACE,
        "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "kubeloop-s3"},
        "stringData": {
            "accessKey": endpoint.access_key,
            "secretKey": endpoint.secret_key.get_secret_value(),
        },
    }
    kubectl("apply", "-n", DEMO_NAMESPACE, "-f", "-", stdin=yaml.safe_dump(secret))
    pid = _start_operator(state_dir, info.kubeconfig, endpoint, kubeloop)
    print(
        f"kubeloop operator running (pid {pid}, log {state_dir / 'operator.log'}), watching {DEMO_NAMESPACE}"
    )

    _say("a Dataset and a TrainingRun (random search, 6 trials, 2 at a time, one Indexed Job)")
    for manifest in _manifests():
        print(kubectl("apply", "-n", DEMO_NAMESPACE, "-f", "-", stdin=yaml.safe_dump(manifest)))
    run = _wait_for_model(kubectl)
    if run is None:
        return 1

    _say("the result")
    print(kubectl("get", "datasets.kubeloop.io,trainingruns,modelversions", "-n", DEMO_NAMESPACE))
    print("\ntrials (validation f1):")
    for trial in run.get("trialResults", []):
        marker = "  <- best" if trial["index"] == run.get("bestTrial") else ""
        print(f"  {trial['index']}: {trial['params']}  f1={trial.get('score')}{marker}")
    name = run["modelVersion"]
    time.sleep(2)
    mv = kubectl.json("get", "modelversions", name, "-n", DEMO_NAMESPACE)
    status = mv.get("status", {})
    print(f"\nModelVersion {name}: {status.get('phase')} ({status.get('message')})")
    metrics = mv["spec"]["metrics"]
    print(
        "  test metrics: "
        + ", ".join(
            f"{k}={metrics[k]:.3f}"
            for k in sorted(metrics)
            if k in {"accuracy", "f1", "roc_auc", "log_loss", "precision", "recall"}
        )
    )
    artifact = mv["spec"]["artifact"]
    print(f"  artifact {artifact['uri']} sha256 {artifact['sha256']}")
    report = artifact["uri"].rsplit("/", 1)[0] + "/report.html"
    local = state_dir / "demo-report.html"
    with ObjectStore(endpoint.settings()) as store:
        store.download(S3Uri.parse(report), local)
    print(f"  report {report}\n  (a copy to open in a browser: {local})")

    records, labels = _rows_and_labels(mv)
    status = run_serving_demo(
        kubectl,
        kubectl.json,
        namespace=DEMO_NAMESPACE,
        model_version=name,
        records=records,
        labels=labels,
        wait_for_run=lambda run_name: _wait_for_model(kubectl, run_name),
    )
    if status == 0:
        status = run_loop_demo(
            kubectl,
            kubectl.json,
            namespace=DEMO_NAMESPACE,
            training_uri=IRIS_A_URI,
            router_url=lambda serving: router_url(kubectl.json, DEMO_NAMESPACE, serving),
        )
    print(
        f"\nkubectl: export KUBECONFIG={info.kubeconfig}; {info.kubectl} get kubeloop -A\n"
        "Stop everything with: make cluster-down s3-down (the cluster-down also stops the demo operator)"
    )
    return status
