"""A steady load generator for rollout tests: a fixed request rate, every answer recorded.

Each request is sent at its scheduled time (``rate`` per second, spread over a few threads
with keep-alive connections), so a slow version shows up as latency rather than as fewer
requests. Every outcome is kept: when it was sent, the status (0 for a transport error), the
``x-kubeloop-version`` that answered, and the latency, so a test can count failures and the
split per version in any time window.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Outcome:
    """One request's fate."""

    sent_at: float
    status: int
    version: str | None
    latency: float
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != httpx.codes.OK


class SteadyLoad:
    """POST ``body()`` to ``url`` at ``rate`` requests per second until stopped."""

    def __init__(
        self,
        url: str,
        body: Callable[[int], Any],
        *,
        rate: float,
        threads: int = 8,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.body = body
        self.rate = rate
        self.threads = threads
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._sequence = itertools.count()
        self._start = 0.0

    def __enter__(self) -> SteadyLoad:
        self._start = time.monotonic()
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout + 5)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                number = next(self._sequence)
                due = self._start + number / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._one(client, number)

    def _one(self, client: httpx.Client, number: int) -> None:
        started = time.monotonic()
        try:
            response = client.post(self.url, json=self.body(number))
            outcome = Outcome(
                started,
                response.status_code,
                response.headers.get("x-kubeloop-version"),
                time.monotonic() - started,
                None if response.status_code == httpx.codes.OK else response.text[:200],
            )
        except httpx.HTTPError as exc:
            outcome = Outcome(started, 0, None, time.monotonic() - started, repr(exc))
        with self._lock:
            self.outcomes.append(outcome)

    def now(self) -> float:
        return time.monotonic()

    def window(self, start: float, end: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if start <= o.sent_at < end]

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.failed]
