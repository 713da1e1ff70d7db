"""The content digest: deterministic, about the data and not its encoding, sensitive to content."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kubeloop.api.dataset import DatasetSpec
from kubeloop.data.digest import content_digest
from kubeloop.data.source import read_csv, read_parquet
from kubeloop.data.validate import validate

SPEC = DatasetSpec.model_validate({"source": {"uri": "s3://data/x.csv"}, "target": "churn"})


def digest_of(table: pa.Table) -> str:
    validated = validate(table, SPEC)
    return content_digest(validated.table, validated.types)


def sample() -> pa.Table:
    return pa.table(
        {
            "id": [1, 2, 3, 4],
            "score": [0.5, None, -0.0, 1e300],
            "plan": ["basic", None, "pro", "ünïcode"],
            "active": [True, None, False, True],
            "churn": [0, 1, 0, 1],
        }
    )


def test_the_digest_is_a_sha256_version_and_deterministic() -> None:
    first = digest_of(sample())
    assert first.startswith("sha256:")
    assert len(first) == len("sha256:") + 64
    assert digest_of(sample()) == first


def test_the_digest_ignores_chunking_slicing_and_string_width() -> None:
    table = sample()
    rechunked = pa.Table.from_batches(table.to_batches(max_chunksize=1))
    assert rechunked.column(0).num_chunks == 4
    assert digest_of(rechunked) == digest_of(table)
    wide = table.cast(
        pa.schema(
            [(f.name, pa.large_string() if f.type == pa.string() else f.type) for f in table.schema]
        )
    )
    assert digest_of(wide) == digest_of(table)
    padded = pa.concat_tables(
        [
            pa.table(
                {
                    n: pa.nulls(0, t)
                    for n, t in zip(table.column_names, table.schema.types, strict=True)
                }
            ),
            table,
        ]
    )
    assert digest_of(padded) == digest_of(table)
    sliced = pa.concat_tables([table, table]).slice(4, 4)
    assert digest_of(sliced) == digest_of(table)


def test_the_digest_ignores_bytes_hidden_under_missing_values() -> None:
    # Arrow allows a null slot to cover arbitrary bytes; two such arrays are equal data.
    clean = pa.array(["a", None, "c"])
    offsets = pa.array([0, 1, 4, 5], pa.int32())
    dirty = pa.StringArray.from_buffers(
        3, offsets.buffers()[1], pa.py_buffer(b"aXYZc"), clean.buffers()[0], null_count=1
    )
    assert dirty.to_pylist() == clean.to_pylist()
    table = pa.table({"plan": clean, "churn": [1, 0, 1]})
    assert digest_of(pa.table({"plan": dirty, "churn": [1, 0, 1]})) == digest_of(table)


def test_csv_and_parquet_of_the_same_data_have_the_same_digest(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "age": [30.5, None, 41.0],
            "plan": ["a", None, "b"],
            "active": [True, False, True],
            "churn": [0, 1, 0],
        }
    )
    frame.to_csv(tmp_path / "data.csv", index=False)
    frame.to_parquet(tmp_path / "data.parquet")  # with pandas metadata and index
    # The same numbers, spelled differently in the CSV: still the same data.
    (tmp_path / "other.csv").write_text(
        "id,age,plan,active,churn\n1,30.50,a,true,0\n2,,,FALSE,1\n3,4.1e1,b,True,0\n"
    )
    from_csv = digest_of(read_csv(tmp_path / "data.csv", ","))
    assert digest_of(read_parquet(tmp_path / "data.parquet")) == from_csv
    assert digest_of(read_csv(tmp_path / "other.csv", ",")) == from_csv


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.set_column(1, "score", pa.array([0.5, None, 0.0, 1e299])),  # a value
        lambda t: t.set_column(1, "score", pa.array([0.5, 0.0, None, 1e300])),  # which is missing
        lambda t: t.rename_columns(["id", "points", "plan", "active", "churn"]),  # a name
        lambda t: t.select(["score", "id", "plan", "active", "churn"]),  # column order
        lambda t: t.take([1, 0, 2, 3]),  # row order
        lambda t: t.slice(0, 3),  # a row fewer
        lambda t: t.set_column(2, "plan", pa.array(["basi", "c", "pro", "ünïcode"])),  # text split
    ],
)
def test_the_digest_changes_with_the_content(change: object) -> None:
    table = sample()
    assert digest_of(change(table)) != digest_of(table)  # type: ignore[operator]


def test_the_logical_type_is_part_of_the_content() -> None:
    table = pa.table({"zip": [1234, 5678], "churn": [0, 1]})
    as_category = DatasetSpec.model_validate(
        {
            "source": {"uri": "s3://data/x.csv"},
            "target": "churn",
            "columns": [{"name": "zip", "type": "category"}, {"name": "churn", "type": "integer"}],
        }
    )
    validated = validate(table, as_category)
    assert content_digest(validated.table, validated.types) != digest_of(table)


def test_an_unconformed_table_is_refused() -> None:
    with pytest.raises(ValueError, match="conformed"):
        content_digest(pa.table({"x": pa.array([1], pa.int32())}), {"x": "integer"})


def test_a_parquet_round_trip_keeps_the_digest() -> None:
    validated = validate(sample(), SPEC)
    sink = io.BytesIO()
    pq.write_table(validated.table, sink, compression="zstd", row_group_size=2)
    reread = pq.read_table(io.BytesIO(sink.getvalue()))
    assert content_digest(reread, validated.types) == content_digest(
        validated.table, validated.types
    )
