"""Benchmark of ``kubeloop data profile`` against a floor, side by side on one core.

The workload is issue 4's: 1,000,000 rows x 20 columns (integers, floats, categories of 3 to
2,000 values, a boolean, a 0/1 target; a few percent of cells missing), stored once as Parquet
and once as CSV in a local SeaweedFS. Each measured run is a fresh process pinned to one CPU
(``taskset -c <cpu>``, or ``sched_setaffinity`` where taskset is missing) with
``OMP_NUM_THREADS=1`` so Arrow's thread pool has one thread too, and profiles under a new
Dataset name, so nothing is skipped as "already stored". Its wall time includes interpreter
start-up, the S3 download, validation, the digest, statistics, writing the Parquet snapshot
and both uploads.

The floor is what anyone would do by hand on the same file: ``pandas.read_parquet(path)``
(or ``read_csv``) plus ``DataFrame.describe()``, from a local file (no S3), in the same kind of
pinned process. Runs are interleaved so both sides see the same machine state; medians are
reported, with the ratio. Not wired into ``make bench`` yet: run it with
``python -m kubeloop.devenv.bench_profile --dir .run/bench-profile``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from kubeloop.devenv.seaweedfs import S3Endpoint, SeaweedFS
from kubeloop.storage import ObjectStore, S3Uri

TARGET_SECONDS: Final = 10.0
_FLOOR_SCRIPT: Final = (
    "import sys, pandas as pd\n"
    "frame = pd.read_parquet(sys.argv[2]) if sys.argv[1] == 'parquet' else pd.read_csv(sys.argv[2])\n"
    "frame.describe()\n"
)
_CATEGORY_SIZES: Final = (3, 7, 24, 120, 2000)
_STAGE_ORDER: Final[tuple[str, ...]] = (
    "download",
    "parse",
    "validate",
    "digest",
    "profile",
    "snapshot",
    "upload",
    "upload_profile",
)


def make_table(rows: int, columns: int = 20, *, seed: int = 7) -> pa.Table:
    """A churn-like table of ``rows`` x ``columns`` (at least 10): deterministic for a seed."""
    if columns < 10:
        raise ValueError("the benchmark table has at least 10 columns")
    rng = np.random.default_rng(seed)

    def sometimes_missing(values: Any, fraction: float) -> pa.Array:
        return pa.array(values, mask=rng.random(rows) < fraction)

    fixed: dict[str, pa.Array] = {
        "customer_id": pa.array(np.arange(rows, dtype=np.int64)),
        "tenure_months": sometimes_missing(rng.integers(0, 120, rows), 0.01),
        "support_calls": pa.array(rng.poisson(2, rows).astype(np.int64)),
        "monthly_spend": sometimes_missing(np.round(rng.lognormal(3, 0.7, rows), 2), 0.05),
        "has_addon": sometimes_missing(rng.random(rows) < 0.3, 0.01),
    }
    for index, size in enumerate(_CATEGORY_SIZES):
        labels = np.array([f"c{index}_{value}" for value in range(size)])
        fixed[f"cat_{index}"] = sometimes_missing(labels[rng.integers(0, size, rows)], 0.03)
    numeric = columns - len(fixed) - 1
    data = dict(fixed)
    for index in range(numeric):
        data[f"num_{index}"] = sometimes_missing(
            rng.normal(index, 1 + index, rows), 0.02 * (index % 3)
        )
    data["churn"] = pa.array((rng.random(rows) < 0.2).astype(np.int64))
    return pa.table(data)


@dataclass
class _Series:
    seconds: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def run_profile_benchmark(
    state_dir: Path,
    *,
    rows: int = 1_000_000,
    columns: int = 20,
    repeat: int = 3,
    cpu: int = 0,
    formats: Sequence[str] = ("parquet", "csv"),
    out: Callable[[str], None] = print,
) -> int:
    """Run the benchmark and print Markdown tables; returns 0 (the numbers are the result)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    ours: dict[str, _Series] = {fmt: _Series() for fmt in formats}
    floor: dict[str, _Series] = {fmt: _Series() for fmt in formats}
    with (
        SeaweedFS(state_dir / "seaweedfs") as endpoint,
        ObjectStore(endpoint.settings()) as store,
        tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch_dir,
    ):
        scratch = Path(scratch_dir)
        table = make_table(rows, columns)
        files = {"parquet": scratch / "data.parquet", "csv": scratch / "data.csv"}
        pq.write_table(table, files["parquet"])
        pa_csv.write_csv(table, files["csv"])
        del table
        sources = {}
        for fmt in formats:
            uri = S3Uri(endpoint.bucket, f"bench/profile/source.{fmt}")
            store.upload(files[fmt], uri)
            sources[fmt] = uri
        run_id = time.strftime("%Y%m%d%H%M%S")
        for index in range(repeat):
            for fmt in formats:
                name = f"bench-{fmt}-{run_id}-{index}"
                seconds, stages = _run_ours(endpoint, sources[fmt], name, scratch, cpu)
                ours[fmt].seconds.append(seconds)
                ours[fmt].stages.append(stages)
                floor[fmt].seconds.append(_run_floor(fmt, files[fmt], cpu))
        sizes = {fmt: files[fmt].stat().st_size / 2**20 for fmt in formats}

    out(
        f"profiling {rows:,} rows x {columns} columns, one core (cpu {cpu}, OMP_NUM_THREADS=1), "
        f"median of {repeat} interleaved runs, fresh process each"
    )
    out("")
    out(
        "| source | kubeloop data profile (S3 in and out) | floor: pandas read + describe() (local file) | ours / floor | target <= 10 s |"
    )
    out("|---|---|---|---|---|")
    for fmt in formats:
        reader = "read_parquet" if fmt == "parquet" else "read_csv"
        verdict = "met" if ours[fmt].median <= TARGET_SECONDS else "MISSED"
        out(
            f"| {fmt} ({sizes[fmt]:.0f} MiB) | {ours[fmt].median:6.2f} s | {floor[fmt].median:6.2f} s "
            f"({reader}) | {ours[fmt].median / floor[fmt].median:5.2f}x | {verdict} |"
        )
    out("")
    out("where kubeloop's time goes (median seconds per stage, as the profiler reports them):")
    out("")
    seen = {stage for fmt in formats for run in ours[fmt].stages for stage in run}
    stage_names: list[str] = [stage for stage in _STAGE_ORDER if stage in seen]
    stage_names += sorted(seen - set(stage_names))
    out("| stage | " + " | ".join(formats) + " |")
    out("|---|" + "---|" * len(formats))
    for stage in stage_names:
        cells = [
            f"{statistics.median(run.get(stage, 0.0) for run in ours[fmt].stages):.2f}"
            for fmt in formats
        ]
        out(f"| {stage} | " + " | ".join(cells) + " |")
    rest = [
        f"{statistics.median(total - sum(run.values()) for total, run in zip(ours[fmt].seconds, ours[fmt].stages, strict=True)):.2f}"
        for fmt in formats
    ]
    out("| interpreter start-up, imports, S3 client (the rest) | " + " | ".join(rest) + " |")
    return 0


def _run_ours(
    endpoint: S3Endpoint, source: S3Uri, name: str, scratch: Path, cpu: int
) -> tuple[float, dict[str, float]]:
    request = {
        "namespace": "bench",
        "dataset": name,
        "spec": {
            "source": {"uri": str(source)},
            "target": "churn",
            "validation": {"uniqueKey": "customer_id", "maxMissingFraction": 0.2},
        },
    }
    env = {
        **_single_thread_env(),
        **endpoint.env(),
        "KUBELOOP_PROFILE_REQUEST": json.dumps(request),
    }
    command = [
        sys.executable,
        "-m",
        "kubeloop.data.cli",
        "--termination-log",
        str(scratch / "termination-log"),
        "--work-dir",
        str(scratch),
    ]
    start = time.perf_counter()
    completed = _pinned_run(command, env, cpu)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(
            f"kubeloop data profile failed ({completed.returncode}): {completed.stderr[-2000:]}"
        )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    if not result.get("ok"):
        raise RuntimeError(f"kubeloop data profile did not succeed: {result.get('message')}")
    timings: dict[str, float] = result.get("timings", {})
    return seconds, timings


def _run_floor(fmt: str, path: Path, cpu: int) -> float:
    command = [sys.executable, "-c", _FLOOR_SCRIPT, fmt, str(path)]
    start = time.perf_counter()
    completed = _pinned_run(command, _single_thread_env(), cpu)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"floor failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return seconds


def _single_thread_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KUBELOOP_")}
    # Arrow sizes its CPU pool from OMP_NUM_THREADS; the BLAS libraries numpy uses do too.
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


def _pinned_run(
    command: list[str], env: dict[str, str], cpu: int
) -> subprocess.CompletedProcess[str]:
    taskset = shutil.which("taskset")
    if taskset is not None:
        return subprocess.run(  # noqa: S603 - our own interpreter and arguments
            [taskset, "-c", str(cpu), *command],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        command,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kubeloop.devenv.bench_profile --dir DIR``."""
    parser = argparse.ArgumentParser(prog="python -m kubeloop.devenv.bench_profile")
    parser.add_argument("--dir", type=Path, required=True, help="state directory (SeaweedFS)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cpu", type=int, default=0, help="the CPU every measured run is pinned to"
    )
    args = parser.parse_args(argv)
    return run_profile_benchmark(
        args.dir, rows=args.rows, columns=args.columns, repeat=args.repeat, cpu=args.cpu
    )


if __name__ == "__main__":
    sys.exit(main())
