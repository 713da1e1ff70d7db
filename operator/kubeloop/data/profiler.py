"""``profile_dataset``: read a Dataset source, validate it, and store its snapshot and profile.

The one function that does I/O in this package; the rules, the digest and the statistics it
strings together are pure functions in their own modules. The steps:

1. read the source object into an Arrow table (:mod:`kubeloop.data.source`), or join a
   Deployment's prediction log with its feedback (:mod:`kubeloop.data.predictionlog`);
2. conform and validate it (:mod:`kubeloop.data.validate`);
3. compute its content digest, the version (:mod:`kubeloop.data.digest`);
4. only if validation passed: write ``snapshot.parquet`` and then ``profile.json`` below
   ``datasets/<namespace>/<name>/<digest>/``.

The prefix is content-addressed, so writing is idempotent: when ``profile.json`` already
exists, the version is complete (it is written last, after the snapshot) and nothing is
rewritten, which also makes a re-run after a crash or a concurrent duplicate Job harmless.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from kubeloop import __version__
from kubeloop.data.digest import content_digest
from kubeloop.data.errors import StorageUnavailable
from kubeloop.data.models import (
    ProfileRequest,
    ProfileResult,
    ValidationOutcome,
    dumps,
)
from kubeloop.data.predictionlog import read_prediction_log
from kubeloop.data.profile import TOP_K, profile_columns, target_profile
from kubeloop.data.source import SourceInfo, read_source
from kubeloop.data.validate import Validated, validate
from kubeloop.storage import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    S3Uri,
    StorageError,
    dataset_snapshot_key,
    file_key,
)

SNAPSHOT_FILE: Final = "snapshot.parquet"
PROFILE_FILE: Final = "profile.json"
PROFILE_SCHEMA_VERSION: Final = 1
# zstd: markedly smaller than snappy for tabular data at a similar write speed.
_PARQUET_COMPRESSION: Final = "zstd"
_log = logging.getLogger(__name__)


@dataclass
class _Stopwatch:
    """Seconds per stage, reported in the result so a slow Job shows where the time went."""

    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 4)


def profile_dataset(
    request: ProfileRequest,
    store: ObjectStore,
    *,
    work_dir: Path | None = None,
    source_store: ObjectStore | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ProfileResult:
    """Profile one version of a Dataset; see the module docstring for the steps.

    ``source_store`` reads the source when it needs its own credentials
    (``source.credentialsSecretRef``); the snapshot and profile always go through ``store``.

    Returns a result with ``ok`` true, or with ``reason="ValidationFailed"`` and the failed
    rules (nothing is written then). Raises a :class:`~kubeloop.data.errors.ProfileError` when
    the data could not be profiled at all (missing or unreadable source, unusable storage).
    """
    watch = _Stopwatch()
    profiled_at = clock().strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = request.spec
    bucket = request.bucket or store.bucket
    with tempfile.TemporaryDirectory(prefix="kubeloop-profile-", dir=work_dir) as scratch:
        table, source, summary = _read(request, store, source_store, Path(scratch), clock)
        watch.timings["download"] = round(source.download_seconds, 4)
        watch.timings["parse"] = round(source.parse_seconds, 4)
        _log.info(
            "read %d rows x %d columns from %s", table.num_rows, table.num_columns, source.uri
        )
        with watch.stage("validate"):
            validated = validate(table, spec, request.pinned_schema)
        del table  # only the conformed table is needed from here on: free the rest early
        with watch.stage("digest"):
            version = content_digest(validated.table, validated.types)
        _log.info("content digest %s", version)
        result = ProfileResult(
            ok=False,
            version=version,
            previous_version=request.previous_version,
            changed=None
            if request.previous_version is None
            else version != request.previous_version,
            rows=validated.table.num_rows,
            columns=validated.columns,
            profiled_at=profiled_at,
            validation=ValidationOutcome(passed=validated.passed, failures=validated.failures),
            source_summary=None if summary is None else summary[0],
        )
        if not validated.passed:
            result.reason = "ValidationFailed"
            result.message = _failure_summary(validated)
            result.timings = watch.timings
            return result

        prefix = dataset_snapshot_key(request.namespace, request.dataset, version)
        snapshot_uri = S3Uri(bucket, file_key(prefix, SNAPSHOT_FILE))
        profile_uri = S3Uri(bucket, file_key(prefix, PROFILE_FILE))
        result.snapshot_uri, result.profile_uri = str(snapshot_uri), str(profile_uri)
        try:
            existing = _stored_snapshot(store, snapshot_uri, profile_uri)
            if existing is not None:
                _log.info("version %s is already stored at %s; not rewriting it", version, prefix)
                result.snapshot_sha256 = existing
            else:
                with watch.stage("profile"):
                    profile = build_profile(
                        request,
                        source,
                        validated,
                        version,
                        profiled_at,
                        source_summary=None if summary is None else summary[1],
                    )
                result.snapshot_sha256 = _write_version(
                    store,
                    validated,
                    profile,
                    snapshot_uri=snapshot_uri,
                    profile_uri=profile_uri,
                    scratch=Path(scratch),
                    watch=watch,
                )
                result.snapshot_written = True
        except StorageError as exc:
            raise StorageUnavailable(f"cannot store version {version}: {exc}") from exc
    result.ok = True
    result.message = f"version {version}: {result.rows} rows, {len(result.columns)} columns" + (
        "" if result.snapshot_written else " (snapshot already stored)"
    )
    result.timings = watch.timings
    return result


def _read(
    request: ProfileRequest,
    store: ObjectStore,
    source_store: ObjectStore | None,
    scratch: Path,
    clock: Callable[[], datetime],
) -> tuple[pa.Table, SourceInfo, tuple[str, dict[str, Any]] | None]:
    """The source as a table; for a prediction log also its summary (sentence, counts)."""
    spec = request.spec
    log_source = spec.source.prediction_log
    if log_source is None:
        table, source = read_source(
            source_store or store, spec.source, scratch, text_columns=_text_columns(request)
        )
        return table, source, None
    started = time.perf_counter()
    base = request.base_snapshot_uri
    log = read_prediction_log(
        store,
        request.bucket or store.bucket,
        request.namespace,
        log_source,
        target=spec.target,
        now=clock(),
        base_snapshot=S3Uri.parse(base) if base else None,
    )
    source = SourceInfo(
        log.prefix, "jsonl", log.size, log.sha256, parse_seconds=time.perf_counter() - started
    )
    sentence = log.counts.summary(log_source.deployment, log_source.window)
    return log.table, source, (sentence, asdict(log.counts))


def _text_columns(request: ProfileRequest) -> set[str]:
    """Columns declared or pinned as ``category``: read from CSV as text, never as numbers."""
    declared = {c.name: c.type for c in request.spec.columns or []}
    pinned = {c.name: c.type for c in request.pinned_schema or [] if c.name not in declared}
    return {name for name, kind in {**pinned, **declared}.items() if kind == "category"}


def _stored_snapshot(store: ObjectStore, snapshot_uri: S3Uri, profile_uri: S3Uri) -> str | None:
    """The snapshot's sha256 when this version is complete in the store (profile.json exists)."""
    try:
        store.stat(profile_uri)
        snapshot = store.stat(snapshot_uri)
    except ObjectNotFound:
        return None
    return snapshot.sha256  # None (no stored digest): not ours, so write it again


def _write_version(
    store: ObjectStore,
    validated: Validated,
    profile: dict[str, Any],
    *,
    snapshot_uri: S3Uri,
    profile_uri: S3Uri,
    scratch: Path,
    watch: _Stopwatch,
) -> str:
    """Write the snapshot (unless a crashed run left it complete) and then profile.json."""
    snapshot = _stat_or_none(store, snapshot_uri)
    if snapshot is not None and snapshot.sha256 is not None:
        snapshot_sha256 = snapshot.sha256
        snapshot_size = snapshot.size
    else:
        local = scratch / SNAPSHOT_FILE
        with watch.stage("snapshot"):
            write_snapshot(validated, profile["version"], local)
        with watch.stage("upload"):
            uploaded = store.upload(
                local, snapshot_uri, content_type="application/vnd.apache.parquet"
            )
        local.unlink()
        snapshot_sha256, snapshot_size = uploaded.sha256, uploaded.size
    profile["snapshot"] = {
        "uri": str(snapshot_uri),
        "sha256": snapshot_sha256,
        "bytes": snapshot_size,
    }
    with watch.stage("upload_profile"):
        store.upload(dumps(profile).encode("utf-8"), profile_uri, content_type="application/json")
    return snapshot_sha256


def build_profile(
    request: ProfileRequest,
    source: SourceInfo,
    validated: Validated,
    version: str,
    profiled_at: str,
    *,
    source_summary: dict[str, Any] | None = None,
    top_k: int = TOP_K,
) -> dict[str, Any]:
    """The content of profile.json (without the ``snapshot`` entry, known after the upload).

    ``source_summary`` (the prediction log's join counts) is kept under ``source.predictionLog``.
    """
    table = validated.table
    source_entry: dict[str, Any] = {
        "uri": str(source.uri),
        "format": source.format,
        "sha256": source.sha256,
        "bytes": source.size,
    }
    if source_summary is not None:
        source_entry["predictionLog"] = source_summary
    return {
        "schemaVersion": PROFILE_SCHEMA_VERSION,
        "namespace": request.namespace,
        "dataset": request.dataset,
        "version": version,
        "createdAt": profiled_at,
        "profiler": f"kubeloop {__version__}",
        "rows": table.num_rows,
        "columnCount": table.num_columns,
        "source": source_entry,
        "target": target_profile(table, validated.types, request.spec.target),
        "columns": profile_columns(table, validated.types, top_k=top_k),
    }


def write_snapshot(validated: Validated, version: str, path: Path) -> None:
    """Write the conformed table as Parquet, with the logical types in the file's metadata.

    Schema metadata from the source (pandas writes some) is replaced, so a snapshot holds only
    what the digest covers plus kubeloop's own keys.
    """
    metadata = {
        b"kubeloop.version": version.encode(),
        b"kubeloop.types": dumps(validated.types).encode(),
    }
    table = validated.table.replace_schema_metadata(metadata)
    pq.write_table(table, path, compression=_PARQUET_COMPRESSION)


def _stat_or_none(store: ObjectStore, uri: S3Uri) -> ObjectInfo | None:
    try:
        return store.stat(uri)
    except ObjectNotFound:
        return None


def _failure_summary(validated: Validated) -> str:
    failures = validated.failures
    first = failures[0].message
    more = len(failures) - 1
    return f"validation failed: {first}" + (f" (and {more} more)" if more else "")
