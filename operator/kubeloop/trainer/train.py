"""One trial, end to end: ``run_trial(config, store) -> TrialResult``.

The steps, in order, each timed (``durationsSeconds`` in metrics.json):

1. **plan** — this trial's parameters from the search plan; the estimator is built and its
   parameters validated *before* any data is read, so a typo fails in a second;
2. **data** — download the pinned Parquet snapshot (sha256-verified), check the declared
   columns exist, drop rows without a target, assign column roles, split;
3. **fit** — the one pipeline (preprocessing + estimator) on the training rows;
4. **evaluate** — the search metric on validation (the trial's score), every metric on test,
   per-slice metrics, fairness per sensitive column;
5. **export** — ONNX, parity check on the test set, single-row latency; the model's current
   Production version (if the operator named one) scored on the same test rows (``champion.py``);
6. **explain** — permutation importance on a test sample, plots, report, model card;
7. **upload** — ``model.onnx``, ``signature.json``, ``test-set.parquet`` (the test rows with the
   model's predictions: what a served copy must reproduce), ``model-card.md``, ``report.html``,
   then ``metrics.json`` (which lists the others' sha256) under the trial's prefix.

Failures raise :class:`~kubeloop.trainer.errors.TrainerError` subclasses; ``cli.py`` turns
them into the termination message. Nothing is uploaded for a failed trial, so a prefix with
``metrics.json`` always holds a complete, parity-checked set of artifacts.
"""

from __future__ import annotations

import io
import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from kubeloop import __version__
from kubeloop.api.estimators import Task, estimator_task, metrics_for
from kubeloop.api.meta import ParamValue
from kubeloop.api.modelversion import FeatureSpec, OutputSpec, Signature
from kubeloop.storage import (
    AccessDenied,
    BucketNotFound,
    DigestMismatch,
    EndpointUnreachable,
    ObjectNotFound,
    ObjectStore,
    S3Uri,
    StorageError,
    StorageUnavailable,
    UploadResult,
)
from kubeloop.trainer import card, evaluate, metrics, report
from kubeloop.trainer.champion import score_champion
from kubeloop.trainer.config import TrialConfig
from kubeloop.trainer.data import (
    MAX_CLASSES,
    Columns,
    Split,
    column_roles,
    drop_identifier_like,
    model_frame,
    read_snapshot,
    require_columns,
    split_rows,
    target_values,
)
from kubeloop.trainer.errors import (
    InvalidConfig,
    InvalidData,
    StorageFailed,
    TrainingFailed,
)
from kubeloop.trainer.model import build_pipeline, make_estimator, scales_numbers, seen_categories
from kubeloop.trainer.onnx_export import (
    ML_OPSET,
    TARGET_OPSET,
    check_parity,
    export_onnx,
    measure_latency,
    open_session,
)
from kubeloop.trainer.search import search_direction, search_metric, trial_params

T = TypeVar("T")

MODEL_FILE = "model.onnx"
METRICS_FILE = "metrics.json"
SIGNATURE_FILE = "signature.json"
CARD_FILE = "model-card.md"
REPORT_FILE = "report.html"
TEST_SET_FILE = "test-set.parquet"
# test-set.parquet keeps at most this many rows (the first ones of the test split).
TEST_SET_MAX_ROWS = 100_000
PREDICTION_COLUMN = "kubeloop:prediction"
PROBABILITY_COLUMN_PREFIX = "kubeloop:probability:"
METRICS_SCHEMA_VERSION = 1

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialResult:
    """What a successful trial produced (the failure path raises instead)."""

    trial: int
    params: dict[str, ParamValue]
    metric: str
    direction: str
    score: float | None
    metrics: dict[str, float]
    artifact_uri: str
    model_sha256: str
    model_size: int
    opset: int
    latency_p99_ms: float | None
    signature: Signature
    artifacts: dict[str, UploadResult] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    champion: dict[str, Any] | None = None

    def termination_payload(self) -> dict[str, Any]:
        """The success JSON of the termination message (``cli.py`` fits it into 4096 bytes)."""
        return {
            "ok": True,
            "trial": self.trial,
            "params": self.params,
            "score": self.score,
            "metric": self.metric,
            "direction": self.direction,
            "metrics": self.metrics,
            "artifactURI": self.artifact_uri,
            "modelSHA256": self.model_sha256,
            "modelSizeBytes": self.model_size,
            "opset": self.opset,
            "latencyP99Ms": self.latency_p99_ms,
            **({"champion": self.champion} if self.champion is not None else {}),
        }


class _Timer:
    """Wall-clock seconds per step, for metrics.json and the benchmark."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        _log.info("trial step %s ...", name)
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 4)


@dataclass
class _Prepared:
    """The data of a trial, ready to fit: roles, model frame, target, split."""

    frame: pd.DataFrame  # the snapshot without rows that lack a target
    columns: Columns
    x: pd.DataFrame
    y: np.ndarray[Any, Any]
    split: Split
    missing_target: int


@dataclass
class _Evaluation:
    """Validation and test results of the fitted pipeline."""

    validation: dict[str, float]
    test: dict[str, float]
    test_predictions: evaluate.Predictions
    slices: dict[str, list[dict[str, Any]]]
    fairness: dict[str, dict[str, Any]]


def run_trial(config: TrialConfig, store: ObjectStore) -> TrialResult:
    """Run one trial (see the module docstring) and upload its artifacts."""
    timer = _Timer()
    spec = config.spec
    task = estimator_task(spec.estimator.name)

    with timer.step("plan"):
        try:
            params = trial_params(spec, config.trial)
        except ValueError as exc:
            raise InvalidConfig(str(exc)) from exc
        estimator = make_estimator(spec.estimator.name, params, spec.seed)

    with timer.step("data"):
        data = _prepare(config, store, task)

    with timer.step("fit"):
        pipeline = build_pipeline(
            data.columns, estimator, scale=scales_numbers(spec.estimator.name)
        )
        train = data.split.train
        fit_warnings = _fit(
            pipeline, data.x.iloc[train], data.y[train], spec.estimator.name, params
        )
    labels = [str(c) for c in pipeline.classes_] if task == "classification" else []

    with timer.step("evaluate"):
        evaluation = _evaluate(config, data, pipeline, task, labels)
    x_test, y_test = data.x.iloc[data.split.test], data.y[data.split.test]

    with timer.step("export"):
        signature = build_signature(data.columns, pipeline, task, labels)
        model_bytes = export_onnx(
            pipeline,
            data.columns.features,
            task=task,
            metadata={
                "kubeloop.model": config.effective_model_name,
                "kubeloop.trial": str(config.trial),
                "kubeloop.dataset": config.effective_dataset_name,
                "kubeloop.datasetVersion": config.dataset_version,
                "kubeloop.signature": json.dumps(signature.to_wire(), separators=(",", ":")),
            },
        )
        session = open_session(model_bytes)
        outputs = [output.name for output in session.get_outputs()]
        test_predictions = evaluation.test_predictions
        parity = check_parity(
            session,
            pipeline,
            x_test,
            data.columns.features,
            task,
            expected=(test_predictions.labels, test_predictions.proba),
        )

    with timer.step("latency"):
        latency = metrics.latency_percentiles(
            measure_latency(session, x_test, data.columns.features, config.latency_runs)
        )
        evaluation.test.update(latency)

    champion = None
    if config.champion is not None:
        with timer.step("champion"):
            champion = score_champion(
                config.champion,
                store,
                test_frame=data.frame.iloc[data.split.test],
                y_test=y_test,
                task=task,
                labels=labels,
            )

    with timer.step("importance"):
        importance = evaluate.importances(
            evaluate.OnnxPredictor(session, data.columns.features, task, labels),
            x_test,
            y_test,
            task=task,
            rows=config.importance_rows,
            repeats=config.importance_repeats,
            seed=spec.seed,
        )

    summary = _summary(
        config, task=task, params=params, data=data, evaluation=evaluation, labels=labels
    )
    summary.update(
        {
            "importance": importance,
            "parity": parity.as_json(),
            "latency": {
                "p50Ms": latency.get("latency_p50_ms"),
                "p99Ms": latency.get("latency_p99_ms"),
                "runs": config.latency_runs,
            },
            "signature": signature.to_wire(),
            **({"champion": champion} if champion is not None else {}),
            "warnings": fit_warnings,
            "onnx": {
                "opset": TARGET_OPSET,
                "mlOpset": ML_OPSET,
                "inputs": data.columns.names,
                "outputs": outputs,
            },
        }
    )

    with timer.step("report"):
        plots = _plots(summary, y_test, evaluation.test_predictions, task, spec.seed)

    with timer.step("upload"):
        prefix = S3Uri.parse(config.trial_prefix)
        artifacts = _upload_artifacts(
            store,
            prefix,
            model_bytes=model_bytes,
            signature=signature,
            test_set=_test_set(data, evaluation.test_predictions, labels),
            summary=summary,
            plots=plots,
            timer=timer,
        )
    _log.info("trial %d done: %s", config.trial, timer.seconds)
    return TrialResult(
        trial=config.trial,
        params=params,
        metric=summary["metric"],
        direction=summary["direction"],
        score=summary["score"],
        metrics=evaluation.test,
        artifact_uri=str(prefix),
        model_sha256=artifacts[MODEL_FILE].sha256,
        model_size=artifacts[MODEL_FILE].size,
        opset=TARGET_OPSET,
        latency_p99_ms=latency.get("latency_p99_ms"),
        signature=signature,
        artifacts=artifacts,
        durations=dict(timer.seconds),
        champion=champion,
    )


def _prepare(config: TrialConfig, store: ObjectStore, task: Task) -> _Prepared:
    frame = _load_snapshot(config, store)
    require_columns(
        frame,
        {
            "target": [config.target],
            "slice": config.slice_columns,
            "sensitive": config.sensitive_columns,
            "excluded": config.exclude_columns,
        },
    )
    y_all, missing_target = target_values(frame, config.target, task)
    present = ~_missing(y_all)
    frame = frame.loc[present].reset_index(drop=True)
    y = y_all[present]
    columns = column_roles(
        frame,
        config.target,
        sensitive=config.sensitive_columns,
        excluded=config.exclude_columns,
    )
    split = split_rows(y, config.spec.split, task, config.spec.seed)
    drop_identifier_like(columns, frame.iloc[split.train])
    if not columns.features:
        raise InvalidData(
            "no column is usable as a feature "
            f"({_describe_excluded(columns) or 'the dataset has only the target'})"
        )
    if task == "classification":
        _check_classes(y, y[split.train], config.target)
    x = model_frame(frame, columns.features)
    for name in columns.numeric:
        infinite = int(np.isinf(x[name].to_numpy()).sum())
        if infinite:
            raise InvalidData(
                f"column {name!r} has {infinite} infinite value(s) (or values beyond float32 "
                "range); use missing values or finite numbers instead"
            )
    if task == "regression" and not np.isfinite(y).all():
        raise InvalidData(f"target {config.target!r} has infinite values")
    return _Prepared(frame, columns, x, y, split, missing_target)


def _evaluate(
    config: TrialConfig, data: _Prepared, pipeline: Any, task: Task, labels: list[str]
) -> _Evaluation:
    split = data.split
    x_val, y_val = data.x.iloc[split.validation], data.y[split.validation]
    x_test, y_test = data.x.iloc[split.test], data.y[split.test]
    validation = evaluate.quality(y_val, evaluate.predict(pipeline, x_val, task), task, labels)
    predictions = evaluate.predict(pipeline, x_test, task)
    test = evaluate.quality(y_test, predictions, task, labels)
    test_frame = data.frame.iloc[split.test]
    # Sensitive columns are never features, but their per-group quality belongs in the report.
    slice_columns = list(dict.fromkeys([*config.slice_columns, *config.sensitive_columns]))
    slices = evaluate.slice_metrics(
        {c: test_frame[c] for c in slice_columns}, y_test, predictions, task, labels
    )
    fairness: dict[str, dict[str, Any]] = {}
    if task == "classification" and config.sensitive_columns:
        fairness = evaluate.fairness_blocks(
            {c: test_frame[c] for c in config.sensitive_columns}, y_test, predictions, labels
        )
        test.update(evaluate.worst_fairness(fairness))
    return _Evaluation(validation, test, predictions, slices, fairness)


def _summary(
    config: TrialConfig,
    *,
    task: Task,
    params: dict[str, ParamValue],
    data: _Prepared,
    evaluation: _Evaluation,
    labels: list[str],
) -> dict[str, Any]:
    """metrics.json without the parts later steps add (importance, parity, artifacts...)."""
    spec = config.spec
    metric = search_metric(spec)
    split = data.split
    summary: dict[str, Any] = {
        "schemaVersion": METRICS_SCHEMA_VERSION,
        "trial": config.trial,
        "task": task,
        "metric": metric,
        "direction": search_direction(spec),
        "score": evaluation.validation.get(metric),
        "model": {"name": config.effective_model_name, "estimator": spec.estimator.name},
        "params": params,
        "seed": spec.seed,
        "scaled": scales_numbers(spec.estimator.name),
        "dataset": {
            "name": config.effective_dataset_name,
            "version": config.dataset_version,
            "snapshotURI": config.snapshot_uri,
        },
        "trainingRun": config.training_run,
        "namespace": config.namespace,
        "target": config.target,
        "labels": labels,
        "positiveClass": metrics.positive_label(labels) if len(labels) == 2 else None,
        "rows": {
            "train": len(split.train),
            "validation": len(split.validation),
            "test": len(split.test),
            "droppedNoTarget": data.missing_target,
        },
        "stratified": split.stratified,
        "splitNote": split.note or ("stratified by class" if split.stratified else "random"),
        "validation": evaluation.validation,
        "test": evaluation.test,
        "undefinedMetrics": [m for m in metrics_for(task) if m not in evaluation.test],
        "slices": evaluation.slices,
        "fairness": evaluation.fairness,
        "excludedColumns": data.columns.excluded,
        "kubeloopVersion": __version__,
        "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if task == "classification":
        y_test = data.y[split.test]
        summary["confusionMatrix"] = {
            "labels": labels,
            "matrix": metrics.confusion(y_test, evaluation.test_predictions.labels, labels),
        }
    return summary


def _upload_artifacts(
    store: ObjectStore,
    prefix: S3Uri,
    *,
    model_bytes: bytes,
    signature: Signature,
    test_set: bytes,
    summary: dict[str, Any],
    plots: dict[str, bytes | None],
    timer: _Timer,
) -> dict[str, UploadResult]:
    """Upload everything; metrics.json last, listing the others' digests."""
    artifacts = {MODEL_FILE: _upload(store, model_bytes, prefix, MODEL_FILE, "application/onnx")}
    summary["artifacts"] = {
        MODEL_FILE: {"sha256": artifacts[MODEL_FILE].sha256, "size": artifacts[MODEL_FILE].size}
    }
    summary["durationsSeconds"] = timer.seconds
    documents = {
        SIGNATURE_FILE: (_json_bytes(signature.to_wire()), "application/json"),
        TEST_SET_FILE: (test_set, "application/vnd.apache.parquet"),
        CARD_FILE: (card.render_card(summary).encode(), "text/markdown; charset=utf-8"),
        REPORT_FILE: (report.render_html(summary, plots).encode(), "text/html; charset=utf-8"),
    }
    for name, (content, content_type) in documents.items():
        artifacts[name] = _upload(store, content, prefix, name, content_type)
        summary["artifacts"][name] = {
            "sha256": artifacts[name].sha256,
            "size": artifacts[name].size,
        }
    artifacts[METRICS_FILE] = _upload(
        store, _json_bytes(summary), prefix, METRICS_FILE, "application/json"
    )
    return artifacts


def _test_set(data: _Prepared, predictions: evaluate.Predictions, labels: list[str]) -> bytes:
    """The test rows (features and target, as in the snapshot) with the model's predictions."""
    rows = data.split.test[:TEST_SET_MAX_ROWS]
    columns = [f.name for f in data.columns.features] + [data.columns.target]
    frame = data.frame.iloc[rows][columns].reset_index(drop=True)
    count = len(rows)
    frame[PREDICTION_COLUMN] = predictions.labels[:count]
    if predictions.proba is not None:
        for index, label in enumerate(labels):
            frame[PROBABILITY_COLUMN_PREFIX + label] = predictions.proba[:count, index]
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def build_signature(columns: Columns, pipeline: Any, task: Task, labels: list[str]) -> Signature:
    """The ModelVersion signature: inputs in model order, the categories the encoder knows."""
    categories = seen_categories(pipeline)
    inputs = [
        FeatureSpec(
            name=feature.name,
            type=feature.type,
            nullable=feature.nullable,
            # The signature lists at most 10000 categories; others are still accepted.
            categories=categories.get(feature.name, [])[:10_000]
            if feature.encoding == "categorical"
            else None,
        )
        for feature in columns.features
    ]
    output = OutputSpec(task=task, labels=labels if task == "classification" else None)
    return Signature(inputs=inputs, output=output)


# --- steps -----------------------------------------------------------------------------------


def _load_snapshot(config: TrialConfig, store: ObjectStore) -> pd.DataFrame:
    with tempfile.TemporaryDirectory(prefix="kubeloop-trial-") as scratch:
        path = Path(scratch) / "snapshot.parquet"
        _storage(
            f"read the dataset snapshot {config.snapshot_uri}",
            lambda: store.download(
                config.snapshot_uri, path, expected_sha256=config.snapshot_sha256
            ),
            missing_reason="SnapshotNotFound",
        )
        frame = read_snapshot(path)
    # Parquet allows non-string column names; the signature and ONNX inputs need strings.
    names = [str(column) for column in frame.columns]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InvalidData(f"the dataset has duplicate column names: {', '.join(duplicates)}")
    frame.columns = pd.Index(names)
    if frame.empty:
        raise InvalidData(f"the dataset snapshot {config.snapshot_uri} has no rows")
    return frame


def _check_classes(y: np.ndarray[Any, Any], y_train: np.ndarray[Any, Any], target: str) -> None:
    trained = set(y_train.tolist())
    if len(trained) < 2:
        only = next(iter(trained), None)
        raise InvalidData(
            f"target {target!r} has a single class ({only!r}) in the training rows; a classifier "
            "needs at least two"
        )
    if len(trained) > MAX_CLASSES:
        raise InvalidData(
            f"target {target!r} has {len(trained)} distinct values; at most {MAX_CLASSES} classes "
            "are supported (is this a regression target?)"
        )
    unseen = sorted(set(y.tolist()) - trained)
    if unseen:
        raise InvalidData(
            f"class(es) {', '.join(repr(u) for u in unseen[:5])} of target {target!r} occur in "
            "the validation or test rows but never in the training rows; enable split.stratify "
            "or add rows of those classes"
        )


def _fit(
    pipeline: Any, x: pd.DataFrame, y: np.ndarray[Any, Any], name: str, params: dict[str, Any]
) -> list[str]:
    """Fit; scikit-learn's warnings (e.g. no convergence) are returned for the report."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pipeline.fit(x, y)
        except MemoryError as exc:
            raise TrainingFailed(
                f"ran out of memory while fitting {name} on {len(x)} rows; raise the memory "
                "limit in spec.resources or reduce the model size"
            ) from exc
        except (ValueError, TypeError, ArithmeticError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(params.items())) or "defaults"
            raise TrainingFailed(f"fitting {name} ({shown}) failed: {exc}") from exc
    messages = list(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
    return [m[:500] for m in messages[:10]]


def _plots(
    summary: dict[str, Any],
    y_test: np.ndarray[Any, Any],
    predictions: evaluate.Predictions,
    task: Task,
    seed: int,
) -> dict[str, bytes | None]:
    labels = summary["labels"]
    if task == "classification":
        return {
            "confusion": report.confusion_png(summary["confusionMatrix"]["matrix"], labels),
            "roc": report.roc_png(y_test, predictions.proba, labels),
            "importance": report.importance_png(summary["importance"]),
        }
    return {
        "residuals": report.residuals_png(y_test, predictions.labels, seed),
        "importance": report.importance_png(summary["importance"]),
    }


def _upload(
    store: ObjectStore, content: bytes, prefix: S3Uri, name: str, content_type: str
) -> UploadResult:
    destination = prefix.join(name)
    return _storage(
        f"write {destination}",
        lambda: store.upload(content, destination, content_type=content_type),
    )


def _storage(action: str, operation: Callable[[], T], *, missing_reason: str = "StorageError") -> T:
    """Run a storage operation; translate its typed errors into trial failure reasons."""
    try:
        return operation()
    except (EndpointUnreachable, StorageUnavailable) as exc:
        raise StorageFailed(f"cannot {action}: {exc}", reason="StorageUnavailable") from exc
    except AccessDenied as exc:  # InvalidCredentials included
        raise StorageFailed(f"cannot {action}: {exc}", reason="StorageAccessDenied") from exc
    except (ObjectNotFound, BucketNotFound) as exc:
        raise StorageFailed(f"cannot {action}: {exc}", reason=missing_reason) from exc
    except DigestMismatch as exc:
        raise StorageFailed(f"cannot {action}: {exc}", reason="DigestMismatch") from exc
    except StorageError as exc:
        raise StorageFailed(f"cannot {action}: {exc}", reason="StorageError") from exc


def _missing(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    if values.dtype == object:
        return np.array([v is None for v in values.tolist()], dtype=bool)
    missing: np.ndarray[Any, Any] = np.isnan(values)
    return missing


def _describe_excluded(columns: Columns) -> str:
    return "; ".join(f"{name}: {why}" for name, why in columns.excluded.items())


def _json_bytes(document: Any) -> bytes:
    return (json.dumps(_finite(document), indent=2, ensure_ascii=False) + "\n").encode()


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null instead of invalid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
