"""Upload sources: turning bytes, paths, file objects and iterators into restartable streams.

Two needs shape this module. The sha256 of an upload must describe exactly the bytes that were
sent (an ETag is no checksum: a multipart ETag is ``md5-of-md5s-N``), so every attempt reads
through a :class:`HashingReader`. And a retried upload must send the same bytes again from the
start, so every source is wrapped in a :class:`Payload` whose :meth:`~Payload.attempt` yields a
fresh reader positioned at the beginning:

* bytes and paths are re-read; seekable file objects are rewound;
* one-shot streams (pipes, sockets, iterators of chunks) go through a
  :class:`ReplayableReader`, which copies what it reads to an anonymous temporary file while
  the upload streams, and replays that copy on a retry before continuing with the source.

Rewindable sources are hashed in a first pass, so their digest is known before the upload and
can travel with it as object metadata; the digest of a one-shot stream is only known at the end.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol, TypeAlias, runtime_checkable

CHUNK_SIZE = 1024 * 1024


@runtime_checkable
class Readable(Protocol):
    """Anything with ``read(size) -> bytes``: files, sockets' makefile(), HTTP responses."""

    def read(self, size: int = -1, /) -> bytes: ...


@runtime_checkable
class SeekableReadable(Readable, Protocol):
    """A readable stream that may be able to seek (``seekable()`` says whether it really can)."""

    def seekable(self) -> bool: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...


UploadSource: TypeAlias = (
    bytes | bytearray | memoryview | os.PathLike[str] | Readable | Iterable[bytes]
)
"""What can be uploaded: data in memory, a local file, a binary file object, chunks."""


class HashingReader:
    """Passes reads through and keeps the sha256 and size of everything read."""

    def __init__(self, raw: Readable) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._raw.read(size)
        if not isinstance(chunk, bytes):
            # minio insists on bytes; a text-mode file is a caller error worth naming.
            if isinstance(chunk, str):
                raise TypeError("upload source returned str: open files in binary mode ('rb')")
            chunk = bytes(chunk)
        self._hash.update(chunk)
        self.size += len(chunk)
        return chunk

    @property
    def sha256(self) -> str:
        """Hex digest of the bytes read so far."""
        return self._hash.hexdigest()


class IterableReader:
    """Adapts an iterable of byte chunks (of any sizes) to ``read(size)``."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._exhausted = False

    def read(self, size: int = -1, /) -> bytes:
        while not self._exhausted and (size < 0 or len(self._buffer) < size):
            chunk = next(self._chunks, None)
            if chunk is None:
                self._exhausted = True
            elif isinstance(chunk, bytes | bytearray | memoryview):
                self._buffer += chunk
            else:
                raise TypeError(f"upload chunks must be bytes, not {type(chunk).__name__}")
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


class ReplayableReader:
    """Reads a one-shot stream once, keeping a copy on disk so it can be read again.

    ``rewind()`` starts over: the copied part is replayed from the temporary file, then reading
    continues from the source where it stopped. Disk use is the size of the stream; memory use
    is one read.
    """

    def __init__(self, source: Readable, already_read: bytes, spool_dir: Path | None) -> None:
        self._source = source
        self._spool: IO[bytes] = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - closed by close()
        self._spool.write(already_read)
        self._spooled = len(already_read)
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(CHUNK_SIZE), b""))
        if self._position < self._spooled:
            self._spool.seek(self._position)
            chunk = self._spool.read(min(size, self._spooled - self._position))
        else:
            chunk = self._source.read(size)
            self._spool.seek(self._spooled)
            self._spool.write(chunk)
            self._spooled += len(chunk)
        self._position += len(chunk)
        return chunk

    def rewind(self) -> None:
        """Start reading from the beginning again."""
        self._position = 0

    def close(self) -> None:
        """Delete the temporary copy."""
        self._spool.close()


class Payload(ABC):
    """Data to upload, readable from the start once per attempt."""

    sha256: str | None = None  # known before the upload (rewindable sources)
    size: int | None = None

    @abstractmethod
    @contextmanager
    def attempt(self) -> Iterator[Readable]:
        """Yield a reader positioned at the start of the data."""

    def close(self) -> None:  # noqa: B027 - most payloads own nothing
        """Release what the payload owns (temporary files)."""


class BytesPayload(Payload):
    """Data already in memory."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.size = len(data)

    @contextmanager
    def attempt(self) -> Iterator[Readable]:
        yield io.BytesIO(self._data)


class FilePayload(Payload):
    """A local file, re-opened for every attempt."""

    def __init__(self, path: Path) -> None:
        self._path = path
        with path.open("rb") as stream:
            self.sha256, self.size = _hash_stream(stream)

    @contextmanager
    def attempt(self) -> Iterator[Readable]:
        with self._path.open("rb") as stream:
            yield stream


class SeekablePayload(Payload):
    """A seekable binary stream, rewound to where it was for every attempt."""

    def __init__(self, stream: SeekableReadable, *, owned: bool = False) -> None:
        self._stream = stream
        self._start = stream.tell()
        self._owned = owned
        self.sha256, self.size = _hash_stream(stream)

    @contextmanager
    def attempt(self) -> Iterator[Readable]:
        self._stream.seek(self._start)
        yield self._stream

    def close(self) -> None:
        if self._owned:
            close: Callable[[], object] | None = getattr(self._stream, "close", None)
            if close is not None:
                close()


class OneShotPayload(Payload):
    """A stream that can be read only once; replayed from a temporary copy on retries."""

    def __init__(self, source: Readable, already_read: bytes, spool_dir: Path | None) -> None:
        self._reader = ReplayableReader(source, already_read, spool_dir)

    @contextmanager
    def attempt(self) -> Iterator[Readable]:
        self._reader.rewind()
        yield self._reader

    def close(self) -> None:
        self._reader.close()


def payload_from(source: UploadSource, *, small_size: int, spool_dir: Path | None) -> Payload:
    """Wrap ``source`` in the right :class:`Payload`.

    A one-shot stream that ends within ``small_size`` bytes is simply kept in memory: it then
    goes up in one request with its digest known in advance.
    """
    if isinstance(source, str):
        raise TypeError("upload source is a str: pass bytes for data or a Path for a file")
    if isinstance(source, bytes | bytearray | memoryview):
        return BytesPayload(bytes(source))
    if isinstance(source, os.PathLike):
        return FilePayload(Path(source))
    stream: Readable
    if isinstance(source, SeekableReadable) and source.seekable():
        return SeekablePayload(source)
    if isinstance(source, Readable):
        stream = source
    elif isinstance(source, Iterable):
        stream = IterableReader(source)
    else:
        raise TypeError(f"cannot upload a {type(source).__name__}")
    head = _read_up_to(stream, small_size + 1)
    if len(head) <= small_size:
        return BytesPayload(head)
    return OneShotPayload(stream, head, spool_dir)


def spool(payload: Payload, spool_dir: Path | None) -> Payload:
    """Return a payload whose digest is known, copying a one-shot stream to a temporary file."""
    if payload.sha256 is not None:
        return payload
    copy: IO[bytes] = tempfile.TemporaryFile(dir=spool_dir)  # noqa: SIM115 - owned by the payload
    try:
        with payload.attempt() as reader:
            for chunk in iter(lambda: reader.read(CHUNK_SIZE), b""):
                copy.write(chunk)
        copy.seek(0)
        return SeekablePayload(copy, owned=True)
    except BaseException:
        copy.close()
        raise
    finally:
        payload.close()


def _hash_stream(stream: Readable) -> tuple[str, int]:
    reader = HashingReader(stream)
    while reader.read(CHUNK_SIZE):
        pass
    return reader.sha256, reader.size


def _read_up_to(stream: Readable, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(remaining)
        if not chunk:
            break
        if not isinstance(chunk, bytes):
            if isinstance(chunk, str):
                raise TypeError("upload source returned str: open files in binary mode ('rb')")
            chunk = bytes(chunk)
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
