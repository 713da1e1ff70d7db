"""Bad copies of a real model, made by graph surgery, for the bad-canary tests.

Both keep the original's inputs, outputs, signature and metadata, so the server loads them
like any version; what is wrong with them is real, not told to pretend:

* ``slow_copy`` answers exactly what the original answers but every inference first runs a
  chain of dense matrix products that depends on the input, so ONNX Runtime cannot fold it
  away. Its result is added to the probabilities as ``Cast(IsNaN(sum))``, which is 0 for any
  finite input.
* ``flipped_copy`` (a binary classifier) answers the *other* class: its label is the class
  of the smallest probability. The probabilities are untouched, so only the labels (and the
  live accuracy from feedback) give it away.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PROBABILITIES = "probabilities"


def slow_copy(
    model_bytes: bytes, *, layers: int = 16, width: int = 512, height: int = 256
) -> bytes:
    """``model_bytes`` with ``layers`` products of ``[height, width] x [width, width]`` added."""
    model = onnx.load_model_from_string(model_bytes)
    graph = model.graph
    numeric = next(i for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT)
    for node in graph.node:
        node.output[:] = ["kl_real_probabilities" if o == PROBABILITIES else o for o in node.output]
    rng = np.random.default_rng(0)
    constants = {
        "kl_row": np.ones((1, width), np.float32),
        "kl_column": np.ones((height, 1), np.float32),
    }
    for i in range(layers):
        constants[f"kl_w{i}"] = (rng.standard_normal((width, width)) / width).astype(np.float32)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    nodes = [
        helper.make_node("ReduceSum", [numeric.name], ["kl_s"], keepdims=1),  # [1, 1]
        helper.make_node("MatMul", ["kl_column", "kl_s"], ["kl_c"]),  # [H, 1]
        helper.make_node("MatMul", ["kl_c", "kl_row"], ["kl_h0"]),  # [H, W]
    ]
    nodes += [
        helper.make_node("MatMul", [f"kl_h{i}", f"kl_w{i}"], [f"kl_h{i + 1}"])
        for i in range(layers)
    ]
    nodes += [
        helper.make_node("ReduceSum", [f"kl_h{layers}"], ["kl_sum"], keepdims=1),
        helper.make_node("IsNaN", ["kl_sum"], ["kl_nan"]),
        helper.make_node("Cast", ["kl_nan"], ["kl_zero"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["kl_real_probabilities", "kl_zero"], [PROBABILITIES]),
    ]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def flipped_copy(model_bytes: bytes, labels: list[str]) -> bytes:
    """``model_bytes`` answering ``labels[argmin(probabilities)]`` (two classes, signature order)."""
    if len(labels) != 2:
        raise ValueError(f"flipping needs two classes, not {labels}")
    model = onnx.load_model_from_string(model_bytes)
    graph = model.graph
    label, probabilities = graph.output[0].name, graph.output[1].name
    for node in graph.node:
        node.output[:] = ["kl_real_label" if o == label else o for o in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(labels, dtype=object), "kl_labels"))
    graph.node.extend(
        [
            helper.make_node("ArgMin", [probabilities], ["kl_other"], axis=1, keepdims=0),
            helper.make_node("Gather", ["kl_labels", "kl_other"], [label], axis=0),
        ]
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
