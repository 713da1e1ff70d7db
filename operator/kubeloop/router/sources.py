"""Where the router learns its routes: the ``RouteSource`` interface and the routes-file source.

A source runs until cancelled and calls ``publish(inputs)`` with the complete current
``RouteInputs`` whenever they may have changed (publishing the same inputs twice is harmless:
the controller renders, compares and does nothing). A source that loses its upstream (the API
server, the file) simply stops publishing, so the router keeps serving what it has.

* ``KubernetesSource`` (``kubesource.py``): watches the Deployment and its EndpointSlices.
* ``RoutesFileSource``: reads a JSON file in the ``RouteInputs`` format, polling for changes.
  It is a real mode (``kubeloop route --routes-file routes.json``): a router in front of fixed
  backends without a cluster, and how the component tests drive real NGINX. Polling (not
  inotify) also follows ConfigMap volumes, which swap a symlink rather than write the file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from kubeloop.router.metrics import RouterMetrics
from kubeloop.router.table import RouteInputs

log = logging.getLogger(__name__)

Publish = Callable[[RouteInputs], None]


class RouteSource(Protocol):
    """Something that knows the current ``RouteInputs`` and says when they change."""

    async def run(self, publish: Publish) -> None:
        """Publish the current inputs now and after every change, until cancelled."""


class RoutesFileSource:
    """``RouteInputs`` from a JSON file, re-read every ``poll_seconds``."""

    def __init__(self, path: Path, metrics: RouterMetrics, poll_seconds: float = 0.5) -> None:
        self.path = path
        self._metrics = metrics
        self._poll = poll_seconds

    async def run(self, publish: Publish) -> None:
        """Publish the file's inputs whenever its content changes; bad content is skipped."""
        last: bytes | None = None
        while True:
            try:
                content = self.path.read_bytes()
            except OSError as error:
                if last is not None:
                    log.warning("routes file unreadable, keeping the last routes: %s", error)
                    self._metrics.routes_file_errors.inc()
                    last = None
                content = None
            if content is not None and content != last:
                last = content
                try:
                    inputs = RouteInputs.model_validate_json(content)
                except ValidationError as error:
                    log.error(
                        "routes file %s refused, keeping the last routes: %s", self.path, error
                    )
                    self._metrics.routes_file_errors.inc()
                else:
                    publish(inputs)
            await asyncio.sleep(self._poll)
