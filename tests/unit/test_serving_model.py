"""Model loading checks (ONNX only, no external data, signature) and the serving settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.external_data_helper import set_external_data

from kubeloop.serving.model import ModelLoadError, load_model, parse_onnx
from kubeloop.serving.settings import ServeSettings, cpu_budget

SIGNATURE = {"inputs": [{"name": "x", "type": "number"}], "output": {"task": "regression"}}


def regression_model(*, signature: dict[str, object] | None = SIGNATURE) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["variable"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if signature is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "kubeloop.signature", json.dumps(signature)
    return model


def test_a_valid_model_loads_and_runs() -> None:
    loaded = load_model(regression_model().SerializeToString(), "0" * 64, threads=1)
    assert loaded.task == "regression"
    assert loaded.output_names == ("variable",)
    assert loaded.opset == 18
    (out,) = loaded.run({"x": np.array([[1.5]], dtype=np.float32)})
    assert out.tolist() == [[1.5]]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x04\x95 pickle bytes", "NotONNX"),
        (b"", "NotONNX"),
        (onnx.ModelProto().SerializeToString(), "NotONNX"),
    ],
)
def test_anything_but_onnx_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(ModelLoadError) as caught:
        parse_onnx(data)
    assert caught.value.reason == reason


def test_external_data_is_refused() -> None:
    model = regression_model()
    tensor = helper.make_tensor("w", TensorProto.FLOAT, [1], b"\x00" * 4, raw=True)
    set_external_data(tensor, location="/etc/passwd")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    model.graph.initializer.append(tensor)
    with pytest.raises(ModelLoadError) as caught:
        load_model(model.SerializeToString(), "0" * 64, threads=1)
    assert caught.value.reason == "ExternalData"
    assert "'w'" in caught.value.message


def test_signature_must_be_there_and_match_the_graph() -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_model(regression_model(signature=None).SerializeToString(), "0" * 64, threads=1)
    assert caught.value.reason == "NoSignature"
    other = {"inputs": [{"name": "y", "type": "number"}], "output": {"task": "regression"}}
    with pytest.raises(ModelLoadError) as caught:
        load_model(regression_model(signature=other).SerializeToString(), "0" * 64, threads=1)
    assert caught.value.reason == "InvalidSignature"
    texts = {"inputs": [{"name": "x", "type": "category"}], "output": {"task": "regression"}}
    with pytest.raises(ModelLoadError) as caught:
        load_model(regression_model(signature=texts).SerializeToString(), "0" * 64, threads=1)
    assert caught.value.reason == "InvalidSignature"


def test_settings_validate_and_name_their_variables() -> None:
    settings = ServeSettings(
        model_name="churn", model_version="3", model_uri="s3://b/m.onnx", model_sha256="a" * 64
    )
    assert settings.port == 8080
    assert settings.nan_policy == "missing"
    with pytest.raises(ValueError, match="model_sha256"):
        ServeSettings(model_name="c", model_version="1", model_uri="s3://b/m", model_sha256="x")
    with pytest.raises(ValueError, match="s3://"):
        ServeSettings(model_name="c", model_version="1", model_uri="/m", model_sha256="a" * 64)


def test_cpu_budget_comes_from_the_setting_or_the_cgroup(tmp_path: Path) -> None:
    assert cpu_budget(3) == 3
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_budget(None, tmp_path) == min(2, len(__import__("os").sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_budget(None, tmp_path) >= 1
