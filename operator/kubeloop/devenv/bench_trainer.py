"""Trainer overhead: a whole ``run_trial`` against a plain scikit-learn script on the same data.

The floor is what a data scientist would write by hand: read the Parquet file, split, impute
and one-hot encode, fit the same estimator with the same parameters, predict the test set.
The trainer does all that and also: downloads the snapshot from S3 with a verified sha256,
computes validation/test/slice/fairness metrics, exports ONNX, checks parity on the test
set, times single-row latency, computes permutation importance on a sample, draws the plots,
renders the report and model card, and uploads five artifacts. The ratio of the two wall
times is the price of all that; the target is at most 1.3x on a realistically sized fit.

Both sides run interleaved, ``repeat`` times, with native thread pools limited to the same
number of threads, against a real SeaweedFS. The table of the trainer's own steps (medians)
says where the overhead goes.

Most of the extra work scales with the test set (predictions, parity), but permutation
importance (a 1000-row sample, through ONNX Runtime), the plots and the report cost about a
second whatever the data; so the ratio only approaches 1.0 for fits of more than a few
seconds. The default workload (200,000 rows, 200 boosting iterations) is a small real one.
"""

from __future__ import annotations

import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from kubeloop.devenv.seaweedfs import SeaweedFS
from kubeloop.storage import ObjectStore
from kubeloop.trainer.config import TrialConfig
from kubeloop.trainer.threads import limited_threads
from kubeloop.trainer.train import run_trial

TARGET_RATIO = 1.3
_NUMERIC = 12
_CATEGORICAL = {"contract": 3, "region": 12, "plan": 6, "channel": 5, "device": 8, "city": 40}


def churn_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """A churn-like table: 12 numbers (some missing), 6 categories, a boolean, a sensitive
    column, an identifier and a boolean target that depends on several of them."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {"customer_id": [f"c{i:07d}" for i in range(rows)]}
    signal = rng.normal(0, 1, rows)
    for index in range(_NUMERIC):
        column = rng.normal(0, 1, rows) + (signal * 0.3 if index < 4 else 0)
        column[rng.random(rows) < 0.02] = np.nan
        data[f"num_{index:02d}"] = column.astype(np.float64)
    for name, cardinality in _CATEGORICAL.items():
        data[name] = rng.choice([f"{name}-{i}" for i in range(cardinality)], rows)
    data["paperless"] = rng.random(rows) < 0.6
    data["age_band"] = rng.choice(["18-29", "30-44", "45-64", "65+"], rows)
    boost = np.where(data["contract"] == "contract-0", 1.0, -0.5)
    data["churned"] = (signal + boost + rng.normal(0, 1, rows)) > 0.8
    return pd.DataFrame(data)


def plain_script(path: Path, params: dict[str, Any], seed: int) -> float:
    """The floor: read, split, preprocess + fit, predict. Returns test accuracy."""
    frame = pd.read_parquet(path)
    y = frame.pop("churned")
    x = frame.drop(columns=["customer_id", "age_band"])
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=0.15, random_state=seed, stratify=y
    )
    x_train, _, y_train, _ = train_test_split(
        x_rest, y_rest, test_size=0.15 / 0.85, random_state=seed, stratify=y_rest
    )
    numeric = [c for c in x.columns if c.startswith("num_")]
    categorical = [c for c in x.columns if c not in numeric]
    model = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        ("numeric", SimpleImputer(strategy="median"), numeric),
                        (
                            "categorical",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                            categorical,
                        ),
                    ]
                ),
            ),
            ("estimator", HistGradientBoostingClassifier(random_state=seed, **params)),
        ]
    )
    model.fit(x_train, y_train)
    return float((model.predict(x_test) == y_test).mean())


def run_trainer_benchmark(
    state_dir: Path,
    *,
    rows: int = 200_000,
    params: dict[str, Any] | None = None,
    repeat: int = 3,
    threads: int = 1,
) -> int:
    """Time ``run_trial`` and the plain script side by side; print Markdown tables."""
    params = {"max_iter": 200, "early_stopping": False} if params is None else params
    frame = churn_frame(rows)
    seed = 7
    trainer: list[float] = []
    floor: list[float] = []
    steps: dict[str, list[float]] = {}
    with (
        SeaweedFS(state_dir) as endpoint,
        ObjectStore(endpoint.settings()) as store,
        tempfile.TemporaryDirectory() as scratch,
    ):
        local = Path(scratch) / "snapshot.parquet"
        frame.to_parquet(local)
        buffer = io.BytesIO(local.read_bytes())
        snapshot = store.upload(buffer, "bench/trainer/snapshot.parquet")
        for index in range(repeat):
            config = TrialConfig.model_validate(
                {
                    "trial": 0,
                    "spec": {
                        "datasetRef": {"name": "churn"},
                        "modelName": "churn",
                        "estimator": {"name": "HistGradientBoostingClassifier", "params": params},
                        "seed": seed,
                    },
                    "snapshotURI": str(snapshot.uri),
                    "snapshotSha256": snapshot.sha256,
                    "target": "churned",
                    "sliceColumns": ["region", "contract"],
                    "sensitiveColumns": ["age_band"],
                    "excludeColumns": ["customer_id"],
                    "outputPrefix": f"s3://{endpoint.bucket}/bench/trainer/run-{index}/",
                    "datasetVersion": f"sha256:{snapshot.sha256}",
                }
            )
            with limited_threads(threads):
                start = time.perf_counter()
                result = run_trial(config, store)
                trainer.append(time.perf_counter() - start)
                start = time.perf_counter()
                accuracy = plain_script(local, params, seed)
                floor.append(time.perf_counter() - start)
            for name, seconds in result.durations.items():
                steps.setdefault(name, []).append(seconds)
    ours, base = statistics.median(trainer), statistics.median(floor)
    ratio = ours / base
    print(
        f"trainer, HistGradientBoostingClassifier {params} on {rows:,} rows x "
        f"{frame.shape[1] - 1} columns, {threads} thread(s), median of {repeat} interleaved runs"
    )
    print("| run | wall time | ratio | target |")
    print("|---|---|---|---|")
    print(f"| plain sklearn script (read, split, fit, predict) | {base:7.2f} s | 1.00x | |")
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"| kubeloop run_trial (everything) | {ours:7.2f} s | {ratio:4.2f}x "
        f"| <= {TARGET_RATIO}x ({verdict}) |"
    )
    print()
    print("| trainer step | median | share of the trainer's time |")
    print("|---|---|---|")
    for name, values in steps.items():
        seconds = statistics.median(values)
        print(f"| {name} | {seconds:6.2f} s | {seconds / ours:5.1%} |")
    print(
        f"\n(plain script test accuracy {accuracy:.4f}, trainer {result.metrics['accuracy']:.4f})"
    )
    return 0 if ratio <= TARGET_RATIO else 1
