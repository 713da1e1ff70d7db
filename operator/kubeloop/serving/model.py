"""Loading the served model: verified download, ONNX-only checks, one InferenceSession.

Order matters and is the security boundary of the server: the bytes are downloaded with their
sha256 checked against the registry's digest (``download_verified``) *before* anything parses
them; then they must be an ONNX ``ModelProto`` (protobuf, never pickle) without external data
(a model pointing at files next to it could read anything the pod can); then the signature is
read from the model's own ``kubeloop.signature`` metadata and checked against the session's
inputs and outputs. Any failure raises :class:`ModelLoadError` with a reason that readiness
shows; the server then stays unready.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx.external_data_helper import uses_external_data
from pydantic import ValidationError

from kubeloop.api.modelversion import Signature
from kubeloop.storage import DigestMismatch, ObjectStore, S3Uri, StorageError

SIGNATURE_METADATA = "kubeloop.signature"
OUTPUTS_METADATA = "kubeloop.outputs"
MAX_MODEL_BYTES = 2 * 1024 * 1024 * 1024 - 1  # protobuf's own limit

_log = logging.getLogger("kubeloop.serving")


class ModelLoadError(Exception):
    """The model cannot be served; ``reason`` is a CamelCase word, the message says why."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.transient = transient

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class LoadedModel:
    """A verified, loaded model: its session, signature and real output names."""

    session: Any  # onnxruntime.InferenceSession (untyped)
    signature: Signature
    output_names: tuple[str, ...]
    sha256: str
    size: int
    opset: int | None

    @property
    def task(self) -> str:
        return self.signature.output.task

    def run(self, feeds: dict[str, np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        """One onnxruntime call; thread-safe (InferenceSession.run is)."""
        outputs: list[np.ndarray[Any, Any]] = self.session.run(self.output_names, feeds)
        return outputs


def fetch_model(store: ObjectStore, uri: str, sha256: str) -> bytes:
    """The model's bytes, verified against ``sha256`` while downloading."""
    buffer = io.BytesIO()
    try:
        store.download_verified(S3Uri.parse(uri), buffer, sha256)
    except DigestMismatch as exc:
        raise ModelLoadError("DigestMismatch", str(exc)) from exc
    except StorageError as exc:
        transient = type(exc).__name__ in {"StorageUnavailable", "EndpointUnreachable"}
        raise ModelLoadError("ArtifactUnreadable", str(exc), transient=transient) from exc
    return buffer.getvalue()


def load_model(
    model_bytes: bytes, sha256: str, *, threads: int, providers: Sequence[str] = ()
) -> LoadedModel:
    """Check and load verified bytes (see the module docstring); raises ModelLoadError."""
    proto = parse_onnx(model_bytes)
    signature = read_signature(proto)
    outputs = _output_names(proto, signature)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning pool threads burn the CPU quota the event loop needs between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(
            model_bytes, sess_options=options, providers=list(providers) or ["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelLoadError("InvalidModel", f"onnxruntime cannot load the model: {exc}") from exc
    _check_io(session, signature, outputs)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    return LoadedModel(session, signature, outputs, sha256, len(model_bytes), opset)


def parse_onnx(model_bytes: bytes) -> onnx.ModelProto:
    """The ModelProto of ``model_bytes``; refuses anything else and external data."""
    if len(model_bytes) > MAX_MODEL_BYTES:
        raise ModelLoadError("InvalidModel", "the model is larger than protobuf's 2 GiB limit")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(model_bytes)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelLoadError("NotONNX", f"the artifact is not an ONNX model: {exc}") from exc
    if not proto.HasField("graph") or not proto.graph.node:
        raise ModelLoadError("NotONNX", "the artifact is not an ONNX model (no graph)")
    for tensor in _all_tensors(proto.graph):
        if uses_external_data(tensor):
            raise ModelLoadError(
                "ExternalData",
                f"tensor {tensor.name!r} refers to external data; only self-contained models "
                "are served",
            )
    return proto


def read_signature(proto: onnx.ModelProto) -> Signature:
    """The Signature stored in the model's ``kubeloop.signature`` metadata."""
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    raw = metadata.get(SIGNATURE_METADATA)
    if raw is None:
        raise ModelLoadError(
            "NoSignature",
            f"the model has no {SIGNATURE_METADATA!r} metadata (not a kubeloop model)",
        )
    try:
        return Signature.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ModelLoadError("InvalidSignature", f"{SIGNATURE_METADATA}: {exc}") from exc


def _output_names(proto: onnx.ModelProto, signature: Signature) -> tuple[str, ...]:
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    graph_outputs = [output.name for output in proto.graph.output]
    expected = 2 if signature.output.task == "classification" else 1
    names: list[str] = graph_outputs[:expected]
    raw = metadata.get(OUTPUTS_METADATA)
    if raw:  # comma-separated real names, in output order (see trainer/onnx_export.py)
        names = raw.split(",")[:expected]
    if len(names) != expected or not set(names) <= set(graph_outputs):
        raise ModelLoadError(
            "InvalidModel",
            f"a {signature.output.task} model needs {expected} output(s); the graph has "
            f"{graph_outputs}",
        )
    return tuple(names)


def _check_io(session: Any, signature: Signature, outputs: tuple[str, ...]) -> None:
    inputs = {i.name: i.type for i in session.get_inputs()}
    wanted = [spec.name for spec in signature.inputs]
    if sorted(inputs) != sorted(wanted):
        raise ModelLoadError(
            "InvalidSignature",
            f"the signature's inputs {wanted} differ from the model's {list(inputs)}",
        )
    for spec in signature.inputs:
        numeric = spec.type in ("number", "integer")
        expected = "tensor(float)" if numeric else "tensor(string)"
        if inputs[spec.name] != expected:
            raise ModelLoadError(
                "InvalidSignature",
                f"input {spec.name!r} is {inputs[spec.name]} in the model, {spec.type} in the "
                "signature",
            )
    if signature.output.task == "classification" and not signature.output.labels:
        raise ModelLoadError("InvalidSignature", "a classification signature without labels")
    del outputs


def _all_tensors(graph: onnx.GraphProto) -> list[onnx.TensorProto]:
    tensors = list(graph.initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                tensors.append(attribute.t)
            tensors.extend(attribute.tensors)
            if attribute.HasField("g"):
                tensors.extend(_all_tensors(attribute.g))
            for sub in attribute.graphs:
                tensors.extend(_all_tensors(sub))
    return tensors
