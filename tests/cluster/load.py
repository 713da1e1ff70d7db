"""A steady load generator for rollout tests: a fixed request rate, every answer recorded.

Each request is sent at its scheduled time (``rate`` per second, spread over a few threads
with keep-alive connections), so a slow version shows up as latency rather than as fewer
requests. Every outcome is kept: when it was sent, the status (0 for a transport error), the
``x-kubeloop-version`` that answered, and the latency, so a test can count failures and the
split per version in any time window.

With ``feedback``, each answered prediction is followed on the same connection by a ``POST
/feedback`` carrying the answer's ``x-request-id`` and ``x-kubeloop-version`` (as a client
of the router does), whose body ``feedback(number, request_id)`` makes; its answers are kept
in ``feedback_answers``.
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
        feedback: Callable[[int, str], Any] | None = None,
    ) -> None:
        self.url = url
        self.body = body
        self.feedback = feedback
        self.feedback_url = url.rsplit("/", 1)[0] + "/feedback"
        self.feedback_answers: list[tuple[int, str | None, Any]] = []
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
        if self.feedback is not None and not outcome.failed:
            self._send_feedback(client, self.feedback, number, response)

    def _send_feedback(
        self,
        client: httpx.Client,
        feedback: Callable[[int, str], Any],
        number: int,
        answer: httpx.Response,
    ) -> None:
        request_id = answer.headers.get("x-request-id", "")
        headers = {"x-request-id": request_id}
        if version := answer.headers.get("x-kubeloop-version"):
            headers["x-kubeloop-version"] = version
        try:
            response = client.post(
                self.feedback_url, json=feedback(number, request_id), headers=headers
            )
            answer_body = response.json() if response.status_code == httpx.codes.OK else None
            seen = (response.status_code, response.headers.get("x-kubeloop-version"), answer_body)
        except (httpx.HTTPError, ValueError) as exc:
            seen = (0, None, repr(exc))
        with self._lock:
            self.feedback_answers.append(seen)

    def now(self) -> float:
        return time.monotonic()

    def window(self, start: float, end: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if start <= o.sent_at < end]

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.failed]
