"""The prediction log's batching (a recording stand-in for the store: S3 itself is tested in
the component tier) and the feedback memory."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from kubeloop.serving.predlog import FeedbackMemory, RecordLog, log_prefix
from kubeloop.storage import S3Uri


class RecordingStore:
    """Keeps what would be uploaded; ``fail`` makes uploads raise."""

    def __init__(self, *, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail = fail
        self.gate = gate

    def upload(self, data: bytes, destination: S3Uri, **_: Any) -> None:
        if self.gate is not None:
            self.gate.wait(2)
        if self.fail:
            raise OSError("store down")
        self.objects[str(destination)] = data


def make_log(store: RecordingStore, counts: dict[str, int], **overrides: Any) -> RecordLog:
    options: dict[str, Any] = {
        "store": store,
        "prefix": log_prefix("s3://bucket/logs", "churn", "3"),
        "kind": "predictions",
        "pod": "pod-a",
        "serialize": lambda record: [{"request_id": record, "row": 0}],
        "counts": counts,
        "capacity": 100,
        "batch": 10,
        "interval": 60.0,
    }
    options.update(overrides)
    return RecordLog(**options)  # type: ignore[arg-type]


def lines(store: RecordingStore) -> list[dict[str, Any]]:
    return [json.loads(line) for data in store.objects.values() for line in data.splitlines()]


def test_records_are_written_in_batches_of_n_and_flushed_on_close() -> None:
    store = RecordingStore()
    counts = {"written": 0, "dropped": 0, "failed": 0}

    async def scenario() -> None:
        log = make_log(store, counts)
        log.start()
        for index in range(25):
            log.offer(f"r{index}")
        await asyncio.sleep(0.2)
        assert counts["written"] == 20  # two full objects; the rest waits for the interval
        await log.close()

    asyncio.run(scenario())
    assert counts == {"written": 25, "dropped": 0, "failed": 0}
    assert len(store.objects) == 3
    assert sorted(line["request_id"] for line in lines(store)) == sorted(f"r{i}" for i in range(25))
    key = next(iter(store.objects))
    assert key.startswith("s3://bucket/logs/churn/3/predictions/")
    assert key.rsplit("/", 1)[1].startswith("pod-a-")
    assert key.endswith("-000001.jsonl")


def test_the_interval_writes_a_partial_batch() -> None:
    store = RecordingStore()
    counts = {"written": 0, "dropped": 0, "failed": 0}

    async def scenario() -> None:
        log = make_log(store, counts, interval=0.05)
        log.start()
        log.offer("only")
        await asyncio.sleep(0.3)
        assert counts["written"] == 1
        await log.close()

    asyncio.run(scenario())


def test_a_full_queue_drops_and_counts_and_never_blocks() -> None:
    gate = threading.Event()
    store = RecordingStore(gate=gate)
    counts = {"written": 0, "dropped": 0, "failed": 0}

    async def scenario() -> None:
        log = make_log(store, counts, capacity=5, batch=5)
        log.start()
        for index in range(5):
            log.offer(index)
        await asyncio.sleep(0.05)  # the writer took 5 and is stuck in the store
        for index in range(8):
            log.offer(index)  # returns at once: 5 queued, 3 dropped
        assert counts["dropped"] == 3
        gate.set()
        await log.close()

    asyncio.run(scenario())
    assert counts == {"written": 10, "dropped": 3, "failed": 0}


def test_a_failing_store_counts_failures() -> None:
    store = RecordingStore(fail=True)
    counts = {"written": 0, "dropped": 0, "failed": 0}

    async def scenario() -> None:
        log = make_log(store, counts)
        log.start()
        for index in range(3):
            log.offer(index)
        await log.close()

    asyncio.run(scenario())
    assert counts == {"written": 0, "dropped": 0, "failed": 3}


def test_feedback_memory_forgets_the_oldest() -> None:
    memory = FeedbackMemory(2)
    memory.remember("a", ("yes",))
    memory.remember("b", ("no",))
    memory.remember("c", ("yes", "no"))
    assert memory.lookup("a") is None
    assert memory.lookup("c") == ("yes", "no")
    assert len(memory) == 2


def test_an_id_remembered_again_keeps_its_place_and_takes_the_new_predictions() -> None:
    memory = FeedbackMemory(2)
    memory.remember("a", ("yes",))
    memory.remember("b", ("no",))
    memory.remember("a", ("no",))  # a client reusing its request id
    assert memory.lookup("a") == ("no",)
    memory.remember("c", ("yes",))  # "a" is still the oldest
    assert memory.lookup("a") is None
    assert memory.lookup("b") == ("no",)
    assert len(memory) == 2


def test_a_lookup_gives_one_prediction_per_row_as_a_tuple() -> None:
    memory = FeedbackMemory(3)
    memory.remember("one", ["yes"])  # kept as the value itself, given back as a tuple
    memory.remember("two", ["yes", "no"])
    memory.remember("number", [2.5])
    assert memory.lookup("one") == ("yes",)
    assert memory.lookup("two") == ("yes", "no")
    assert memory.lookup("number") == (2.5,)
    assert memory.lookup("other") is None
    assert len(memory) == 3
