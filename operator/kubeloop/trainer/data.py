"""From a Parquet snapshot to the frames a trial trains and evaluates on.

Three jobs, all deterministic for a given snapshot and seed:

* **column roles** — the target; features (every other column except sensitive, excluded and
  unusable ones); for each feature its signature type (``number``, ``integer``, ``category``,
  ``boolean``) and its encoding;
* **the model frame** — the exact values both scikit-learn and ONNX Runtime see. Numbers become
  float32 (the ONNX input type) *before* fitting, so the trees split on the very values the
  exported model will compare; missing numbers are NaN. Categories become strings, booleans
  ``"true"``/``"false"``, and a missing category is ``""``, because ONNX string tensors have
  no NaN: a client sends ``""`` (or the server maps null to it) and the imputer fills it;
* **the split** — train / validation / test with the spec's fractions, seeded with the run's
  seed (the same for every trial, so trials are compared on the same rows), stratified by
  class when asked and when every class has enough rows for it.

Nothing here fits a model; ``model.py`` does.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from kubeloop.api.estimators import Task
from kubeloop.api.meta import COLUMN_NAME
from kubeloop.api.trainingrun import SplitSpec
from kubeloop.trainer.errors import InvalidData, MissingColumn

FeatureType = Literal["number", "integer", "category", "boolean"]
Encoding = Literal["numeric", "categorical"]

MISSING_CATEGORY = ""  # what a missing category/boolean looks like to the model
MISSING_GROUP = "<missing>"  # how a missing value is named in slice and fairness tables
MIN_ROWS = 20
MAX_CLASSES = 1000
# A category column with more distinct values than this share of training rows (and more
# than IDENTIFIER_MIN_VALUES) is an identifier: one-hot encoding it only memorises rows.
IDENTIFIER_UNIQUE_SHARE = 0.5
IDENTIFIER_MIN_VALUES = 50

_COLUMN_NAME_RE = re.compile(COLUMN_NAME)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Feature:
    """One input column of the model."""

    name: str
    type: FeatureType
    nullable: bool

    @property
    def encoding(self) -> Encoding:
        """How the pipeline treats it: numbers are scaled, the rest one-hot encoded."""
        return "numeric" if self.type in ("number", "integer") else "categorical"


@dataclass
class Columns:
    """The roles of the snapshot's columns."""

    target: str
    features: list[Feature]
    excluded: dict[str, str] = field(default_factory=dict)  # column -> why it is not a feature

    @property
    def numeric(self) -> list[str]:
        """Names of numeric features, in model order."""
        return [f.name for f in self.features if f.encoding == "numeric"]

    @property
    def categorical(self) -> list[str]:
        """Names of categorical (and boolean) features, in model order."""
        return [f.name for f in self.features if f.encoding == "categorical"]

    @property
    def names(self) -> list[str]:
        """All feature names in model order."""
        return [f.name for f in self.features]


@dataclass
class Split:
    """Row positions of the three sets (into the frame with missing-target rows dropped)."""

    train: np.ndarray[Any, Any]
    validation: np.ndarray[Any, Any]
    test: np.ndarray[Any, Any]
    stratified: bool
    note: str = ""


def read_snapshot(path: Path) -> pd.DataFrame:
    """Read a Parquet file; an unreadable one is ``InvalidData`` naming the problem."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid, a ValueError
        raise InvalidData(f"the dataset snapshot is not a readable Parquet file: {exc}") from exc
    if not isinstance(frame, pd.DataFrame):  # pragma: no cover - read_parquet's contract
        raise InvalidData("the dataset snapshot did not load as a table")
    return frame


def require_columns(frame: pd.DataFrame, columns: dict[str, list[str]]) -> None:
    """Fail with ``MissingColumn`` for the first ``role -> [columns]`` not in ``frame``."""
    available = [str(c) for c in frame.columns]
    for role, names in columns.items():
        for name in names:
            if name not in frame.columns:
                shown = ", ".join(repr(c) for c in available[:50])
                more = f", … ({len(available)} in all)" if len(available) > 50 else ""
                raise MissingColumn(
                    f"{role} column {name!r} is not in the dataset (columns: {shown}{more})"
                )


def feature_type(series: pd.Series) -> FeatureType | None:
    """The signature type of a column, or None when kubeloop cannot use it as a feature."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "number"
    if pd.api.types.is_object_dtype(dtype):
        present = series.dropna()
        if len(present) and all(isinstance(v, bool | np.bool_) for v in present):
            return "boolean"  # nullable booleans read back from Parquet as objects
        return "category"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "category"
    return None  # datetimes, timedeltas, complex numbers, nested values


def column_roles(
    frame: pd.DataFrame,
    target: str,
    *,
    sensitive: list[str],
    excluded: list[str],
) -> Columns:
    """Decide which columns are features and of which type (see the module docstring)."""
    reasons: dict[str, str] = {}
    for name in sensitive:
        reasons[name] = "sensitive column (fairness only, never a feature)"
    for name in excluded:
        reasons.setdefault(name, "excluded by the run")
    features: list[Feature] = []
    for column in frame.columns:
        name = str(column)
        if name == target or name in reasons:
            continue
        if not _COLUMN_NAME_RE.fullmatch(name):
            reasons[name] = "name cannot be a model input (control characters, or over 128 long)"
            continue
        series = frame[column]
        kind = feature_type(series)
        if kind is None:
            reasons[name] = f"unsupported type {series.dtype}"
            continue
        missing = int(series.isna().sum())
        if missing == len(series):
            reasons[name] = "every value is missing"
            continue
        features.append(Feature(name, kind, nullable=missing > 0))
    return Columns(target=target, features=features, excluded=reasons)


def drop_identifier_like(columns: Columns, train_frame: pd.DataFrame) -> None:
    """Stop using category columns that look like row identifiers (see IDENTIFIER_*)."""
    kept: list[Feature] = []
    rows = len(train_frame)
    for feature in columns.features:
        if feature.type == "category":
            distinct = int(train_frame[feature.name].nunique(dropna=True))
            if distinct > IDENTIFIER_MIN_VALUES and distinct > IDENTIFIER_UNIQUE_SHARE * rows:
                columns.excluded[feature.name] = (
                    f"looks like an identifier ({distinct} distinct values in {rows} training rows)"
                )
                continue
        kept.append(feature)
    columns.features = kept


def model_frame(frame: pd.DataFrame, features: list[Feature]) -> pd.DataFrame:
    """The frame both scikit-learn and ONNX Runtime see (see the module docstring)."""
    data: dict[str, Any] = {}
    for feature in features:
        series = frame[feature.name]
        if feature.encoding == "numeric":
            data[feature.name] = series.to_numpy(dtype=np.float32, na_value=np.nan)
        elif feature.type == "boolean":
            data[feature.name] = _texts(series, _boolean_text, MISSING_CATEGORY)
        else:
            data[feature.name] = _texts(series, _category_text, MISSING_CATEGORY)
    return pd.DataFrame(data, index=frame.index, copy=False)


def _texts(
    series: pd.Series, spell: Callable[[Any], str | None], missing: str | None
) -> np.ndarray[Any, Any]:
    """``spell`` applied to every value, ``missing`` for missing ones, as an object array.

    Spells each *distinct* value once (``factorize`` is vectorised), which keeps a million
    rows of categories well under a second.
    """
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    spelled = np.array([spell(value) for value in uniques] + [missing], dtype=object)
    texts: np.ndarray[Any, Any] = spelled[codes]  # code -1 (missing) picks the last entry
    return texts


def onnx_feeds(frame: pd.DataFrame, features: list[Feature]) -> dict[str, np.ndarray[Any, Any]]:
    """ONNX Runtime inputs from a model frame: one [N, 1] tensor per column."""
    feeds: dict[str, np.ndarray[Any, Any]] = {}
    for feature in features:
        column = frame[feature.name].to_numpy()
        if feature.encoding == "numeric":
            feeds[feature.name] = column.astype(np.float32).reshape(-1, 1)
        else:
            feeds[feature.name] = column.astype(object).reshape(-1, 1)
    return feeds


def target_values(frame: pd.DataFrame, target: str, task: Task) -> tuple[np.ndarray[Any, Any], int]:
    """The target as model labels (strings) or numbers, and how many rows have none.

    Rows without a target cannot be trained or scored; the caller drops them. Classification
    labels are strings (booleans as ``"true"``/``"false"``, whole floats without ``.0``) so
    that the ONNX label output, the signature and the metrics all use the same spelling.
    """
    series = frame[target]
    missing = int(series.isna().sum())
    if task == "regression":
        if pd.api.types.is_bool_dtype(series.dtype) or not pd.api.types.is_numeric_dtype(
            series.dtype
        ):
            raise InvalidData(
                f"target {target!r} has type {series.dtype}, but a regression estimator needs "
                "numbers"
            )
        return series.to_numpy(dtype=np.float64, na_value=np.nan), missing
    return _texts(series, _label_text, None), missing


def split_rows(y: np.ndarray[Any, Any], split: SplitSpec, task: Task, seed: int) -> Split:
    """Seeded train / validation / test positions (see the module docstring)."""
    rows = len(y)
    if rows < MIN_ROWS:
        raise InvalidData(
            f"the dataset has {rows} usable rows (with a target); at least {MIN_ROWS} are needed "
            "to train, validate and test"
        )
    positions = np.arange(rows)
    test_share = split.test_fraction
    validation_share = split.validation_fraction / (1.0 - test_share)
    stratify = task == "classification" and split.stratify
    note = ""
    if stratify:
        why_not = _why_not_stratified(y, split)
        if why_not:
            stratify, note = False, f"not stratified: {why_not}"
    try:
        rest, test = train_test_split(
            positions,
            test_size=test_share,
            random_state=seed,
            stratify=y if stratify else None,
        )
        train, validation = train_test_split(
            rest,
            test_size=validation_share,
            random_state=seed,
            stratify=y[rest] if stratify else None,
        )
    except ValueError as exc:  # pragma: no cover - _why_not_stratified covers the known cases
        raise InvalidData(f"cannot split {rows} rows: {exc}") from exc
    if note:
        _log.warning("split %s", note)
    return Split(np.sort(train), np.sort(validation), np.sort(test), stratified=stratify, note=note)


def _why_not_stratified(y: np.ndarray[Any, Any], split: SplitSpec) -> str:
    """Why a stratified split is impossible (empty string when it is possible)."""
    values, counts = np.unique(y.astype(str), return_counts=True)
    rows = len(y)
    smallest = int(counts.min())
    if smallest < 3:
        rare = str(values[int(counts.argmin())])
        return f"class {rare!r} has only {smallest} row(s); each class needs 3 to be in every set"
    # train_test_split needs every set to be able to hold one row per class.
    test_rows = math.ceil(rows * split.test_fraction)
    validation_rows = math.ceil((rows - test_rows) * split.validation_fraction)
    if min(test_rows, validation_rows) < len(values):
        return f"{len(values)} classes do not fit into a test or validation set of this size"
    return ""


def group_labels(series: pd.Series, *, max_groups: int = 20) -> np.ndarray[Any, Any]:
    """Slice / fairness group of every row.

    Category-like columns group by value (the ``max_groups - 1`` most frequent values, the
    rest as ``<other>``); numeric columns with many values are cut into quartiles.
    """
    values = series
    if (
        pd.api.types.is_numeric_dtype(series.dtype)
        and not pd.api.types.is_bool_dtype(series.dtype)
        and series.nunique(dropna=True) > 10
    ):
        binned = pd.qcut(series.astype("float64"), q=4, duplicates="drop")
        values = binned.astype(object).where(binned.notna(), None)
        values = values.map(lambda v: v if v is None else str(v))
    labels = _texts(values, _category_text, MISSING_GROUP)
    uniques, counts = np.unique(labels.astype(str), return_counts=True)
    if len(uniques) > max_groups:
        keep = set(uniques[np.argsort(-counts, kind="stable")[: max_groups - 1]].tolist())
        labels = np.array([v if v in keep else "<other>" for v in labels], dtype=object)
    return labels


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _boolean_text(value: object) -> str:
    if _is_missing(value):
        return MISSING_CATEGORY
    return "true" if bool(value) else "false"


def _category_text(value: object) -> str:
    if _is_missing(value):
        return MISSING_CATEGORY
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _label_text(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)
