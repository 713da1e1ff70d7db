"""The local SeaweedFS launcher: loopback only, real auth, detached up/down that is idempotent."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kubeloop.devenv.seaweedfs import S3Endpoint, SeaweedFS, SeaweedFSError, s3_down, s3_up
from kubeloop.storage import InvalidCredentials, ObjectStore, S3Settings

pytestmark = pytest.mark.component

LISTEN = "0A"  # TCP state code in /proc/net/tcp


def listening_addresses(pid: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of the TCP sockets ``pid`` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink())
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                addresses.add(fields[1].rsplit(":", 1)[0])
    return addresses


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie awaiting its reaper counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    return state == "Z"


def test_server_listens_on_loopback_only(seaweedfs: S3Endpoint) -> None:
    addresses = listening_addresses(seaweedfs.pid)
    assert addresses == {"0100007F"}  # 127.0.0.1, and nothing on IPv6 or 0.0.0.0


def test_server_checks_signatures(seaweedfs: S3Endpoint) -> None:
    wrong = seaweedfs.settings(secret_key="not-the-secret", retry_attempts=1)
    with ObjectStore(wrong) as store, pytest.raises(InvalidCredentials):
        store.check()


def test_state_files_hold_the_secret_privately(seaweedfs: S3Endpoint) -> None:
    env_file = seaweedfs.state_dir / "s3.env"
    identities = seaweedfs.state_dir / "s3-identities.json"
    for private in (env_file, identities):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    lines = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    assert lines["KUBELOOP_S3_ENDPOINT"] == seaweedfs.url
    assert lines["KUBELOOP_S3_SECRET_KEY"] == seaweedfs.secret_key.get_secret_value()
    settings = S3Settings(_env_file=env_file)
    assert settings.endpoint_url == seaweedfs.url
    assert seaweedfs.secret_key.get_secret_value() not in repr(seaweedfs)


def test_up_down_is_idempotent_and_survives_its_caller(tmp_path: Path) -> None:
    state = tmp_path / "s3"
    # Started from a separate Python process that exits right away, as `make s3-up` does.
    script = "import sys; from pathlib import Path; from kubeloop.devenv.seaweedfs import s3_up; "
    script += "print(s3_up(Path(sys.argv[1])).url)"
    started = subprocess.run(
        [sys.executable, "-c", script, str(state)], capture_output=True, text=True, check=True
    )
    url = started.stdout.strip()
    try:
        first = s3_up(state)  # up twice: the running server is reused
        assert first.url == url
        again = s3_up(state)
        assert again.pid == first.pid
        assert os.getpgid(first.pid) == first.pid  # its own process group, not ours
        with ObjectStore(first.settings()) as store:
            stored = store.upload(b"kept across restarts", "persisted")

        assert s3_down(state)
        assert not s3_down(state)  # down twice is fine
        assert not (state / "weed.pid").exists()
        assert not (state / "s3.env").exists()
        assert gone(first.pid)

        restarted = s3_up(state)
        assert restarted.pid != first.pid
        assert restarted.access_key == first.access_key  # same credentials after restart
        with ObjectStore(restarted.settings()) as store:
            assert store.stat("persisted").sha256 == stored.sha256
    finally:
        s3_down(state)


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "s3"
    state.mkdir()
    (state / "weed.pid").write_text(f"{os.getpid()}\n")  # alive, but not weed: never signalled
    assert not s3_down(state)
    assert not (state / "weed.pid").exists()


def test_context_manager_stops_the_process_group(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path / "cm")
    with server as endpoint:
        assert server.endpoint == endpoint
        with pytest.raises(SeaweedFSError, match="already running"):
            SeaweedFS(tmp_path / "cm").start()
    assert gone(endpoint.pid)
    assert not server.stop()  # idempotent


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    server = SeaweedFS(tmp_path / "stubborn", stop_timeout=0.5)
    endpoint = server.start()
    os.kill(endpoint.pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    try:
        assert server.stop()
    finally:
        # In case stop() failed: never leave a frozen server behind.
        if Path(f"/proc/{endpoint.pid}").exists():
            os.killpg(endpoint.pid, signal.SIGKILL)
    assert gone(endpoint.pid)
