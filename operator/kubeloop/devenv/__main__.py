"""``python -m kubeloop.devenv``: the local stack behind ``make s3-up``, ``s3-down``, ``demo``, ``bench``.

Each subcommand takes ``--dir``, the directory that holds the stack's state (``.run/`` from
the Makefile), so several checkouts never share a server by accident; ``bench-drift`` (one
benchmark of ``bench``, alone) keeps no state and needs no stack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubeloop.devenv.cluster import ClusterConfig, LocalCluster
from kubeloop.devenv.seaweedfs import s3_down, s3_up


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m kubeloop.devenv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("s3-up", "start SeaweedFS on 127.0.0.1 (idempotent) and print its endpoint"),
        ("s3-down", "stop the SeaweedFS started by s3-up (idempotent)"),
        ("cluster-up", "build what is missing and start the local cluster (idempotent)"),
        ("cluster-down", "stop the local cluster and remove its network (idempotent)"),
        ("demo", "run the demo on the local stack"),
        ("bench", "run the benchmarks and print side-by-side ratios"),
    ):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("--dir", type=Path, required=True, help="state directory")
    bench = sub.choices["bench"]
    bench.add_argument("--size-mb", type=int, default=64, help="object size for transfer runs")
    bench.add_argument("--repeat", type=int, default=5, help="runs per variant")
    bench.add_argument("--pods", type=int, default=10, help="pods started for the pod-start figure")
    drift = sub.add_parser(
        "bench-drift", help="only the drift-check benchmark (no cluster, no S3: loopback pods)"
    )
    drift.add_argument("--pods", type=int, default=50, help="serving pods scraped per check")
    drift.add_argument("--repeat", type=int, default=7, help="timed checks per workload")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    if args.command == "bench-drift":
        from kubeloop.devenv.bench_drift import run_drift_benchmark  # noqa: PLC0415

        run_drift_benchmark(pods=args.pods, repeat=args.repeat)
        return 0

    if args.command == "s3-up":
        endpoint = s3_up(args.dir)
        print(f"SeaweedFS S3 at {endpoint.url} (bucket {endpoint.bucket}, pid {endpoint.pid})")
        print(f"credentials: source {endpoint.state_dir / 's3.env'}  (KUBELOOP_S3_* variables)")
        return 0
    if args.command == "s3-down":
        stopped = s3_down(args.dir)
        print("SeaweedFS stopped" if stopped else "SeaweedFS was not running")
        return 0
    if args.command == "cluster-up":
        cluster = LocalCluster(ClusterConfig(state_dir=args.dir / "cluster"))
        info = cluster.up()
        print(f"cluster ready in {info.started_in_seconds:.1f}s at {info.server}")
        print("point kubectl at it:")
        print(f"  export KUBECONFIG={info.kubeconfig}")
        print(
            f"  alias kubectl='{info.kubectl} --cache-dir={info.kubectl_cache}'   # v1.37, as the server"
        )
        print(f"logs: {info.state_dir / 'logs'}")
        return 0
    if args.command == "cluster-down":
        from kubeloop.devenv.demo import DEMO_S3_DIR, stop_operator  # noqa: PLC0415

        if stop_operator(args.dir):
            print("demo operator stopped")
        # The demo's SeaweedFS listens on the cluster's bridge, which goes with the cluster.
        if s3_down(args.dir / DEMO_S3_DIR):
            print("the demo's SeaweedFS (on the cluster bridge) stopped")
        stopped = LocalCluster(ClusterConfig(state_dir=args.dir / "cluster")).down()
        print("cluster stopped" if stopped else "cluster was not running")
        return 0
    if args.command == "demo":
        from kubeloop.devenv.demo import run_demo  # noqa: PLC0415 - sklearn loads slowly

        return run_demo(args.dir)
    from kubeloop.devenv.bench import run_benchmarks  # noqa: PLC0415
    from kubeloop.devenv.bench_cluster import run_cluster_benchmarks  # noqa: PLC0415
    from kubeloop.devenv.bench_drift import run_drift_benchmark  # noqa: PLC0415
    from kubeloop.devenv.bench_profile import run_profile_benchmark  # noqa: PLC0415
    from kubeloop.devenv.bench_trainer import run_trainer_benchmark  # noqa: PLC0415

    status = run_benchmarks(args.dir / "bench", size_mb=args.size_mb, repeat=args.repeat)
    run_profile_benchmark(args.dir / "bench-profile")
    run_trainer_benchmark(args.dir / "bench-trainer")
    run_drift_benchmark()
    run_cluster_benchmarks(args.dir / "cluster", pods=args.pods)
    from kubeloop.devenv.bench_operator import run_operator_benchmark  # noqa: PLC0415

    run_operator_benchmark(args.dir)
    from kubeloop.devenv.bench_router import run_router_benchmark  # noqa: PLC0415
    from kubeloop.devenv.bench_serve import run_serve_benchmark  # noqa: PLC0415

    run_serve_benchmark(args.dir / "bench-serve")
    run_router_benchmark(args.dir / "bench-router")
    return status


if __name__ == "__main__":
    sys.exit(main())
