"""The micro-batcher: order, bounds, a lone request runs at once, errors reach every caller."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from kubeloop.serving.batcher import BatcherClosed, MicroBatcher


def doubling(calls: list[list[int]]) -> MicroBatcher[int, int]:
    def run(payloads: list[int]) -> list[int]:
        calls.append(list(payloads))
        return [p * 2 for p in payloads]

    return MicroBatcher(run, max_rows=4, max_wait=0.05)


@pytest.mark.parametrize("in_thread", [False, True])
def test_concurrent_requests_share_batches_in_order_and_within_bounds(in_thread: bool) -> None:
    calls: list[list[int]] = []

    def run(payloads: list[int]) -> list[int]:
        calls.append(list(payloads))
        time.sleep(0.01)  # a model call: meanwhile the queue fills
        return [p * 2 for p in payloads]

    async def scenario() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(
            run, max_rows=4, max_wait=0.001, in_thread=in_thread
        )
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(n, 1) for n in range(10)))
        await batcher.close()
        return list(results)

    assert asyncio.run(scenario()) == [n * 2 for n in range(10)]
    assert [p for call in calls for p in call] == list(range(10))  # FIFO
    assert all(len(call) <= 4 for call in calls)
    assert len(calls) < 10  # batched


def test_rows_count_against_the_bound_and_a_big_request_runs_alone() -> None:
    calls: list[list[int]] = []

    async def scenario() -> None:
        batcher = doubling(calls)
        batcher.start()
        await asyncio.gather(batcher.submit(1, 3), batcher.submit(2, 3), batcher.submit(3, 9))
        await batcher.close()

    asyncio.run(scenario())
    assert calls == [[1], [2], [3]]  # 3 + 3 > 4 rows; 9 rows alone


def test_a_lone_request_is_not_held_for_the_wait() -> None:
    calls: list[list[int]] = []

    async def scenario() -> float:
        batcher: MicroBatcher[int, int] = MicroBatcher(
            lambda p: (calls.append(p), list(p))[1], max_rows=64, max_wait=0.5
        )
        batcher.start()
        await batcher.submit(0, 1)  # warm
        start = time.perf_counter()
        await batcher.submit(1, 1)
        elapsed = time.perf_counter() - start
        await batcher.close()
        return elapsed

    assert asyncio.run(scenario()) < 0.05  # max_wait is 0.5 s


def test_a_failing_batch_fails_each_of_its_requests_and_the_batcher_goes_on() -> None:
    def run(payloads: list[int]) -> list[int]:
        if 13 in payloads:
            raise ValueError("bad luck")
        return payloads

    async def scenario() -> None:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_rows=8, max_wait=0.0)
        batcher.start()
        with pytest.raises(ValueError, match="bad luck"):
            await batcher.submit(13, 1)
        assert await batcher.submit(7, 1) == 7
        await batcher.close()
        with pytest.raises(BatcherClosed):
            await batcher.submit(1, 1)

    asyncio.run(scenario())


def test_close_finishes_what_is_queued() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def run(payloads: list[int]) -> list[int]:
        gate.wait(1)
        seen.extend(payloads)
        return payloads

    async def scenario() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(run, max_rows=2, max_wait=0, in_thread=True)
        batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(n, 1)) for n in range(5)]
        await asyncio.sleep(0.01)
        closing = asyncio.ensure_future(batcher.close())
        gate.set()
        results = await asyncio.gather(*pending)
        await closing
        return list(results)

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]
    assert seen == [0, 1, 2, 3, 4]
