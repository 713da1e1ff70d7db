"""The prediction and feedback logs: bounded queues drained to S3 as batched JSONL objects.

A request only appends a tuple to a bounded deque (no I/O, no serialisation, no await); when
the deque is full the record is dropped and counted. A background task writes a log object
every ``batch`` records or ``interval`` seconds, serialising and uploading in a thread, so a
slow or failing object store costs requests nothing (failed uploads are counted, not retried
beyond the store's own retries). On shutdown whatever is queued is written.

Object keys (one JSON object per line, one line per row)::

    <prefix>/<model>/<version>/predictions/<YYYY-MM-DD>/<HH>/<pod>-<start>-<seq>.jsonl
    <prefix>/<model>/<version>/feedback/<YYYY-MM-DD>/<HH>/<pod>-<start>-<seq>.jsonl

``<start>`` (the process start, UTC ``YYYYMMDDTHHMMSS``) keeps a restarted pod from
overwriting its predecessor's objects. :class:`FeedbackMemory` remembers recent predictions by
request id so ``/feedback`` can score them live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from kubeloop.storage import ObjectStore, S3Uri

Serializer = Callable[[Any], list[dict[str, Any]]]
_log = logging.getLogger("kubeloop.serving")


class RecordLog:
    """One JSONL stream (``kind``) of one model version, written in batches."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        prefix: S3Uri,
        kind: str,
        pod: str,
        serialize: Serializer,
        counts: dict[str, int],
        capacity: int,
        batch: int,
        interval: float,
    ) -> None:
        self._store = store
        self._prefix = prefix
        self._kind = kind
        self._pod = pod
        self._serialize = serialize
        self._counts = counts
        self._capacity = capacity
        self._batch = batch
        self._interval = interval
        self._queue: deque[Any] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._seq = 0
        self._started = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self._task: asyncio.Task[None] | None = None
        self.objects: list[S3Uri] = []

    def offer(self, record: Any) -> None:
        """Queue a record, or drop and count it when the queue is full. Never blocks."""
        if len(self._queue) >= self._capacity or self._closing:
            self._counts["dropped"] += 1
            return
        self._queue.append(record)
        if len(self._queue) >= self._batch and not self._wakeup.is_set():
            self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"{self._kind}-log")

    async def close(self) -> None:
        """Write everything queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            if not self._closing and len(self._queue) < self._batch:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._interval)
            if self._queue:
                count = min(self._batch, len(self._queue))
                records = [self._queue.popleft() for _ in range(count)]
                await asyncio.to_thread(self._write, records)
            elif self._closing:
                return

    def _write(self, records: list[Any]) -> None:
        try:
            lines = [orjson.dumps(line) for record in records for line in self._serialize(record)]
            now = datetime.now(UTC)
            self._seq += 1
            key = (
                f"{self._kind}/{now:%Y-%m-%d}/{now:%H}/"
                f"{self._pod}-{self._started}-{self._seq:06d}.jsonl"
            )
            uri = self._prefix.join(key)
            self._store.upload(b"\n".join(lines) + b"\n", uri, content_type="application/x-ndjson")
        except Exception:
            _log.exception("writing %d %s log record(s) failed", len(records), self._kind)
            self._counts["failed"] += len(records)
            return
        self.objects.append(uri)
        self._counts["written"] += len(records)


def log_prefix(uri: str, model: str, version: str) -> S3Uri:
    """``<prefix>/<model>/<version>/`` below the configured log URI."""
    base = S3Uri.parse(uri if uri.endswith("/") else uri + "/")
    return base.join(model, version + "/")


class FeedbackMemory:
    """The last ``capacity`` predictions by request id (oldest forgotten first).

    A dict and a queue of its ids in arrival order rather than an ``OrderedDict``: with
    ``capacity`` in the 100k range every call misses the CPU caches, and this layout (no linked
    nodes, the queue read and written in order) misses them less. An id remembered again keeps
    its place (its predictions are replaced), as in an ``OrderedDict``.

    The prediction of a one-row request is kept as the value itself, not in a one-item tuple:
    one object less to make, and to reach again (a cache miss) when it is forgotten; ``lookup``
    gives it back as a tuple. (A label, a number: neither is a tuple.)
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: dict[str, Any] = {}  # one row: the value; more: a tuple of them
        self._order: deque[str] = deque()

    def remember(self, request_id: str, predictions: Sequence[Any]) -> None:
        """Keep ``predictions`` (one per row of the request) under ``request_id``."""
        items = self._items
        size = len(items)
        if len(predictions) == 1 and type(predictions[0]) is not tuple:
            items[request_id] = predictions[0]
        else:
            # A tuple of strings or floats: the garbage collector stops tracking it.
            items[request_id] = tuple(predictions)
        if len(items) != size:  # a new id (one lookup: each one misses the caches)
            self._order.append(request_id)
            if size >= self._capacity:
                del items[self._order.popleft()]

    def lookup(self, request_id: str) -> tuple[Any, ...] | None:
        """The predictions remembered for ``request_id`` (one per row), or None."""
        found = self._items.get(request_id)
        if found is None or type(found) is tuple:
            return found
        return (found,)

    def __len__(self) -> int:
        return len(self._items)
