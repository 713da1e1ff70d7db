"""Benchmarks of the local cluster: warm start, and pod start against a bare process start.

Figures the cluster issue asks for (warm cluster ready, pod bound → Running) measured the way
a user sees them: the cluster from ``down`` to ready, and each pod from the watch event that
shows it bound to the node to the one that shows it Running. The floor is the same command
started as a plain host process, so the ratio is what the node's namespaces, mounts,
service-account token and status round trip cost.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path

from kubernetes import client, config, watch

from kubeloop.devenv.cluster import ClusterConfig, LocalCluster

_COMMAND = ["/usr/bin/python3", "-c", "import time; time.sleep(60)"]


def _pod(name: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"kubeloop.io/bench": "pod-start"}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=1,
            containers=[client.V1Container(name="main", image="kubeloop/host", command=_COMMAND)],
        ),
    )


def _pod_start_latencies(kubeconfig: Path, count: int) -> list[float]:
    config.load_kube_config(config_file=str(kubeconfig))
    core = client.CoreV1Api()
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if core.list_namespaced_service_account(namespace).items:
            break
        time.sleep(0.2)
    bound: dict[str, float] = {}
    running: dict[str, float] = {}
    done = threading.Event()

    def observe() -> None:
        stream = watch.Watch()
        for event in stream.stream(core.list_namespaced_pod, namespace, timeout_seconds=120):
            now = time.perf_counter()
            pod = event["object"]
            name = pod.metadata.name
            if pod.spec.node_name and name not in bound:
                bound[name] = now
            if pod.status.phase == "Running" and name not in running:
                running[name] = now
            if len(running) == count:
                stream.stop()
        done.set()

    watcher = threading.Thread(target=observe, daemon=True)
    watcher.start()
    time.sleep(0.5)  # the watch is open before the first pod exists
    for index in range(count):
        name = f"start-{index}"
        core.create_namespaced_pod(namespace, _pod(name))
        wait_until = time.monotonic() + 30
        while name not in running and time.monotonic() < wait_until:
            time.sleep(0.01)
    done.wait(30)
    core.delete_namespace(namespace)
    return [running[name] - bound[name] for name in running if name in bound]


def _process_start_floor(count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        process = subprocess.Popen(_COMMAND)  # noqa: S603 - fixed command
        latencies.append(time.perf_counter() - start)
        process.kill()
        process.wait()
    return latencies


def run_cluster_benchmarks(state_dir: Path, *, pods: int) -> None:
    """Print the cluster figures as Markdown."""
    cluster = LocalCluster(ClusterConfig(state_dir=state_dir))
    cluster.up()  # build and first start are not what is measured
    cluster.down()
    start = time.perf_counter()
    info = cluster.up()
    warm_start = time.perf_counter() - start
    pod_latencies = _pod_start_latencies(info.kubeconfig, pods)
    floor = _process_start_floor(pods)
    pod_median, floor_median = statistics.median(pod_latencies), statistics.median(floor)
    print(
        f"\nlocal cluster, warm cache: down -> ready (readyz, node Ready, default SA) {warm_start:.1f} s"
    )
    print(f"pod start, {len(pod_latencies)} pods one after another, watch-event times")
    print("| measure | kubeloop-node pod (bound -> Running) | host process (Popen) floor | ratio |")
    print("|---|---|---|---|")
    print(
        f"| median | {pod_median * 1000:.0f} ms | {floor_median * 1000:.1f} ms "
        f"| {pod_median / floor_median:.0f}x |"
    )
    print(f"| max | {max(pod_latencies) * 1000:.0f} ms | {max(floor) * 1000:.1f} ms | |")
