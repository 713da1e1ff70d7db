"""Churn-like test data and the client's view of it, shared by the trainer and server tests.

``churn_frame`` has numbers (some missing), categories, a boolean, an identifier and a
sensitive-looking column; ``client_feeds`` builds ONNX inputs from raw values the way a client
(the inference server) does, so tests compare what a served model answers with what was trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from kubeloop.api.modelversion import Signature


def churn_frame(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Churn-like data: numbers (some missing), categories, a boolean, a sensitive column."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    monthly = rng.normal(70, 20, rows).round(2)
    total = tenure * monthly
    total[rng.random(rows) < 0.05] = np.nan
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2])
    logit = (
        -1.0
        + 0.03 * (monthly - 70)
        - 0.04 * tenure
        + np.where(contract == "month-to-month", 1.5, -0.5)
        + rng.normal(0, 0.5, rows)
    )
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:05d}" for i in range(rows)],
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total charges": total,
            "contract": contract,
            "region": rng.choice(["north", "south", "east", "west"], rows),
            "age_band": rng.choice(["18-29", "30-44", "45-64", "65+"], rows),
            "paperless": rng.random(rows) < 0.6,
            "churned": rng.random(rows) < 1 / (1 + np.exp(-logit)),
        }
    )


def client_feeds(rows: pd.DataFrame, signature: Signature) -> dict[str, np.ndarray[Any, Any]]:
    """Inputs as a client (the inference server) builds them from raw values."""
    feeds: dict[str, np.ndarray[Any, Any]] = {}
    for spec in signature.inputs:
        values = rows[spec.name]
        if spec.type in ("number", "integer"):
            feeds[spec.name] = values.to_numpy(dtype=np.float32, na_value=np.nan).reshape(-1, 1)
        elif spec.type == "boolean":
            text = ["" if pd.isna(v) else ("true" if v else "false") for v in values]
            feeds[spec.name] = np.array(text, dtype=object).reshape(-1, 1)
        else:
            text = ["" if pd.isna(v) else str(v) for v in values]
            feeds[spec.name] = np.array(text, dtype=object).reshape(-1, 1)
    return feeds
