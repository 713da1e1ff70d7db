"""profile.json statistics: numeric summaries, decile bin edges, frequencies, the target."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence

import pyarrow as pa
import pytest

from kubeloop.data.profile import column_profile, frequencies, numeric_summary, target_profile


def chunked(values: Sequence[object], data_type: pa.DataType | None = None) -> pa.ChunkedArray:
    return pa.chunked_array([pa.array(values, type=data_type)])


def test_numeric_summary_against_hand_computed_values() -> None:
    values = [float(v) for v in range(101)]  # 0..100: the deciles are exactly 0, 10, ..., 100
    summary = numeric_summary(chunked([*values, None]), "number")
    assert summary["min"] == 0.0
    assert summary["max"] == 100.0
    assert summary["mean"] == 50.0
    assert summary["std"] == pytest.approx(statistics.stdev(values))  # ddof=1, as pandas
    assert summary["binEdges"] == [float(edge) for edge in range(0, 101, 10)]
    # v goes to bin i = number of inner edges <= v: 0-9 | 10-19 | ... | 90-100 (closed)
    assert summary["binCounts"] == [10] * 9 + [11]
    assert summary["infinite"] == 0


def test_bin_edges_repeat_when_values_tie() -> None:
    summary = numeric_summary(chunked([1] * 8 + [2, 3]), "integer")
    assert summary["binEdges"][:8] == [1.0] * 8
    assert summary["binEdges"][-1] == 3.0
    assert sum(summary["binCounts"]) == 10
    # ties at an inner edge go to the highest bin starting there
    assert summary["binCounts"][7] == 8
    assert (summary["min"], summary["max"]) == (1, 3)
    assert isinstance(summary["min"], int)


def test_infinite_values_are_counted_and_left_out() -> None:
    summary = numeric_summary(chunked([1.0, 3.0, math.inf, -math.inf]), "number")
    assert summary["infinite"] == 2
    assert (summary["min"], summary["max"], summary["mean"]) == (1.0, 3.0, 2.0)
    json.dumps(summary, allow_nan=False)


def test_empty_and_single_value_columns() -> None:
    empty = numeric_summary(chunked([None, None], pa.float64()), "number")
    assert empty["min"] is None
    assert empty["binEdges"] == []
    single = numeric_summary(chunked([7]), "integer")
    assert single["std"] is None
    assert single["binEdges"] == [7.0] * 11
    assert single["binCounts"] == [0] * 9 + [1]


def test_frequencies_keep_the_top_k_and_an_other_bucket() -> None:
    # value vN appears N times, for N = 1..25; plus missing values, which are not a category
    values: list[object] = [f"v{n:02d}" for n in range(1, 26) for _ in range(n)] + [None] * 5
    result = frequencies(chunked(values), top_k=20)
    present = sum(range(1, 26))
    assert result["distinct"] == 25
    assert [entry["value"] for entry in result["frequencies"]] == [
        f"v{n:02d}" for n in range(25, 5, -1)
    ]
    assert result["frequencies"][0] == {"value": "v25", "count": 25, "fraction": 25 / present}
    assert result["other"] == {
        "count": 1 + 2 + 3 + 4 + 5,
        "distinct": 5,
        "fraction": 15 / present,
    }


def test_frequency_ties_are_broken_by_value() -> None:
    result = frequencies(chunked(["b", "a", "c", "a", "b", "c", "d"]), top_k=2)
    assert [entry["value"] for entry in result["frequencies"]] == ["a", "b"]
    assert result["other"]["count"] == 3


def test_column_profile_common_fields() -> None:
    profile = column_profile("plan", chunked(["a", None, "a", "b"]), "category", top_k=20)
    assert {k: profile[k] for k in ("name", "type", "count", "missing", "missingFraction")} == {
        "name": "plan",
        "type": "category",
        "count": 3,
        "missing": 1,
        "missingFraction": 0.25,
    }
    boolean = column_profile("active", chunked([True, False, True]), "boolean", top_k=20)
    assert boolean["frequencies"][0] == {"value": True, "count": 2, "fraction": 2 / 3}


def test_target_distribution_of_a_0_1_label_has_classes_and_a_summary() -> None:
    table = pa.table({"churn": [0, 1, 0, 0]})
    target = target_profile(table, {"churn": "integer"}, "churn")
    assert target is not None
    assert target["frequencies"] == [
        {"value": 0, "count": 3, "fraction": 0.75},
        {"value": 1, "count": 1, "fraction": 0.25},
    ]
    assert target["mean"] == 0.25
    assert target_profile(table, {"churn": "integer"}, "absent") is None
