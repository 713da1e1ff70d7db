"""The champion scored on the challenger's test set: the fair half of champion/challenger.

Comparing a new version's test metrics with the Production version's *own* test metrics
compares two different test sets (a new dataset version, a new split), so a lucky split can
promote a worse model. When the operator starts a TrainingRun for a model that has a
Production version, it hands that version's artifact (URI + sha256) to every trial; the trial
downloads it (digest verified), runs it in ONNX Runtime on exactly the rows it tested itself
on, and reports the same metrics. The ModelVersion's champion gate then compares like with like.

The champion is a served ONNX model with its signature in its metadata, so scoring needs no
scikit-learn object and unpickles nothing. When it cannot be scored here (its inputs are not in
this data, its classes differ, its artifact is gone), the block says why and the gate falls back
to the champion's stored metrics, saying so.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import onnx
import pandas as pd

from kubeloop.api.estimators import Task
from kubeloop.api.modelversion import Signature
from kubeloop.storage import ObjectStore, S3Uri, StorageError
from kubeloop.trainer import evaluate
from kubeloop.trainer.config import ChampionRef
from kubeloop.trainer.data import Feature, model_frame, onnx_feeds
from kubeloop.trainer.errors import ExportFailed
from kubeloop.trainer.onnx_export import open_session

SIGNATURE_METADATA = "kubeloop.signature"


def score_champion(
    champion: ChampionRef,
    store: ObjectStore,
    *,
    test_frame: pd.DataFrame,
    y_test: np.ndarray[Any, Any],
    task: Task,
    labels: list[str],
) -> dict[str, Any]:
    """``{"name", "sha256", "rows", "metrics"}``, or ``{"name", "error"}`` when it cannot be scored."""
    block: dict[str, Any] = {"name": champion.name, "sha256": champion.sha256}
    try:
        model_bytes = _download(store, champion)
        signature = _signature(model_bytes)
    except (StorageError, ValueError) as exc:
        return {**block, "error": f"cannot read {champion.name}'s model: {exc}"}
    if signature.output.task != task:
        return {**block, "error": f"{champion.name} is a {signature.output.task} model"}
    champion_labels = list(signature.output.labels or [])
    if task == "classification" and sorted(champion_labels) != sorted(labels):
        return {
            **block,
            "error": f"{champion.name} predicts classes {champion_labels}, this data has {labels}",
        }
    missing = [f.name for f in signature.inputs if f.name not in test_frame.columns]
    if missing:
        return {**block, "error": f"{champion.name} needs column(s) {missing} not in this data"}
    features = [Feature(f.name, f.type, f.nullable) for f in signature.inputs]
    try:
        session = open_session(model_bytes)
        outputs = session.run(None, onnx_feeds(model_frame(test_frame, features), features))
    except (ExportFailed, RuntimeError, ValueError) as exc:
        return {**block, "error": f"ONNX Runtime cannot run {champion.name}: {exc}"}
    predictions = _predictions(outputs, task, champion_labels, labels)
    block["rows"] = len(y_test)
    block["metrics"] = evaluate.quality(y_test, predictions, task, labels)
    return block


def _download(store: ObjectStore, champion: ChampionRef) -> bytes:
    buffer = io.BytesIO()
    store.download_verified(S3Uri.parse(champion.artifact_uri), buffer, champion.sha256)
    return buffer.getvalue()


def _signature(model_bytes: bytes) -> Signature:
    try:
        model = onnx.load_model_from_string(model_bytes)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"not an ONNX model ({type(exc).__name__})") from exc
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    if SIGNATURE_METADATA not in metadata:
        raise ValueError(f"no {SIGNATURE_METADATA} metadata (not exported by kubeloop)")
    return Signature.model_validate(json.loads(metadata[SIGNATURE_METADATA]))


def _predictions(
    outputs: list[Any], task: Task, champion_labels: list[str], labels: list[str]
) -> evaluate.Predictions:
    if task == "regression":
        return evaluate.Predictions(np.asarray(outputs[0], dtype=np.float64).ravel(), None)
    # Same classes, possibly listed in another order: reorder the columns to this trial's order.
    proba = np.asarray(outputs[1], dtype=np.float64)
    order = [champion_labels.index(label) for label in labels]
    return evaluate.Predictions(np.asarray(outputs[0]).astype(str).astype(object), proba[:, order])
