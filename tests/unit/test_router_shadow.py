"""The shadow side channel's records (as NGINX sends them) and the bounded replay queue."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from kubeloop.router.metrics import RouterMetrics
from kubeloop.router.shadow import TOO_LARGE, ShadowRecord, ShadowReplayer, parse_datagram
from kubeloop.router.table import ShadowTarget

HEADER = b"<190>Nov 27 12:00:00 kubeloop_shadow: "


def test_record_with_json_body() -> None:
    datagram = HEADER + (
        b'{"m":"POST","u":"/v2/models/iris/infer?x=1","t":"application/json",'
        b'"id":"abc","b":"{\\"inputs\\":[1,2]}\\n"}'
    )
    assert parse_datagram(datagram) == ShadowRecord(
        method="POST",
        uri="/v2/models/iris/infer?x=1",
        content_type="application/json",
        request_id="abc",
        body=b'{"inputs":[1,2]}\n',
    )


def test_record_with_bytes_that_are_not_utf8() -> None:
    datagram = HEADER + b'{"m":"PUT","u":"/x","t":"","id":"","b":"\xff\xfe\\u0001z"}'
    record = parse_datagram(datagram)
    assert isinstance(record, ShadowRecord)
    assert record.body == b"\xff\xfe\x01z"


def test_too_large_and_garbage() -> None:
    assert parse_datagram(HEADER + b'{"id":"abc","too_large":true}') is TOO_LARGE
    for bad in (
        b"no json here",
        HEADER + b"[1]",
        HEADER + b'{"m":"GET"}',
        HEADER + b'{"m":"GET","u":"http://x/"}',
    ):
        with pytest.raises(ValueError):
            parse_datagram(bad)


def sample(metrics: RouterMetrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "kubeloop_router_shadow_copies_total", {"result": result}
    )
    return 0.0 if value is None else value


def test_offer_counts_drops_without_target_and_when_full() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        replayer = ShadowReplayer(metrics, queue_size=2)
        record = HEADER + b'{"m":"GET","u":"/","t":"","id":"1","b":""}'
        replayer.offer(record)
        assert sample(metrics, "dropped") == 1  # no shadow target yet
        replayer.set_target(ShadowTarget(version="v3", endpoints=("127.0.0.1:9",), percent=100))
        for _ in range(3):
            replayer.offer(record)
        assert sample(metrics, "dropped") == 2  # the third did not fit in the queue
        replayer.offer(HEADER + b'{"id":"1","too_large":true}')
        replayer.offer(b"garbage")
        assert sample(metrics, "dropped") == 4  # queue still full: dropped before parsing
        assert sample(metrics, "too_large") == sample(metrics, "failed") == 0

        other = RouterMetrics()
        roomy = ShadowReplayer(other, queue_size=10)
        roomy.set_target(ShadowTarget(version="v3", endpoints=("127.0.0.1:9",), percent=100))
        roomy.offer(HEADER + b'{"id":"1","too_large":true}')
        roomy.offer(b"garbage")
        assert (sample(other, "too_large"), sample(other, "failed")) == (1, 1)

    asyncio.run(scenario())


def test_a_request_id_always_picks_the_same_shadow_pod() -> None:
    replayer = ShadowReplayer(RouterMetrics())
    picks = {f"req-{n}": replayer._pick(f"req-{n}", 3) for n in range(300)}
    assert picks == {f"req-{n}": replayer._pick(f"req-{n}", 3) for n in range(300)}
    assert set(picks.values()) == {0, 1, 2}
    assert min(Counter(picks.values()).values()) > 60  # spread, not all on one pod
    assert [replayer._pick("", 3) for _ in range(4)] == [0, 1, 2, 0]  # no id: round robin


def test_rate_cap_drops_and_asks_to_pause() -> None:
    async def scenario() -> None:
        metrics = RouterMetrics()
        replayer = ShadowReplayer(metrics, queue_size=100, max_rate=5)
        replayer.set_target(ShadowTarget(version="v3", endpoints=("127.0.0.1:9",), percent=100))
        resumed = asyncio.Event()
        replayer.on_room = resumed.set
        record = HEADER + b'{"m":"GET","u":"/","t":"","id":"1","b":""}'
        accepted = [replayer.offer(record) for _ in range(8)]
        assert accepted == [True] * 5 + [False] * 3
        assert sample(metrics, "dropped") == 3
        await asyncio.wait_for(resumed.wait(), 1.0)  # the receiver is told to read again

    asyncio.run(scenario())
