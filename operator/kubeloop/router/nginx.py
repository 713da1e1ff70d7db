"""The NGINX master process under the controller: test, start, graceful reload, graceful quit.

A new configuration is written next to the live one (``nginx.conf.next``), checked with
``nginx -t`` and only then moved over ``nginx.conf`` (an atomic rename) before SIGHUP. A
configuration NGINX refuses never touches the live file, so the last good one keeps serving
and is what a restarted master would read. NGINX runs in the foreground (``daemon off``) as a
child of the controller, logging to the controller's stderr (``-e stderr`` also keeps it from
opening the compiled-in log path, which does not exist on a read-only root filesystem).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path


def _open_umask() -> None:
    os.umask(0)


class NginxError(Exception):
    """NGINX refused a configuration or could not be started."""


class Nginx:
    """One NGINX master process and its files (config, pid, temp) in ``directory``."""

    def __init__(self, binary: Path, directory: Path) -> None:
        self.binary = binary
        self.state_dir = directory
        self.conf = directory / "nginx.conf"
        self.candidate = directory / "nginx.conf.next"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        """True while the master process is alive."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The master's process id, once started."""
        return None if self._process is None else self._process.pid

    def _base_args(self, conf: Path) -> list[str]:
        return [str(self.binary), "-e", "stderr", "-p", f"{self.state_dir}/", "-c", str(conf)]

    async def check(self, text: str) -> str | None:
        """Write ``text`` as the candidate and run ``nginx -t`` on it; the error, or None."""
        (self.state_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.candidate.write_text(text)
        process = await asyncio.create_subprocess_exec(
            *self._base_args(self.candidate),
            "-t",
            "-q",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode == 0:
            return None
        return stderr.decode(errors="replace").strip() or f"nginx -t exited {process.returncode}"

    def _promote_candidate(self) -> None:
        self.candidate.replace(self.conf)

    async def start(self) -> None:
        """Make the checked candidate live and start the master process on it."""
        if self.running:
            raise NginxError("nginx is already running")
        self._promote_candidate()
        # umask 0: the back instance's Unix socket must be connectable by the front's workers,
        # which run as another user when the master starts as root (locally, not in the pod).
        self._process = await asyncio.create_subprocess_exec(
            *self._base_args(self.conf), stdin=asyncio.subprocess.DEVNULL, preexec_fn=_open_umask
        )

    def reload(self) -> None:
        """Make the checked candidate live and ask the master for a graceful reload (SIGHUP)."""
        if self._process is None or not self.running:
            raise NginxError("nginx is not running")
        self._promote_candidate()
        self._process.send_signal(signal.SIGHUP)

    async def wait(self) -> int:
        """Wait for the master process to exit; its exit status."""
        if self._process is None:
            raise NginxError("nginx was never started")
        return await self._process.wait()

    async def quit(self, timeout: float) -> None:
        """Graceful shutdown (SIGQUIT: finish in-flight requests), then SIGKILL after ``timeout``."""
        if self._process is None or not self.running:
            return
        self._process.send_signal(signal.SIGQUIT)
        try:
            await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
