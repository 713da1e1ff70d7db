"""What the drift monitor reads from one serving pod's ``/metrics``, and windows of it.

The inference server counts every input feature on the training profile's bins and every
prediction (``kubeloop.serving.metrics``); this module turns one pod's exposition text into
:class:`DriftCounts`, subtracts two scrapes of the same pod and adds pods up. The series:

* ``kubeloop_serve_feature_value_bucket{feature, le}``: numeric features, cumulative per
  bucket; the per-bin counts are the differences, in ``le`` order;
* ``kubeloop_serve_feature_category_total{feature, category}``: categorical features;
* ``kubeloop_serve_predictions_total{label}`` (classification) and
  ``kubeloop_serve_prediction_value_bucket{le}`` (regression): the predictions;
* ``kubeloop_serve_feedback_total{outcome}`` and ``kubeloop_serve_feedback_abs_error``:
  feedback labels, for live accuracy / error;
* ``kubeloop_serve_process_start_time_seconds``: changes when the server restarts.

A page of a large model has thousands of lines (100 features are ~1,300) and a check
scrapes every pod, so the page is read by a parser of exactly the lines needed (prometheus
client's general parser is ~10x slower on them). Samples of another model or version are
ignored, so a pod in the middle of a rollout cannot mix two versions' traffic.

Counter resets never pass for drift: a pod whose start time changed, or any of whose counts
went down, restarted, and its window is all of its new counts (as Prometheus' ``increase()``
does); a pod seen for the first time contributes all it counted; a pod that went away
contributes nothing. Each of these keeps every count a real observation of the window.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from kubeloop.analysis.exposition import bucket_bound

PREFIX: Final = "kubeloop_serve_"
FEATURE_BUCKET: Final = PREFIX + "feature_value_bucket"
FEATURE_CATEGORY: Final = PREFIX + "feature_category_total"
PREDICTIONS: Final = PREFIX + "predictions_total"
PREDICTION_BUCKET: Final = PREFIX + "prediction_value_bucket"
FEEDBACK: Final = PREFIX + "feedback_total"
ABS_ERROR_SUM: Final = PREFIX + "feedback_abs_error_sum"
ABS_ERROR_COUNT: Final = PREFIX + "feedback_abs_error_count"
START_TIME: Final = PREFIX + "process_start_time_seconds"
_NAMES: Final = frozenset(
    {
        FEATURE_BUCKET,
        FEATURE_CATEGORY,
        PREDICTIONS,
        PREDICTION_BUCKET,
        FEEDBACK,
        ABS_ERROR_SUM,
        ABS_ERROR_COUNT,
        START_TIME,
    }
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}

Bins = tuple[float, ...]


@dataclass(frozen=True)
class DriftCounts:
    """One pod's (or a window's) counts of inputs, predictions and feedback."""

    numeric: Mapping[str, Bins] = field(default_factory=dict)
    """feature -> count per bin (the training profile's bins, lowest first)."""
    categorical: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """feature -> category -> count."""
    predicted_labels: Mapping[str, float] = field(default_factory=dict)
    """label -> count (classification)."""
    predicted_values: Bins | None = None
    """count per bin of the training target's deciles (regression)."""
    correct: float = 0.0
    incorrect: float = 0.0
    abs_error_sum: float = 0.0
    abs_error_count: float = 0.0
    started: float | None = None
    """The server's start time; None when the page does not say."""

    @property
    def predictions(self) -> float:
        """Predictions counted (one per row)."""
        if self.predicted_values is not None:
            return sum(self.predicted_values)
        return sum(self.predicted_labels.values())

    @property
    def feedback(self) -> float:
        """Feedback labels counted (classification, or regression errors)."""
        return self.correct + self.incorrect + self.abs_error_count


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return re.sub(r'\\[\\"n]', lambda m: _ESCAPES[m.group(0)], value)


def parse_drift_counts(text: str, *, version: str, model: str | None = None) -> DriftCounts:
    """The drift series of ``version`` (and ``model``) on one ``/metrics`` page.

    Raises ``ValueError`` for a line of a drift series that cannot be read.
    """
    buckets: dict[str, list[tuple[float, float]]] = {}
    categorical: dict[str, dict[str, float]] = {}
    labels_seen: dict[str, float] = {}
    value_buckets: list[tuple[float, float]] = []
    correct = incorrect = abs_sum = abs_count = 0.0
    started: float | None = None
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        brace = line.find("{")
        if brace < 0 or line[:brace] not in _NAMES:
            continue
        name = line[:brace]
        close = line.rfind("}")
        if close < brace:
            raise ValueError(f"unreadable metrics line: {line[:200]}")
        labels = {k: _unescape(v) for k, v in _LABEL.findall(line, brace + 1, close)}
        if labels.get("version") != version or (model is not None and labels.get("model") != model):
            continue
        try:
            value = float(line[close + 1 :].split()[0])
        except (IndexError, ValueError):
            raise ValueError(f"unreadable metrics line: {line[:200]}") from None
        if name == FEATURE_BUCKET:
            buckets.setdefault(labels.get("feature", ""), []).append(
                (bucket_bound(labels.get("le", "+Inf")), value)
            )
        elif name == FEATURE_CATEGORY:
            per_feature = categorical.setdefault(labels.get("feature", ""), {})
            category = labels.get("category", "")
            per_feature[category] = per_feature.get(category, 0.0) + value
        elif name == PREDICTIONS:
            label = labels.get("label", "")
            labels_seen[label] = labels_seen.get(label, 0.0) + value
        elif name == PREDICTION_BUCKET:
            value_buckets.append((bucket_bound(labels.get("le", "+Inf")), value))
        elif name == FEEDBACK:
            outcome = labels.get("outcome")
            if outcome == "correct":
                correct += value
            elif outcome == "incorrect":
                incorrect += value
        elif name == ABS_ERROR_SUM:
            abs_sum += value
        elif name == ABS_ERROR_COUNT:
            abs_count += value
        else:  # START_TIME
            started = value
    return DriftCounts(
        numeric={feature: _per_bin(cumulative) for feature, cumulative in buckets.items()},
        categorical=categorical,
        predicted_labels=labels_seen,
        predicted_values=_per_bin(value_buckets) if value_buckets else None,
        correct=correct,
        incorrect=incorrect,
        abs_error_sum=abs_sum,
        abs_error_count=abs_count,
        started=started,
    )


def _per_bin(cumulative: list[tuple[float, float]]) -> Bins:
    """Per-bin counts from cumulative ``(le, count)`` buckets (any order on the page)."""
    ordered = sorted(cumulative)
    counts: list[float] = []
    previous = 0.0
    for _, total in ordered:
        counts.append(max(0.0, total - previous))
        previous = total
    return tuple(counts)


# -- windows --------------------------------------------------------------------------------


def _bins_decreased(before: Mapping[str, Bins], after: Mapping[str, Bins]) -> bool:
    for feature, old in before.items():
        new = after.get(feature)
        if new is None or len(new) != len(old) or any(n < o for n, o in zip(new, old, strict=True)):
            return True
    return False


def _map_decreased(before: Mapping[str, float], after: Mapping[str, float]) -> bool:
    return any(after.get(key, 0.0) < value for key, value in before.items())


def restarted(before: DriftCounts, after: DriftCounts) -> bool:
    """Whether ``after`` is from a new process: another start time, or a count went down."""
    if before.started is not None and after.started is not None and before.started != after.started:
        return True
    if _bins_decreased(before.numeric, after.numeric):
        return True
    if any(
        _map_decreased(counts, after.categorical.get(feature, {}))
        for feature, counts in before.categorical.items()
    ):
        return True
    if _map_decreased(before.predicted_labels, after.predicted_labels):
        return True
    if before.predicted_values is not None and _bins_decreased(
        {"": before.predicted_values}, {"": after.predicted_values or ()}
    ):
        return True
    return (
        after.correct < before.correct
        or after.incorrect < before.incorrect
        or after.abs_error_count < before.abs_error_count
    )


def _minus_bins(after: Bins, before: Bins | None) -> Bins:
    if before is None:
        return after
    return tuple(a - b for a, b in zip(after, before, strict=True))


def _minus_map(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def pod_window(before: DriftCounts | None, after: DriftCounts) -> DriftCounts:
    """What one pod counted between two scrapes (all of ``after`` when new or restarted)."""
    if before is None or restarted(before, after):
        return after
    return DriftCounts(
        numeric={f: _minus_bins(b, before.numeric.get(f)) for f, b in after.numeric.items()},
        categorical={
            f: _minus_map(counts, before.categorical.get(f, {}))
            for f, counts in after.categorical.items()
        },
        predicted_labels=_minus_map(after.predicted_labels, before.predicted_labels),
        predicted_values=(
            None
            if after.predicted_values is None
            else _minus_bins(after.predicted_values, before.predicted_values)
        ),
        correct=after.correct - before.correct,
        incorrect=after.incorrect - before.incorrect,
        abs_error_sum=after.abs_error_sum - before.abs_error_sum,
        abs_error_count=after.abs_error_count - before.abs_error_count,
        started=after.started,
    )


def _add_bins(current: list[float] | None, bins: Bins) -> list[float]:
    """``current`` plus ``bins`` (a copy of ``bins`` when there is nothing yet).

    Bins of another length come from a server configured with another profile (a version
    cannot change its profile): left out rather than misaligned.
    """
    if current is None:
        return list(bins)
    if len(current) == len(bins):
        for index, count in enumerate(bins):
            current[index] += count
    return current


def total(windows: Iterable[DriftCounts]) -> DriftCounts:
    """Several pods' (or several intervals') counts added up."""
    numeric: dict[str, list[float]] = {}
    categorical: dict[str, dict[str, float]] = {}
    labels: dict[str, float] = {}
    values: list[float] | None = None
    correct = incorrect = abs_sum = abs_count = 0.0
    for window in windows:
        for feature, bins in window.numeric.items():
            numeric[feature] = _add_bins(numeric.get(feature), bins)
        for feature, counts in window.categorical.items():
            per_feature = categorical.setdefault(feature, {})
            for category, count in counts.items():
                per_feature[category] = per_feature.get(category, 0.0) + count
        for label, count in window.predicted_labels.items():
            labels[label] = labels.get(label, 0.0) + count
        if window.predicted_values is not None:
            values = _add_bins(values, window.predicted_values)
        correct += window.correct
        incorrect += window.incorrect
        abs_sum += window.abs_error_sum
        abs_count += window.abs_error_count
    return DriftCounts(
        numeric={feature: tuple(bins) for feature, bins in numeric.items()},
        categorical=categorical,
        predicted_labels=labels,
        predicted_values=tuple(values) if values is not None else None,
        correct=correct,
        incorrect=incorrect,
        abs_error_sum=abs_sum,
        abs_error_count=abs_count,
    )


def version_interval(
    before: Mapping[str, DriftCounts], after: Mapping[str, DriftCounts], *, first: bool
) -> DriftCounts:
    """One version's counts between two checks, summed over its pods (keyed by pod UID).

    ``first``: the monitor has no earlier scrape of this version at all (it just started,
    or the version just became stable): what the pods counted before is not in any window,
    so the interval is empty and this scrape is only the baseline of the next one.
    """
    if first:
        return DriftCounts()
    return total(pod_window(before.get(pod), counts) for pod, counts in after.items())
