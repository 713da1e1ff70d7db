"""``make bench``: the inference server side by side with a floor, a peer and the limit.

One run, one machine, single worker, single-row requests, 32 connections (``wrk`` with a Lua
script for the POST body; it is C and not the bottleneck), each server measured in turn:

* **kubeloop serve** on ``/predict`` and on V2 ``/v2/models/<name>/infer`` (JSON tensors);
* **floor**: the same HTTP stack (uvicorn + httptools + uvloop, same settings, same raw ASGI
  dispatch) reading the same body and returning a constant JSON answer;
* **MLServer 1.7.1** with its scikit-learn runtime serving the *same fitted pipeline* (a joblib
  pickle, acceptable for a benchmark peer only) through V2 with the pandas codec, without and
  with its adaptive batching; it lives in its own cached venv
  (``~/.cache/kubeloop/bench/mlserver-1.7.1``), never in the project's;
* **raw onnxruntime** in-process, one row per ``run`` call, sequentially: the limit.

The model: a HistGradientBoostingClassifier (100 iterations) on 8 numeric columns, built and
exported by the trainer's own pipeline and ONNX export, so it is exactly what ``kubeloop
train`` would register. Figures are requests per second and wrk's p50/p99 latency.

``python -m kubeloop.devenv.bench_serve floor --port N`` runs the floor server by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

MLSERVER_VERSION = "1.7.1"
MLSERVER_VENV = Path.home() / ".cache" / "kubeloop" / "bench" / f"mlserver-{MLSERVER_VERSION}"
FEATURES = [f"f{index}" for index in range(8)]
MODEL_NAME = "bench"
CONNECTIONS = 32
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Figure:
    """One row of the table."""

    name: str
    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int = 0
    note: str = ""


# -- the model --------------------------------------------------------------------------------


@dataclass
class BenchModel:
    onnx_bytes: bytes
    pipeline: Any
    row: dict[str, float]
    profile: dict[str, Any]  # profile.json's shape: the server bins every feature by it


def build_model(seed: int = 0, rows: int = 5000) -> BenchModel:
    """The trainer's pipeline and ONNX export on synthetic numeric data."""
    import pandas as pd  # noqa: PLC0415 - heavy, only for the benchmark
    from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: PLC0415

    from kubeloop.api.modelversion import FeatureSpec, OutputSpec, Signature  # noqa: PLC0415
    from kubeloop.trainer.data import Columns, Feature  # noqa: PLC0415
    from kubeloop.trainer.model import build_pipeline  # noqa: PLC0415
    from kubeloop.trainer.onnx_export import export_onnx  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES))).astype(np.float32)
    logit = x @ rng.normal(size=len(FEATURES)) + 0.5 * x[:, 0] * x[:, 1]
    y = np.where(logit + rng.normal(0, 0.5, rows) > 0, "yes", "no")
    frame = pd.DataFrame(x, columns=FEATURES)
    features = [Feature(name, "number", False) for name in FEATURES]
    pipeline = build_pipeline(
        Columns("target", features),
        HistGradientBoostingClassifier(max_iter=100, random_state=seed),
        scale=False,
    )
    pipeline.fit(frame, y)
    labels = [str(c) for c in pipeline.classes_]
    signature = Signature(
        inputs=[FeatureSpec(name=name, type="number") for name in FEATURES],
        output=OutputSpec(task="classification", labels=labels),
    )
    onnx_bytes = export_onnx(
        pipeline,
        features,
        task="classification",
        metadata={"kubeloop.signature": json.dumps(signature.to_wire())},
    )
    row = {name: round(float(x[0, index]), 4) for index, name in enumerate(FEATURES)}
    # As a served version has one: the per-feature histograms are part of every request's cost.
    deciles = np.linspace(0.0, 1.0, 11)
    profile = {
        "columns": [
            {"name": name, "type": "number", "binEdges": np.quantile(x[:, i], deciles).tolist()}
            for i, name in enumerate(FEATURES)
        ],
        "target": {"name": "target"},
    }
    return BenchModel(onnx_bytes, pipeline, row, profile)


# -- load generation ----------------------------------------------------------------------------


def run_wrk(url: str, body: bytes, *, seconds: float, connections: int = CONNECTIONS) -> Figure:
    """wrk with one thread (the other core is the server's) and a fixed POST body."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {_lua_string(body.decode())}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    try:
        result = subprocess.run(  # noqa: S603 - fixed commands of the benchmark
            [  # noqa: S607 - wrk from PATH, checked with shutil.which
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds:g}s",
                # wrk gives up on a request after 2 s by default and reconnects; a server that
                # still works through the abandoned ones (MLServer does) then falls further and
                # further behind. 10 s lets a slow peer show its real throughput.
                "--timeout",
                "10s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    return parse_wrk(result.stdout, url)


def _lua_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_wrk(output: str, name: str) -> Figure:
    """Requests/s, p50, p99 and errors from wrk's ``--latency`` report."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    percentiles = {
        match.group(1): float(match.group(2)) * _UNITS[match.group(3)]
        for match in re.finditer(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
    }
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets:
        errors += sum(int(group) for group in sockets.groups())
    return Figure(
        name,
        float(rate.group(1)) if rate else 0.0,
        percentiles.get("50"),
        percentiles.get("99"),
        errors,
    )


# -- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def process(
    command: list[str], *, env: dict[str, str], ready_url: str, log: Path, timeout: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server, wait for ``ready_url`` to answer 200, stop it with SIGTERM afterwards."""
    with log.open("wb") as sink:
        child = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603 - fixed commands of the benchmark
        try:
            deadline = time.monotonic() + timeout
            while True:
                if child.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited early; see {log}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} never became ready; see {log}")
                time.sleep(0.1)
            yield child
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(30)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()


def floor_app() -> Any:
    """The floor: reads the request body, answers a constant JSON (same headers as ours)."""
    payload = json.dumps(
        {
            "predictions": [{"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}}],
            "model": MODEL_NAME,
            "version": "1",
            "request_id": "0123456789ab-1",
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-kubeloop-version", b"1"),
        (b"x-request-id", b"0123456789ab-1"),
    ]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_floor(port: int) -> None:
    import uvicorn  # noqa: PLC0415

    from kubeloop.serving.cli import HTTP_STACK  # noqa: PLC0415

    uvicorn.run(floor_app(), host="127.0.0.1", port=port, log_level="warning", **HTTP_STACK)


def ensure_mlserver() -> tuple[Path | None, str]:
    """MLServer's cached venv (created on first use); (None, why) when it cannot be had."""
    binary = MLSERVER_VENV / "bin" / "mlserver"
    if binary.exists():
        return binary, ""
    python = shutil.which("python3.11") or shutil.which("python3")
    if python is None:
        return None, "no python3 to create MLServer's venv"
    MLSERVER_VENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [python, "-m", "venv", str(MLSERVER_VENV)],
        [
            str(MLSERVER_VENV / "bin" / "pip"),
            "install",
            "-q",
            f"mlserver=={MLSERVER_VERSION}",
            f"mlserver-sklearn=={MLSERVER_VERSION}",
        ],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)  # noqa: S603 - fixed commands of the benchmark
        if done.returncode != 0:
            return None, f"{' '.join(step[:3])} failed: {done.stderr.strip()[-500:]}"
    return (binary, "") if binary.exists() else (None, "mlserver not installed")


def mlserver_pipeline(pipeline: Any) -> Any:
    """The same fitted imputer and estimator, taking MLServer's plain [N, 8] float tensor.

    MLServer's default (numpy) codec hands the runtime an array without column names, which
    the fitted ColumnTransformer would refuse; its numeric imputer and the estimator are the
    whole model here (all features are numeric), so they are reused as they are. Dropping
    ``feature_names_in_`` spares MLServer a warning per request.
    """
    from sklearn.pipeline import Pipeline  # noqa: PLC0415

    imputer = pipeline.named_steps["preprocess"].named_transformers_["numeric"]
    with contextlib.suppress(AttributeError):
        del imputer.feature_names_in_
    for step in imputer.steps:
        with contextlib.suppress(AttributeError):
            del step[1].feature_names_in_
    return Pipeline([("impute", imputer), ("estimator", pipeline.named_steps["estimator"])])


@contextlib.contextmanager
def start_mlserver(
    binary: Path, model_dir: Path, pipeline: Any, body: bytes, *, batch: int
) -> Iterator[str]:
    """MLServer serving ``pipeline``; yields its infer URL.

    ``parallel_workers`` is 0 (inference in the server process: one worker, like ours). With
    the uvloop 0.23 that pip resolves for MLServer 1.7.1, its separate inference-pool workers
    crash at start ("There is no current event loop"), and pinning uvloop 0.21 in its venv
    made it answer a few requests per second, so neither is measured.
    """
    import joblib  # type: ignore[import-untyped]  # noqa: PLC0415

    workdir = model_dir / f"batch{batch}"
    workdir.mkdir(parents=True, exist_ok=True)
    joblib.dump(mlserver_pipeline(pipeline), workdir / "model.joblib")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (workdir / "settings.json").write_text(
        json.dumps(
            {
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    model_settings: dict[str, Any] = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }
    if batch:
        model_settings.update({"max_batch_size": batch, "max_batch_time": 0.002})
    (workdir / "model-settings.json").write_text(json.dumps(model_settings))
    env = {**os.environ, "PATH": f"{binary.parent}:{os.environ.get('PATH', '')}"}
    base = f"http://127.0.0.1:{http_port}"
    with process(
        [str(binary), "start", str(workdir)],
        env=env,
        ready_url=f"{base}/v2/models/{MODEL_NAME}/ready",
        log=workdir / "mlserver.log",
    ):
        url = f"{base}/v2/models/{MODEL_NAME}/infer"
        check = httpx.post(url, content=body, headers={"content-type": "application/json"})
        if check.status_code != 200:
            raise RuntimeError(f"MLServer answered {check.status_code}: {check.text[:300]}")
        yield url


def mlserver_name(batch: int) -> str:
    if batch:
        return f"MLServer {MLSERVER_VERSION} sklearn, adaptive batching (max {batch}, 2 ms)"
    return f"MLServer {MLSERVER_VERSION} sklearn, no batching"


UVLOOP_023 = Path.home() / ".cache" / "kubeloop" / "bench" / "uvloop-0.23.0"


def uvloop_023() -> Path | None:
    """uvloop 0.23.0 in a directory of its own (put first on PYTHONPATH), never in the venv."""
    if (UVLOOP_023 / "uvloop").is_dir():
        return UVLOOP_023
    done = subprocess.run(  # noqa: S603 - fixed commands of the benchmark
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--target",
            str(UVLOOP_023),
            "uvloop==0.23.0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return UVLOOP_023 if done.returncode == 0 else None


def raw_onnxruntime(onnx_bytes: bytes, row: dict[str, float], seconds: float) -> Figure:
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    feeds = {name: np.array([[value]], dtype=np.float32) for name, value in row.items()}
    for _ in range(200):
        session.run(None, feeds)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        session.run(None, feeds)
        latencies.append(time.perf_counter() - start)
    total = sum(latencies)
    ms = np.array(latencies) * 1000
    return Figure(
        "raw onnxruntime in-process, 1 row per call (the limit)",
        len(latencies) / total,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 99)),
    )


# -- the run ------------------------------------------------------------------------------------


def request_bodies(model: BenchModel) -> tuple[dict[str, bytes], bytes]:
    """The same single row as /predict records, V2 JSON tensors, and MLServer's [1, 8] tensor."""
    bodies = {
        "/predict": json.dumps({"records": [model.row]}).encode(),
        f"/v2/models/{MODEL_NAME}/infer": json.dumps(
            {
                "inputs": [
                    {"name": name, "shape": [1, 1], "datatype": "FP32", "data": [value]}
                    for name, value in model.row.items()
                ]
            }
        ).encode(),
    }
    mlserver_body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, len(FEATURES)],
                    "datatype": "FP32",
                    "data": list(model.row.values()),
                }
            ]
        }
    ).encode()
    return bodies, mlserver_body


def run_serve_benchmark(state_dir: Path, *, seconds: float = 5.0, rounds: int = 3) -> int:
    """Measure everything (see the module docstring) and print a Markdown table."""
    from kubeloop.devenv.seaweedfs import SeaweedFS  # noqa: PLC0415
    from kubeloop.storage import ObjectStore  # noqa: PLC0415

    if shutil.which("wrk") is None:
        print("inference server benchmark skipped: wrk is not installed (apt-get install wrk)")
        return 1
    work = state_dir / "bench-serve"
    work.mkdir(parents=True, exist_ok=True)
    model = build_model()
    bodies, mlserver_body = request_bodies(model)
    figures: list[Figure] = []
    notes: list[str] = []
    newer_uvloop = uvloop_023()
    with SeaweedFS(state_dir / "seaweedfs-bench-serve") as endpoint:
        with ObjectStore(endpoint.settings()) as store:
            uploaded = store.upload(model.onnx_bytes, "bench/serve/model.onnx")
            profile = store.upload(json.dumps(model.profile).encode(), "bench/serve/profile.json")
        serve_env = {
            **os.environ,
            **endpoint.env(),
            "KUBELOOP_SERVE_MODEL_NAME": MODEL_NAME,
            "KUBELOOP_SERVE_MODEL_VERSION": "1",
            "KUBELOOP_SERVE_MODEL_URI": str(uploaded.uri),
            "KUBELOOP_SERVE_MODEL_SHA256": uploaded.sha256,
            "KUBELOOP_SERVE_PROFILE_URI": str(profile.uri),
            "KUBELOOP_SERVE_HOST": "127.0.0.1",
            "KUBELOOP_SERVE_THREADS": "1",
            "KUBELOOP_SERVE_LOG_LEVEL": "warning",
        }
        with contextlib.ExitStack() as stack:
            # Every HTTP-stack variant runs at once and they take turns under load, round after
            # round: on a shared machine, interleaving is what makes the ratios comparable.
            targets: list[tuple[str, str, bytes]] = []
            for label, path_entry in (("uvloop 0.21", None), ("uvloop 0.23", newer_uvloop)):
                if label == "uvloop 0.23" and path_entry is None:
                    notes.append("uvloop 0.23 not compared: pip could not install it")
                    continue
                pythonpath = str(path_entry) if path_entry is not None else ""
                ours = stack.enter_context(start_ours(serve_env, work, pythonpath))
                floor = stack.enter_context(start_floor(work, pythonpath))
                paths = bodies if label == "uvloop 0.21" else {"/predict": bodies["/predict"]}
                for path, body in paths.items():
                    kind = "/predict" if path == "/predict" else "V2 infer (JSON)"
                    targets.append((f"kubeloop serve, {kind}, {label}", ours + path, body))
                targets.append(
                    (f"floor: same HTTP stack, constant answer, {label}", floor + "/predict",
                     bodies["/predict"])
                )  # fmt: skip
            unbatched = stack.enter_context(
                start_ours({**serve_env, "KUBELOOP_SERVE_MAX_BATCH_SIZE": "1"}, work, "")
            )
            targets.append(
                ("kubeloop serve, /predict, batching off (max batch 1)", unbatched + "/predict",
                 bodies["/predict"])
            )  # fmt: skip
            peers = mlserver_targets(stack, model, mlserver_body, work, notes)
            figures += interleaved(targets, rounds, seconds, cooldown=0.5)
            # MLServer goes on answering timed-out requests after wrk stops, for seconds: it
            # gets rounds of its own, with time to drain between runs.
            figures += interleaved(peers, rounds, seconds, cooldown=5.0)
            for name, url, _ in targets:
                if name.startswith("kubeloop serve, /predict"):
                    base = url.removesuffix("/predict")
                    mean = _metric(httpx.get(base + "/metrics").text, "kubeloop_serve_batch_size")
                    if mean:
                        notes.append(f"{name}: mean rows per onnxruntime call {mean:.1f}")
    figures.append(raw_onnxruntime(model.onnx_bytes, model.row, seconds=min(seconds, 5)))
    print_table(figures, seconds)
    for note in notes:
        print(f"- {note}")
    return 0


def interleaved(
    targets: list[tuple[str, str, bytes]], rounds: int, seconds: float, *, cooldown: float
) -> list[Figure]:
    """Check and warm up every target, then ``rounds`` rounds of one wrk run each; medians."""
    for _, url, body in targets:
        check = httpx.post(url, content=body, timeout=30)
        if check.status_code != 200:
            raise RuntimeError(f"{url} answered {check.status_code}: {check.text}")
        run_wrk(url, body, seconds=2)  # warm-up
        time.sleep(cooldown)
    runs: dict[str, list[Figure]] = {name: [] for name, _, _ in targets}
    for _ in range(rounds):
        for name, url, body in targets:
            runs[name].append(run_wrk(url, body, seconds=seconds))
            time.sleep(cooldown)
    return [median_figure(name, measured) for name, measured in runs.items()]


def mlserver_targets(
    stack: contextlib.ExitStack, model: BenchModel, body: bytes, work: Path, notes: list[str]
) -> list[tuple[str, str, bytes]]:
    """MLServer without and with adaptive batching, started on ``stack`` (or notes why not)."""
    binary, why = ensure_mlserver()
    if binary is None:
        notes.append(f"MLServer not measured: {why}")
        return []
    targets: list[tuple[str, str, bytes]] = []
    for batch in (0, 32):
        try:
            url = stack.enter_context(
                start_mlserver(binary, work / "mlserver", model.pipeline, body, batch=batch)
            )
        except RuntimeError as exc:
            notes.append(f"MLServer (batch {batch}) not measured: {exc}")
            continue
        targets.append((mlserver_name(batch), url, body))
    return targets


@contextlib.contextmanager
def start_ours(env: dict[str, str], work: Path, pythonpath: str) -> Iterator[str]:
    """kubeloop serve on a free port (``pythonpath`` first: another uvloop); yields its URL."""
    port = free_port()
    env = {**env, "KUBELOOP_SERVE_PORT": str(port)}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    base = f"http://127.0.0.1:{port}"
    with process(
        [sys.executable, "-m", "kubeloop", "serve"],
        env=env,
        ready_url=f"{base}/v2/health/ready",
        log=work / f"kubeloop-serve-{port}.log",
    ):
        yield base


@contextlib.contextmanager
def start_floor(work: Path, pythonpath: str) -> Iterator[str]:
    """The floor server on a free port; yields its URL."""
    port = free_port()
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    with process(
        [sys.executable, "-m", "kubeloop.devenv.bench_serve", "floor", "--port", str(port)],
        env=env,
        ready_url=f"http://127.0.0.1:{port}/",
        log=work / f"floor-{port}.log",
    ):
        yield f"http://127.0.0.1:{port}"


def median_figure(name: str, runs: list[Figure]) -> Figure:
    """Medians over the rounds (errors summed)."""
    p50s = [run.p50_ms for run in runs if run.p50_ms is not None]
    p99s = [run.p99_ms for run in runs if run.p99_ms is not None]
    return Figure(
        name,
        statistics.median(run.requests_per_second for run in runs),
        statistics.median(p50s) if p50s else None,
        statistics.median(p99s) if p99s else None,
        sum(run.errors for run in runs),
    )


def _metric(text: str, histogram: str) -> float | None:
    total = count = None
    for line in text.splitlines():
        if line.startswith(histogram + "_sum{"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(histogram + "_count{"):
            count = float(line.rsplit(" ", 1)[1])
    return total / count if total is not None and count else None


def print_table(figures: list[Figure], seconds: float) -> None:
    ours = next((f for f in figures if f.name.startswith("kubeloop serve, /predict")), None)
    floor = next((f for f in figures if f.name.startswith("floor")), None)
    if ours and floor and floor.requests_per_second:
        share = ours.requests_per_second / floor.requests_per_second
        print(f"kubeloop serve /predict reaches {share:.0%} of the floor's throughput (aim: 60%)")
    print(
        f"inference server: single worker, single-row requests, {CONNECTIONS} connections, "
        f"wrk -t1; HTTP-stack rows: median of interleaved {seconds:g} s runs; {os.cpu_count()} CPUs"
    )
    print("| server | requests/s | p50 ms | p99 ms | errors | /predict vs this |")
    print("|---|---|---|---|---|---|")
    for figure in figures:
        ratio = (
            f"{ours.requests_per_second / figure.requests_per_second:.2f}x"
            if ours and figure.requests_per_second
            else ""
        )
        print(
            f"| {figure.name} | {figure.requests_per_second:,.0f} | {_ms(figure.p50_ms)} "
            f"| {_ms(figure.p99_ms)} | {figure.errors} | {ratio} |"
        )


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeloop.devenv.bench_serve")
    sub = parser.add_subparsers(dest="command", required=True)
    floor = sub.add_parser("floor", help="run the floor server")
    floor.add_argument("--port", type=int, required=True)
    run = sub.add_parser("run", help="run the serving benchmark")
    run.add_argument("--dir", type=Path, required=True)
    run.add_argument("--seconds", type=float, default=5.0, help="seconds per wrk run")
    run.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args(argv)
    if args.command == "floor":
        serve_floor(args.port)
        return 0
    return run_serve_benchmark(args.dir, seconds=args.seconds, rounds=args.rounds)


if __name__ == "__main__":
    raise SystemExit(main())
