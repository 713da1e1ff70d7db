"""Reading a Dataset source: one CSV or Parquet object in S3, into an Arrow table.

The object is streamed to a local temporary file through :class:`~kubeloop.storage.ObjectStore`
(sha256 computed on the way, and checked when the object carries a stored digest) and then
parsed by pyarrow's native readers, which are multi-threaded C++ and far faster than anything
row-by-row. Problems come back as the typed errors of :mod:`kubeloop.data.errors`, so the
profiling Job can say *why* it could not read the data.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from kubeloop.api.dataset import DatasetSource
from kubeloop.data.errors import SourceNotFound, StorageUnavailable, UnreadableSource
from kubeloop.storage import (
    BucketNotFound,
    ObjectNotFound,
    ObjectStore,
    S3Uri,
    StorageError,
)

# "jsonl" is the prediction log (kubeloop.data.predictionlog), never a user-given format.
SourceFormat = Literal["csv", "parquet", "jsonl"]

# Key suffix -> (format, local file suffix). pyarrow picks a CSV decompressor from the local
# file's extension, so a compressed CSV keeps its extension on disk.
_SUFFIXES: Final[tuple[tuple[str, SourceFormat, str], ...]] = (
    (".csv", "csv", ".csv"),
    (".csv.gz", "csv", ".csv.gz"),
    (".csv.bz2", "csv", ".csv.bz2"),
    (".csv.zst", "csv", ".csv.zst"),
    (".tsv", "csv", ".csv"),
    (".txt", "csv", ".csv"),
    (".parquet", "parquet", ".parquet"),
    (".pq", "parquet", ".parquet"),
)
_MAX_ERROR_CHARS: Final = 300
_SNIFF_BYTES: Final = 64 * 1024  # how much of a CSV is checked for being text at all
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceInfo:
    """Where a table came from: the object, its format, and which bytes were read."""

    uri: S3Uri
    format: SourceFormat
    size: int
    sha256: str
    download_seconds: float = 0.0
    parse_seconds: float = 0.0


def source_uri(source: DatasetSource) -> S3Uri:
    """The object a Dataset reads, or :class:`UnreadableSource` for sources this Job cannot read."""
    if source.uri is None:
        raise UnreadableSource("source.uri is not set: this source is a predictionLog")
    try:
        uri = S3Uri.parse(source.uri)
    except StorageError as exc:
        raise UnreadableSource(f"source.uri: {exc}") from exc
    if uri.is_prefix:
        raise UnreadableSource(
            f"source.uri {uri} names a prefix (ends with '/'): point it at one CSV or Parquet object"
        )
    return uri


def source_format(source: DatasetSource, uri: S3Uri) -> tuple[SourceFormat, str]:
    """The format (``source.format``, else the key's extension) and the local file suffix."""
    key = uri.key.lower()
    for suffix, fmt, local_suffix in _SUFFIXES:
        if key.endswith(suffix) and (source.format is None or source.format == fmt):
            return fmt, local_suffix
    if source.format is not None:
        return source.format, f".{source.format}"
    raise UnreadableSource(
        f"cannot tell the format of {uri} from its extension: set source.format to csv or parquet"
    )


def read_source(
    store: ObjectStore,
    source: DatasetSource,
    work_dir: Path,
    *,
    text_columns: Collection[str] = (),
) -> tuple[pa.Table, SourceInfo]:
    """Download the source into ``work_dir`` and parse it.

    ``text_columns`` are read from a CSV as text whatever they look like: columns declared or
    pinned as ``category``, whose values such as ``007`` must not turn into numbers.
    """
    uri = source_uri(source)
    fmt, suffix = source_format(source, uri)
    local = work_dir / f"source{suffix}"
    started = time.perf_counter()
    try:
        downloaded = store.download(uri, local)
    except (ObjectNotFound, BucketNotFound) as exc:
        raise SourceNotFound(str(exc)) from exc
    except StorageError as exc:
        raise StorageUnavailable(f"cannot read the source: {exc}") from exc
    downloaded_at = time.perf_counter()
    _log.info("downloaded %s (%d bytes, sha256 %s)", uri, downloaded.size, downloaded.sha256)
    try:
        if fmt == "csv":
            _refuse_binary(local, uri)
            table = read_csv(local, source.csv_delimiter, text_columns)
        else:
            table = read_parquet(local)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadableSource(f"cannot read {uri} as {fmt.upper()}: {_first_line(exc)}") from exc
    finally:
        local.unlink(missing_ok=True)  # the table holds the data now; free the disk early
    info = SourceInfo(
        uri,
        fmt,
        downloaded.size,
        downloaded.sha256,
        download_seconds=downloaded_at - started,
        parse_seconds=time.perf_counter() - downloaded_at,
    )
    return table, info


def read_csv(path: Path, delimiter: str, text_columns: Collection[str] = ()) -> pa.Table:
    """Parse a CSV file with a header row; empty cells and the usual NA spellings are missing."""
    column_types = dict.fromkeys(text_columns, pa.string())
    convert = pa_csv.ConvertOptions(
        strings_can_be_null=True,  # an empty text cell is missing, as pandas reads it
        column_types=column_types,
    )
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    read = pa_csv.ReadOptions(use_threads=_use_threads())
    table = pa_csv.read_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    # pyarrow turns ISO dates and times into temporal types, whose text form is not what the
    # file says; read those columns again as the text they are.
    temporal = [
        field.name
        for field in table.schema
        if pa.types.is_temporal(field.type) and field.name not in column_types
    ]
    if temporal:
        convert = pa_csv.ConvertOptions(
            strings_can_be_null=True,
            column_types={**column_types, **dict.fromkeys(temporal, pa.string())},
        )
        table = pa_csv.read_csv(
            path, read_options=read, parse_options=parse, convert_options=convert
        )
    return table


def read_parquet(path: Path) -> pa.Table:
    """Read a Parquet file (without the pandas index columns pandas may have written)."""
    parquet = pq.ParquetFile(path)
    table = parquet.read(use_threads=_use_threads())
    index_columns = [
        name
        for name in _pandas_index_columns(table.schema)
        if isinstance(name, str) and name in table.column_names
    ]
    return table.drop_columns(index_columns) if index_columns else table


def _pandas_index_columns(schema: pa.Schema) -> list[object]:
    metadata = schema.metadata or {}
    raw = metadata.get(b"pandas")
    if raw is None:
        return []
    try:
        index_columns = json.loads(raw).get("index_columns", [])
    except (ValueError, AttributeError):
        return []
    return list(index_columns) if isinstance(index_columns, list) else []


def _use_threads() -> bool:
    # Arrow's pool is as large as OMP_NUM_THREADS says (else the CPU count). With one thread,
    # the threaded readers only add hand-over costs: measured ~20% slower on one core.
    return bool(pa.cpu_count() > 1)


def _refuse_binary(path: Path, uri: S3Uri) -> None:
    """Refuse a "CSV" that is binary data, before the parser quotes its bytes in the status."""
    with path.open("rb") as file:
        head = file.read(_SNIFF_BYTES)
    if path.suffix != ".csv" or not head:
        return  # compressed (the reader decompresses) or empty (the parser says so)
    if b"\x00" in head:
        raise UnreadableSource(
            f"{uri} is binary data, not CSV text (NUL bytes in its first {len(head)} bytes): "
            "point source.uri at a CSV or Parquet object"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the sniff boundary
            raise UnreadableSource(
                f"{uri} is not UTF-8 text (invalid byte at offset {exc.start}): CSV sources "
                "must be UTF-8; a binary file needs source.format or a .parquet key"
            ) from None


def _first_line(exc: BaseException) -> str:
    # Parser errors quote the offending row: keep one line, and not much of it, since the
    # message ends up in the Dataset's status; control characters are shown escaped.
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    line = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line)
    return line if len(line) <= _MAX_ERROR_CHARS else line[: _MAX_ERROR_CHARS - 3] + "..."
