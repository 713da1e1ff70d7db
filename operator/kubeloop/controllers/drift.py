"""The drift monitor: scrape the stable version's pods, keep a sliding window, score it.

Called by the Deployment reconcile when a check is due (``spec.monitoring.interval``), so
the drift status and the rollout status are written by one handler and never race. One
check:

1. the version's ready pods, from the EndpointSlices of its Service (pod IPs and UIDs);
2. every pod's ``/metrics`` (``scrape.py``), parsed for the drift series only
   (``analysis/drift_counts.py``);
3. each pod's counts since the previous check (a restarted or new pod contributes all it
   counted, a gone one nothing), added up into one interval of the version;
4. the window: the intervals of the last ``window`` (or, with ``windowSamples``, the newest
   ones holding that many predictions), added up;
5. the window against the training profile (``analysis/drift_check.py``).

The window lives in memory: an operator restarted loses it and rebuilds it from the next
checks (its first scrape is only a baseline), which can only delay a verdict, never fake
one. The streak and the verdict are in status (``status/drift.py``). Profiles are content
addressed (a Dataset version never changes), so each is read from S3 once.
"""

from __future__ import annotations

import io
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubeloop.analysis.drift_check import Baseline, DriftEvaluation, baseline_from_profile
from kubeloop.analysis.drift_check import evaluate_drift as evaluate
from kubeloop.analysis.drift_counts import DriftCounts, parse_drift_counts, total, version_interval
from kubeloop.api.deployment import Monitoring
from kubeloop.api.meta import duration_seconds
from kubeloop.controllers.common import Logger
from kubeloop.controllers.scrape import PodTarget, Scrape, scrape_pods
from kubeloop.storage import ObjectStore, StorageError

# Intervals kept per version at most, whatever the window says (memory bound: a 1h window
# at a 30 s interval is 120).
MAX_INTERVALS = 2880


@dataclass
class _Interval:
    start: float
    end: float
    counts: DriftCounts


@dataclass
class _VersionMemory:
    pods: dict[str, DriftCounts] = field(default_factory=dict)
    scraped_at: float | None = None
    intervals: deque[_Interval] = field(default_factory=lambda: deque(maxlen=MAX_INTERVALS))


@dataclass(frozen=True)
class DriftCheck:
    """One check's result, for the status function."""

    evaluation: DriftEvaluation
    window_seconds: float
    pods: int


def window_of(
    intervals: deque[_Interval], monitoring: Monitoring, now: float
) -> tuple[DriftCounts, float]:
    """The window's counts and its length in seconds (oldest intervals dropped first)."""
    horizon = now - duration_seconds(monitoring.window)
    while intervals and intervals[0].end <= horizon:
        intervals.popleft()
    chosen: list[_Interval] = []
    predictions = 0.0
    for interval in reversed(intervals):
        if interval.start < horizon:
            break
        chosen.append(interval)
        predictions += interval.counts.predictions
        if monitoring.window_samples is not None and predictions >= monitoring.window_samples:
            break
    if not chosen:
        return DriftCounts(), 0.0
    return total(i.counts for i in chosen), chosen[0].end - chosen[-1].start


class DriftMonitor:
    """Sliding windows of every monitored version, and the profiles they are scored on."""

    def __init__(self, store: ObjectStore | None) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._memory: dict[tuple[str, str], _VersionMemory] = {}
        self._profiles: dict[str, dict[str, Any]] = {}

    def forget(self, uid: str) -> None:
        """Drop every window of one Deployment (it was deleted)."""
        with self._lock:
            for key in [key for key in self._memory if key[0] == uid]:
                del self._memory[key]

    def _version_memory(self, uid: str, version: str) -> _VersionMemory:
        with self._lock:
            # Only the monitored (stable) version is kept: a new stable starts afresh.
            for key in [k for k in self._memory if k[0] == uid and k[1] != version]:
                del self._memory[key]
            return self._memory.setdefault((uid, version), _VersionMemory())

    def profile(self, uri: str | None, logger: Logger) -> dict[str, Any] | None:
        """The profile.json at ``uri`` (read once; None when it cannot be read)."""
        if uri is None or self._store is None:
            return None
        if uri in self._profiles:
            return self._profiles[uri]
        buffer = io.BytesIO()
        try:
            self._store.download(uri, buffer)
            loaded = json.loads(buffer.getvalue())
        except (StorageError, ValueError) as exc:
            # Not remembered: S3 may answer at the next check.
            logger.warning("training profile %s unreadable: %s", uri, exc)
            return None
        if not isinstance(loaded, dict):
            logger.warning("training profile %s is not a JSON object", uri)
            return None
        self._profiles[uri] = loaded
        return loaded

    def check(
        self,
        *,
        uid: str,
        version: str,
        model: str,
        number: int,
        profile_uri: str | None,
        targets: list[PodTarget],
        monitoring: Monitoring,
        now: datetime,
        logger: Logger,
    ) -> DriftCheck:
        """Scrape ``targets`` (the version's ready pods) and score the window."""
        scrapes: list[Scrape] = scrape_pods(targets)
        by_name = {target.name: target for target in targets}
        current: dict[str, DriftCounts] = {}
        for scrape in scrapes:
            if scrape.text is None:
                logger.warning(
                    "drift scrape of %s (%s) failed: %s", scrape.pod, version, scrape.error
                )
                continue
            try:
                current[by_name[scrape.pod].uid or scrape.pod] = parse_drift_counts(
                    scrape.text, version=str(number), model=model
                )
            except ValueError as exc:
                logger.warning("metrics of %s (%s) unreadable: %s", scrape.pod, version, exc)
        return self.observe(
            uid=uid,
            version=version,
            current=current,
            alive={target.uid or target.name for target in targets},
            profile=self.profile(profile_uri, logger),
            monitoring=monitoring,
            now=now.timestamp(),
        )

    def observe(
        self,
        *,
        uid: str,
        version: str,
        current: dict[str, DriftCounts],
        alive: set[str],
        profile: dict[str, Any] | None,
        monitoring: Monitoring,
        now: float,
    ) -> DriftCheck:
        """Fold one scrape of the pods (keyed by pod) into the window and score it.

        ``alive`` are the pods that should have answered: one of them that did not keeps its
        last counts, so its next answer's delta covers the gap instead of counting
        everything it ever saw; pods no longer alive are forgotten.
        """
        memory = self._version_memory(uid, version)
        first = memory.scraped_at is None
        interval = version_interval(memory.pods, current, first=first)
        kept = {p: c for p, c in memory.pods.items() if p in alive and p not in current}
        memory.pods = {**kept, **current}
        if not first and memory.scraped_at is not None:
            memory.intervals.append(_Interval(memory.scraped_at, now, interval))
        memory.scraped_at = now
        window, seconds = window_of(memory.intervals, monitoring, now)
        baseline: Baseline | None = None
        if profile is not None:
            regression = any(c.predicted_values is not None for c in current.values())
            baseline = baseline_from_profile(profile, regression=regression)
        return DriftCheck(evaluate(monitoring, baseline, window), seconds, len(current))
