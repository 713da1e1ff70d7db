"""Leader election's decisions, and the elector against an in-memory Lease store."""

from __future__ import annotations

import copy
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubeloop.controllers.leader import (
    LeaderElector,
    LeaseTimings,
    claim,
    holder_of,
    observe,
    release,
)
from kubeloop.settings import OperatorSettings

NOW = datetime(2026, 11, 27, 20, 0, 0, 123456, tzinfo=UTC)
NS, NAME = "kubeloop-system", "kubeloop-operator"


def _lease(holder: str, version: str = "7", transitions: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": version},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-11-27T19:00:00.000000Z",
            "renewTime": "2026-11-27T19:59:58.000000Z",
            "leaseTransitions": transitions,
        },
    }


def _claim(lease: dict[str, Any] | None, *, expired: bool, me: str = "b") -> dict[str, Any] | None:
    return claim(
        lease,
        identity=me,
        namespace=NS,
        name=NAME,
        duration_seconds=15,
        expired=expired,
        now=NOW,
    )


def test_no_lease_is_created_for_us_with_no_resource_version() -> None:
    body = _claim(None, expired=False)
    assert body is not None
    assert "resourceVersion" not in body["metadata"]
    assert body["spec"] == {
        "holderIdentity": "b",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-11-27T20:00:00.123456Z",
        "renewTime": "2026-11-27T20:00:00.123456Z",
        "leaseTransitions": 0,
    }


def test_a_live_lease_of_another_replica_is_left_alone() -> None:
    assert _claim(_lease("a"), expired=False) is None


def test_an_expired_lease_is_taken_over_as_a_transition_on_the_version_read() -> None:
    body = _claim(_lease("a"), expired=True)
    assert body is not None
    assert body["metadata"]["resourceVersion"] == "7"  # the write fails if anyone wrote since
    assert body["spec"]["holderIdentity"] == "b"
    assert body["spec"]["leaseTransitions"] == 3
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"] == "2026-11-27T20:00:00.123456Z"


def test_our_own_lease_is_renewed_without_a_transition() -> None:
    body = _claim(_lease("b"), expired=False)
    assert body is not None
    assert body["spec"]["leaseTransitions"] == 2
    assert body["spec"]["acquireTime"] == "2026-11-27T19:00:00.000000Z"
    assert body["spec"]["renewTime"] == "2026-11-27T20:00:00.123456Z"


def test_a_released_lease_is_taken_at_once() -> None:
    body = _claim(_lease(""), expired=False)
    assert body is not None and holder_of(body) == "b"


def test_release_gives_up_only_our_own_lease() -> None:
    assert release(_lease("a"), identity="b", now=NOW) is None
    assert release(None, identity="b", now=NOW) is None
    given_up = release(_lease("b"), identity="b", now=NOW)
    assert given_up is not None
    assert given_up["spec"]["holderIdentity"] == ""
    assert given_up["spec"]["leaseDurationSeconds"] == 1
    assert given_up["metadata"]["resourceVersion"] == "7"


def test_the_observation_clock_restarts_only_when_the_record_changes() -> None:
    first = observe(None, _lease("a"), 100.0)
    assert observe(first, _lease("a"), 130.0) is first  # unchanged: still seen since 100
    renewed = _lease("a", version="8")
    assert observe(first, renewed, 130.0).since == 130.0
    assert observe(first, _lease("b"), 130.0).since == 130.0  # another holder
    assert observe(first, None, 131.0).since == 131.0


@pytest.mark.parametrize(
    ("duration", "renew", "retry"), [(15, 15, 2), (15, 10, 10), (15, 10, 0), (10, 12, 2)]
)
def test_timings_must_be_ordered(duration: float, renew: float, retry: float) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseTimings(duration=duration, renew_deadline=renew, retry_period=retry)


def test_timings_for_another_duration_keep_client_go_proportions() -> None:
    timings = LeaseTimings.for_duration(15)
    assert (timings.duration, timings.renew_deadline, timings.retry_period) == (15, 10, 2)


class LeaseStore:
    """The API server's behaviour for one Lease: resourceVersion checks and 409s."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.reachable = True

    def get_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        assert (api_version, kind) == ("coordination.k8s.io/v1", "Lease")
        if not self.reachable:
            raise ConnectionError("connection refused")
        return copy.deepcopy(self.lease)

    def write_lease(self, lease: dict[str, Any]) -> bool:
        if not self.reachable:
            raise ConnectionError("connection refused")
        read = lease["metadata"].get("resourceVersion")
        current = None if self.lease is None else self.lease["metadata"]["resourceVersion"]
        if read != current:
            return False
        self.version += 1
        self.lease = copy.deepcopy(lease)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _elector(store: LeaseStore, clock: Clock, identity: str) -> LeaderElector:
    return LeaderElector(
        store,  # type: ignore[arg-type]  # the adapter's two calls the elector makes
        namespace=NS,
        name=NAME,
        identity=identity,
        timings=LeaseTimings.for_duration(15),
        clock=clock,
    )


def test_two_replicas_one_leader_and_a_takeover_after_a_whole_unrenewed_duration() -> None:
    store, clock = LeaseStore(), Clock()
    first, second = _elector(store, clock, "a"), _elector(store, clock, "b")
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()  # seen at t=0
    clock.now = 10.0
    assert first.try_acquire_or_renew()  # a renews
    clock.now = 24.0
    assert not second.try_acquire_or_renew()  # b first sees the renewal now: its clock restarts
    clock.now = 38.9
    assert not second.try_acquire_or_renew()  # unchanged for 14.9 s
    clock.now = 39.0
    assert second.try_acquire_or_renew()  # unchanged for 15 s: a is gone
    assert holder_of(store.lease) == "b"
    assert store.lease is not None and store.lease["spec"]["leaseTransitions"] == 1
    assert not first.try_acquire_or_renew()  # the old leader cannot renew any more


def test_of_two_replicas_racing_for_a_free_lease_exactly_one_wins() -> None:
    store, clock = LeaseStore(), Clock()
    first, second = _elector(store, clock, "a"), _elector(store, clock, "b")
    store.lease = _lease("", version="0")  # given up by its last holder
    stale = store.get_object("coordination.k8s.io/v1", "Lease", NS, NAME)
    assert first.try_acquire_or_renew()
    # b decides on the record it read before a wrote: the write is refused.
    body = claim(
        stale, identity="b", namespace=NS, name=NAME, duration_seconds=15, expired=False, now=NOW
    )
    assert body is not None and not store.write_lease(body)
    assert not second.try_acquire_or_renew()
    assert holder_of(store.lease) == "a"


def test_an_unreachable_api_server_is_a_failed_round_not_a_crash() -> None:
    store, clock = LeaseStore(), Clock()
    elector = _elector(store, clock, "a")
    store.reachable = False
    assert not elector.try_acquire_or_renew()
    store.reachable = True
    assert elector.try_acquire_or_renew()


def test_release_lets_a_standby_take_over_at_its_next_round() -> None:
    store, clock = LeaseStore(), Clock()
    first, second = _elector(store, clock, "a"), _elector(store, clock, "b")
    assert first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()
    first.release()
    assert holder_of(store.lease) == ""
    assert second.try_acquire_or_renew()  # no lease duration to wait


def test_leader_election_without_a_namespace_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="KUBELOOP_LEADER_ELECTION_NAMESPACE"):
        OperatorSettings(leader_election=True)
    settings = OperatorSettings(leader_election=True, leader_election_namespace="ops")
    assert settings.leader_election_identity != OperatorSettings().leader_election_identity


def test_every_operator_setting_is_documented() -> None:
    documented = (Path(__file__).resolve().parents[2] / "docs" / "operator.md").read_text()
    missing = [
        f"KUBELOOP_{name.upper()}"
        for name in OperatorSettings.model_fields
        if f"`KUBELOOP_{name.upper()}`" not in documented
    ]
    assert not missing, f"docs/operator.md does not describe {missing}"


def test_a_leader_that_cannot_renew_stops_within_the_renew_deadline() -> None:
    store = LeaseStore()
    lost = threading.Event()
    elector = LeaderElector(
        store,  # type: ignore[arg-type]
        namespace=NS,
        name=NAME,
        identity="a",
        timings=LeaseTimings(duration=0.6, renew_deadline=0.3, retry_period=0.05),
        on_lost=lost.set,
    )
    elector.acquire()
    elector.start_renewing()
    assert not lost.wait(0.5)  # renewing: still leading after more than the deadline
    store.reachable = False
    started = time.monotonic()
    assert lost.wait(2), "on_lost was not called after the renew deadline"
    assert 0.25 <= time.monotonic() - started < 1.0
    elector.release()  # unreachable: logged, not raised
