"""ONNX export: every allowlisted estimator passes the parity check; tampering is caught."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from kubeloop.api.estimators import ESTIMATORS, Task, estimator_task
from kubeloop.trainer.data import Columns, column_roles, model_frame, target_values
from kubeloop.trainer.errors import ExportFailed, ParityError
from kubeloop.trainer.model import build_pipeline, make_estimator, scales_numbers
from kubeloop.trainer.onnx_export import (
    check_parity,
    check_self_contained,
    export_onnx,
    measure_latency,
    open_session,
)

SMALL = {"n_estimators": 10, "max_iter": 20}


def dataset(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, rows).astype(float)
    age[rng.random(rows) < 0.1] = np.nan
    income = rng.lognormal(10, 1, rows)
    plan = rng.choice(["basic", "plus", "pro"], rows).astype(object)
    plan[rng.random(rows) < 0.05] = None
    paperless = rng.random(rows) < 0.5
    score = 0.03 * np.nan_to_num(age, nan=50) + (plan == "pro") * 1.5 + rng.normal(0, 0.5, rows)
    return pd.DataFrame(
        {
            "age": age,
            "total charges": income,  # not an identifier: skl2onnx renames it internally
            "plan": plan,
            "paperless": paperless,
            "label": np.where(score > 2.6, "yes", np.where(score > 1.8, "maybe", "no")),
            "binary": score > 2.2,
            "amount": score * 100.0,
        }
    )


def fitted(name: str, target: str) -> tuple[Any, Columns, pd.DataFrame, Task]:
    task = estimator_task(name)
    data = dataset()
    others = [c for c in ("label", "binary", "amount") if c != target]
    columns = column_roles(data, target, sensitive=[], excluded=others)
    params = {k: v for k, v in SMALL.items() if k in ESTIMATORS[name].params}
    estimator = make_estimator(name, params, seed=0)
    pipeline = build_pipeline(columns, estimator, scale=scales_numbers(name))
    x = model_frame(data, columns.features)
    y, _ = target_values(data, target, task)
    pipeline.fit(x.iloc[:400], y[:400])
    return pipeline, columns, x.iloc[400:], task


CASES = [
    (name, "amount" if info.task == "regression" else target)
    for name, info in ESTIMATORS.items()
    for target in (["label", "binary"] if info.task == "classification" else ["amount"])
    if not (info.task == "regression" and target != "amount")
]


@pytest.mark.parametrize(("name", "target"), sorted(set(CASES)))
def test_every_allowlisted_estimator_exports_with_parity(name: str, target: str) -> None:
    pipeline, columns, x_test, task = fitted(name, target)
    model_bytes = export_onnx(pipeline, columns.features, task=task, metadata={"k": "v"})
    session = open_session(model_bytes)
    report = check_parity(session, pipeline, x_test, columns.features, task)
    assert report.rows == 200
    assert report.mismatched_labels == 0
    inputs = {i.name: i.type for i in session.get_inputs()}
    assert inputs == {
        "age": "tensor(float)",
        "total charges": "tensor(float)",  # the column's real name, restored
        "plan": "tensor(string)",
        "paperless": "tensor(string)",
    }
    outputs = [o.name for o in session.get_outputs()]
    assert outputs == (["label", "probabilities"] if task == "classification" else ["variable"])
    model = onnx.load_model_from_string(model_bytes)
    assert {p.key: p.value for p in model.metadata_props}["k"] == "v"
    assert len(measure_latency(session, x_test, columns.features, runs=20)) == 20


@pytest.mark.parametrize(
    ("name", "target"),
    [("RandomForestClassifier", "label"), ("LogisticRegression", "binary"), ("Ridge", "amount")],
)
def test_identical_trainings_export_identical_bytes(name: str, target: str) -> None:
    """Same data, same seed: the same sha256, so a reproduced run is recognisably the same model."""
    exports = []
    for _ in range(2):
        pipeline, columns, _, task = fitted(name, target)
        exports.append(export_onnx(pipeline, columns.features, task=task, metadata={"k": "v"}))
    assert exports[0] == exports[1]


def tamper(model_bytes: bytes, attribute: str, delta: float, count: int = 1) -> bytes:
    """Add ``delta`` to the first ``count`` values of a float-list attribute."""
    model = onnx.load_model_from_string(model_bytes)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == attribute:
                values = list(attr.floats)
                attr.ClearField("floats")
                attr.floats.extend(v + delta if i < count else v for i, v in enumerate(values))
                return bytes(model.SerializeToString())
    raise AssertionError(f"no attribute {attribute}")


def test_parity_check_catches_a_tampered_classifier() -> None:
    pipeline, columns, x_test, task = fitted("LogisticRegression", "label")
    tampered = tamper(export_onnx(pipeline, columns.features, task=task), "coefficients", 0.05)
    with pytest.raises(ParityError) as caught:
        check_parity(open_session(tampered), pipeline, x_test, columns.features, task)
    assert caught.value.reason == "ParityFailed"
    assert caught.value.max_deviation > 1e-4
    assert str(caught.value).startswith(
        "the ONNX model does not reproduce scikit-learn on the test set: max |Δprobability| = "
    )


def test_parity_check_catches_a_tampered_regressor() -> None:
    pipeline, columns, x_test, task = fitted("Ridge", "amount")
    tampered = tamper(export_onnx(pipeline, columns.features, task=task), "intercepts", 0.5)
    with pytest.raises(ParityError, match=r"max \|Δprediction\| = 0\.5"):
        check_parity(open_session(tampered), pipeline, x_test, columns.features, task)


def test_parity_check_catches_a_tree_with_a_moved_threshold() -> None:
    pipeline, columns, x_test, task = fitted("RandomForestClassifier", "binary")
    model_bytes = export_onnx(pipeline, columns.features, task=task)
    tampered = tamper(model_bytes, "nodes_values", 3.0, count=10**6)
    with pytest.raises(ParityError, match="label"):
        check_parity(open_session(tampered), pipeline, x_test, columns.features, task)


def test_models_with_external_data_are_refused() -> None:
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        initializer=[weights],
    )
    with pytest.raises(ExportFailed, match="tensor 'w' in external data"):
        check_self_contained(helper.make_model(graph))


@pytest.mark.parametrize(("name", "target"), [("LogisticRegression", "y"), ("Ridge", "amount")])
def test_columns_may_have_the_names_of_model_outputs(name: str, target: str) -> None:
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "label": rng.normal(size=300),
            "variable": rng.choice(["a", "b"], 300),
            "probabilities": rng.normal(size=300),
            "y": rng.random(300) > 0.5,
            "amount": rng.normal(size=300),
        }
    )
    task = estimator_task(name)
    columns = column_roles(
        data, target, sensitive=[], excluded=[c for c in ("y", "amount") if c != target]
    )
    x = model_frame(data, columns.features)
    y, _ = target_values(data, target, task)
    pipeline = build_pipeline(columns, make_estimator(name, {}, seed=0), scale=True).fit(x, y)
    model_bytes = export_onnx(pipeline, columns.features, task=task)
    session = open_session(model_bytes)
    assert [i.name for i in session.get_inputs()] == ["label", "variable", "probabilities"]
    outputs = [o.name for o in session.get_outputs()]
    assert outputs == (["label_", "probabilities_"] if task == "classification" else ["variable_"])
    metadata = {p.key: p.value for p in onnx.load_model_from_string(model_bytes).metadata_props}
    assert metadata["kubeloop.outputs"] == ",".join(outputs)
    assert check_parity(session, pipeline, x, columns.features, task).rows == 300
