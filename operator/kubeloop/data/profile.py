"""Column statistics of a Dataset version: the content of ``profile.json`` (pure, no I/O).

The profile is the drift baseline later compared with live traffic, so what it stores is
chosen for that comparison and documented here, where a drift monitor's author will look:

* every column: ``type``, ``count`` (present values), ``missing``, ``missingFraction``;
* ``integer`` and ``number`` columns: ``min``, ``max``, ``mean``, ``std`` (sample standard
  deviation, ``ddof=1``, as pandas' ``describe()``; null below two values), ``binEdges`` (the
  11 deciles p0, p10, ... p100: the edges of 10 equal-frequency bins, linear interpolation, may
  repeat when values tie) and ``binCounts`` (how many baseline values fall in each bin). A value
  ``v`` belongs to bin ``i`` = the number of inner edges ``binEdges[1:10]`` that are ``<= v``,
  so the last bin is closed and anything beyond the edges falls in the first or last bin: a
  PSI or KS computation must bin live values with the same rule. Infinite values of a
  ``number`` column are counted in ``infinite`` and left out of the other statistics;
* ``category`` and ``boolean`` columns: ``distinct`` and ``frequencies`` (the ``top_k`` most
  frequent values, most frequent first, ties by value) with an ``other`` bucket (``count`` and
  ``distinct``) holding the rest; fractions are of the present values.

``target`` repeats the target column's profile with up to :data:`TARGET_TOP_K` classes (also
for an integer target with that few distinct values, e.g. a 0/1 label), so class balance can be
read without scanning ``columns``.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kubeloop.api.dataset import ColumnType

TOP_K: Final = 20
TARGET_TOP_K: Final = 100
BINS: Final = 10
DECILES: Final = tuple(index / BINS for index in range(BINS + 1))

Json = dict[str, Any]


def profile_columns(
    table: pa.Table, types: dict[str, ColumnType], *, top_k: int = TOP_K
) -> list[Json]:
    """One profile per column of a conformed table, in column order."""
    return [
        column_profile(name, table.column(name), types[name], top_k=top_k)
        for name in table.column_names
    ]


def target_profile(table: pa.Table, types: dict[str, ColumnType], target: str) -> Json | None:
    """The target's distribution: its column profile, with classes for a discrete target."""
    if target not in table.column_names:
        return None
    column = table.column(target)
    logical = types[target]
    profile = column_profile(target, column, logical, top_k=TARGET_TOP_K)
    if logical == "integer":
        distinct = int(pc.count_distinct(column, mode="only_valid").as_py())
        if distinct <= TARGET_TOP_K:
            profile.update(frequencies(column, top_k=TARGET_TOP_K))
    return profile


def column_profile(name: str, column: pa.ChunkedArray, logical: ColumnType, *, top_k: int) -> Json:
    """Statistics of one column (see the module docstring for what each field means)."""
    rows = len(column)
    missing = column.null_count
    profile: Json = {
        "name": name,
        "type": logical,
        "count": rows - missing,
        "missing": missing,
        "missingFraction": missing / rows if rows else 0.0,
    }
    if logical in ("integer", "number"):
        profile.update(numeric_summary(column, logical))
    else:
        profile.update(frequencies(column, top_k=top_k))
    return profile


def numeric_summary(column: pa.ChunkedArray, logical: ColumnType) -> Json:
    """``min``/``max``/``mean``/``std``, decile ``binEdges`` and ``binCounts`` of present values."""
    values: np.ndarray[Any, Any] = pc.drop_null(column).to_numpy()
    summary: Json = {}
    if logical == "number":
        finite = np.isfinite(values)
        infinite = int(values.size - np.count_nonzero(finite))
        summary["infinite"] = infinite
        if infinite:
            values = values[finite]
    if values.size == 0:
        summary.update(
            {"min": None, "max": None, "mean": None, "std": None, "binEdges": [], "binCounts": []}
        )
        return summary
    edges = np.quantile(values, DECILES)
    bins = np.searchsorted(edges[1:-1], values, side="right")
    counts = np.bincount(bins, minlength=BINS)
    summary.update(
        {
            "min": _extreme(values.min(), logical),
            "max": _extreme(values.max(), logical),
            "mean": _finite(float(np.mean(values, dtype=np.float64))),
            "std": _finite(float(np.std(values, ddof=1, dtype=np.float64)))
            if values.size > 1
            else None,
            "binEdges": [_finite(float(edge)) for edge in edges],
            "binCounts": [int(count) for count in counts],
        }
    )
    return summary


def frequencies(column: pa.ChunkedArray, *, top_k: int) -> Json:
    """``distinct``, the ``top_k`` most frequent values and an ``other`` bucket for the rest."""
    counted = pc.value_counts(column).flatten()
    counts = pa.table({"value": counted[0], "count": counted[1]}).filter(pc.is_valid(counted[0]))
    present = len(column) - column.null_count
    distinct = counts.num_rows
    # The value is the second sort key: the same data always yields the same top k.
    order = [("count", "descending"), ("value", "ascending")]
    top = counts.take(pc.select_k_unstable(counts, k=min(top_k, distinct), sort_keys=order))
    top = top.sort_by(order)
    listed = [
        {"value": row["value"], "count": row["count"], "fraction": row["count"] / present}
        for row in top.to_pylist()
    ]
    shown = sum(entry["count"] for entry in listed)
    return {
        "distinct": distinct,
        "frequencies": listed,
        "other": {
            "count": present - shown,
            "distinct": distinct - len(listed),
            "fraction": (present - shown) / present if present else 0.0,
        },
    }


def _extreme(value: Any, logical: ColumnType) -> int | float:
    # + 0.0 turns a -0.0 extreme into 0.0, the spelling every other tool shows.
    return int(value) if logical == "integer" else float(value) + 0.0


def _finite(value: float) -> float | None:
    # JSON has no NaN or Infinity; an overflowing mean is reported as unknown.
    return value if math.isfinite(value) else None
