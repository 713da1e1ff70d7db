"""Whether a process of the local stack still runs (shared by the SeaweedFS and cluster launchers)."""

from __future__ import annotations

import os
from pathlib import Path


def process_running(pid: int) -> bool:
    """True while ``pid`` runs; an exited process that is not yet reaped counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) no longer serves anything. But the main
    # thread turns zombie before its other threads are done, and those still hold the sockets:
    # only a zombie without other threads is really gone.
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        threads = sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        # Without /proc (not Linux) trust kill(); with it, a vanished entry means reaped.
        return not Path("/proc/self/stat").exists()
    return status.rsplit(")", 1)[-1].split()[0] != "Z" or threads > 1
