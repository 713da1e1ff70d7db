"""Shadow traffic that costs users nothing: a side channel from NGINX, replayed off the hot path.

NGINX's ``mirror`` holds the client's request until the mirrored one has finished (measured:
p50 +3 ms, throughput halved with a slow shadow). Here NGINX only writes a record of a sampled
request *after* its response has gone out: an access-log line in the log phase, sent as one
UDP syslog datagram to 127.0.0.1 (``render.py``). The cost on the request path is one
``sendto`` of a datagram; nothing waits for the shadow.

The controller receives the datagrams (``ShadowReceiver``), puts them on a bounded queue and a
small pool of workers replays each one to one of the shadow version's endpoints with
``x-kubeloop-shadow: 1`` and the original ``x-request-id``. The endpoint is chosen by a hash
of the request id (round robin without one), so a feedback copy with a prediction's id
reaches the shadow pod that made that prediction, as NGINX's own hash does for live pods. Answers are read and discarded;
outcomes are counted. Whatever cannot keep up is dropped and counted, never queued without
bound, and at most ``max_rate`` copies per second are replayed (the controller shares the
pod's CPU limit with NGINX): while the queue is full or the cap is reached the receiver
stops reading the socket, so an overloaded shadow
costs the controller nothing; the kernel drops the surplus datagrams and the receiver adds
those drops (from ``/proc/net/udp``) to the ``dropped`` count.

Record format (one JSON object after the syslog header; NGINX ``escape=json``):
``{"m": method, "u": request URI, "t": content type, "id": request id, "b": body}`` or
``{"id": ..., "too_large": true}`` for a sampled request whose body NGINX did not hold in
memory. ``escape=json`` escapes quotes, backslashes and control bytes but passes bytes above
0x7f through unchanged, so a body that is not UTF-8 is decoded with ``surrogateescape`` and
re-encoded byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from yarl import URL

from kubeloop.router.metrics import RouterMetrics
from kubeloop.router.table import ShadowTarget

log = logging.getLogger(__name__)

SHADOW_HEADER = "x-kubeloop-shadow"


@dataclass(frozen=True)
class ShadowRecord:
    """One request to replay to the shadow version."""

    method: str
    uri: str
    content_type: str
    request_id: str
    body: bytes


class TooLarge:
    """A sampled request whose body was not available to copy."""


TOO_LARGE = TooLarge()


def parse_datagram(data: bytes) -> ShadowRecord | TooLarge:
    """The record in one syslog datagram from NGINX; ValueError when it is not one."""
    start = data.find(b"{")
    if start < 0:
        raise ValueError("no JSON object in the datagram")
    payload = data[start:]
    fields: Any
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError:
        # A body with bytes that are not UTF-8 (NGINX passes them through unescaped).
        fields = json.loads(payload.decode("utf-8", "surrogateescape"))
    if not isinstance(fields, dict):
        raise ValueError("the record is not a JSON object")
    if fields.get("too_large"):
        return TOO_LARGE
    try:
        uri = str(fields["u"])
        if not uri.startswith("/"):
            raise ValueError(f"request URI {uri!r} is not a path")
        return ShadowRecord(
            method=str(fields["m"]),
            uri=uri,
            content_type=str(fields.get("t", "")),
            request_id=str(fields.get("id", "")),
            body=str(fields.get("b", "")).encode("utf-8", "surrogateescape"),
        )
    except KeyError as missing:
        raise ValueError(f"the record has no {missing}") from None


class ShadowReplayer:
    """A bounded queue of shadow records and the workers that replay them."""

    def __init__(
        self,
        metrics: RouterMetrics,
        *,
        concurrency: int = 32,
        queue_size: int = 4096,
        timeout_seconds: float = 5.0,
        max_rate: float = 0.0,
    ) -> None:
        self._metrics = metrics
        # Copies per second at most (0: no cap). The controller shares the pod's CPU limit with
        # NGINX, so an unbounded replay rate would throttle the clients' requests.
        self._max_rate = max_rate
        self._tokens = max_rate
        self._refilled = time.monotonic()
        self._concurrency = concurrency
        self._timeout = timeout_seconds
        self._queue: asyncio.Queue[ShadowRecord] = asyncio.Queue(maxsize=queue_size)
        self._endpoints: tuple[str, ...] = ()
        self._next = itertools.count()
        self.on_room: Callable[[], None] | None = None  # called when a full queue has room
        self._counts = {
            result: metrics.shadow_copies.labels(result=result)
            for result in ("sent", "failed", "dropped", "too_large")
        }

    def set_target(self, target: ShadowTarget | None) -> None:
        """Replay to ``target``'s endpoints from now on (None: drop every record)."""
        self._endpoints = () if target is None else target.endpoints

    def count_dropped(self, count: int) -> None:
        """Count copies dropped elsewhere (by the kernel, while the receiver paused)."""
        self._counts["dropped"].inc(count)

    def _take_token(self) -> bool:
        if self._max_rate <= 0:
            return True
        now = time.monotonic()
        self._tokens = min(self._max_rate, self._tokens + (now - self._refilled) * self._max_rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def offer(self, data: bytes) -> bool:
        """Queue one datagram's record, or count why it was not queued. Never blocks.

        False when the queue is full or the rate cap is reached: the receiver then stops
        reading until ``on_room`` is called (by a worker, or after the cap's refill time).
        """
        if not self._endpoints:
            self._counts["dropped"].inc()
            return True
        if self._queue.full():
            self._counts["dropped"].inc()
            return False
        if not self._take_token():
            self._counts["dropped"].inc()
            if self.on_room is not None:
                asyncio.get_running_loop().call_later(1 / self._max_rate, self.on_room)
            return False
        try:
            record = parse_datagram(data)
        except ValueError as error:
            log.warning("unreadable shadow record: %s", error)
            self._counts["failed"].inc()
            return True
        if isinstance(record, TooLarge):
            self._counts["too_large"].inc()
            return True
        self._queue.put_nowait(record)
        return True

    async def run(self) -> None:
        """Replay queued records until cancelled."""
        connector = aiohttp.TCPConnector(limit=self._concurrency, ttl_dns_cache=None)
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        ) as session:
            workers = [asyncio.create_task(self._work(session)) for _ in range(self._concurrency)]
            try:
                await asyncio.gather(*workers)
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    def _pick(self, request_id: str, count: int) -> int:
        """The endpoint index for a request id: stable per id, round robin without one."""
        if request_id:
            return zlib.crc32(request_id.encode()) % count
        return next(self._next) % count

    async def _work(self, session: aiohttp.ClientSession) -> None:
        while True:
            record = await self._queue.get()
            waiting = self._queue.qsize()
            self._metrics.shadow_queue.set(waiting)
            if self.on_room is not None and waiting <= self._queue.maxsize // 2:
                self.on_room()
            endpoints = self._endpoints
            if not endpoints:
                self._counts["dropped"].inc()
                continue
            endpoint = endpoints[self._pick(record.request_id, len(endpoints))]
            headers = {SHADOW_HEADER: "1"}
            if record.request_id:
                headers["x-request-id"] = record.request_id
            if record.content_type:
                headers["content-type"] = record.content_type
            try:
                async with session.request(
                    record.method,
                    URL(f"http://{endpoint}{record.uri}", encoded=True),
                    data=record.body or None,
                    headers=headers,
                    allow_redirects=False,
                ) as response:
                    await response.read()
                    result = "sent" if response.status < 500 else "failed"
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                log.debug("shadow copy to %s failed: %r", endpoint, error)
                result = "failed"
            self._counts[result].inc()


class ShadowReceiver:
    """The UDP socket on 127.0.0.1 that NGINX's syslog access log sends records to.

    Datagrams are read in batches straight from the socket. While the replay queue is full the
    receiver stops reading altogether, so an overloaded shadow costs the controller no CPU:
    the kernel drops what does not fit in the socket buffer, and those drops (the ``drops``
    column of ``/proc/net/udp`` for this socket) are added to ``dropped`` every second.
    """

    def __init__(
        self,
        replayer: ShadowReplayer,
        port: int,
        receive_buffer: int = 4 << 20,
        batch: int = 64,
    ) -> None:
        self._replayer = replayer
        self._port = port
        self._receive_buffer = receive_buffer
        self._batch = batch
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._drops_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind the socket and start handing datagrams to the replayer."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # capped by net.core.rmem_max; best effort
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._receive_buffer)
        sock.bind(("127.0.0.1", self._port))
        sock.setblocking(False)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._replayer.on_room = self._resume
        self._resume()
        self._drops_task = asyncio.create_task(self._count_kernel_drops())

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(self._batch):
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as error:
                log.warning("shadow side channel error: %s", error)
                return
            if not self._replayer.offer(data):
                self._pause()
                return

    def _pause(self) -> None:
        if self._reading and self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def _resume(self) -> None:
        if not self._reading and self._loop is not None and self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._readable)
            self._reading = True

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped for this socket (buffer full), from /proc/net/udp."""
        if self._sock is None:
            return None
        inode = str(os.fstat(self._sock.fileno()).st_ino)
        try:
            lines = Path("/proc/net/udp").read_text().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[9] == inode:
                return int(fields[12])
        return None

    async def _count_kernel_drops(self) -> None:
        seen = 0
        while True:
            await asyncio.sleep(1.0)
            drops = self.kernel_drops()
            if drops is not None and drops > seen:
                self._replayer.count_dropped(drops - seen)
                seen = drops

    def close(self) -> None:
        """Stop receiving."""
        self._pause()
        if self._drops_task is not None:
            self._drops_task.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
