"""Gates: whether a ModelVersion is Validated or Rejected, with every number that decided it.

Absolute thresholds compare the version's test metrics with bounds; the champion gate
compares it with the model's current Production version on the same metric (lower is better
for losses and errors), preferably as the trainer scored that champion on this version's own
test set (``spec.championScore``), else from the champion's stored metrics, saying which; the fairness gate bounds the demographic parity difference. A gate
whose metric is missing fails and says so: an unmeasured model is not a validated one. An
artifact whose bytes, re-read from S3, do not have the recorded sha256 rejects the version.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubeloop.api.estimators import LOWER_IS_BETTER
from kubeloop.api.meta import ConditionStatus
from kubeloop.api.modelversion import GateResult, ModelVersionSpec, ModelVersionStatus
from kubeloop.status.conditions import set_condition

FAIRNESS_METRIC = "demographic_parity_difference"


def evaluate_gates(
    spec: ModelVersionSpec, champion: tuple[str, dict[str, float]] | None
) -> list[GateResult]:
    """Every gate of ``spec`` against its metrics and, if any, the Production ``champion``."""
    metrics = spec.metrics
    results: list[GateResult] = []
    for threshold in spec.gates.thresholds:
        observed = metrics.get(threshold.metric)
        for bound, value in (("min", threshold.min), ("max", threshold.max)):
            if value is None:
                continue
            gate = f"threshold:{threshold.metric}:{bound}"
            if observed is None:
                results.append(
                    GateResult(
                        gate=gate,
                        metric=threshold.metric,
                        threshold=value,
                        passed=False,
                        message=f"{threshold.metric} was not measured",
                    )
                )
                continue
            passed = observed >= value if bound == "min" else observed <= value
            words = ">=" if bound == "min" else "<="
            results.append(
                GateResult(
                    gate=gate,
                    metric=threshold.metric,
                    observed=observed,
                    threshold=value,
                    passed=passed,
                    message=f"{threshold.metric} {observed:.4g} {'meets' if passed else 'misses'} {words} {value:.4g}",
                )
            )
    if spec.gates.max_fairness_gap is not None:
        gap = metrics.get(FAIRNESS_METRIC)
        limit = spec.gates.max_fairness_gap
        results.append(
            GateResult(
                gate="fairness",
                metric=FAIRNESS_METRIC,
                observed=gap,
                threshold=limit,
                passed=gap is not None and gap <= limit,
                message=(
                    f"{FAIRNESS_METRIC} was not measured (no sensitive column?)"
                    if gap is None
                    else f"{FAIRNESS_METRIC} {gap:.4g} {'<=' if gap <= limit else '>'} {limit:.4g}"
                ),
            )
        )
    if spec.gates.champion is not None:
        results.append(_champion_gate(spec, champion))
    return results


def _champion_gate(
    spec: ModelVersionSpec, champion: tuple[str, dict[str, float]] | None
) -> GateResult:
    gate = spec.gates.champion
    assert gate is not None  # noqa: S101 - checked by the caller
    metric = gate.metric
    observed = spec.metrics.get(metric)
    if champion is None:
        return GateResult(
            gate=f"champion:{metric}",
            metric=metric,
            observed=observed,
            passed=observed is not None,
            message="no Production version yet: nothing to beat",
        )
    name, champion_metrics = champion
    scored = spec.champion_score
    if scored is not None and scored.name == name and metric in scored.metrics:
        reference: float | None = scored.metrics[metric]
        basis = f"both on this version's test set ({scored.rows} rows)"
    else:
        reference = champion_metrics.get(metric)
        basis = f"{name}'s stored metric, from its own test set: " + (
            scored.error
            if scored is not None and scored.name == name and scored.error
            else f"{name} was not scored on this version's test set"
            + (f" (the trainer scored {scored.name})" if scored is not None else "")
        )
    if observed is None or reference is None:
        return GateResult(
            gate=f"champion:{metric}",
            metric=metric,
            observed=observed,
            threshold=reference,
            passed=False,
            message=f"{metric} is missing on {'this version' if observed is None else name}",
        )
    lower_better = metric in LOWER_IS_BETTER
    improvement = (reference - observed) if lower_better else (observed - reference)
    passed = improvement >= gate.min_improvement
    return GateResult(
        gate=f"champion:{metric}",
        metric=metric,
        observed=observed,
        threshold=reference,
        passed=passed,
        message=(
            f"{metric} {observed:.4g} vs {name} {reference:.4g}: "
            f"improvement {improvement:+.4g}, needs >= {gate.min_improvement:+.4g} ({basis})"
        ),
    )


def primary_metric(spec: ModelVersionSpec) -> str | None:
    """The headline metric for kubectl: the first gate's metric, else f1 / rmse / any."""
    names = [t.metric for t in spec.gates.thresholds] + ["f1", "roc_auc", "accuracy", "rmse", "r2"]
    for name in names:
        if name in spec.metrics:
            return f"{name}={spec.metrics[name]:.4g}"
    return None


_CONDITION_STATUS: dict[bool | None, ConditionStatus] = {
    True: "True",
    False: "False",
    None: "Unknown",
}


@dataclass(frozen=True)
class ArtifactCheck:
    """The artifact re-read from S3: ``ok`` None when it could not be checked at all."""

    ok: bool | None
    message: str


def gates_evaluated(
    current: ModelVersionStatus,
    spec: ModelVersionSpec,
    champion: tuple[str, dict[str, float]] | None,
    *,
    now: str,
    generation: int | None,
    artifact: ArtifactCheck | None = None,
) -> ModelVersionStatus:
    """The status after the gates ran: Validated when all passed, else Rejected with numbers.

    An artifact whose bytes do not have the recorded sha256 rejects the version whatever its
    gates say: the registry must never offer a model it cannot vouch for.
    """
    status = current.model_copy(deep=True)
    status.observed_generation = generation
    results = evaluate_gates(spec, champion)
    status.gate_results = results
    status.champion = champion[0] if champion else None
    status.primary_metric = primary_metric(spec)
    if artifact is not None:
        status.artifact_verified = artifact.ok
        status.artifact_message = artifact.message[:1024]
        status.conditions = set_condition(
            status.conditions,
            type_="ArtifactVerified",
            status=_CONDITION_STATUS[artifact.ok],
            reason={True: "DigestMatches", False: "DigestMismatch", None: "NotChecked"}[
                artifact.ok
            ],
            message=artifact.message,
            now=now,
            generation=generation,
        )
    failed = [r for r in results if not r.passed]
    bad_artifact = artifact is not None and artifact.ok is False
    if failed or bad_artifact:
        status.phase = "Rejected"
        reasons = [r.message for r in failed]
        if bad_artifact:
            assert artifact is not None  # noqa: S101 - narrowed above
            reasons.insert(0, f"artifact not verified: {artifact.message}")
        status.message = "; ".join(reasons)
    else:
        status.phase = "Validated"
        status.message = f"{len(results)} gate(s) passed" if results else "no gates declared"
    status.conditions = set_condition(
        status.conditions,
        type_="Validated",
        status="False" if failed else "True",
        reason="GateFailed" if failed else "GatesPassed",
        message=status.message,
        now=now,
        generation=generation,
    )
    return status
