"""``make bench``: kubeloop's costs measured side by side with a floor, in one run.

Storage: kubeloop's upload (sha256 computed while streaming, digest stored as metadata) and
verified download are timed against the bare ``minio`` SDK moving the same bytes to the same
SeaweedFS, interleaved so both see the same machine state. The ratio is the price of never
trusting an ETag. Later milestones add the inference server and router to this file.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from minio import Minio

from kubeloop.devenv.seaweedfs import SeaweedFS
from kubeloop.storage import ObjectStore, S3Uri


def _row(name: str, ours: list[float], floor: list[float], size_mb: int) -> str:
    ours_s, floor_s = statistics.median(ours), statistics.median(floor)
    return (
        f"| {name} | {size_mb / ours_s:8.1f} MiB/s | {size_mb / floor_s:8.1f} MiB/s "
        f"| {ours_s / floor_s:5.2f}x |"
    )


def run_benchmarks(state_dir: Path, *, size_mb: int, repeat: int) -> int:
    """Run every benchmark and print a Markdown table of medians and ratios."""
    payload = os.urandom(size_mb * 1024 * 1024)
    with SeaweedFS(state_dir) as endpoint, ObjectStore(endpoint.settings()) as store:
        parts = urlsplit(endpoint.url)
        raw = Minio(
            parts.netloc,
            access_key=endpoint.access_key,
            secret_key=endpoint.secret_key.get_secret_value(),
            secure=False,
            region=endpoint.region,
        )
        bucket = endpoint.bucket
        upload_ours: list[float] = []
        upload_floor: list[float] = []
        download_ours: list[float] = []
        download_floor: list[float] = []
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / "object"
            for index in range(repeat):
                ours_uri = S3Uri(bucket, f"bench/ours-{index}")
                floor_key = f"bench/floor-{index}"

                start = time.perf_counter()
                uploaded = store.upload(io.BytesIO(payload), ours_uri)
                upload_ours.append(time.perf_counter() - start)

                start = time.perf_counter()
                raw.put_object(bucket, floor_key, io.BytesIO(payload), len(payload))
                upload_floor.append(time.perf_counter() - start)

                start = time.perf_counter()
                store.download_verified(ours_uri, target, uploaded.sha256)
                download_ours.append(time.perf_counter() - start)

                start = time.perf_counter()
                raw.fget_object(bucket, floor_key, str(target))
                download_floor.append(time.perf_counter() - start)
    print(
        f"storage, {size_mb} MiB object, median of {repeat} interleaved runs, SeaweedFS on loopback"
    )
    print("| operation | kubeloop.storage | bare minio SDK (floor) | time ours / floor |")
    print("|---|---|---|---|")
    print(_row("upload (sha256 while streaming)", upload_ours, upload_floor, size_mb))
    print(_row("download (sha256 verified)", download_ours, download_floor, size_mb))
    return 0
