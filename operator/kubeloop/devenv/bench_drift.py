"""Benchmark of one drift check (50 serving pods x 100 features) against a floor, side by side.

The issue asks that one drift check of a version served by 50 pods, with 100 input features,
take at most 1 s. The check measured here is the operator's own, as the Deployment handler
runs it (``controllers/deployment.py``), minus the one API call that lists the version's
EndpointSlices:

* the targets, from EndpointSlice objects (``controllers.scrape.ready_endpoint_targets``);
* :meth:`kubeloop.controllers.drift.DriftMonitor.check`: every pod's ``/metrics`` over HTTP
  (``controllers.scrape.scrape_pods``: one httpx client, 8 in parallel), each page parsed for
  the drift series, the per-pod deltas since the previous check added into an interval, the
  window, the baseline from the training profile and every feature scored with every
  configured method that applies to it;
* the drift status written from it (``status.drift.next_drift``).

The pods are real: each is a :class:`kubeloop.serving.metrics.ServeMetrics` configured with
the model's signature and the training profile, that counted realistic traffic (20,000 rows
before the first check, 3,000 between two checks: 100 rows/s for the 30 s interval), and each
page is what the inference server's ``/metrics`` returns (``generate_latest`` of its
registry). The profile is made by the profiler's own functions (``data.profile``) from a
training table drawn from the same distributions as the traffic, a few features shifted.
All 50 pods live in one child process, each behind its own ``http.server`` on an ephemeral
127.0.0.1 port, so the operator's process does only the operator's work. A pod renders its
page when it has counted new rows, before the check, not per GET: in a cluster every pod
renders on its own CPU at once, while 50 renders per scrape in one process would queue behind
one interpreter lock and measure an artefact. What a render costs is printed beside.

The floor is the part no drift monitor can avoid: bare GETs of the same 50 pages with the
same client, timeout and parallelism, the bodies read and dropped. The in-process part
(parse + window + scores, no HTTP) is measured on its own too, on pages scraped just before,
with a second monitor fed the same pages. The three are interleaved (each repetition the
pods count new rows, then the three run in a rotating order) and medians are reported.

Two workloads: 100 numeric features scored with psi, js and ks (302 scores, the workload of
the earlier in-process measurement), and 90 numeric + 10 categorical features (3 to 30
categories, beyond the profile's top 20 in ``__other__``) with all five methods.

``python -m kubeloop.devenv bench-drift`` runs it alone (``make bench`` runs it with the
others); it needs neither a cluster nor S3: the profile the monitor would read from S3 once
per version (profiles are content addressed) is handed over by a stand-in store.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from typing import IO, Any, Final, cast

import httpx
import numpy as np
import pyarrow as pa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubeloop.analysis.drift import applicable
from kubeloop.analysis.drift_counts import DriftCounts, parse_drift_counts
from kubeloop.api.dataset import ColumnType
from kubeloop.api.deployment import DriftMethod, DriftStatus, Monitoring
from kubeloop.api.meta import duration_seconds
from kubeloop.api.modelversion import Signature
from kubeloop.controllers.drift import MAX_INTERVALS, DriftCheck, DriftMonitor
from kubeloop.controllers.scrape import (
    MAX_PARALLEL,  # the floor uses the scraper's own parallelism
    SCRAPE_TIMEOUT_SECONDS,
    PodTarget,
    ready_endpoint_targets,
    scrape_pods,
)
from kubeloop.data.profile import profile_columns, target_profile
from kubeloop.resources.deployment import PORT_NAME
from kubeloop.serving.metrics import ServeMetrics
from kubeloop.status.deployment import timestamp
from kubeloop.status.drift import next_drift
from kubeloop.storage import ObjectStore

TARGET_SECONDS: Final = 1.0
ALL_METHODS: Final[tuple[DriftMethod, ...]] = ("psi", "js", "ks", "chi2", "linf")
MODEL: Final = "bench-drift"
NUMBER: Final = 1
VERSION: Final = "v1"
DEPLOYMENT_UID: Final = "bench-drift-uid"
SERVICE: Final = f"{MODEL}-{VERSION}"
PROFILE_URI: Final = "s3://bench/datasets/bench-drift/profile.json"
LABELS: Final = ("stay", "churn", "upgrade")
LABEL_SHARES: Final = (0.6, 0.3, 0.1)
TARGET: Final = "label"
_CATEGORY_SIZES: Final = (3, 5, 8, 12, 30)
_BATCH_ROWS: Final = 32  # rows per model call, as the server's batcher makes at 32 connections
_FEEDBACK_SHARE: Final = 0.1  # rows whose label comes back as feedback
_START: Final = datetime(2026, 11, 28, tzinfo=UTC)
_LOGGER: Final = logging.getLogger("kubeloop.devenv.bench_drift")
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Workload:
    """One model's features and methods, and the traffic its pods count."""

    label: str
    numeric: int
    categorical: int
    methods: tuple[DriftMethod, ...]
    pods: int = 50
    rows_first: int = 20_000
    """Rows each pod counted before the first check."""
    rows_per_check: int = 3_000
    """Rows each pod counts between two checks (100 rows/s for a 30 s interval)."""
    training_rows: int = 20_000
    drifted: int = 3
    """Numeric features whose live traffic is shifted from training."""

    @property
    def features(self) -> int:
        return self.numeric + self.categorical

    def numeric_names(self) -> list[str]:
        return [f"num_{index:03d}" for index in range(self.numeric)]

    def categorical_names(self) -> list[str]:
        return [f"cat_{index:02d}" for index in range(self.categorical)]

    def expected_scores(self) -> int:
        """Scores of one check: every feature and the predictions, by every method that fits."""
        numeric = sum(applicable(method, "numeric") for method in self.methods)
        categorical = sum(applicable(method, "categorical") for method in self.methods)
        return self.numeric * numeric + (self.categorical + 1) * categorical


def default_workloads(pods: int = 50) -> list[Workload]:
    """The issue's size: 50 pods x 100 features, numeric only and mixed."""
    return [
        Workload("100 numeric; psi, js, ks", 100, 0, ("psi", "js", "ks"), pods=pods),
        Workload("90 numeric + 10 categorical; all five methods", 90, 10, ALL_METHODS, pods=pods),
    ]


# -- the model's data: training table, profile, signature, traffic --------------------------


def _categories(index: int) -> list[str]:
    return [f"c{index}_{value}" for value in range(_CATEGORY_SIZES[index % len(_CATEGORY_SIZES)])]


def _category_shares(size: int) -> Array:
    weights = 1.0 / np.arange(1, size + 1)  # a few frequent categories, a long tail
    shares: Array = weights / weights.sum()
    return shares


def _draw(
    workload: Workload, rng: np.random.Generator, rows: int, *, live: bool
) -> tuple[list[Array], list[Array], Array]:
    """``rows`` rows: numeric columns (floats; every fifth a count), categorical, labels.

    Live traffic has the first ``drifted`` numeric features shifted by half a deviation.
    """
    numeric: list[Array] = []
    for index in range(workload.numeric):
        shift = 0.5 if live and index < workload.drifted else 0.0
        if index % 5 == 4:  # counts: tied deciles, so repeated profile edges
            lam = 1.0 + index % 7
            numeric.append(rng.poisson(lam + shift * np.sqrt(lam), rows).astype(np.float64))
        else:
            scale = 1.0 + index % 4
            numeric.append(rng.normal(index % 13 + shift * scale, scale, rows))
    texts: list[Array] = []
    for index in range(workload.categorical):
        names = np.array(_categories(index), dtype=object)
        texts.append(names[rng.choice(len(names), rows, p=_category_shares(len(names)))])
    labels = np.array(LABELS, dtype=object)[rng.choice(len(LABELS), rows, p=LABEL_SHARES)]
    return numeric, texts, labels


def training_profile(workload: Workload, *, seed: int = 11) -> dict[str, Any]:
    """The training Dataset version's ``profile.json``, by the profiler's own functions.

    As in a real profile the target is among the columns too, so the monitor watches it and
    leaves it unscored (no server counts it), as it would in a cluster.
    """
    rng = np.random.default_rng(seed)
    numeric, texts, labels = _draw(workload, rng, workload.training_rows, live=False)
    columns: dict[str, pa.Array] = {}
    types: dict[str, ColumnType] = {}
    for index, (name, values) in enumerate(zip(workload.numeric_names(), numeric, strict=True)):
        missing = rng.random(values.size) < 0.01  # a few missing cells, as real data has
        if index % 5 == 4:
            columns[name], types[name] = pa.array(values.astype(np.int64), mask=missing), "integer"
        else:
            columns[name], types[name] = pa.array(values, mask=missing), "number"
    for name, values in zip(workload.categorical_names(), texts, strict=True):
        columns[name], types[name] = pa.array(values.tolist(), pa.string()), "category"
    columns[TARGET], types[TARGET] = pa.array(labels.tolist(), pa.string()), "category"
    table = pa.table(columns)
    return {
        "rows": table.num_rows,
        "columnCount": table.num_columns,
        "target": target_profile(table, types, TARGET),
        "columns": profile_columns(table, types),
    }


def signature_of(workload: Workload) -> Signature:
    """The served model's signature: numeric inputs first, then categorical, three labels."""
    inputs: list[dict[str, Any]] = [
        {"name": name, "type": "integer" if index % 5 == 4 else "number", "nullable": True}
        for index, name in enumerate(workload.numeric_names())
    ]
    inputs += [
        {"name": name, "type": "category", "categories": _categories(index)}
        for index, name in enumerate(workload.categorical_names())
    ]
    return Signature.model_validate(
        {"inputs": inputs, "output": {"task": "classification", "labels": list(LABELS)}}
    )


class _Pod:
    """One serving pod's metrics, counting traffic as the inference server does."""

    def __init__(
        self, workload: Workload, profile: dict[str, Any], rng: np.random.Generator
    ) -> None:
        self.workload = workload
        self.rng = rng
        self.metrics = ServeMetrics(MODEL, str(NUMBER), signature_of(workload), profile)
        self.metrics.ready = True
        self.metrics.sha256 = "0" * 64
        self.page = b""

    def count(self, rows: int) -> float:
        """Serve ``rows`` more rows (batches of 32, as the server's batcher), then render the
        page; returns the seconds the render took."""
        workload = self.workload
        numeric, texts, labels = _draw(workload, self.rng, rows, live=True)
        matrix = (
            np.stack(numeric, axis=1).astype(np.float32)
            if numeric
            else np.empty((rows, 0), np.float32)
        )
        matrix[self.rng.random(matrix.shape) < 0.005] = np.nan
        columns = matrix.T.copy().reshape(workload.numeric, rows, 1)
        probabilities = np.full((rows, len(LABELS)), 1.0 / len(LABELS), dtype=np.float32)
        names, categorical = workload.numeric_names(), workload.categorical_names()
        for start in range(0, rows, _BATCH_ROWS):
            end = min(rows, start + _BATCH_ROWS)
            feeds = {name: columns[index, start:end] for index, name in enumerate(names)}
            for name, values in zip(categorical, texts, strict=True):
                feeds[name] = values[start:end].reshape(-1, 1)
            outputs = [labels[start:end], probabilities[start:end]]
            self.metrics.observe_batch(feeds, outputs, matrix[start:end])
        for seconds in self.rng.gamma(4.0, 0.0002, rows).tolist():
            self.metrics.request_done("predict", 200, seconds)
        feedback = int(rows * _FEEDBACK_SHARE)
        correct = int(self.rng.binomial(feedback, 0.85))
        self.metrics.feedback["correct"] += correct
        self.metrics.feedback["incorrect"] += feedback - correct
        started = time.perf_counter()
        self.page = generate_latest(self.metrics.registry)
        return time.perf_counter() - started


# -- the pods' process ----------------------------------------------------------------------


class _PodServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pod: _Pod) -> None:
        self.pod = pod
        super().__init__(("127.0.0.1", 0), _MetricsHandler)


class _MetricsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

    def do_GET(self) -> None:
        if self.path != "/metrics":
            self.send_error(404)
            return
        page = cast(_PodServer, self.server).pod.page
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        """No line per request."""


@dataclass(frozen=True)
class _Pages:
    """What the pods answer, after they counted new rows."""

    ports: list[int]
    page_bytes: int
    page_lines: int
    render_seconds: list[float]


def _serve_pods(connection: Connection, workload: Workload, profile: dict[str, Any]) -> None:
    """The child process: the pods, their HTTP servers, and new rows on each ``advance``."""
    pods = [
        _Pod(workload, profile, np.random.default_rng([7, index])) for index in range(workload.pods)
    ]
    renders = [pod.count(workload.rows_first) for pod in pods]
    servers = [_PodServer(pod) for pod in pods]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = [int(server.server_address[1]) for server in servers]

    def pages() -> _Pages:
        page = pods[0].page
        return _Pages(ports, len(page), page.count(b"\n"), renders)

    connection.send(pages())
    while connection.recv() == "advance":
        renders = [pod.count(workload.rows_per_check) for pod in pods]
        connection.send(pages())
    # Returning ends the process, and the daemon threads of the servers with it.


class PodFleet:
    """The pods of one workload in their own process; ``advance`` has them count new rows."""

    def __init__(self, connection: Connection, process: multiprocessing.process.BaseProcess):
        self._connection = connection
        self._process = process
        self.pages = self._receive(timeout=600.0)

    def _receive(self, *, timeout: float) -> _Pages:
        if not self._connection.poll(timeout):
            raise TimeoutError("the pods' process did not answer")
        pages = self._connection.recv()
        if not isinstance(pages, _Pages):
            raise RuntimeError(f"unexpected answer from the pods' process: {pages!r}")
        return pages

    def advance(self) -> _Pages:
        """Every pod counts ``rows_per_check`` new rows and renders its page again."""
        self._connection.send("advance")
        self.pages = self._receive(timeout=600.0)
        return self.pages

    def endpoint_slices(self) -> list[dict[str, Any]]:
        """The version Service's EndpointSlices as the API returns them (one per pod: on
        loopback each pod has its own port, and a slice has one port list)."""
        return [
            {
                "metadata": {
                    "name": f"{SERVICE}-{index}",
                    "labels": {"kubernetes.io/service-name": SERVICE},
                },
                "addressType": "IPv4",
                "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": ["127.0.0.1"],
                        "conditions": {"ready": True, "serving": True, "terminating": False},
                        "targetRef": {
                            "kind": "Pod",
                            "name": f"{SERVICE}-{index:03d}",
                            "uid": f"pod-uid-{index:03d}",
                        },
                    }
                ],
            }
            for index, port in enumerate(self.pages.ports)
        ]


@contextmanager
def serving_pods(workload: Workload, profile: dict[str, Any]) -> Iterator[PodFleet]:
    """Start the workload's pods in a child process; stopped on exit."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=_serve_pods, args=(theirs, workload, profile), name="bench-drift-pods", daemon=True
    )
    process.start()
    theirs.close()
    try:
        yield PodFleet(ours, process)
    finally:
        with suppress(OSError):
            ours.send("stop")
        ours.close()
        process.join(10.0)
        if process.is_alive():
            process.terminate()
            process.join(5.0)


# -- the operator's side --------------------------------------------------------------------


class _ProfileStore:
    """Stands in for S3: the monitor reads a version's profile once and keeps it."""

    def __init__(self, profile: dict[str, Any]) -> None:
        self._document = json.dumps(profile).encode()

    def download(self, source: object, destination: IO[bytes]) -> None:
        destination.write(self._document)


@dataclass(frozen=True)
class CheckResult:
    """One check: the monitor's result and the status written from it."""

    check: DriftCheck
    status: DriftStatus


class _Clock:
    """Check times, one ``interval`` apart (the monitor's window is in these times)."""

    def __init__(self, monitoring: Monitoring) -> None:
        self._step = timedelta(seconds=duration_seconds(monitoring.interval))
        self.now = _START

    def tick(self) -> None:
        self.now += self._step


def _with_status(check: DriftCheck, previous: DriftStatus | None, now: datetime) -> CheckResult:
    """The check and the ``status.drift`` the Deployment handler writes from it."""
    status = next_drift(
        previous,
        check.evaluation,
        version=VERSION,
        now=timestamp(now),
        window_seconds=check.window_seconds,
        pods=check.pods,
    )
    return CheckResult(check, status)


def operator_check(
    monitor: DriftMonitor,
    *,
    slices: list[dict[str, Any]],
    monitoring: Monitoring,
    now: datetime,
    previous: DriftStatus | None,
) -> CheckResult:
    """One drift check as the Deployment handler runs it, from the listed EndpointSlices on."""
    targets = ready_endpoint_targets(slices, SERVICE, PORT_NAME)
    check = monitor.check(
        uid=DEPLOYMENT_UID,
        version=VERSION,
        model=MODEL,
        number=NUMBER,
        profile_uri=PROFILE_URI,
        targets=targets,
        monitoring=monitoring,
        now=now,
        logger=_LOGGER,
    )
    return _with_status(check, previous, now)


def parse_pages(targets: list[PodTarget], texts: list[str]) -> dict[str, DriftCounts]:
    """Every scraped page's drift series, keyed by pod as :meth:`DriftMonitor.check` keys them."""
    return {
        target.uid or target.name: parse_drift_counts(text, version=str(NUMBER), model=MODEL)
        for target, text in zip(targets, texts, strict=True)
    }


def window_and_score(
    monitor: DriftMonitor,
    *,
    current: dict[str, DriftCounts],
    profile: dict[str, Any],
    monitoring: Monitoring,
    now: datetime,
    previous: DriftStatus | None,
) -> CheckResult:
    """The rest of :meth:`DriftMonitor.check` after parsing: window, scores, then the status."""
    check = monitor.observe(
        uid=DEPLOYMENT_UID,
        version=VERSION,
        current=current,
        alive=set(current),
        profile=profile,
        monitoring=monitoring,
        now=now.timestamp(),
    )
    return _with_status(check, previous, now)


def bare_gets(urls: list[str]) -> int:
    """The floor: GET every page with the scraper's client, timeout and parallelism; bytes read."""
    with (
        httpx.Client(timeout=SCRAPE_TIMEOUT_SECONDS) as client,
        ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(urls))) as pool,
    ):

        def get(url: str) -> int:
            response = client.get(url)
            if response.status_code != httpx.codes.OK:
                raise RuntimeError(f"GET {url}: HTTP {response.status_code}")
            return len(response.content)

        return sum(pool.map(get, urls))


@dataclass
class Measurement:
    """Seconds of every repetition, and the last checks (for what they found)."""

    workload: Workload
    ours: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    in_process: list[float] = field(default_factory=list)
    parse: list[float] = field(default_factory=list)
    """The in-process part's parse of the 50 pages alone."""
    renders: list[float] = field(default_factory=list)
    page_bytes: int = 0
    page_lines: int = 0
    window_intervals: int = 0
    last: CheckResult | None = None
    last_in_process: CheckResult | None = None


class _Session:
    """The three measured things against one fleet of pods, each with its own monitor."""

    def __init__(self, workload: Workload, profile: dict[str, Any], fleet: PodFleet) -> None:
        self.workload = workload
        self.profile = profile
        self.monitoring = Monitoring(methods=list(workload.methods))
        self.slices = fleet.endpoint_slices()
        self.targets = ready_endpoint_targets(self.slices, SERVICE, PORT_NAME)
        self.urls = [f"http://{target.ip}:{target.port}/metrics" for target in self.targets]
        self.clock = _Clock(self.monitoring)
        self._monitor = DriftMonitor(cast(ObjectStore, _ProfileStore(profile)))
        self._in_process_monitor = DriftMonitor(None)
        # A monitor's first check of a version is only the baseline of the next one.
        self.ours = self._ours(None)
        current = parse_pages(self.targets, self._texts())
        self.in_process = self._in_process(current, None)
        self.window_intervals = self._fill(current)

    def _fill(self, current: dict[str, DriftCounts]) -> int:
        """Both monitors' windows full, as after a window's worth of checks (120 for an hour
        at 30 s): a check adds up every interval of the window, so an emptier window would
        measure less. The filling intervals come from the pages as they are (no new rows):
        their counts are zero, but an interval costs the window the same whatever it holds.
        They are not scored (no profile), which only saves time.
        """
        window = duration_seconds(self.monitoring.window)
        intervals = min(MAX_INTERVALS, round(window / duration_seconds(self.monitoring.interval)))
        alive = set(current)
        for _ in range(intervals - 1):  # the first timed round adds the last one
            self.clock.tick()
            for monitor in (self._monitor, self._in_process_monitor):
                monitor.observe(
                    uid=DEPLOYMENT_UID,
                    version=VERSION,
                    current=current,
                    alive=alive,
                    profile=None,
                    monitoring=self.monitoring,
                    now=self.clock.now.timestamp(),
                )
        return intervals

    def _ours(self, previous: DriftStatus | None) -> CheckResult:
        result = operator_check(
            self._monitor,
            slices=self.slices,
            monitoring=self.monitoring,
            now=self.clock.now,
            previous=previous,
        )
        if result.check.pods != self.workload.pods:  # a check with gaps would measure less
            raise RuntimeError(f"{result.check.pods} of {self.workload.pods} pods answered")
        return result

    def _in_process(
        self, current: dict[str, DriftCounts], previous: DriftStatus | None
    ) -> CheckResult:
        return window_and_score(
            self._in_process_monitor,
            current=current,
            profile=self.profile,
            monitoring=self.monitoring,
            now=self.clock.now,
            previous=previous,
        )

    def _texts(self) -> list[str]:
        texts = []
        for scrape in scrape_pods(self.targets):
            if scrape.text is None:
                raise RuntimeError(f"scrape of {scrape.pod} failed: {scrape.error}")
            texts.append(scrape.text)
        return texts

    def time_ours(self) -> tuple[float]:
        started = time.perf_counter()
        self.ours = self._ours(self.ours.status)
        return (time.perf_counter() - started,)

    def time_floor(self) -> tuple[float]:
        started = time.perf_counter()
        bare_gets(self.urls)
        return (time.perf_counter() - started,)

    def time_in_process(self) -> tuple[float, float]:
        """Seconds of the parse, and of the window, scores and status."""
        texts = self._texts()  # the HTTP half, not timed here
        started = time.perf_counter()
        current = parse_pages(self.targets, texts)
        parsed = time.perf_counter()
        self.in_process = self._in_process(current, self.in_process.status)
        return parsed - started, time.perf_counter() - parsed


def measure(workload: Workload, *, repeat: int) -> Measurement:
    """Start the pods, then ``repeat`` interleaved rounds of ours, the floor and in-process
    (after one untimed round); before each round every pod counts new rows."""
    profile = training_profile(workload)
    found = Measurement(workload)
    with serving_pods(workload, profile) as fleet:
        session = _Session(workload, profile, fleet)
        steps: list[tuple[str, Callable[[], tuple[float, ...]]]] = [
            ("ours", session.time_ours),
            ("floor", session.time_floor),
            ("in_process", session.time_in_process),
        ]
        for round_index in range(-1, repeat):
            pages = fleet.advance()
            session.clock.tick()
            shift = max(round_index, 0) % len(steps)
            seconds = {name: step() for name, step in steps[shift:] + steps[:shift]}
            if round_index < 0:
                continue
            found.ours.append(seconds["ours"][0])
            found.floor.append(seconds["floor"][0])
            found.in_process.append(sum(seconds["in_process"]))
            found.parse.append(seconds["in_process"][0])
            found.renders.extend(pages.render_seconds)
        found.page_bytes, found.page_lines = fleet.pages.page_bytes, fleet.pages.page_lines
        found.last, found.last_in_process = session.ours, session.in_process
        found.window_intervals = session.window_intervals
    return found


# -- the report -----------------------------------------------------------------------------


def run_drift_benchmark(
    *,
    pods: int = 50,
    repeat: int = 7,
    workloads: Sequence[Workload] | None = None,
    out: Callable[[str], None] = print,
) -> list[Measurement]:
    """Measure every workload and print a Markdown table; returns the measurements."""
    chosen = list(workloads) if workloads is not None else default_workloads(pods)
    results = [measure(workload, repeat=repeat) for workload in chosen]
    first = chosen[0]
    out(
        f"drift check: {first.pods} pods x {first.features} features, each pod a real "
        f"ServeMetrics page behind its own HTTP server on 127.0.0.1 (one child process); "
        f"{first.rows_per_check:,} new rows per pod between checks; median of {repeat} "
        f"interleaved checks; {os.cpu_count()} CPUs"
    )
    out("")
    out(
        "| workload | scores | drift check (EndpointSlices -> scrape -> parse -> window -> "
        "scores -> status) | floor: bare GETs of the same pages (same client, 8 in parallel) | "
        "ours / floor | in-process part (parse + window + scores + status) | "
        f"target <= {TARGET_SECONDS:g} s |"
    )
    out("|---|---|---|---|---|---|---|")
    for found in results:
        ours = statistics.median(found.ours)
        floor = statistics.median(found.floor)
        inner = statistics.median(found.in_process)
        scores = len(found.last.check.evaluation.scores) if found.last else 0
        verdict = "met" if ours <= TARGET_SECONDS else "MISSED"
        out(
            f"| {found.workload.label} | {scores} | {ours * 1000:,.0f} ms | {floor * 1000:,.0f} ms"
            f" | {ours / floor:.2f}x | {inner * 1000:,.0f} ms | {verdict} |"
        )
    out("")
    for found in results:
        if found.last is None:
            continue
        evaluation = found.last.check.evaluation
        out(
            f"- {found.workload.label}: pages of {found.page_lines:,} lines "
            f"({found.page_bytes / 1024:,.0f} KiB); a window of {found.window_intervals} "
            f"intervals; verdict {evaluation.verdict} over {evaluation.samples:,} predictions ({evaluation.drifted_features} features "
            f"drifted); slowest check {max(found.ours) * 1000:,.0f} ms; in-process, parsing "
            f"the pages takes {statistics.median(found.parse) * 1000:,.0f} ms; a pod renders its page "
            f"in {statistics.median(found.renders) * 1000:.1f} ms (its own CPU, not in the check)"
        )
    return results
