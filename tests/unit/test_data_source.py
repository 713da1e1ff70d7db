"""Reading sources: format detection and the CSV/Parquet readers (local files; S3 is a component test)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from kubeloop.api.dataset import DatasetSource
from kubeloop.data.errors import UnreadableSource
from kubeloop.data.source import read_csv, read_parquet, source_format, source_uri
from kubeloop.storage import S3Uri


@pytest.mark.parametrize(
    ("uri", "declared", "expected"),
    [
        ("s3://data/a/churn.csv", None, ("csv", ".csv")),
        ("s3://data/a/churn.CSV.gz", None, ("csv", ".csv.gz")),
        ("s3://data/a/churn.parquet", None, ("parquet", ".parquet")),
        ("s3://data/a/churn.pq", None, ("parquet", ".parquet")),
        ("s3://data/a/export", "parquet", ("parquet", ".parquet")),
        ("s3://data/a/churn.csv", "parquet", ("parquet", ".parquet")),
    ],
)
def test_source_format(uri: str, declared: str | None, expected: tuple[str, str]) -> None:
    source = DatasetSource.model_validate({"uri": uri, "format": declared})
    assert source_format(source, S3Uri.parse(uri)) == expected


def test_unknown_extension_without_a_format_is_unreadable() -> None:
    source = DatasetSource.model_validate({"uri": "s3://data/export.bin"})
    with pytest.raises(UnreadableSource, match=r"set source\.format"):
        source_format(source, source_uri(source))


def test_prefixes_and_prediction_logs_are_unreadable() -> None:
    with pytest.raises(UnreadableSource, match="prefix"):
        source_uri(DatasetSource.model_validate({"uri": "s3://data/dir/"}))
    with pytest.raises(UnreadableSource, match="predictionLog"):
        source_uri(DatasetSource.model_validate({"predictionLog": {"deployment": "web"}}))


def test_read_csv_types_missing_values_and_text_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("id;zip;day;plan;score\n1;0123;2024-01-02;a;1.5\n2;0456;;;NA\n")
    table = read_csv(path, ";", text_columns={"zip"})
    assert table.schema.field("id").type == pa.int64()
    assert table.column("zip").to_pylist() == ["0123", "0456"]  # not 123
    assert table.column("day").to_pylist() == ["2024-01-02", None]  # as written, not a date
    assert table.column("plan").to_pylist() == ["a", None]
    assert table.column("score").to_pylist() == [1.5, None]


def test_read_parquet_drops_the_pandas_index(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pd.DataFrame({"a": [1, 2]}, index=pd.Index([10, 20], name="row")).to_parquet(path)
    assert read_parquet(path).column_names == ["a"]
