"""ONNX export of the fitted pipeline, the parity check, and single-row latency.

The served artifact is ONNX only (nothing in kubeloop ever unpickles a model), so the export
must be *the* model: the parity check runs the exported bytes in ONNX Runtime on the whole
test set and compares with scikit-learn; a trial whose model does not match fails with
``ParityFailed`` and the largest deviation, and nothing is registered.

The model's interface (what ``kubeloop serve`` feeds it):

* one input per feature column, named exactly like the column, shape ``[None, 1]``: float32
  for numbers (NaN = missing), string for categories and booleans (``"true"``/``"false"``;
  ``""`` = missing). The names are the signature's, whatever characters they contain;
* outputs, by position: classification ``label`` (string, [N]) then ``probabilities``
  (float32, [N, classes] in the sorted label order of the signature; no ZipMap); regression
  ``variable`` (float32, [N, 1]). A feature column with one of those names pushes the output
  to ``label_`` etc.; the model's ``kubeloop.outputs`` metadata always has the real names.

Tolerances: probabilities within 1e-4 and identical labels (a label may differ only where
scikit-learn's two best probabilities are within that tolerance, i.e. a tie that float32
arithmetic may break either way); regression within ``rtol=1e-4`` plus an absolute
``1e-5 x max |prediction|`` (float32 output cannot do better near zero).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx.external_data_helper import uses_external_data
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from kubeloop.api.estimators import Task
from kubeloop.trainer.data import Feature, onnx_feeds
from kubeloop.trainer.errors import ExportFailed, ParityError
from kubeloop.trainer.model import ESTIMATOR_STEP, PREPROCESS_STEP

# Pinned so the same code exports the same model whatever onnx version is installed; every
# onnxruntime since 1.14 runs opset 18.
TARGET_OPSET = 18
ML_OPSET = 3
GRAPH_NAME = "kubeloop"
PROBABILITY_TOLERANCE = 1e-4
REGRESSION_RTOL = 1e-4
REGRESSION_ATOL_SCALE = 1e-5
OUTPUTS_METADATA = "kubeloop.outputs"
_PLACEHOLDER = "kubeloop_input_"


@dataclass(frozen=True)
class ParityReport:
    """How closely ONNX Runtime reproduced scikit-learn on the test set."""

    rows: int
    max_deviation: float
    tolerance: float
    mismatched_labels: int = 0
    tied_labels: int = 0

    def as_json(self) -> dict[str, float | int]:
        """The ``parity`` block of metrics.json."""
        return {
            "rows": self.rows,
            "maxDeviation": self.max_deviation,
            "tolerance": self.tolerance,
            "mismatchedLabels": self.mismatched_labels,
            "tiedLabels": self.tied_labels,
        }


def export_onnx(
    pipeline: Pipeline,
    features: list[Feature],
    *,
    task: Task,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Convert the fitted pipeline; ``ExportFailed`` when skl2onnx or the checks refuse it."""
    # skl2onnx rewrites names that are not identifiers and picks its own internal names
    # ("variable", "label", ...), which a column may also be called. So it gets neutral
    # placeholders, and the real column names are put in afterwards (_use_column_names).
    initial_types: list[tuple[str, Any]] = [
        (
            f"{_PLACEHOLDER}{index}",
            FloatTensorType([None, 1])
            if feature.encoding == "numeric"
            else StringTensorType([None, 1]),
        )
        for index, feature in enumerate(features)
    ]
    options: dict[int, dict[str, bool]] | None = None
    if task == "classification":
        options = {id(pipeline.named_steps[ESTIMATOR_STEP]): {"zipmap": False}}
    placeholder_of = {
        feature.name: name for feature, (name, _) in zip(features, initial_types, strict=True)
    }
    try:
        with warnings.catch_warnings(), _columns_renamed(pipeline, placeholder_of):
            # skl2onnx passes booleans where onnx wants ints; harmless, and not ours to fix.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="onnx")
            model = convert_sklearn(
                pipeline,
                initial_types=initial_types,
                options=options,
                target_opset={"": TARGET_OPSET, "ai.onnx.ml": ML_OPSET},
            )
    except Exception as exc:  # skl2onnx raises anything from RuntimeError to KeyError
        raise ExportFailed(
            f"skl2onnx cannot convert this pipeline: {type(exc).__name__}: {exc}"
        ) from exc
    _use_column_names(model, [feature.name for feature in features])
    # skl2onnx names the graph with a random UUID: the same pipeline would export to different
    # bytes (and sha256) on every run. A fixed name makes identical trainings byte-identical.
    model.graph.name = GRAPH_NAME
    metadata = {
        **(metadata or {}),
        OUTPUTS_METADATA: ",".join(output.name for output in model.graph.output),
    }
    for key, value in sorted(metadata.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    check_self_contained(model)
    try:
        onnx.checker.check_model(model)
        return bytes(model.SerializeToString())
    except (onnx.checker.ValidationError, ValueError) as exc:
        # ValueError: protobuf refuses messages over 2 GiB, which would need external data.
        raise ExportFailed(f"the exported ONNX model is not valid: {exc}") from exc


def check_self_contained(model: onnx.ModelProto) -> None:
    """Refuse a model whose tensors live in external files: the artifact must be one file."""
    for graph in _graphs(model.graph):
        tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
        for node in graph.node:
            for attribute in node.attribute:
                tensors.extend([attribute.t] if attribute.HasField("t") else [])
                tensors.extend(attribute.tensors)
        for tensor in tensors:
            if uses_external_data(tensor):
                raise ExportFailed(
                    f"the ONNX model keeps tensor {tensor.name!r} in external data; kubeloop "
                    "only accepts self-contained models (make the model smaller)"
                )


def open_session(model_bytes: bytes) -> ort.InferenceSession:
    """An ONNX Runtime session on one thread (stable latency numbers, as a server pod sees)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # ORT's own warnings are noise in a trial's log
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types from a C extension
        raise ExportFailed(f"ONNX Runtime cannot load the exported model: {exc}") from exc


def check_parity(
    session: ort.InferenceSession,
    pipeline: Pipeline,
    frame: pd.DataFrame,
    features: list[Feature],
    task: Task,
    *,
    expected: tuple[Any, Any] | None = None,
) -> ParityReport:
    """Compare ONNX Runtime with scikit-learn on ``frame``; ``ParityError`` when they differ.

    ``expected`` is scikit-learn's output on ``frame`` when the caller already has it:
    (labels, probabilities) for classification, (values, None) for regression.
    """
    rows = len(frame)
    if rows == 0:
        return ParityReport(rows=0, max_deviation=0.0, tolerance=PROBABILITY_TOLERANCE)
    outputs = session.run(None, onnx_feeds(frame, features))
    if task == "classification":
        if expected is None:
            expected = (pipeline.predict(frame), pipeline.predict_proba(frame))
        return _classification_parity(expected[0], expected[1], outputs, rows)
    if expected is None:
        expected = (pipeline.predict(frame), None)
    return _regression_parity(expected[0], outputs, rows)


def _classification_parity(labels: Any, proba: Any, outputs: list[Any], rows: int) -> ParityReport:
    onnx_labels = np.asarray(outputs[0]).astype(str).ravel()
    onnx_proba = np.asarray(outputs[1], dtype=np.float64)
    expected_proba = np.asarray(proba, dtype=np.float64)
    expected_labels = np.asarray(labels).astype(str)
    if onnx_proba.shape != expected_proba.shape:
        raise ParityError(
            f"the ONNX model returns probabilities of shape {onnx_proba.shape}, scikit-learn "
            f"{expected_proba.shape}",
            max_deviation=float("inf"),
        )
    deviation = float(np.abs(onnx_proba - expected_proba).max())
    ordered = np.sort(expected_proba, axis=1)
    margin = ordered[:, -1] - ordered[:, -2] if ordered.shape[1] > 1 else np.ones(rows)
    differs = onnx_labels != expected_labels
    tied = differs & (margin <= PROBABILITY_TOLERANCE)
    mismatched = differs & ~tied
    if deviation > PROBABILITY_TOLERANCE or mismatched.any():
        detail = ""
        if mismatched.any():
            first = int(np.flatnonzero(mismatched)[0])
            detail = (
                f"; {int(mismatched.sum())} label(s) differ (first at test row {first}: "
                f"scikit-learn {expected_labels[first]!r}, ONNX {onnx_labels[first]!r})"
            )
        raise ParityError(
            "the ONNX model does not reproduce scikit-learn on the test set: max |Δprobability| "
            f"= {deviation:.3g} over {rows} rows (tolerance {PROBABILITY_TOLERANCE:g}){detail}",
            max_deviation=deviation,
            mismatched_labels=int(mismatched.sum()),
        )
    return ParityReport(
        rows=rows,
        max_deviation=deviation,
        tolerance=PROBABILITY_TOLERANCE,
        mismatched_labels=0,
        tied_labels=int(tied.sum()),
    )


def _regression_parity(values: Any, outputs: list[Any], rows: int) -> ParityReport:
    got = np.asarray(outputs[0], dtype=np.float64).ravel()
    expected = np.asarray(values, dtype=np.float64).ravel()
    if got.shape != expected.shape:
        raise ParityError(
            f"the ONNX model returns {got.shape[0]} predictions for {rows} rows",
            max_deviation=float("inf"),
        )
    atol = REGRESSION_ATOL_SCALE * max(float(np.abs(expected).max()), 1e-12)
    error = np.abs(got - expected)
    allowed = atol + REGRESSION_RTOL * np.abs(expected)
    deviation = float(error.max())
    if not np.all(error <= allowed) or not np.all(np.isfinite(got)):
        worst = int(np.argmax(error - allowed))
        raise ParityError(
            "the ONNX model does not reproduce scikit-learn on the test set: max |Δprediction| "
            f"= {deviation:.3g} over {rows} rows (tolerance {atol:.3g} + {REGRESSION_RTOL:g} x "
            f"|prediction|; worst at test row {worst}: scikit-learn {expected[worst]:.6g}, "
            f"ONNX {got[worst]:.6g})",
            max_deviation=deviation,
        )
    return ParityReport(rows=rows, max_deviation=deviation, tolerance=REGRESSION_RTOL)


def measure_latency(
    session: ort.InferenceSession, frame: pd.DataFrame, features: list[Feature], runs: int
) -> list[float]:
    """Seconds per single-row inference, ``runs`` times, cycling over up to 64 test rows."""
    sample = frame.iloc[: min(len(frame), 64)]
    if len(sample) == 0:
        return []
    single_rows = [onnx_feeds(sample.iloc[[i]], features) for i in range(len(sample))]
    for feeds in single_rows[:10]:  # warm-up: first runs allocate and are not representative
        session.run(None, feeds)
    timings: list[float] = []
    for run in range(runs):
        feeds = single_rows[run % len(single_rows)]
        start = time.perf_counter()
        session.run(None, feeds)
        timings.append(time.perf_counter() - start)
    return timings


@contextmanager
def _columns_renamed(pipeline: Pipeline, renames: dict[str, str]) -> Iterator[None]:
    """Let the fitted ColumnTransformer select the placeholders while skl2onnx reads it.

    skl2onnx maps the transformer's column names to model inputs; the fitted pipeline is put
    back exactly as it was afterwards (no copy: a large forest would double the memory).
    """
    transformer = pipeline.named_steps[PREPROCESS_STEP]
    original = transformer.transformers_
    transformer.transformers_ = [
        (
            name,
            fitted,
            [renames.get(c, c) for c in columns] if isinstance(columns, list) else columns,
        )
        for name, fitted, columns in original
    ]
    try:
        yield
    finally:
        transformer.transformers_ = original


def _use_column_names(model: onnx.ModelProto, names: list[str]) -> None:
    """Rename the placeholder inputs to the column names, moving anything in the way.

    Every value name of the graph that equals a column name (an internal tensor, or an
    output such as ``label`` when a feature column is called ``label``) first gets a fresh
    name with a ``_`` suffix. Outputs are therefore best addressed by position; their actual
    names are also in the model's ``kubeloop.outputs`` metadata.
    """
    graph = model.graph
    placeholders = [value.name for value in graph.input]
    if len(placeholders) != len(names):
        raise ExportFailed(
            f"the ONNX model has {len(placeholders)} inputs for {len(names)} feature columns"
        )
    graphs = _graphs(graph)
    existing = {name for g in graphs for name in _value_names(g)}
    taken = existing | set(names)
    renames: dict[str, str] = {}
    for name in sorted(existing & set(names)):
        if name in placeholders:  # pragma: no cover - placeholders are never column names
            continue
        fresh = f"{name}_"
        while fresh in taken:
            fresh += "_"
        renames[name] = fresh
        taken.add(fresh)
    renames.update(zip(placeholders, names, strict=True))
    for g in graphs:
        for value in [*g.input, *g.output, *g.value_info]:
            value.name = renames.get(value.name, value.name)
        for tensor in g.initializer:
            tensor.name = renames.get(tensor.name, tensor.name)
        for node in g.node:
            for position, name in enumerate(node.input):
                node.input[position] = renames.get(name, name)
            for position, name in enumerate(node.output):
                node.output[position] = renames.get(name, name)


def _value_names(graph: onnx.GraphProto) -> set[str]:
    names = {value.name for value in [*graph.input, *graph.output, *graph.value_info]}
    names |= {tensor.name for tensor in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    names.discard("")  # an omitted optional input
    return names


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    found = [graph]
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                found.extend(_graphs(attribute.g))
            for subgraph in attribute.graphs:
                found.extend(_graphs(subgraph))
    return found
