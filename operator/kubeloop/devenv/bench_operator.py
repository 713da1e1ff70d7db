"""Benchmark: ``kubectl apply`` of a TrainingRun to its Job existing, against a direct Job create.

The operator's reaction time is what a user waits for before anything runs: the watch event
reaching Kopf, the Dataset lookup, the builders, the create. It is measured from the moment
the TrainingRun's create returns to the moment a watch on Jobs sees the Job appear; the floor
is the same watch seeing a Job that the benchmark creates itself. Each run is deleted before
the next, so no trainer pods pile up.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, cast

import yaml
from kubernetes import client, config, watch

from kubeloop.devenv.cluster import ClusterConfig, LocalCluster
from kubeloop.devenv.demo import churn_csv
from kubeloop.devenv.runtime import ensure_runtime
from kubeloop.devenv.seaweedfs import SeaweedFS
from kubeloop.storage import ObjectStore, S3Uri


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run_operator_benchmark(state_dir: Path, *, runs: int = 20) -> None:
    """Print apply -> Job latencies (median, p99) for the operator and the floor."""
    cluster = LocalCluster(ClusterConfig(state_dir=state_dir / "cluster"))
    info = cluster.up()
    config.load_kube_config(config_file=str(info.kubeconfig))
    core, batch, custom = client.CoreV1Api(), client.BatchV1Api(), client.CustomObjectsApi()
    namespace = f"bench-op-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    subprocess.run(  # noqa: S603
        cluster.kubectl_command(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            str(Path(__file__).resolve().parents[3] / "crds"),
        ),
        check=True,
        capture_output=True,
    )
    with SeaweedFS(state_dir / "bench-operator-s3", bind_ip=cluster.config.bridge_ip) as endpoint:
        with ObjectStore(endpoint.settings()) as store:
            store.ensure_bucket("bench")
            store.upload(churn_csv(rows=300), S3Uri.parse("s3://bench/churn.csv"))
        secret = {
            "accessKey": endpoint.access_key,
            "secretKey": endpoint.secret_key.get_secret_value(),
        }
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name="kubeloop-s3"), string_data=secret),
        )
        env = {
            **os.environ,
            **endpoint.env(),
            "KUBECONFIG": str(info.kubeconfig),
            "KUBELOOP_NAMESPACES": json.dumps([namespace]),
            "KUBELOOP_WORKLOAD_COMMAND": json.dumps([str(ensure_runtime())]),
            "KUBELOOP_WORKLOAD_S3_ENDPOINT": endpoint.url,
            "KUBELOOP_ARTIFACT_BUCKET": endpoint.bucket,
            "KUBELOOP_METRICS_PORT": "0",
        }
        log = (state_dir / "bench-operator.log").open("ab")
        operator = subprocess.Popen(
            [sys.executable, "-m", "kubeloop", "operator"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            ours, floor = _measure(core, batch, custom, namespace, runs)
        finally:
            operator.terminate()
            operator.wait(timeout=20)
            log.close()
            core.delete_namespace(namespace)
    print(
        f"\napply -> Job exists, {len(ours)} TrainingRuns one after another (operator in the same cluster)"
    )
    print("| measure | TrainingRun -> its Job (operator) | Job create -> seen (floor) | ratio |")
    print("|---|---|---|---|")
    for label, fraction in (("median", 0.5), ("p99", 0.99)):
        mine, base = _percentile(ours, fraction), _percentile(floor, fraction)
        print(f"| {label} | {mine * 1000:.0f} ms | {base * 1000:.0f} ms | {mine / base:.0f}x |")


def _measure(
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    runs: int,
) -> tuple[list[float], list[float]]:
    seen: queue.Queue[tuple[str, float]] = queue.Queue()
    stop = threading.Event()

    def observe() -> None:
        stream = watch.Watch()
        for event in stream.stream(batch.list_namespaced_job, namespace, timeout_seconds=600):
            if event["type"] == "ADDED":
                seen.put((event["object"].metadata.name, time.perf_counter()))
            if stop.is_set():
                stream.stop()

    threading.Thread(target=observe, daemon=True).start()
    dataset: dict[str, Any] = {
        "apiVersion": "kubeloop.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "churn"},
        "spec": {"source": {"uri": "s3://bench/churn.csv"}, "target": "churned"},
    }
    custom.create_namespaced_custom_object(
        "kubeloop.io", "v1alpha1", namespace, "datasets", dataset
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        body = cast(
            dict[str, Any],
            custom.get_namespaced_custom_object(
                "kubeloop.io", "v1alpha1", namespace, "datasets", "churn"
            ),
        )
        if (body.get("status") or {}).get("phase") == "Ready":
            break
        time.sleep(0.5)
    while not seen.empty():
        seen.get()

    def wait_for(name: str) -> float:
        while True:
            job, at = seen.get(timeout=60)
            if job == name:
                return at

    ours: list[float] = []
    floor: list[float] = []
    for index in range(runs):
        run = yaml.safe_load(
            f"""
            apiVersion: kubeloop.io/v1alpha1
            kind: TrainingRun
            metadata: {{name: bench-{index}}}
            spec:
              datasetRef: {{name: churn}}
              modelName: churn
              estimator: {{name: LogisticRegression}}
            """
        )
        start = time.perf_counter()
        custom.create_namespaced_custom_object(
            "kubeloop.io", "v1alpha1", namespace, "trainingruns", run
        )
        ours.append(wait_for(f"bench-{index}-train") - start)
        custom.delete_namespaced_custom_object(
            "kubeloop.io", "v1alpha1", namespace, "trainingruns", f"bench-{index}"
        )

        job = client.V1Job(
            metadata=client.V1ObjectMeta(name=f"floor-{index}"),
            spec=client.V1JobSpec(
                suspend=True,
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(
                        restart_policy="Never",
                        containers=[client.V1Container(name="c", image="x", command=["/bin/true"])],
                    )
                ),
            ),
        )
        start = time.perf_counter()
        batch.create_namespaced_job(namespace, job)
        floor.append(wait_for(f"floor-{index}") - start)
        batch.delete_namespaced_job(f"floor-{index}", namespace, propagation_policy="Background")
    stop.set()
    return ours, floor
