"""How many CPU threads a trial may use, and the limit on native thread pools.

scikit-learn's histogram gradient boosting (OpenMP) and BLAS size their thread pools from the
node's cores, not from the pod's CPU limit. In a pod limited to 1-2 CPUs on a big node that
means dozens of spinning threads sharing a small CFS quota; every OpenMP barrier then waits
for descheduled threads and a fit gets many times slower (measured: 0.14 s with one thread,
15 s with two on a busy two-core machine). So the trainer limits the pools to its budget:

1. ``KUBELOOP_TRAINER_THREADS`` when set (the operator can derive it from resources.limits);
2. the cgroup CPU quota, rounded up (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``);
3. the CPUs this process may run on (its affinity mask).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from threadpoolctl import threadpool_limits

THREADS_ENV = "KUBELOOP_TRAINER_THREADS"
_CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
_CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def cpu_budget(
    environ: Mapping[str, str], cgroup_root: Path | None = None, available: int | None = None
) -> int:
    """Threads the trial may use (see the module docstring); at least 1.

    ``cgroup_root`` and ``available`` (CPUs this process may run on) exist for tests.
    """
    configured = environ.get(THREADS_ENV, "").strip()
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    if available is None:
        available = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        )
    quota = _cgroup_quota(cgroup_root)
    candidates = [n for n in (quota, available) if n]
    return max(1, min(candidates)) if candidates else 1


@contextmanager
def limited_threads(threads: int) -> Iterator[None]:
    """Limit OpenMP and BLAS pools to ``threads`` while the block runs."""
    with threadpool_limits(limits=threads):
        yield


def _cgroup_quota(root: Path | None) -> int | None:
    v2 = root / "cpu.max" if root else _CGROUP_V2_CPU_MAX
    v1_quota = root / "cpu" / "cpu.cfs_quota_us" if root else _CGROUP_V1_QUOTA
    v1_period = root / "cpu" / "cpu.cfs_period_us" if root else _CGROUP_V1_PERIOD
    try:
        quota, period = v2.read_text().split()[:2]
        if quota != "max":
            return math.ceil(int(quota) / int(period))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(v1_quota.read_text())
        period_us = int(v1_period.read_text())
    except (OSError, ValueError):
        return None
    return math.ceil(quota_us / period_us) if quota_us > 0 and period_us > 0 else None
