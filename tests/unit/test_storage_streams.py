"""Upload sources: hashing while reading, and restarting any source from its first byte."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubeloop.storage.streams import (
    BytesPayload,
    FilePayload,
    HashingReader,
    IterableReader,
    OneShotPayload,
    Payload,
    ReplayableReader,
    SeekablePayload,
    payload_from,
    spool,
)

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()


class OneShot:
    """A non-seekable stream (like a pipe): every byte can be read exactly once."""

    def __init__(self, data: bytes, max_read: int = 7_001) -> None:
        self._stream = io.BytesIO(data)
        self._max_read = max_read
        self.reads = 0

    def read(self, size: int = -1, /) -> bytes:
        self.reads += 1
        limit = self._max_read if size < 0 else min(size, self._max_read)
        return self._stream.read(limit)

    def seekable(self) -> bool:
        return False


def read_all(reader: HashingReader | IterableReader | ReplayableReader, size: int) -> bytes:
    return b"".join(iter(lambda: reader.read(size), b""))


def test_hashing_reader_hashes_what_passes_through() -> None:
    reader = HashingReader(io.BytesIO(DATA))
    assert read_all(reader, 4096) == DATA
    assert reader.sha256 == SHA
    assert reader.size == len(DATA)


def test_hashing_reader_refuses_text_streams() -> None:
    with pytest.raises(TypeError, match="binary mode"):
        HashingReader(io.StringIO("text")).read(10)  # type: ignore[arg-type]


def chunks(data: bytes, sizes: Iterator[int]) -> Iterator[bytes]:
    position = 0
    while position < len(data):
        size = next(sizes)
        yield data[position : position + size]
        position += size


@pytest.mark.parametrize("read_size", [1, 1000, 65_536, 10_000_000])
def test_iterable_reader_rechunks(read_size: int) -> None:
    sizes = iter([1, 0, 5000, 100_000, 3] * 1000)  # includes empty chunks
    reader = IterableReader(chunks(DATA, sizes))
    if read_size == 1:
        assert reader.read(1) == DATA[:1]
        assert reader.read(-1) == DATA[1:]
    else:
        assert read_all(reader, read_size) == DATA


def test_iterable_reader_rejects_non_bytes_chunks() -> None:
    with pytest.raises(TypeError, match="bytes"):
        IterableReader(["text"]).read(10)  # type: ignore[list-item]


def test_replayable_reader_replays_then_continues(tmp_path: Path) -> None:
    source = OneShot(DATA[1000:])
    reader = ReplayableReader(source, DATA[:1000], tmp_path)
    first = reader.read(50_000) + reader.read(50_000)  # an attempt that fails midway
    reader.rewind()
    assert read_all(reader, 8192) == DATA  # the retry sees every byte, in order
    reader.rewind()
    assert read_all(reader, 65_536) == DATA  # and again, now purely from the copy
    assert first == DATA[: len(first)]
    reader.close()


def attempt_bytes(payload: Payload) -> bytes:
    with payload.attempt() as reader:
        return b"".join(iter(lambda: reader.read(10_000), b""))


def sources(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    prefixed = io.BytesIO(b"ignored-header" + DATA)
    prefixed.seek(len(b"ignored-header"))
    return {
        "bytes": DATA,
        "bytearray": bytearray(DATA),
        "memoryview": memoryview(DATA),
        "path": path,
        "seekable": prefixed,
        "one-shot": OneShot(DATA),
        "iterator": chunks(DATA, iter([777] * 10_000)),
    }


@pytest.mark.parametrize(
    ("kind", "payload_type", "digest_known"),
    [
        ("bytes", BytesPayload, True),
        ("bytearray", BytesPayload, True),
        ("memoryview", BytesPayload, True),
        ("path", FilePayload, True),
        ("seekable", SeekablePayload, True),
        ("one-shot", OneShotPayload, False),
        ("iterator", OneShotPayload, False),
    ],
)
def test_every_source_restarts_from_its_first_byte(
    tmp_path: Path, kind: str, payload_type: type[Payload], digest_known: bool
) -> None:
    payload = payload_from(sources(tmp_path)[kind], small_size=100_000, spool_dir=tmp_path)  # type: ignore[arg-type]
    assert isinstance(payload, payload_type)
    assert (payload.sha256 == SHA) is digest_known
    assert attempt_bytes(payload) == DATA
    assert attempt_bytes(payload) == DATA  # a retry
    payload.close()


def test_small_one_shot_streams_stay_in_memory(tmp_path: Path) -> None:
    payload = payload_from(OneShot(b"tiny"), small_size=100, spool_dir=tmp_path)
    assert isinstance(payload, BytesPayload)
    assert payload.sha256 == hashlib.sha256(b"tiny").hexdigest()
    assert payload.size == 4
    empty = payload_from(iter([]), small_size=100, spool_dir=tmp_path)
    assert empty.size == 0


def test_spool_learns_the_digest_of_a_one_shot_stream(tmp_path: Path) -> None:
    payload = spool(payload_from(OneShot(DATA), small_size=1000, spool_dir=tmp_path), tmp_path)
    assert payload.sha256 == SHA
    assert payload.size == len(DATA)
    assert attempt_bytes(payload) == DATA
    payload.close()


@pytest.mark.parametrize("bad", ["a string", 42, None, io.StringIO("text")])
def test_unsupported_sources_are_rejected(tmp_path: Path, bad: object) -> None:
    with pytest.raises(TypeError):
        payload_from(bad, small_size=100, spool_dir=tmp_path)  # type: ignore[arg-type]
