"""The prediction log join: windows, later labels winning, unlabeled rows counted, key pruning."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from kubeloop.data.errors import UnreadableSource
from kubeloop.data.predictionlog import (
    PredictionLogCounts,
    _union,
    join_log,
    log_objects,
    rows_to_table,
)
from kubeloop.storage import ObjectInfo, S3Uri

NOW = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)
SINCE = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def prediction(request_id: str, time: str, row: int = 0, **inputs: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "row": row,
        "time": time,
        "model": "iris",
        "version": 1,
        "inputs": inputs or {"petal_length": 1.4, "petal_width": 0.2},
        "prediction": "setosa",
    }


def label(request_id: str, time: str, value: Any, row: int = 0) -> dict[str, Any]:
    return {"request_id": request_id, "row": row, "time": time, "label": value, "matched": True}


def test_join_keeps_labeled_rows_in_time_order_and_counts_the_rest() -> None:
    predictions = [
        prediction("b", "2026-12-07T11:00:02.000+00:00", petal_length=5.0),
        prediction("a", "2026-12-07T11:00:01.000+00:00", petal_length=1.0),
        prediction("c", "2026-12-07T11:00:03.000+00:00", petal_length=6.0),
    ]
    labels = [
        label("a", "2026-12-07T11:05:00.000+00:00", "setosa"),
        label("b", "2026-12-07T11:05:00.000+00:00", "virginica"),
    ]
    rows, counts = join_log(
        predictions, labels, target="species", since=SINCE, require_feedback=True
    )
    assert rows == [
        {"petal_length": 1.0, "species": "setosa"},
        {"petal_length": 5.0, "species": "virginica"},
    ]
    assert counts == PredictionLogCounts(predictions=3, labels=2, labeled=2, unlabeled_excluded=1)


def test_without_require_feedback_unlabeled_rows_stay_with_a_missing_target() -> None:
    predictions = [prediction("a", "2026-12-07T11:00:01+00:00")]
    rows, counts = join_log(predictions, [], target="species", since=SINCE, require_feedback=False)
    assert rows == [{"petal_length": 1.4, "petal_width": 0.2, "species": None}]
    assert counts.unlabeled_kept == 1
    assert counts.unlabeled_excluded == 0


def test_the_later_label_wins_and_rows_join_on_request_and_row() -> None:
    predictions = [
        prediction("a", "2026-12-07T11:00:00+00:00", row=0, x=1.0),
        prediction("a", "2026-12-07T11:00:00+00:00", row=1, x=2.0),
    ]
    labels = [
        label("a", "2026-12-07T11:10:00+00:00", "late", row=0),
        label("a", "2026-12-07T11:01:00+00:00", "early", row=0),
        label("a", "2026-12-07T11:01:00+00:00", "second", row=1),
        label("zzz", "2026-12-07T11:01:00+00:00", "orphan"),
    ]
    rows, counts = join_log(predictions, labels, target="y", since=SINCE, require_feedback=True)
    assert rows == [{"x": 1.0, "y": "late"}, {"x": 2.0, "y": "second"}]
    assert counts.feedback_without_prediction == 1


def test_lines_before_the_window_and_broken_lines_are_left_out() -> None:
    predictions = [
        prediction("old", "2026-12-07T09:59:59+00:00"),
        prediction("new", "2026-12-07T10:00:00+00:00"),
        {"request_id": 7, "row": 0, "time": "2026-12-07T11:00:00+00:00", "inputs": {}},
        {"request_id": "x", "row": 0, "time": "not a time", "inputs": {}},
    ]
    labels = [
        label("old", "2026-12-07T10:30:00+00:00", "setosa"),
        label("new", "2026-12-07T10:30:00+00:00", "setosa"),
        {"request_id": "new", "row": 0, "time": "2026-12-07T10:31:00+00:00"},  # no label
    ]
    rows, counts = join_log(predictions, labels, target="s", since=SINCE, require_feedback=True)
    assert len(rows) == 1
    assert counts.predictions == 1
    assert counts.bad_lines == 3
    assert counts.feedback_without_prediction == 1  # "old"'s label: its prediction is too old


def test_a_reused_request_id_keeps_its_latest_prediction() -> None:
    predictions = [
        prediction("a", "2026-12-07T11:00:05+00:00", x=2.0),
        prediction("a", "2026-12-07T11:00:01+00:00", x=1.0),
    ]
    labels = [label("a", "2026-12-07T11:01:00+00:00", 1)]
    rows, _ = join_log(predictions, labels, target="y", since=SINCE, require_feedback=True)
    assert rows == [{"x": 2.0, "y": 1}]


def test_max_rows_keeps_the_newest() -> None:
    predictions = [
        prediction(f"r{i}", f"2026-12-07T11:00:{i:02d}+00:00", x=float(i)) for i in range(5)
    ]
    labels = [label(f"r{i}", "2026-12-07T11:30:00+00:00", i) for i in range(5)]
    rows, counts = join_log(
        predictions, labels, target="y", since=SINCE, require_feedback=True, max_rows=2
    )
    assert [row["x"] for row in rows] == [3.0, 4.0]
    assert counts.trimmed == 3


def test_an_input_named_like_the_target_does_not_hide_the_label() -> None:
    rows, _ = join_log(
        [prediction("a", "2026-12-07T11:00:00+00:00", y=0.5, x=1.0)],
        [label("a", "2026-12-07T11:00:01+00:00", 9)],
        target="y",
        since=SINCE,
        require_feedback=True,
    )
    assert rows == [{"x": 1.0, "y": 9}]


def test_hour_directories_before_the_window_are_not_read() -> None:
    prefix = S3Uri("kubeloop", "predictions/ml/iris/")

    def info(key: str) -> ObjectInfo:
        return ObjectInfo(uri=S3Uri("kubeloop", prefix.key + key), size=1, etag="e")

    listing = [
        info("iris/1/predictions/2026-12-07/09/pod-a-1.jsonl"),  # ends 10:00: outside
        info("iris/1/predictions/2026-12-07/10/pod-a-2.jsonl"),
        info("iris/2/feedback/2026-12-07/12/pod-b-1.jsonl"),
        info("iris/2/feedback/2026-12-07/12/notes.txt"),
        info("iris/2/other/2026-12-07/12/pod-b-1.jsonl"),
        info("iris/2/predictions/not-a-date/12/pod-b-1.jsonl"),
    ]
    found = list(log_objects(listing, prefix, SINCE))
    assert [(f.kind, f.hour.hour) for f in found] == [("predictions", 10), ("feedback", 12)]


def test_table_columns_keep_their_order_and_mixed_values_become_text() -> None:
    rows = [
        {"a": 1, "b": "x", "c": 1.5, "y": "setosa"},
        {"a": 2, "b": 3, "c": None, "y": "virginica"},
    ]
    table = rows_to_table(rows, "y")
    assert table.column_names == ["a", "b", "c", "y"]
    assert table.schema.field("a").type == pa.int64()
    assert table.column("b").to_pylist() == ["x", "3"]
    assert table.schema.field("c").type == pa.float64()


def test_an_empty_join_is_a_table_with_only_the_target() -> None:
    table = rows_to_table([], "y")
    assert table.num_rows == 0
    assert table.column_names == ["y"]


def test_union_puts_the_base_first_on_its_types() -> None:
    base = pa.table({"x": pa.array([1.0, 2.0]), "y": pa.array(["a", "b"])})
    log = pa.table({"x": pa.array([3], pa.int64()), "y": pa.array(["c"])})
    joined = _union(base, log, "y")
    assert joined.to_pydict() == {"x": [1.0, 2.0, 3.0], "y": ["a", "b", "c"]}


def test_union_refuses_inputs_the_base_lacks_and_labels_that_do_not_fit() -> None:
    base = pa.table({"x": pa.array([1.0]), "y": pa.array([1], pa.int64())})
    with pytest.raises(UnreadableSource, match="inputs the base Dataset lacks: z"):
        _union(base, pa.table({"x": [1.0], "z": [2.0], "y": [1]}), "y")
    with pytest.raises(UnreadableSource, match="label 'y'"):
        _union(base, pa.table({"x": [1.0], "y": ["setosa"]}), "y")


def test_summary_says_what_was_left_out() -> None:
    counts = PredictionLogCounts(
        predictions=980, labeled=412, unlabeled_excluded=568, base_rows=150, bad_lines=2
    )
    text = counts.summary("iris", "24h")
    assert text == (
        "prediction log of iris over 24h: 980 predictions, 412 with feedback, 568 without "
        "feedback excluded, after 150 rows of the base Dataset, 2 unreadable lines skipped"
    )
