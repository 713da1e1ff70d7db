"""Component-test fixtures: real processes, started once per session, never mocks.

* ``seaweedfs`` -- a real SeaweedFS S3 server (``weed mini``) with authentication on;
* ``store`` -- an ``ObjectStore`` on it with tiny retry delays, ``key_prefix`` -- a prefix
  of its own for each test, so tests never see each other's objects;
* ``FaultyProxy`` -- a real TCP proxy in front of the server that can cut connections after a
  number of bytes, to exercise retries against genuinely broken connections.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Literal

import pytest

from kubeloop.devenv.seaweedfs import S3Endpoint, SeaweedFS
from kubeloop.storage import ObjectStore, S3Settings

Direction = Literal["upload", "download"]
FAST_RETRIES = {"retry_attempts": 4, "retry_base_delay": 0.01, "retry_max_delay": 0.05}


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    with SeaweedFS(tmp_path_factory.mktemp("seaweedfs")) as endpoint:
        yield endpoint


@pytest.fixture
def s3_settings(seaweedfs: S3Endpoint) -> S3Settings:
    return seaweedfs.settings(**FAST_RETRIES)


@pytest.fixture
def store(s3_settings: S3Settings) -> Iterator[ObjectStore]:
    with ObjectStore(s3_settings) as object_store:
        yield object_store


@pytest.fixture
def make_store(s3_settings: S3Settings) -> Iterator[Callable[..., ObjectStore]]:
    """Build more stores on the same server: ``make_store(endpoint=..., part_size=...)``."""
    stores: list[ObjectStore] = []

    def build(**overrides: object) -> ObjectStore:
        settings = S3Settings.model_validate({**s3_settings.model_dump(), **overrides})
        stores.append(ObjectStore(settings))
        return stores[-1]

    yield build
    for built in stores:
        built.close()


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> str:
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-.")
    return f"tests/{test_name}/{uuid.uuid4().hex[:8]}/"


@pytest.fixture
def faulty_proxy(seaweedfs: S3Endpoint) -> Iterator[FaultyProxy]:
    host, port = seaweedfs.url.removeprefix("http://").rsplit(":", 1)
    proxy = FaultyProxy((host, int(port)))
    try:
        yield proxy
    finally:
        proxy.close()


class FaultyProxy:
    """Forwards TCP connections to ``upstream``; ``cut()`` breaks the next transfer midway.

    Bytes are counted per direction across all connections since the last ``cut()``; the
    connection carrying the byte past the limit is shut down in both directions, exactly what
    a crashed load balancer or a dropped network path looks like to the client.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cuts: dict[Direction, list[int]] = {}  # direction -> [bytes left, times left]
        self.forwarded: dict[Direction, int] = {"upload": 0, "download": 0}
        self.cuts_done = 0
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, direction: Direction, after_bytes: int, times: int = 1) -> None:
        with self._lock:
            self._cuts[direction] = [after_bytes, times]

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        for sock in list(self._sockets):
            _shut(sock)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream)
            except OSError:
                _shut(client)
                continue
            self._sockets += [client, server]
            for source, sink, direction in (
                (client, server, "upload"),
                (server, client, "download"),
            ):
                threading.Thread(
                    target=self._pump, args=(source, sink, direction, (client, server)), daemon=True
                ).start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        direction: Direction,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := source.recv(65_536):
                with self._lock:
                    rule = self._cuts.get(direction)
                    cut_here = rule is not None and rule[1] > 0 and len(data) > rule[0]
                    if rule is not None and rule[1] > 0:
                        if cut_here:
                            data = data[: rule[0]]
                            rule[1] -= 1
                            rule[0] = 0
                            self.cuts_done += 1
                        else:
                            rule[0] -= len(data)
                    self.forwarded[direction] += len(data)
                sink.sendall(data)
                if cut_here:
                    break
        except OSError:
            pass
        for sock in pair:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
