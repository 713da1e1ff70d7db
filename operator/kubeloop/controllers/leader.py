"""Leader election between operator replicas, on a coordination.k8s.io Lease.

Two replicas of the operator must never both act: each would apply the same children and
write the same status, and two canary analyses would race to abort or promote. So with
``KUBELOOP_LEADER_ELECTION`` on, a replica runs the controllers only while it holds the Lease
``kubeloop-operator`` in its own namespace; the others wait.

The rules are client-go's ``leaderelection``, whose behaviour operators on Kubernetes are
expected to share:

* The holder renews the Lease every retry period (a PUT carrying the resourceVersion it read,
  so of two writers exactly one wins; the other gets 409 and tries again later).
* Another replica takes the Lease only after it has seen the same record unchanged for a whole
  lease duration, timed on its own monotonic clock. Nodes' clocks never need to agree: the
  timestamps in the record are for people, not for the decision.
* A leader that has not renewed within the renew deadline stops the process at once. Its
  Lease may already be someone else's, and a stale leader must not act.
* On a clean stop the leader gives the Lease up, so a standby takes over at its next retry
  instead of after a full lease duration.

The decisions (:func:`claim`, :func:`release`, :func:`observe`) are pure functions of what was
read and when; :class:`LeaderElector` only reads, decides and writes through the adapter.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubeloop.k8s import KubernetesAdapter

log = logging.getLogger("kubeloop.leader")

LEASE_API = "coordination.k8s.io/v1"


@dataclass(frozen=True)
class LeaseTimings:
    """client-go's defaults: renew every 2 s, give up after 10 s, others wait 15 s."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    @classmethod
    def for_duration(cls, seconds: float) -> LeaseTimings:
        """client-go's proportions for another lease duration."""
        return cls(duration=seconds, renew_deadline=seconds * 2 / 3, retry_period=seconds * 2 / 15)

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration, got "
                f"{self.retry_period} s, {self.renew_deadline} s and {self.duration} s"
            )


@dataclass(frozen=True)
class Observation:
    """A Lease record as this replica last saw it, and when it first saw it (monotonic)."""

    record: tuple[str, str]  # holder, resourceVersion (which every write changes)
    since: float


def _micro_time(moment: datetime) -> str:
    """A Lease MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder_of(lease: dict[str, Any] | None) -> str:
    """Who holds the Lease ('' for nobody)."""
    if lease is None:
        return ""
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def observe(previous: Observation | None, lease: dict[str, Any] | None, now: float) -> Observation:
    """What this replica has seen: the clock restarts whenever the record changes."""
    version = str(((lease or {}).get("metadata") or {}).get("resourceVersion") or "")
    record = (holder_of(lease), version)
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def _lease(
    namespace: str, name: str, resource_version: str | None, spec: dict[str, Any]
) -> dict[str, Any]:
    """A Lease to write; with the resourceVersion that was read (None: create it)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": LEASE_API, "kind": "Lease", "metadata": metadata, "spec": spec}


def claim(
    lease: dict[str, Any] | None,
    *,
    identity: str,
    namespace: str,
    name: str,
    duration_seconds: int,
    expired: bool,
    now: datetime,
) -> dict[str, Any] | None:
    """The Lease to write to lead from ``now`` on, or None while someone else holds it.

    ``expired`` is whether the current record has stood unchanged for a lease duration (see
    :func:`observe`). The result keeps the resourceVersion that was read, so the write fails
    with a conflict if anyone wrote in between.
    """
    moment = _micro_time(now)
    spec: dict[str, Any]
    version: str | None
    if lease is None:
        spec, version = {"acquireTime": moment, "leaseTransitions": 0}, None
    else:
        holder = holder_of(lease)
        if holder and holder != identity and not expired:
            return None
        spec = dict(lease.get("spec") or {})
        if holder != identity:
            spec["acquireTime"] = moment
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        version = (lease.get("metadata") or {}).get("resourceVersion")
    spec.update(holderIdentity=identity, leaseDurationSeconds=duration_seconds, renewTime=moment)
    return _lease(namespace, name, version, spec)


def release(lease: dict[str, Any] | None, *, identity: str, now: datetime) -> dict[str, Any] | None:
    """The Lease with nobody holding it, or None when it is not ours to give up."""
    if lease is None or holder_of(lease) != identity:
        return None
    moment = _micro_time(now)
    spec = dict(lease.get("spec") or {})
    # As client-go's ReleaseOnCancel: no holder and a 1 s duration, so a standby takes it at
    # its next retry without waiting for the old duration.
    spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=moment, renewTime=moment)
    metadata = lease.get("metadata") or {}
    return _lease(metadata["namespace"], metadata["name"], metadata.get("resourceVersion"), spec)


def _stop_now() -> None:
    # A leader that lost its Lease must not act for another moment: no graceful shutdown
    # (handlers in flight would go on writing); the pod's restart makes it a standby.
    logging.shutdown()
    os._exit(1)


class LeaderElector:
    """Holds the Lease for this replica: wait for it, renew it, give it up."""

    def __init__(
        self,
        adapter: KubernetesAdapter,
        *,
        namespace: str,
        name: str,
        identity: str,
        timings: LeaseTimings | None = None,
        on_lost: Callable[[], None] = _stop_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._adapter = adapter
        self.namespace, self.name, self.identity = namespace, name, identity
        self.timings = timings or LeaseTimings()
        self._on_lost = on_lost
        self._clock = clock
        self._observed: Observation | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def try_acquire_or_renew(self) -> bool:
        """One round: read the Lease and write it if it is free, expired or ours."""
        try:
            lease = self._adapter.get_object(LEASE_API, "Lease", self.namespace, self.name)
            now = self._clock()
            self._observed = observe(self._observed, lease, now)
            body = claim(
                lease,
                identity=self.identity,
                namespace=self.namespace,
                name=self.name,
                duration_seconds=max(1, round(self.timings.duration)),
                expired=now - self._observed.since >= self.timings.duration,
                now=datetime.now(UTC),
            )
            return body is not None and self._adapter.write_lease(body)
        except Exception as error:  # the API server may be away for a while: retried
            log.warning("leader election: the Lease could not be read or written: %s", error)
            return False

    def acquire(self) -> None:
        """Block until this replica holds the Lease."""
        announced = None
        while not self.try_acquire_or_renew():
            holder = self._observed.record[0] if self._observed else ""
            if holder != announced:
                log.info(
                    "standing by: Lease %s/%s is held by %s",
                    self.namespace,
                    self.name,
                    holder or "nobody",
                )
                announced = holder
            self._stop.wait(self.timings.retry_period)
        log.info("leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name)

    def start_renewing(self) -> None:
        """Renew in a background thread; call ``on_lost`` when the renew deadline passes."""
        self._renewer = threading.Thread(target=self._renew, name="leader-renew", daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        renewed = self._clock()
        while not self._stop.wait(self.timings.retry_period):
            if self.try_acquire_or_renew():
                renewed = self._clock()
            elif self._clock() - renewed >= self.timings.renew_deadline:
                log.error(
                    "lost the Lease %s/%s: not renewed for %.0f s; stopping",
                    self.namespace,
                    self.name,
                    self._clock() - renewed,
                )
                self._on_lost()
                return

    def release(self) -> None:
        """Stop renewing and give the Lease up (on a clean shutdown)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.timings.retry_period + 5)
        try:
            body = release(
                self._adapter.get_object(LEASE_API, "Lease", self.namespace, self.name),
                identity=self.identity,
                now=datetime.now(UTC),
            )
            if body is not None and self._adapter.write_lease(body):
                log.info("gave up the Lease %s/%s", self.namespace, self.name)
        except Exception as error:  # it then expires by itself
            log.warning("could not give up the Lease: %s", error)
