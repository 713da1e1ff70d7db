"""Column roles, the model frame, the seeded split and slice groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kubeloop.api.trainingrun import SplitSpec
from kubeloop.trainer.data import (
    MISSING_GROUP,
    column_roles,
    drop_identifier_like,
    feature_type,
    group_labels,
    model_frame,
    require_columns,
    split_rows,
    target_values,
)
from kubeloop.trainer.errors import InvalidData, MissingColumn


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": pd.array([30, None, 41, 52], dtype="Int64"),
            "income": [1.5, np.nan, 2.5, 3.0],
            "plan": pd.array(["a", None, "b", "a"], dtype="str"),
            "tier": pd.Categorical(["x", "y", "x", None]),
            "paperless": [True, False, True, True],
            "flag": [True, None, False, True],  # object dtype with booleans
            "seen": pd.to_datetime(["2024-01-01"] * 4),
            "gender": ["f", "m", "f", "m"],
            "empty": [np.nan] * 4,
            "churned": [True, False, None, True],
        }
    )


def test_feature_types_follow_pandas_dtypes() -> None:
    data = frame()
    assert feature_type(data["age"]) == "integer"
    assert feature_type(data["income"]) == "number"
    assert feature_type(data["plan"]) == "category"
    assert feature_type(data["tier"]) == "category"
    assert feature_type(data["paperless"]) == "boolean"
    assert feature_type(data["flag"]) == "boolean"
    assert feature_type(data["seen"]) is None


def test_column_roles_keep_sensitive_excluded_and_unusable_columns_out() -> None:
    columns = column_roles(frame(), "churned", sensitive=["gender"], excluded=["tier"])
    assert columns.names == ["age", "income", "plan", "paperless", "flag"]
    assert columns.numeric == ["age", "income"]
    assert columns.categorical == ["plan", "paperless", "flag"]
    assert [f.nullable for f in columns.features] == [True, True, True, False, True]
    assert set(columns.excluded) == {"gender", "tier", "seen", "empty"}
    assert "sensitive" in columns.excluded["gender"]
    assert "datetime" in columns.excluded["seen"]


def test_identifier_like_categories_are_dropped() -> None:
    data = pd.DataFrame(
        {"id": [f"c{i}" for i in range(200)], "plan": ["a", "b"] * 100, "y": [0, 1] * 100}
    )
    columns = column_roles(data, "y", sensitive=[], excluded=[])
    drop_identifier_like(columns, data)
    assert columns.names == ["plan"]
    assert "identifier" in columns.excluded["id"]


def test_model_frame_is_what_onnx_sees() -> None:
    data = frame()
    columns = column_roles(data, "churned", sensitive=["gender"], excluded=["tier"])
    x = model_frame(data, columns.features)
    assert x["age"].dtype == np.float32
    assert np.isnan(x["age"].iloc[1])
    assert x["plan"].tolist() == ["a", "", "b", "a"]  # missing category → ""
    assert x["paperless"].tolist() == ["true", "false", "true", "true"]
    assert x["flag"].tolist() == ["true", "", "false", "true"]


def test_target_values_spell_labels_as_strings() -> None:
    labels, missing = target_values(frame(), "churned", "classification")
    assert labels.tolist() == ["true", "false", None, "true"]
    assert missing == 1
    floats = pd.DataFrame({"y": [1.0, 0.0, 2.5]})
    assert target_values(floats, "y", "classification")[0].tolist() == ["1", "0", "2.5"]
    with pytest.raises(InvalidData, match="target 'plan' has type str, but a regression"):
        target_values(frame(), "plan", "regression")


def test_missing_column_is_named_with_the_available_columns() -> None:
    with pytest.raises(MissingColumn) as caught:
        require_columns(frame(), {"target": ["age_years"]})
    message = str(caught.value)
    assert message.startswith("target column 'age_years' is not in the dataset (columns: 'age',")
    assert caught.value.reason == "MissingColumn"


def labels_of(counts: dict[str, int]) -> np.ndarray:
    return np.array([label for label, n in counts.items() for _ in range(n)], dtype=object)


def test_split_is_seeded_disjoint_complete_and_stratified() -> None:
    y = labels_of({"no": 800, "yes": 200})
    spec = SplitSpec(validation_fraction=0.2, test_fraction=0.1)
    split = split_rows(y, spec, "classification", seed=3)
    assert split.stratified
    parts = [split.train, split.validation, split.test]
    assert sum(len(p) for p in parts) == 1000
    assert len(np.unique(np.concatenate(parts))) == 1000
    assert len(split.test) == 100
    assert len(split.validation) == 200  # fractions are of all rows
    assert len(split.train) == 700
    for part in parts:
        assert np.mean(y[part] == "yes") == pytest.approx(0.2, abs=0.01)
    again = split_rows(y, spec, "classification", seed=3)
    assert np.array_equal(again.test, split.test)
    assert not np.array_equal(split_rows(y, spec, "classification", seed=4).test, split.test)


def test_split_falls_back_to_random_when_a_class_is_too_rare() -> None:
    y = labels_of({"no": 98, "yes": 2})
    split = split_rows(y, SplitSpec(), "classification", seed=0)
    assert not split.stratified
    assert "class 'yes' has only 2 row(s)" in split.note


def test_split_needs_enough_rows() -> None:
    with pytest.raises(InvalidData, match="has 5 usable rows"):
        split_rows(np.arange(5, dtype=float), SplitSpec(), "regression", seed=0)


def test_group_labels() -> None:
    categories = pd.Series(["a", None, "b", "a"], dtype="str")
    assert group_labels(categories).tolist() == ["a", MISSING_GROUP, "b", "a"]
    numbers = pd.Series(np.arange(100, dtype=float))
    quartiles = group_labels(numbers)
    assert len(set(quartiles.tolist())) == 4
    many = pd.Series([f"v{i % 30}" for i in range(300)])
    grouped = group_labels(many, max_groups=5)
    assert len(set(grouped.tolist())) == 5
    assert "<other>" in set(grouped.tolist())
