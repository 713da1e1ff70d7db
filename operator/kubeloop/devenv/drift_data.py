"""Two distributions of the iris data for the loop's demo and tests: A, and A shifted (B).

A is the iris measurements with a little noise. B is the same flowers measured by a
different instrument: every petal reads 2.5 cm longer and 1 cm wider. The species do not
change, so a model trained on A reads most B flowers as the next species along (setosa as
versicolor, versicolor as virginica), its live accuracy falls to about a third, and a model
trained on labelled B traffic learns the new readings. Both come from the copy of iris that
ships inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_iris

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
TARGET = "species"
SHIFT = {"petal_length": 2.5, "petal_width": 1.0}


def _iris() -> pd.DataFrame:
    data = load_iris(as_frame=True)
    frame = data.frame.rename(
        columns={
            "sepal length (cm)": "sepal_length",
            "sepal width (cm)": "sepal_width",
            "petal length (cm)": "petal_length",
            "petal width (cm)": "petal_width",
            "target": TARGET,
        }
    )
    frame[TARGET] = frame[TARGET].map(dict(enumerate(data.target_names)))
    return frame


def sample(rows: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    """``rows`` flowers from A (or B when ``shifted``), with their species."""
    rng = np.random.default_rng(seed)
    base = _iris()
    picked = base.iloc[rng.integers(0, len(base), size=rows)].reset_index(drop=True)
    for column in FEATURES:
        noise = rng.normal(0.0, 0.08, size=rows)
        picked[column] = picked[column] + noise + (SHIFT.get(column, 0.0) if shifted else 0.0)
        picked[column] = picked[column].round(2)
    return picked


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as the CSV a Dataset reads."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue().encode()


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``/predict`` records (features only), one per row."""
    return [
        {k: float(v) for k, v in row.items()} for row in frame[list(FEATURES)].to_dict("records")
    ]
