"""Reading a ``source.predictionLog``: production predictions joined with their feedback labels.

The serving pods of a kubeloop Deployment write two JSONL streams per model version below
``predictions/<namespace>/<deployment>/`` (see :mod:`kubeloop.serving.predlog`)::

    <model>/<version>/predictions/<YYYY-MM-DD>/<HH>/<pod>-<start>-<seq>.jsonl
    <model>/<version>/feedback/<YYYY-MM-DD>/<HH>/<pod>-<start>-<seq>.jsonl

A prediction line holds ``request_id``, ``row``, ``time`` and the ``inputs``; a feedback line
holds ``request_id``, ``row``, ``time`` and the ``label``. Feedback may reach a different pod
(and so a different version's stream) than the prediction, so the join on
``(request_id, row)`` runs over every stream of the Deployment. The table this module returns
has one column per input plus the Dataset's target (the label); it is then validated,
digested and snapshotted like any other source, so a retrain on it is reproducible.

Choices, each deterministic so the same log gives the same version:

* the window is ``[now - window, now]`` on the lines' own ``time``; hour directories that
  end before the window starts are never downloaded;
* a request id seen twice (a client reusing ``X-Request-Id``) keeps its latest prediction,
  and a row labelled twice keeps its latest label;
* with ``requireFeedback`` (the default) predictions without a label are left out and
  counted; without it they are kept with a missing target;
* rows are ordered by time, then request id and row; ``maxRows`` keeps the newest;
* a ``baseDataset`` snapshot is put first and the log rows after it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from kubeloop.api.dataset import PredictionLogSource
from kubeloop.api.meta import duration_seconds
from kubeloop.data.errors import SourceNotFound, StorageUnavailable, UnreadableSource
from kubeloop.storage import (
    BucketNotFound,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    S3Uri,
    StorageError,
    prediction_log_prefix,
)

PREDICTIONS: Final = "predictions"
FEEDBACK: Final = "feedback"
_MAX_BAD_LINES_SHOWN: Final = 3

RowKey = tuple[str, int]


@dataclass(frozen=True)
class LogObject:
    """One JSONL object of the log and the hour it covers."""

    info: ObjectInfo
    kind: str
    hour: datetime


@dataclass(frozen=True)
class PredictionLogCounts:
    """What the join saw: the numbers a user needs to trust (or distrust) the snapshot."""

    objects: int = 0
    predictions: int = 0
    labels: int = 0
    labeled: int = 0
    unlabeled_excluded: int = 0
    unlabeled_kept: int = 0
    feedback_without_prediction: int = 0
    base_rows: int = 0
    trimmed: int = 0
    bad_lines: int = 0

    def summary(self, deployment: str, window: str) -> str:
        """One sentence for the Dataset's status."""
        text = (
            f"prediction log of {deployment} over {window}: {self.predictions} predictions, "
            f"{self.labeled} with feedback"
        )
        if self.unlabeled_excluded:
            text += f", {self.unlabeled_excluded} without feedback excluded"
        if self.unlabeled_kept:
            text += f", {self.unlabeled_kept} without feedback kept (target missing)"
        if self.feedback_without_prediction:
            text += f", {self.feedback_without_prediction} labels matched no prediction"
        if self.trimmed:
            text += f", {self.trimmed} oldest rows over maxRows left out"
        if self.base_rows:
            text += f", after {self.base_rows} rows of the base Dataset"
        if self.bad_lines:
            text += f", {self.bad_lines} unreadable lines skipped"
        return text


@dataclass(frozen=True)
class PredictionLogRead:
    """The joined table and how it was made."""

    table: pa.Table
    prefix: S3Uri
    counts: PredictionLogCounts
    sha256: str
    size: int


@dataclass
class _Prediction:
    time: str
    inputs: dict[str, Any]


@dataclass
class _Label:
    time: str
    value: Any


def log_objects(
    listing: Iterable[ObjectInfo], prefix: S3Uri, since: datetime
) -> Iterator[LogObject]:
    """The ``.jsonl`` objects below ``prefix`` whose hour directory ends after ``since``."""
    for info in listing:
        relative = info.uri.key[len(prefix.key) :]
        parts = relative.split("/")
        # <model>/<version>/<kind>/<date>/<hour>/<file>
        if len(parts) != 6 or parts[2] not in (PREDICTIONS, FEEDBACK):
            continue
        if not parts[5].endswith(".jsonl"):
            continue
        try:
            hour = datetime.strptime(f"{parts[3]} {parts[4]}", "%Y-%m-%d %H").replace(tzinfo=UTC)
        except ValueError:
            continue
        if hour + timedelta(hours=1) <= since:
            continue
        yield LogObject(info, parts[2], hour)


def join_log(
    predictions: Iterable[dict[str, Any]],
    labels: Iterable[dict[str, Any]],
    *,
    target: str,
    since: datetime,
    require_feedback: bool,
    max_rows: int | None = None,
) -> tuple[list[dict[str, Any]], PredictionLogCounts]:
    """Join prediction lines with feedback lines; rows as ``{input..., target}`` dicts.

    ``since`` bounds both streams by each line's ``time``; see the module docstring for the
    rules. Lines that lack the fields a join needs are counted in ``bad_lines``.
    """
    floor = _iso(since)
    seen: dict[RowKey, _Prediction] = {}
    bad = 0
    for line in predictions:
        key, moment = _key_and_time(line)
        inputs = line.get("inputs")
        if key is None or moment is None or not isinstance(inputs, dict):
            bad += 1
            continue
        if moment < floor:
            continue
        earlier = seen.get(key)
        if earlier is None or earlier.time <= moment:
            seen[key] = _Prediction(moment, inputs)
    answers: dict[RowKey, _Label] = {}
    label_lines = 0
    for line in labels:
        key, moment = _key_and_time(line)
        if key is None or moment is None or "label" not in line:
            bad += 1
            continue
        if moment < floor:
            continue
        label_lines += 1
        earlier_label = answers.get(key)
        if earlier_label is None or earlier_label.time <= moment:
            answers[key] = _Label(moment, line["label"])

    ordered = sorted(seen.items(), key=lambda item: (item[1].time, item[0]))
    rows: list[dict[str, Any]] = []
    labeled = excluded = kept = 0
    for key, prediction in ordered:
        answer = answers.get(key)
        if answer is None:
            if require_feedback:
                excluded += 1
                continue
            kept += 1
        else:
            labeled += 1
        row = {name: value for name, value in prediction.inputs.items() if name != target}
        row[target] = None if answer is None else answer.value
        rows.append(row)
    trimmed = 0
    if max_rows is not None and len(rows) > max_rows:
        trimmed = len(rows) - max_rows
        rows = rows[trimmed:]
    counts = PredictionLogCounts(
        predictions=len(seen),
        labels=label_lines,
        labeled=labeled,
        unlabeled_excluded=excluded,
        unlabeled_kept=kept,
        feedback_without_prediction=sum(1 for key in answers if key not in seen),
        trimmed=trimmed,
        bad_lines=bad,
    )
    return rows, counts


def rows_to_table(rows: list[dict[str, Any]], target: str) -> pa.Table:
    """Columns in first-seen order with the target last; a column of mixed kinds becomes text."""
    names: dict[str, None] = {}
    for row in rows:
        for name in row:
            if name != target:
                names.setdefault(name)
    columns: dict[str, pa.Array] = {}
    for name in [*names, target]:
        values = [row.get(name) for row in rows]
        columns[name] = _column(values)
    return pa.table(columns)


def read_prediction_log(
    store: ObjectStore,
    bucket: str,
    namespace: str,
    source: PredictionLogSource,
    *,
    target: str,
    now: datetime,
    base_snapshot: S3Uri | None = None,
) -> PredictionLogRead:
    """Read, window and join the log of ``source.deployment``, after the base snapshot if any."""
    prefix = S3Uri(bucket, prediction_log_prefix(namespace, source.deployment))
    since = now - timedelta(seconds=duration_seconds(source.window))
    hasher = hashlib.sha256()
    size = 0
    predictions: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    bad_lines = 0
    try:
        objects = sorted(
            log_objects(store.list(prefix), prefix, since), key=lambda found: found.info.uri.key
        )
        for found in objects:
            buffer = io.BytesIO()
            store.download(found.info.uri, buffer)
            data = buffer.getvalue()
            hasher.update(data)
            size += len(data)
            parsed, bad = _parse_lines(data)
            bad_lines += bad
            (predictions if found.kind == PREDICTIONS else labels).extend(parsed)
    except BucketNotFound as exc:
        raise SourceNotFound(str(exc)) from exc
    except StorageError as exc:
        raise StorageUnavailable(f"cannot read the prediction log {prefix}: {exc}") from exc
    if not any(found.kind == PREDICTIONS for found in objects):
        raise SourceNotFound(
            f"no predictions of Deployment {source.deployment} in {prefix} within the last "
            f"{source.window}: send it traffic (with prediction logging on) first"
        )
    rows, counts = join_log(
        predictions,
        labels,
        target=target,
        since=since,
        require_feedback=source.require_feedback,
        max_rows=source.max_rows,
    )
    table = rows_to_table(rows, target)
    base_rows = 0
    if base_snapshot is not None:
        base = _read_base(store, base_snapshot)
        base_rows = base.num_rows
        table = _union(base, table, target)
    counts = replace(
        counts, objects=len(objects), base_rows=base_rows, bad_lines=counts.bad_lines + bad_lines
    )
    return PredictionLogRead(table, prefix, counts, hasher.hexdigest(), size)


def _parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    parsed: list[dict[str, Any]] = []
    bad = 0
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad += 1  # a torn write: the rest of the object is still good
            continue
        if isinstance(line, dict):
            parsed.append(line)
        else:
            bad += 1
    return parsed, bad


def _key_and_time(line: dict[str, Any]) -> tuple[RowKey | None, str | None]:
    request_id, row, moment = line.get("request_id"), line.get("row"), line.get("time")
    if type(request_id) is not str or type(row) is not int or type(moment) is not str:
        return None, None
    return (request_id, row), _normalise_time(moment)


def _normalise_time(moment: str) -> str | None:
    # The server writes ISO 8601 with milliseconds and +00:00; compare as UTC text.
    try:
        parsed = datetime.fromisoformat(moment)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _iso(parsed)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _column(values: list[Any]) -> pa.Array:
    present = [value for value in values if value is not None]
    if present and all(type(value) is bool for value in present):
        return pa.array(values, type=pa.bool_())
    if all(type(value) in (int, float) for value in present):
        kind = pa.int64() if all(type(v) is int for v in present) else pa.float64()
        return pa.array(values, type=kind)
    return pa.array([None if value is None else _text(value) for value in values], pa.string())


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _read_base(store: ObjectStore, uri: S3Uri) -> pa.Table:
    buffer = io.BytesIO()
    try:
        store.download(uri, buffer)
    except ObjectNotFound as exc:
        raise SourceNotFound(f"the base Dataset's snapshot {uri} is missing: {exc}") from exc
    except StorageError as exc:
        raise StorageUnavailable(f"cannot read the base Dataset's snapshot {uri}: {exc}") from exc
    try:
        table = pq.read_table(pa.BufferReader(buffer.getvalue()))
    except (pa.ArrowException, OSError) as exc:
        raise UnreadableSource(f"cannot read the base snapshot {uri}: {exc}") from exc
    return table.replace_schema_metadata(None)


def _union(base: pa.Table, log: pa.Table, target: str) -> pa.Table:
    """The base rows, then the log rows, on the base's columns (the log may not add any)."""
    if log.num_rows == 0:
        return base
    extra = sorted(set(log.column_names) - set(base.column_names))
    if extra:
        raise UnreadableSource(
            f"the prediction log has inputs the base Dataset lacks: {', '.join(extra[:5])}"
        )
    arrays = []
    for field in base.schema:
        if field.name not in log.column_names:
            arrays.append(pa.nulls(log.num_rows, field.type))
            continue
        column = log.column(field.name)
        try:
            arrays.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            what = "label" if field.name == target else "input"
            raise UnreadableSource(
                f"the prediction log's {what} {field.name!r} ({column.type}) does not fit the "
                f"base Dataset's {field.type}: {exc}"
            ) from exc
    return pa.concat_tables([base, pa.Table.from_arrays(arrays, schema=base.schema)])
