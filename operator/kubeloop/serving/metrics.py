"""``/metrics`` of the inference server: cheap counters exposed through prometheus-client.

The operator's canary analysis and the drift monitor scrape these names (all labelled
``model`` and ``version``; ``docs/serving.md`` lists them). prometheus-client's own metric
objects take a lock and scan buckets in Python on every update; on the request path that is a
measurable share of a sub-millisecond request, and per-feature histograms would be one update
per row and feature. So the values live in plain Python counters (request path, updated only
on the event loop thread) and numpy arrays (per batch, updated under a lock by the inference
thread), and one custom collector in the server's own ``CollectorRegistry`` turns them into
metric families when scraped. No global registry is touched.

Feature histograms use the training profile's decile edges as buckets and the profile's own
binning rule (a value equal to an inner edge belongs to the bin *above* it), so a drift monitor
reading ``le=edge`` buckets recovers exactly the profile's ``binCounts`` partition. Categories
are the profile's (or the signature's) plus ``__other__``; missing values are counted apart.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from kubeloop.api.modelversion import OTHER_CATEGORY, Signature, spell_category

PREFIX: Final = "kubeloop_serve_"
LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.004,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_FOLD_EVERY: Final = 4096  # request durations folded into the series at once
_FOLD_ROWS: Final = 1024  # batch rows counted into the feature and prediction series at once
ERROR_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000)
Array = np.ndarray[Any, Any]


class Histogram:
    """Bucket counts, a sum and a count; ``le`` semantics unless ``left_closed``."""

    def __init__(self, bounds: Sequence[float], *, left_closed: bool = False) -> None:
        self.bounds = sorted({float(b) for b in bounds})
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.left_closed = left_closed

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, values: Array) -> None:
        if not values.size:
            return
        edges = np.asarray(self.bounds, dtype=np.float64)
        if self.left_closed:
            index = np.searchsorted(edges, values, side="right")
        else:
            index = np.searchsorted(edges, values, side="left")
        for position, count in enumerate(np.bincount(index, minlength=len(self.counts))):
            self.counts[position] += int(count)
        self.total += float(values.sum(dtype=np.float64))

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = 0
        result: list[tuple[str, float]] = []
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            cumulative += count
            result.append((_go_float(bound), cumulative))
        return result

    @property
    def count(self) -> int:
        return sum(self.counts)


class _NumericBlock:
    """Histograms of all numeric features at once: a few numpy calls per batch, whatever k is.

    Every feature has its bins (the profile's left-closed rule: bin = how many inner edges are
    <= the value) plus one slot for missing values, laid out in one flat counter array.
    """

    def __init__(self, names: list[str], edges: list[list[float]]) -> None:
        self.names = names
        self.inner = [sorted({float(e) for e in feature_edges}) for feature_edges in edges]
        self._edges = [np.asarray(inner, dtype=np.float64) for inner in self.inner]
        sizes = np.array([len(inner) + 2 for inner in self.inner], dtype=np.int64)  # bins + missing
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)[:, None]
        self._missing_slot = (sizes - 1)[:, None]
        self.counts = np.zeros(int(sizes.sum()), dtype=np.int64)
        self.sums = np.zeros(len(names), dtype=np.float64)

    def observe(self, matrix: Array) -> None:
        """Count an ``[N, k]`` block: one binary search per feature over its N values.

        (Comparing every value with every edge at once was 3x slower at 10 bins.)
        """
        values = matrix.T.astype(np.float64)  # [k, N]: each feature's values contiguous
        missing = np.isnan(values)
        bins = np.empty(values.shape, dtype=np.int64)
        for index, edges in enumerate(self._edges):
            # side="right": the number of inner edges <= the value; NaN lands last, then moved
            bins[index] = np.searchsorted(edges, values[index], side="right")
        bins = np.where(missing, self._missing_slot, bins) + self._offsets
        self.counts += np.bincount(bins.ravel(), minlength=self.counts.size)
        np.copyto(values, 0.0, where=missing)  # a missing value adds nothing to the sum
        self.sums += np.add.reduce(values, axis=1)

    def feature(self, index: int) -> tuple[list[tuple[str, float]], float, int]:
        """Buckets (cumulative, ``le`` = inner edges then +Inf), sum, and missing count."""
        start = int(self._offsets[index, 0])
        inner = self.inner[index]
        counts = self.counts[start : start + len(inner) + 1].tolist()
        missing = int(self.counts[start + len(inner) + 1])
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip([*inner, float("inf")], counts, strict=True):
            cumulative += count
            buckets.append((_go_float(bound), cumulative))
        return buckets, float(self.sums[index]), missing


class _CategoricalFeature:
    def __init__(self, name: str, categories: Sequence[str]) -> None:
        self.name = name
        self.categories = [*dict.fromkeys(categories), OTHER_CATEGORY]
        self.index = {category: i for i, category in enumerate(self.categories)}
        self.other = len(self.categories) - 1
        self.counts = [0] * len(self.categories)
        self.missing = 0


class ServeMetrics(Collector):
    """Every metric of one served model version, registered in its own registry."""

    def __init__(
        self,
        model: str,
        version: str,
        signature: Signature | None = None,
        profile: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.base = (model, version)
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests: dict[tuple[str, str], int] = {}
        self.durations: dict[str, Histogram] = {}
        self._pending: dict[tuple[str, int], list[float]] = {}  # see request_done
        self.inflight = 0
        self.started = time.time()  # a scraper tells a restarted process by it
        self.ready = False
        self.sha256 = ""
        self.batch_sizes = Histogram(BATCH_BUCKETS)
        self.log_records = {"written": 0, "dropped": 0, "failed": 0}
        self.feedback_log_records = {"written": 0, "dropped": 0, "failed": 0}
        self.feedback = {"correct": 0, "incorrect": 0}
        self.feedback_unmatched = 0
        self.feedback_abs_error = Histogram(ERROR_BUCKETS)
        self._lock = threading.Lock()
        self._numeric = _NumericBlock([], [])
        self._categorical: list[_CategoricalFeature] = []
        self._labels: list[str] = []
        self._label_index: dict[str, int] = {}
        self._predictions: list[int] = []
        self._prediction_values: Histogram | None = None
        # Batches waiting to be counted (see observe_batch): numbers, categorical feeds, outputs.
        self._pending_batches: list[tuple[Array | None, list[Array], Array]] = []
        self._pending_rows = 0
        self.registry.register(self)
        if signature is not None:
            self.configure(signature, profile)

    def configure(self, signature: Signature, profile: dict[str, Any] | None) -> None:
        """Set up feature and prediction series once the model (and profile) are known."""
        columns = _profile_columns(profile)
        numeric_names: list[str] = []
        numeric_edges: list[list[float]] = []
        categorical: list[_CategoricalFeature] = []
        for spec in signature.inputs:
            known = columns.get(spec.name, {})
            if spec.type in ("number", "integer"):
                edges = [e for e in (known.get("binEdges") or [])[1:-1] if e is not None]
                numeric_names.append(spec.name)
                numeric_edges.append(edges)
            else:
                if spec.type == "boolean":
                    categories = ["false", "true"]
                elif known.get("frequencies"):
                    categories = [spell_category(f.get("value")) for f in known["frequencies"]]
                else:
                    categories = list(spec.categories or [])
                categorical.append(_CategoricalFeature(spec.name, categories))
        labels = list(signature.output.labels or [])
        with self._lock:
            self._fold_batches()  # counted under the configuration they were observed with
            self._numeric = _NumericBlock(numeric_names, numeric_edges)
            self._categorical = categorical
            self._labels = labels
            self._label_index = {label: i for i, label in enumerate(labels)}
            self._predictions = [0] * (len(labels) + 1)  # the last slot: a label not listed
            if signature.output.task == "regression":
                target = (profile or {}).get("target") or {}
                edges = target.get("binEdges") or []
                inner = [float(e) for e in edges[1:-1] if e is not None]
                self._prediction_values = Histogram(inner, left_closed=True)

    # -- hot path (event loop thread) -------------------------------------------------------

    def request_done(self, endpoint: str, code: int, seconds: float) -> None:
        """Count a request and its duration.

        Durations wait in a list per endpoint and code and are folded into the counters and
        the histogram in bulk (one numpy call per ``_FOLD_EVERY`` requests, and before every
        scrape), instead of a bucket search per request.
        """
        pending = self._pending.get((endpoint, code))
        if pending is None or len(pending) >= _FOLD_EVERY:
            pending = self._pending_list(endpoint, code)
        pending.append(seconds)

    def _pending_list(self, endpoint: str, code: int) -> list[float]:
        self._fold()
        return self._pending.setdefault((endpoint, code), [])

    def _fold(self) -> None:
        for (endpoint, code), pending in self._pending.items():
            if not pending:
                continue
            key = (endpoint, str(code))
            self.requests[key] = self.requests.get(key, 0) + len(pending)
            histogram = self.durations.get(endpoint)
            if histogram is None:
                histogram = self.durations[endpoint] = Histogram(LATENCY_BUCKETS)
            histogram.observe_many(np.array(pending, dtype=np.float64))
            pending.clear()

    # -- per batch (inference thread) -------------------------------------------------------

    def observe_batch(
        self, feeds: dict[str, Array], outputs: list[Array], numbers: Array | None = None
    ) -> None:
        """Feature and prediction statistics of one batch.

        ``numbers``, when the caller has it, is the ``[N, k]`` matrix of the numeric feeds side
        by side in signature order (spares stacking them again). The batch's arrays wait with
        the others and are counted in bulk (a few numpy calls for up to ``_FOLD_ROWS`` rows,
        and before every scrape): counted per batch, the fixed cost of each numpy call was
        most of the work for a batch of a few dozen rows. The counts are the same; the sums too,
        but for the order of the floating-point additions.
        """
        with self._lock:
            if self._numeric.names and numbers is None:
                numbers = np.hstack([feeds[name] for name in self._numeric.names])
            texts = [feeds[categorical.name] for categorical in self._categorical]
            self._pending_batches.append((numbers, texts, outputs[0]))
            self._pending_rows += len(outputs[0])
            if self._pending_rows >= _FOLD_ROWS:
                self._fold_batches()

    def _fold_batches(self) -> None:
        """Count the batches waiting since the last fold (with the lock held)."""
        pending = self._pending_batches
        if not pending:
            return
        self._pending_batches = []
        self._pending_rows = 0
        if self._numeric.names:
            matrices = [numbers for numbers, _, _ in pending if numbers is not None]
            block = matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
            self._numeric.observe(block)
        for position, categorical in enumerate(self._categorical):
            index, other = categorical.index, categorical.other
            counts = categorical.counts
            for text, count in Counter(
                _joined([texts[position] for _, texts, _ in pending])
            ).items():
                if text == "":
                    categorical.missing += count
                else:
                    counts[index.get(text, other)] += count
        outputs = [predicted.ravel() for _, _, predicted in pending]
        if self._prediction_values is not None:
            joined = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
            self._prediction_values.observe_many(joined.astype(np.float64))
        elif self._labels:
            label_index, unknown = self._label_index, len(self._labels)
            for label, count in Counter(_joined(outputs)).items():
                self._predictions[label_index.get(label, unknown)] += count

    # -- exposition -------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        self._fold()  # on the event loop thread, like request_done
        base_labels = ["model", "version"]
        base = list(self.base)
        requests = CounterMetricFamily(
            PREFIX + "requests", "Requests by endpoint and status code.",
            labels=[*base_labels, "endpoint", "code"],
        )  # fmt: skip
        for (endpoint, code), count in sorted(self.requests.items()):
            requests.add_metric([*base, endpoint, code], count)
        yield requests
        durations = HistogramMetricFamily(
            PREFIX + "request_duration_seconds",
            "Time from the request's arrival to its response, by endpoint.",
            labels=[*base_labels, "endpoint"],
        )
        for endpoint, histogram in sorted(self.durations.items()):
            durations.add_metric([*base, endpoint], histogram.buckets(), histogram.total)
        yield durations
        yield _gauge("inflight_requests", "Requests being handled.", base, self.inflight)
        yield _gauge(
            "process_start_time_seconds",
            "When this server process started (Unix time): a new value means counters restarted.",
            base,
            self.started,
        )
        yield _gauge("ready", "1 when the model is loaded and verified.", base, int(self.ready))
        info = GaugeMetricFamily(
            PREFIX + "model_info", "The served artifact.", labels=[*base_labels, "sha256"]
        )
        info.add_metric([*base, self.sha256], 1)
        yield info
        yield _histogram("batch_size", "Rows per model call.", base, self.batch_sizes)
        for name, counts, doc in (
            ("prediction_log_records", self.log_records, "Prediction log records by result."),
            ("feedback_log_records", self.feedback_log_records, "Feedback records by result."),
        ):
            family = CounterMetricFamily(PREFIX + name, doc, labels=[*base_labels, "result"])
            for result, count in counts.items():
                family.add_metric([*base, result], count)
            yield family
        feedback = CounterMetricFamily(
            PREFIX + "feedback",
            "Feedback matched to a prediction of this server, by outcome (classification).",
            labels=[*base_labels, "outcome"],
        )
        for outcome, count in self.feedback.items():
            feedback.add_metric([*base, outcome], count)
        yield feedback
        yield _counter(
            "feedback_unmatched",
            "Feedback whose request id this server does not remember.",
            base,
            self.feedback_unmatched,
        )
        yield _histogram(
            "feedback_abs_error",
            "Absolute error of regression predictions that received feedback.",
            base,
            self.feedback_abs_error,
        )
        with self._lock:
            self._fold_batches()
            yield from self._collect_batches(base_labels, base)

    def _collect_batches(self, base_labels: list[str], base: list[str]) -> Iterator[Metric]:
        values = HistogramMetricFamily(
            PREFIX + "feature_value",
            "Numeric feature values; buckets are the training profile's decile edges.",
            labels=[*base_labels, "feature"],
        )
        missing = CounterMetricFamily(
            PREFIX + "feature_missing", "Missing feature values.", labels=[*base_labels, "feature"]
        )
        categories = CounterMetricFamily(
            PREFIX + "feature_category",
            "Categorical feature values; categories outside the training profile are __other__.",
            labels=[*base_labels, "feature", "category"],
        )
        for index, name in enumerate(self._numeric.names):
            buckets, total, absent = self._numeric.feature(index)
            values.add_metric([*base, name], buckets, total)
            missing.add_metric([*base, name], absent)
        for categorical in self._categorical:
            for category, count in zip(categorical.categories, categorical.counts, strict=True):
                categories.add_metric([*base, categorical.name, category], count)
            missing.add_metric([*base, categorical.name], categorical.missing)
        yield values
        yield categories
        yield missing
        if self._prediction_values is not None:
            yield _histogram(
                "prediction_value",
                "Regression predictions; buckets are the training target's decile edges.",
                base,
                self._prediction_values,
            )
        elif self._labels:
            predictions = CounterMetricFamily(
                PREFIX + "predictions", "Predicted labels.", labels=[*base_labels, "label"]
            )
            for label, count in zip(
                [*self._labels, OTHER_CATEGORY], self._predictions, strict=True
            ):
                predictions.add_metric([*base, label], count)
            yield predictions


def _joined(arrays: list[Array]) -> list[Any]:
    """The values of ``arrays`` in order, as one list of Python objects."""
    joined = arrays[0] if len(arrays) == 1 else np.concatenate([array.ravel() for array in arrays])
    values: list[Any] = joined.ravel().tolist()
    return values


def _gauge(name: str, doc: str, base: list[str], value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, doc, labels=["model", "version"])
    family.add_metric(base, value)
    return family


def _counter(name: str, doc: str, base: list[str], value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(PREFIX + name, doc, labels=["model", "version"])
    family.add_metric(base, value)
    return family


def _histogram(name: str, doc: str, base: list[str], histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(PREFIX + name, doc, labels=["model", "version"])
    family.add_metric(base, histogram.buckets(), histogram.total)
    return family


def _go_float(value: float) -> str:
    """A bucket bound as Prometheus spells it (``+Inf``, ``1.0``)."""
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


def _profile_columns(profile: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not isinstance(profile, dict) or not isinstance(profile.get("columns"), list):
        return {}
    return {
        str(column["name"]): column
        for column in profile["columns"]
        if isinstance(column, dict) and "name" in column
    }
