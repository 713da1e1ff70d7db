"""The ASGI application of ``kubeloop serve``: routes, lifecycle, and the two hot endpoints.

``/predict`` and ``/v2/models/<name>[/versions/<version>]/infer`` are matched by exact path and
answered by the ASGI entry point itself, in one coroutine: at a few tens of microseconds per
request, Starlette's routing, Request and Response objects (or even one more coroutine layer)
would be a large share of the time.
Everything else (health, metadata, ``/feedback``, ``/metrics``) is an ordinary Starlette app.
Every response carries ``x-kubeloop-version``; inference responses also ``x-request-id`` (the
client's, or one generated here).

Lifecycle: at start the model is loaded in the background (the server answers liveness at
once and readiness 503 with the reason until the verified model is active; a transient
storage failure is retried, a digest mismatch or an invalid model is final). On shutdown
readiness turns false first, then uvicorn stops accepting and drains in-flight requests, and
the lifespan's end finishes queued batches and flushes the logs.

Status codes: 200; 400 unparseable body; 404 unknown model, version or path; 405 wrong
method; 413 body or row count over the limit; 422 a request that parses but does not fit the
signature; 503 while the model is not ready (or the server is stopping); 500 only for a fault
of the server itself. Errors are ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import itertools
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kubeloop import __version__
from kubeloop.serving.batcher import BatcherClosed, MicroBatcher
from kubeloop.serving.metrics import ServeMetrics
from kubeloop.serving.model import LoadedModel, ModelLoadError, fetch_model, load_model
from kubeloop.serving.predlog import FeedbackMemory, RecordLog, log_prefix
from kubeloop.serving.schema import RequestError, RequestSchema, Rows, loads
from kubeloop.serving.settings import ServeSettings
from kubeloop.serving.v2 import OutputTensor, V2Request, encode_response, parse_request
from kubeloop.storage import ObjectStore, S3Settings, S3Uri

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Outputs = tuple[list[Any], ...]  # one request's rows of each model output, as lists

_log = logging.getLogger("kubeloop.serving")
_JSON_TYPE = (b"content-type", b"application/json")
_BINARY_TYPE = (b"content-type", b"application/octet-stream")
_MAX_REQUEST_ID = 128


class ClientGone(Exception):
    """The client disconnected before its request was read."""


class ServingApp:
    """One model version behind V2 REST and ``/predict`` (an ASGI 3 application)."""

    def __init__(
        self,
        settings: ServeSettings,
        s3: S3Settings | None,
        *,
        threads: int = 1,
        store: ObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self._s3 = s3
        self._threads = threads
        self._store = store
        self._owns_store = store is None
        self.metrics = ServeMetrics(settings.model_name, settings.model_version)
        self.model: LoadedModel | None = None
        self.reason = "Loading: the model is being downloaded and verified"
        self.stopping = False
        self._schema: RequestSchema | None = None
        self._outputs: list[OutputTensor] = []
        self._labels: list[str] = []
        self._label_objects: dict[Any, str] = {}  # each label to the signature's own object
        self._batcher: MicroBatcher[Rows, Outputs] | None = None
        self._load_task: asyncio.Task[None] | None = None
        self.prediction_log: RecordLog | None = None
        self.feedback_log: RecordLog | None = None
        self.memory = FeedbackMemory(settings.feedback_window)
        # Generated request ids: <12 random hex digits>-<a hex counter>, made in one C call.
        id_format = os.urandom(6).hex() + "-%x"
        self._next_id: Callable[[], str] = map(id_format.__mod__, itertools.count(1)).__next__
        self._version_header = (b"x-kubeloop-version", settings.model_version.encode("latin-1"))
        name, version = settings.model_name, settings.model_version
        self._hot: dict[str, bool] = {  # path -> /predict (True) or V2 infer (False)
            "/predict": True,
            f"/v2/models/{name}/infer": False,
            f"/v2/models/{name}/versions/{version}/infer": False,
        }
        self._starlette = Starlette(
            routes=self._routes(),
            lifespan=self._lifespan,
            exception_handlers={HTTPException: self._http_error},  # type: ignore[dict-item]
        )

    # -- ASGI ---------------------------------------------------------------------------------

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Everything but the hot endpoints: Starlette (lifespan, health, metadata, ...)."""
        if scope["type"] != "http":
            await self._starlette(scope, receive, send)
            return
        version_header = self._version_header

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), version_header]
            await send(message)

        await self._starlette(scope, receive, send_with_version)

    # -- lifecycle ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        del app
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        settings = self.settings
        if self._store is None and self._s3 is not None:
            self._store = ObjectStore(self._s3)
        self._batcher = MicroBatcher(
            self._run_batch,
            max_rows=settings.max_batch_size,
            max_wait=settings.max_batch_wait_ms / 1000,
            on_batch=self.metrics.batch_sizes.observe,
            in_thread=settings.inference_thread,
        )
        self._batcher.start()
        if settings.prediction_log_uri and self._store is not None:
            prefix = log_prefix(
                settings.prediction_log_uri, settings.model_name, settings.model_version
            )
            common: dict[str, Any] = {
                "store": self._store,
                "prefix": prefix,
                "pod": settings.pod_name,
                "capacity": settings.prediction_log_queue,
                "batch": settings.prediction_log_batch,
                "interval": settings.prediction_log_interval,
            }
            self.prediction_log = RecordLog(
                kind="predictions",
                serialize=self._prediction_lines,
                counts=self.metrics.log_records,
                **common,
            )
            self.feedback_log = RecordLog(
                kind="feedback",
                serialize=self._feedback_lines,
                counts=self.metrics.feedback_log_records,
                **common,
            )
            self.prediction_log.start()
            self.feedback_log.start()
        self._load_task = asyncio.get_running_loop().create_task(self._load(), name="load-model")

    def begin_shutdown(self) -> None:
        """Readiness goes false (called first thing on SIGTERM); requests are still served."""
        if not self.stopping:
            _log.info("shutting down: readiness is now false")
        self.stopping = True
        self.metrics.ready = False

    async def shutdown(self) -> None:
        self.begin_shutdown()
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._load_task
        if self._batcher is not None:
            await self._batcher.close()
        for record_log in (self.prediction_log, self.feedback_log):
            if record_log is not None:
                await record_log.close()
        counts = self.metrics.log_records
        _log.info(
            "stopped: prediction log %d written, %d dropped, %d failed",
            counts["written"],
            counts["dropped"],
            counts["failed"],
        )
        if self._owns_store and self._store is not None:
            self._store.close()

    async def _load(self) -> None:
        delay = 1.0
        while True:
            try:
                model, profile = await asyncio.to_thread(self._load_blocking)
            except ModelLoadError as exc:
                self.reason = str(exc)
                _log.error("the model cannot be served: %s", exc)
                if exc.transient and not self.stopping:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                return
            except Exception as exc:  # a bug: still say why the server is not ready
                self.reason = f"InternalError: {type(exc).__name__}: {exc}"
                _log.exception("loading the model failed")
                return
            self._activate(model, profile)
            return

    def _load_blocking(self) -> tuple[LoadedModel, dict[str, Any] | None]:
        settings = self.settings
        if self._store is None:
            raise ModelLoadError("StorageMisconfigured", "no S3 settings (KUBELOOP_S3_*)")
        started = time.perf_counter()
        model_bytes = fetch_model(self._store, settings.model_uri, settings.model_sha256)
        model = load_model(model_bytes, settings.model_sha256, threads=self._threads)
        profile = None
        if settings.profile_uri:
            profile = self._load_profile(settings.profile_uri)
        _log.info(
            "model %s version %s loaded (%d bytes, sha256 %s, %d thread(s)) in %.2f s",
            settings.model_name,
            settings.model_version,
            model.size,
            model.sha256,
            self._threads,
            time.perf_counter() - started,
        )
        return model, profile

    def _load_profile(self, uri: str) -> dict[str, Any] | None:
        # The profile only shapes metrics: without it the server still serves.
        if self._store is None:
            return None
        buffer = io.BytesIO()
        try:
            self._store.download(S3Uri.parse(uri), buffer)
            document = json.loads(buffer.getvalue())
        except Exception as exc:
            _log.warning("profile %s not used: %s", uri, exc)
            return None
        return document if isinstance(document, dict) else None

    def _activate(self, model: LoadedModel, profile: dict[str, Any] | None) -> None:
        settings = self.settings
        signature = model.signature
        self._schema = RequestSchema(
            signature,
            max_rows=settings.max_rows,
            nan_policy=settings.nan_policy,
            unknown_categories=settings.unknown_categories,
        )
        if model.task == "classification":
            labels = list(signature.output.labels or [])
            self._labels = labels
            self._label_objects = {label: label for label in labels}
            self._outputs = [
                OutputTensor(model.output_names[0], "BYTES", None),
                OutputTensor(model.output_names[1], "FP32", len(labels)),
            ]
        else:
            self._outputs = [OutputTensor(model.output_names[0], "FP32", 1)]
        self.metrics.configure(signature, profile)
        self.metrics.sha256 = model.sha256
        self.model = model
        # Everything loaded so far (onnx, numpy, pydantic, the session) lives as long as the
        # process: freezing it keeps full collections from walking it again and again, which
        # measured as 50-100 ms stalls (the p99) under load. A request allocates a few dozen
        # short-lived containers, so young collections every 20k allocations instead of 700
        # (measured: +15% requests/s, p99 3.7 -> 2.0 ms at 32 connections).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        if not self.stopping:
            self.metrics.ready = True
            self.reason = ""

    @property
    def ready(self) -> bool:
        return self.model is not None and not self.stopping

    def _run_batch(self, batch: list[Rows]) -> list[Outputs]:
        """One onnxruntime call for the whole batch (in the inference thread)."""
        model, schema = self.model, self._schema
        if model is None or schema is None:  # pragma: no cover - refused before activation
            raise RuntimeError("no model is loaded")
        feeds, numbers = schema.batch_inputs(batch)
        outputs = model.run(feeds)
        self.metrics.observe_batch(feeds, outputs, numbers)
        if self._labels:
            if outputs[1].shape[1:] != (len(self._labels),):
                raise RuntimeError(
                    f"the model gave probabilities of shape {outputs[1].shape} "
                    f"for {len(self._labels)} labels"
                )
            # The model's labels as the signature's own string objects (equal, shared): the
            # feedback memory then holds no string of its own per request.
            predicted = outputs[0].tolist()
            if outputs[0].ndim == 1:  # one label per row (strings, or numbers left as they are)
                shared = self._label_objects.get
                predicted = list(map(shared, predicted, predicted))
            columns: tuple[list[Any], ...] = (predicted, outputs[1].tolist())
        else:
            columns = (outputs[0].ravel().tolist(),)
        if len(batch) == 1:
            return [columns]
        if len(columns[0]) == len(batch):  # one row per request (every request has a row)
            if self._labels:
                return [([label], [row]) for label, row in zip(*columns, strict=True)]
            return [([value],) for value in columns[0]]
        results: list[Outputs] = []
        start = 0
        for item in batch:
            end = start + item.n_rows
            results.append(tuple(column[start:end] for column in columns))
            start = end
        return results

    # -- hot path -----------------------------------------------------------------------------

    def _request_headers(self, scope: Scope) -> tuple[str, int | None, int | None]:
        """The request id (the client's, or a new one), Content-Length, and the V2 header length."""
        request_id = content_length = header_length = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":  # kept only when printable ASCII, 1-128 characters
                if 0 < len(value) <= _MAX_REQUEST_ID and value.isascii() and b" " not in value:
                    text = value.decode("ascii")
                    if text.isprintable():
                        request_id = text
            elif key == b"content-length":
                content_length = int(value) if value.isdigit() and len(value) < 19 else None
            elif key == b"inference-header-content-length":
                header_length = _header_int(value, "Inference-Header-Content-Length")
        return request_id or self._next_id(), content_length, header_length

    async def _read_more(self, receive: Receive, first: bytes) -> bytes:
        """The rest of a body that came in several messages (within the size limit)."""
        limit = self.settings.max_body_bytes
        chunks = [first]
        size = len(first)
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"the body is over {limit} bytes", "body")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point, which answers ``/predict`` and V2 infer itself.

        One coroutine from the body to the answer: validation and encoding are plain calls and
        the only suspension is the wait for the batch (each coroutine layer in between would be
        entered again when the batch's result wakes the request). Other paths: :meth:`_other`.
        """
        predict = self._hot.get(scope["path"]) if scope["type"] == "http" else None
        if predict is None:
            await self._other(scope, receive, send)
            return
        started = time.perf_counter()
        metrics = self.metrics
        metrics.inflight += 1
        endpoint = "predict" if predict else "infer"
        status = 200
        request_id: str | None = None
        header_length: int | None = None
        try:
            request_id, content_length, header_length = self._request_headers(scope)
            schema, batcher, limit = self._admit(scope, content_length)
            message = await receive()
            if message["type"] != "http.request":
                raise ClientGone
            body: bytes = message.get("body", b"")
            if message.get("more_body", False):
                body = await self._read_more(receive, body)
            elif len(body) > limit:
                raise RequestError(413, f"the body is over {limit} bytes", "body")
            if predict:
                header_length = None
                rows = schema.from_records(loads(body))
                result = await batcher.submit(rows, rows.n_rows)
                payload = self._predict_answer(rows, result, request_id)
            else:
                request = parse_request(body, header_length, schema, self._outputs)
                result = await batcher.submit(request.rows, request.rows.n_rows)
                payload, header_length = self._infer_answer(request, result, request_id)
        except ClientGone:
            metrics.inflight -= 1
            metrics.request_done(endpoint, 499, time.perf_counter() - started)
            return
        except Exception as exc:  # every failure is answered (see _failure)
            (status, payload), header_length = _failure(exc, endpoint), None
        headers = [
            _JSON_TYPE if header_length is None else _BINARY_TYPE,
            (b"content-length", b"%d" % len(payload)),
            self._version_header,
        ]
        if request_id is not None:
            headers.append((b"x-request-id", request_id.encode()))
        if header_length is not None:
            headers.append((b"inference-header-content-length", b"%d" % header_length))
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            metrics.inflight -= 1
            metrics.request_done(endpoint, status, time.perf_counter() - started)

    def _admit(
        self, scope: Scope, content_length: int | None
    ) -> tuple[RequestSchema, MicroBatcher[Rows, Outputs], int]:
        """The schema, the batcher and the body limit, or why the request is refused now."""
        if scope["method"] != "POST":
            raise RequestError(405, f"{scope['method']} is not allowed; use POST", "method")
        schema, batcher = self._schema, self._batcher
        if self.model is None or schema is None or batcher is None:
            raise RequestError(503, f"model not ready: {self.reason}", "model")
        limit = self.settings.max_body_bytes
        if content_length is not None and content_length > limit:
            raise RequestError(413, f"the body is {content_length} bytes; at most {limit}", "body")
        return schema, batcher, limit

    def _infer_answer(
        self, request: V2Request, result: Outputs, request_id: str
    ) -> tuple[bytes, int | None]:
        self._remember(request_id, request.rows, result)
        return encode_response(
            model=self.settings.model_name,
            version=self.settings.model_version,
            request_id=request.id,
            tensors=list(zip(self._outputs, result, strict=True)),
            request=request,
        )

    def _predict_answer(self, rows: Rows, result: Outputs, request_id: str) -> bytes:
        self._remember(request_id, rows, result)
        predictions: list[Any]
        if self._labels:
            labels, probabilities = result
            names = self._labels
            if len(labels) == 1:  # the common request, without a comprehension's overhead
                # One probability per label (_run_batch checks the width): no strict zip.
                probabilities_of = dict(zip(names, probabilities[0]))  # noqa: B905
                predictions = [{"label": labels[0], "probabilities": probabilities_of}]
            else:
                predictions = [
                    {"label": label, "probabilities": dict(zip(names, row, strict=True))}
                    for label, row in zip(labels, probabilities, strict=True)
                ]
        else:
            predictions = [{"value": value} for value in result[0]]
        settings = self.settings
        return orjson.dumps(
            {
                "predictions": predictions,
                "model": settings.model_name,
                "version": settings.model_version,
                "request_id": request_id,
            }
        )

    def _remember(self, request_id: str, rows: Rows, result: Outputs) -> None:
        self.memory.remember(request_id, result[0])  # labels, or regression values
        if self.prediction_log is not None:
            self.prediction_log.offer((request_id, time.time(), rows, result))

    # -- log lines (written in the log thread) -------------------------------------------------

    def _prediction_lines(self, record: Any) -> list[dict[str, Any]]:
        request_id, at, given, result = record
        moment = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        schema = self._schema
        if schema is None:  # pragma: no cover - records exist only once a model is active
            return []
        names = schema.number_names + schema.text_names
        inputs = [
            [None if v == "" or (type(v) is float and math.isnan(v)) else v for v in (*n, *t)]
            for n, t in zip(given.numbers, given.texts, strict=True)
        ]
        rows = len(result[0])
        lines: list[dict[str, Any]] = []
        labels = self._labels
        predicted = result[0]
        probabilities = result[1] if labels else None
        settings = self.settings
        for row in range(rows):
            line: dict[str, Any] = {
                "request_id": request_id,
                "row": row,
                "time": moment,
                "model": settings.model_name,
                "version": settings.model_version,
                "inputs": dict(zip(names, inputs[row], strict=True)),
                "prediction": predicted[row],
            }
            if probabilities is not None:
                line["probabilities"] = dict(zip(labels, probabilities[row], strict=True))
            lines.append(line)
        return lines

    def _feedback_lines(self, record: Any) -> list[dict[str, Any]]:
        request_id, at, truths, predicted, matched = record
        moment = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        settings = self.settings
        return [
            {
                "request_id": request_id,
                "row": row,
                "time": moment,
                "model": settings.model_name,
                "version": settings.model_version,
                "label": truth,
                "prediction": predicted[row] if predicted is not None else None,
                "matched": matched,
            }
            for row, truth in truths
        ]

    # -- Starlette routes ---------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        return [
            Route("/v2", self._server_metadata, methods=["GET"]),
            Route("/v2/health/live", self._live, methods=["GET"]),
            Route("/v2/health/ready", self._ready, methods=["GET"]),
            Route("/v2/models/{name}", self._model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", self._model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", self._model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self._unknown_model, methods=["POST"]),
            Route(
                "/v2/models/{name}/versions/{version}/infer", self._unknown_model, methods=["POST"]
            ),
            Route("/feedback", self._feedback, methods=["POST"]),
            Route("/metrics", self._metrics, methods=["GET"]),
        ]

    async def _http_error(self, request: Request, exc: HTTPException) -> Response:
        del request
        field = "method" if exc.status_code == 405 else "path"
        return _json({"error": exc.detail, "field": field}, exc.status_code)

    async def _server_metadata(self, request: Request) -> Response:
        del request
        return _json(
            {"name": "kubeloop", "version": __version__, "extensions": ["binary_tensor_data"]}
        )

    async def _live(self, request: Request) -> Response:
        del request
        return _json({"live": True})

    async def _ready(self, request: Request) -> Response:
        del request
        if self.ready:
            return _json({"ready": True})
        reason = "ShuttingDown" if self.stopping else self.reason
        return _json({"ready": False, "reason": reason}, 503)

    def _known(self, request: Request) -> Response | None:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != self.settings.model_name:
            return _json({"error": f"unknown model {name[:64]!r}", "field": "name"}, 404)
        if version is not None and version != self.settings.model_version:
            return _json(
                {
                    "error": f"model {name!r} has no version {version[:64]!r} here "
                    f"(this server has {self.settings.model_version!r})",
                    "field": "version",
                },
                404,
            )
        return None

    async def _model_metadata(self, request: Request) -> Response:
        problem = self._known(request)
        if problem is not None:
            return problem
        model = self.model
        if model is None:
            return _json({"error": f"model not ready: {self.reason}", "field": "model"}, 503)
        inputs = [
            {
                "name": spec.name,
                "datatype": "FP32" if spec.type in ("number", "integer") else "BYTES",
                "shape": [-1, 1],
                "parameters": {"type": spec.type, "nullable": spec.nullable},
            }
            for spec in model.signature.inputs
        ]
        outputs = [
            {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": [-1] if tensor.width is None else [-1, tensor.width],
            }
            for tensor in self._outputs
        ]
        return _json(
            {
                "name": self.settings.model_name,
                "versions": [self.settings.model_version],
                "platform": "onnxruntime_onnx",
                "inputs": inputs,
                "outputs": outputs,
                "parameters": {
                    "task": model.task,
                    "labels": self._labels,
                    "sha256": model.sha256,
                },
            }
        )

    async def _model_ready(self, request: Request) -> Response:
        problem = self._known(request)
        if problem is not None:
            return problem
        if self.ready:
            return _json({"name": self.settings.model_name, "ready": True})
        reason = "ShuttingDown" if self.stopping else self.reason
        return _json({"name": self.settings.model_name, "ready": False, "reason": reason}, 503)

    async def _unknown_model(self, request: Request) -> Response:
        problem = self._known(request)
        if problem is not None:
            return problem
        return _json({"error": "not found", "field": "path"}, 404)  # pragma: no cover

    async def _metrics(self, request: Request) -> Response:
        del request
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def _feedback(self, request: Request) -> Response:
        started = time.perf_counter()
        status = 200
        try:
            response = await self._feedback_response(request)
            status = response.status_code
        except RequestError as exc:
            status = exc.status
            response = _json(exc.body(), exc.status)
        except ClientGone:
            status = 499
            response = Response(status_code=499)
        self.metrics.request_done("feedback", status, time.perf_counter() - started)
        return response

    async def _feedback_response(self, request: Request) -> Response:
        if self.model is None:
            raise RequestError(503, f"model not ready: {self.reason}", "model")
        length = request.headers.get("content-length")
        limit = self.settings.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestError(413, f"the body is {length} bytes; at most {limit}", "body")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(413, f"the body is over {limit} bytes", "body")
        document = loads(body)
        items = document if type(document) is list else [document]
        if not items:
            raise RequestError(422, "no feedback in the request", "body")
        if len(items) > self.settings.max_rows:
            raise RequestError(413, f"at most {self.settings.max_rows} feedback items", "body")
        checked = [self._check_feedback(index, item) for index, item in enumerate(items)]
        results: list[dict[str, Any]] = []
        now = time.time()
        regression = not self._labels
        for request_id, truths in checked:
            predicted = self.memory.lookup(request_id)
            result: dict[str, Any] = {"request_id": request_id}
            if predicted is None:
                self.metrics.feedback_unmatched += 1
                result.update(status=404, error="unknown request id (not served here recently)")
            elif any(row >= len(predicted) for row, _ in truths):
                raise RequestError(
                    422,
                    f"request {request_id!r} had {len(predicted)} row(s); feedback names more",
                    "row",
                )
            else:
                outcomes: list[bool] = []
                for row, truth in truths:
                    if regression:
                        error = abs(float(truth) - float(predicted[row]))
                        self.metrics.feedback_abs_error.observe(error)
                    else:
                        correct = truth == predicted[row]
                        self.metrics.feedback["correct" if correct else "incorrect"] += 1
                        outcomes.append(correct)
                result["status"] = 200
                if outcomes:
                    result["correct"] = outcomes
            if self.feedback_log is not None:
                self.feedback_log.offer((request_id, now, truths, predicted, predicted is not None))
            results.append(result)
        matched = sum(1 for result in results if result["status"] == 200)
        return _json({"results": results, "matched": matched, "unmatched": len(results) - matched})

    def _check_feedback(self, index: int, item: Any) -> tuple[str, list[tuple[int, Any]]]:
        where = f"[{index}]"
        if type(item) is not dict:
            raise RequestError(422, f"feedback {where} must be an object", where)
        request_id = item.get("request_id")
        if type(request_id) is not str or not 0 < len(request_id) <= _MAX_REQUEST_ID:
            raise RequestError(422, f"feedback {where}: request_id must be a string", "request_id")
        key = "label" if "label" in item or self._labels else "value"
        if key not in item:
            raise RequestError(422, f"feedback {where}: no {key!r}", "label")
        label = item[key]
        row = item.get("row")
        if row is not None and (type(row) is not int or row < 0):
            raise RequestError(422, f"feedback {where}: row must be a non-negative integer", "row")
        values = label if type(label) is list else [label]
        if type(label) is list and row is not None:
            raise RequestError(422, f"feedback {where}: a list of labels takes no row", "row")
        if not values:
            raise RequestError(422, f"feedback {where}: no label", "label")
        first = 0 if row is None else row
        truths = [
            (first + offset, self._truth(value, where)) for offset, value in enumerate(values)
        ]
        return request_id, truths

    def _truth(self, value: Any, where: str) -> Any:
        if not self._labels:
            if type(value) not in (int, float):
                raise RequestError(422, f"feedback {where}: the value must be a number", "label")
            return float(value)
        if type(value) is bool:
            return "true" if value else "false"
        if type(value) is int:
            return str(value)
        if type(value) is float and value.is_integer():
            return str(int(value))
        if type(value) is str:
            return value
        raise RequestError(422, f"feedback {where}: the label must be a string", "label")


def _failure(exc: Exception, endpoint: str) -> tuple[int, bytes]:
    """The status and body answering a request that failed with ``exc``."""
    if isinstance(exc, RequestError):
        return exc.status, orjson.dumps(exc.body())
    if isinstance(exc, BatcherClosed):
        return 503, orjson.dumps({"error": "the server is shutting down", "field": "model"})
    _log.error("%s failed", endpoint, exc_info=exc)
    return 500, orjson.dumps({"error": "internal server error", "field": ""})


def _header_int(value: bytes, name: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise RequestError(400, f"{name} must be a non-negative integer", name)
    return int(value)


def _json(document: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type="application/json")
