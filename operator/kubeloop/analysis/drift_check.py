"""One drift check: the window's counts against the training profile, feature by feature.

The baseline is the training Dataset version's ``profile.json`` (``kubeloop.data.profile``),
brought onto exactly the bins the inference server counts on:

* numeric features: the server counts on the *distinct* inner decile edges (ties in the
  training data repeat an edge, and a repeated edge bounds an empty bin), so the profile's
  ten ``binCounts`` are folded onto those bins: profile bin ``i`` holds values with ``i``
  inner edges at or below them, which is server bin "distinct edges among the first ``i``";
* categorical and boolean features: the profile's ``frequencies`` (spelled as the model sees
  them) and its ``other`` bucket as ``__other__``, which is where the server counts any
  category it was not told about;
* the predictions: the training target's class frequencies (classification) or its decile
  bins (regression), against what the version predicted in the window.

Each method scores each feature it applies to (:mod:`kubeloop.analysis.drift`); a feature
drifted when any of its scores crossed its threshold (per-feature overrides first). Below
``minSamples`` predictions in the window no verdict is given: a handful of requests says
nothing about a distribution, and a verdict on them would be noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from kubeloop.analysis.drift import applicable, drifted, score
from kubeloop.analysis.drift_counts import DriftCounts
from kubeloop.api.deployment import (
    DriftMethod,
    DriftVerdict,
    FeatureDrift,
    Monitoring,
)
from kubeloop.api.modelversion import OTHER_CATEGORY, spell_category

PREDICTION: Final = "prediction"
Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureBaseline:
    """Training counts of one feature on the server's bins or categories."""

    kind: Kind
    bins: tuple[float, ...] = ()
    """numeric: count per server bin."""
    categories: Mapping[str, float] = field(default_factory=dict)
    """categorical: count per category (``__other__`` included)."""


@dataclass(frozen=True)
class Baseline:
    """A version's drift baseline: its training profile, on the server's bins."""

    features: Mapping[str, FeatureBaseline]
    prediction: FeatureBaseline | None = None


def _numeric_baseline(column: Mapping[str, Any]) -> FeatureBaseline | None:
    edges = column.get("binEdges") or []
    counts = column.get("binCounts") or []
    if len(edges) < 2 or len(counts) != len(edges) - 1:
        return None
    inner = [float(e) for e in edges[1:-1] if e is not None]
    distinct = sorted(set(inner))
    folded = [0.0] * (len(distinct) + 1)
    for index, count in enumerate(counts):
        folded[len(set(inner[:index]))] += float(count)
    return FeatureBaseline("numeric", bins=tuple(folded))


def _categorical_baseline(column: Mapping[str, Any]) -> FeatureBaseline | None:
    frequencies = column.get("frequencies")
    if not isinstance(frequencies, list):
        return None
    categories: dict[str, float] = {}
    for entry in frequencies:
        key = spell_category(entry.get("value"))
        categories[key] = categories.get(key, 0.0) + float(entry.get("count") or 0)
    other = (column.get("other") or {}).get("count") or 0
    categories[OTHER_CATEGORY] = categories.get(OTHER_CATEGORY, 0.0) + float(other)
    return FeatureBaseline("categorical", categories=categories)


def baseline_from_profile(profile: Mapping[str, Any], *, regression: bool) -> Baseline:
    """The drift baseline in a training ``profile.json`` (features the profile can bin)."""
    features: dict[str, FeatureBaseline] = {}
    for column in profile.get("columns") or []:
        if not isinstance(column, dict) or "name" not in column:
            continue
        if column.get("type") in ("number", "integer"):
            found = _numeric_baseline(column)
        else:
            found = _categorical_baseline(column)
        if found is not None:
            features[str(column["name"])] = found
    target = profile.get("target") or {}
    prediction = _numeric_baseline(target) if regression else _categorical_baseline(target)
    if prediction is not None and not regression:
        # The target's "other" bucket holds classes beyond the top k; the server's __other__
        # holds labels beyond the signature's: not the same thing, so neither counts.
        prediction = FeatureBaseline(
            "categorical",
            categories={k: v for k, v in prediction.categories.items() if k != OTHER_CATEGORY},
        )
    return Baseline(features=features, prediction=prediction)


@dataclass(frozen=True)
class DriftEvaluation:
    """What one check found (the streak and the condition are the status functions')."""

    verdict: DriftVerdict
    message: str
    samples: int
    drifted_features: int
    scores: list[FeatureDrift]
    feedback: int = 0
    live_accuracy: float | None = None
    live_mean_absolute_error: float | None = None


def _threshold(monitoring: Monitoring, feature: str, method: DriftMethod) -> float:
    for override in monitoring.feature_thresholds or []:
        if override.feature == feature:
            value = getattr(override, method)
            if value is not None:
                return float(value)
    return float(getattr(monitoring.thresholds, method))


def _aligned(
    baseline: FeatureBaseline, bins: Sequence[float] | None, categories: Mapping[str, float]
) -> tuple[list[float], list[float]] | None:
    """The two count vectors on the same bins, or None when the live side has other bins."""
    if baseline.kind == "numeric":
        if bins is None or len(bins) != len(baseline.bins):
            return None
        return list(baseline.bins), [max(0.0, b) for b in bins]
    keys = list(baseline.categories) + [k for k in categories if k not in baseline.categories]
    return (
        [baseline.categories.get(k, 0.0) for k in keys],
        [max(0.0, categories.get(k, 0.0)) for k in keys],
    )


def _score_feature(
    monitoring: Monitoring,
    feature: str,
    baseline: FeatureBaseline,
    vectors: tuple[list[float], list[float]],
) -> list[FeatureDrift]:
    expected, observed = vectors
    if sum(expected) <= 0 or sum(observed) <= 0:
        return []
    scores = []
    for method in monitoring.methods:
        if not applicable(method, baseline.kind):
            continue
        value = score(method, expected, observed)
        threshold = _threshold(monitoring, feature, method)
        scores.append(
            FeatureDrift(
                feature=feature,
                kind=baseline.kind,
                method=method,
                score=round(value, 6),
                threshold=threshold,
                drifted=drifted(method, value, threshold),
            )
        )
    return scores


def _words(scores: list[FeatureDrift], limit: int = 3) -> str:
    shown = [f"{s.feature} {s.method} {s.score:.3g} (threshold {s.threshold:g})" for s in scores]
    more = f" and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def evaluate_drift(
    monitoring: Monitoring, baseline: Baseline | None, window: DriftCounts
) -> DriftEvaluation:
    """Score every watched feature (and the predictions) of ``window`` against ``baseline``."""
    samples = round(window.predictions)
    feedback = round(window.correct + window.incorrect)
    accuracy = window.correct / feedback if feedback else None
    errors = round(window.abs_error_count)
    mae = window.abs_error_sum / window.abs_error_count if errors else None

    def evaluation(
        verdict: DriftVerdict,
        message: str,
        drifted: int = 0,
        scores: list[FeatureDrift] | None = None,
    ) -> DriftEvaluation:
        return DriftEvaluation(
            verdict=verdict,
            message=message,
            samples=samples,
            drifted_features=drifted,
            scores=scores or [],
            feedback=feedback or errors,
            live_accuracy=round(accuracy, 6) if accuracy is not None else None,
            live_mean_absolute_error=round(mae, 6) if mae is not None else None,
        )

    if baseline is None:
        return evaluation(
            "NoBaseline", "no training profile for this version: drift cannot be scored"
        )
    if samples < monitoring.min_samples:
        return evaluation(
            "InsufficientData",
            f"{samples} predictions in the window, {monitoring.min_samples} needed",
        )
    watched = monitoring.features or list(baseline.features)
    scores: list[FeatureDrift] = []
    unscored: list[str] = []
    for feature in watched:
        feature_baseline = baseline.features.get(feature)
        if feature_baseline is None:
            unscored.append(feature)
            continue
        vectors = _aligned(
            feature_baseline,
            window.numeric.get(feature),
            window.categorical.get(feature, {}),
        )
        if vectors is None:
            unscored.append(feature)
            continue
        scores += _score_feature(monitoring, feature, feature_baseline, vectors)
    if monitoring.prediction_drift and baseline.prediction is not None:
        vectors = _aligned(baseline.prediction, window.predicted_values, window.predicted_labels)
        if vectors is not None:
            scores += _score_feature(monitoring, PREDICTION, baseline.prediction, vectors)
    drifted = sorted({s.feature for s in scores if s.drifted and s.feature != PREDICTION})
    scores.sort(key=lambda s: (not s.drifted, s.feature, s.method))
    note = f"; not scored (no bins to compare): {', '.join(unscored[:5])}" if unscored else ""
    if drifted:
        flagged = [s for s in scores if s.drifted and s.feature != PREDICTION]
        message = f"{len(drifted)} of {len(watched)} features drifted: {_words(flagged)}"
        return evaluation("Drifted", message + note, len(drifted), scores)
    worst = sorted((s for s in scores if s.method != "chi2"), key=lambda s: s.score / s.threshold)[
        -1:
    ]
    closest = f"; closest: {_words(worst)}" if worst else ""
    return evaluation(
        "NoDrift", f"no feature drifted over {samples} predictions{closest}{note}", 0, scores
    )
