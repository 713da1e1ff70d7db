"""Adaptive micro-batching: many concurrent requests, one onnxruntime call.

Requests append their validated columns to a queue and await a future. One task takes what is
queued (up to ``max_rows`` rows) and runs it in a single worker thread, so at most one batch
runs at a time and the event loop keeps accepting requests meanwhile: under load the queue
fills while the previous batch runs, which is where most of the batching comes from, with no
timer at all. Before running, the batcher may wait a little longer, but only while requests
keep arriving: it yields to the event loop and goes on only if the queue grew, at most
``max_wait`` seconds in total. A lone request therefore runs at once (two event-loop turns
later), and a burst is not cut in two by a fixed window.

Outputs are split back by row offsets (views, no copies); an error in the model call fails
every request of that batch with the same exception (a genuine server fault, a 500).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Columns = dict[str, Array]
RunBatch = Callable[[Columns, int], list[Array]]
_IDLE_TURNS = 2  # event-loop turns without a new request before a batch stops waiting


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no new work."""


class MicroBatcher:
    """Batches concurrent ``submit`` calls into ``run(columns, rows)`` calls in one thread."""

    def __init__(
        self,
        run: RunBatch,
        *,
        max_rows: int,
        max_wait: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run = run
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._on_batch = on_batch
        self._queue: deque[tuple[Columns, int, asyncio.Future[list[Array]]]] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kubeloop-infer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.batches = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    async def submit(self, columns: Columns, rows: int) -> list[Array]:
        """The model's outputs for these rows (arrays with ``rows`` rows each)."""
        if self._closing:
            raise BatcherClosed("the server is shutting down")
        future: asyncio.Future[list[Array]] = asyncio.get_running_loop().create_future()
        self._queue.append((columns, rows, future))
        self._queued_rows += rows
        if not self._wakeup.is_set():
            self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Finish what is queued, then stop (new submissions fail with BatcherClosed)."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._max_wait > 0 and self._queued_rows < self._max_rows and not self._closing:
                await self._gather_arrivals()
            items = self._take()
            rows = sum(item[1] for item in items)
            try:
                outputs = await loop.run_in_executor(self._executor, self._run_batch, items, rows)
            except BaseException as exc:
                for _, _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            if self._on_batch is not None:
                self._on_batch(rows)
            start = 0
            for _, count, future in items:
                if not future.done():  # the client may have gone away
                    future.set_result([output[start : start + count] for output in outputs])
                start += count

    async def _gather_arrivals(self) -> None:
        deadline = time.monotonic() + self._max_wait
        seen = len(self._queue)
        idle = 0
        while self._queued_rows < self._max_rows and idle < _IDLE_TURNS:
            await asyncio.sleep(0)
            if len(self._queue) > seen:
                seen = len(self._queue)
                idle = 0
            else:
                idle += 1
            if time.monotonic() >= deadline:
                return

    def _take(self) -> list[tuple[Columns, int, asyncio.Future[list[Array]]]]:
        items = [self._queue.popleft()]
        rows = items[0][1]
        while self._queue and rows + self._queue[0][1] <= self._max_rows:
            item = self._queue.popleft()
            items.append(item)
            rows += item[1]
        self._queued_rows -= rows
        return items

    def _run_batch(
        self, items: list[tuple[Columns, int, asyncio.Future[list[Array]]]], rows: int
    ) -> list[Array]:
        if len(items) == 1:
            return self._run(items[0][0], rows)
        names = items[0][0].keys()
        feeds = {name: np.concatenate([item[0][name] for item in items]) for name in names}
        return self._run(feeds, rows)
