"""Operator metrics: handler runs counted by result and timed; objects counted by phase."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from kubeloop.controllers.metrics import OperatorMetrics


def test_handler_runs_are_counted_and_timed() -> None:
    metrics = OperatorMetrics()

    @metrics.instrumented("Dataset")
    def reconcile(fail: bool = False) -> str:
        if fail:
            raise RuntimeError("boom")
        return "done"

    assert reconcile() == "done"
    assert reconcile.__name__ == "reconcile"  # Kopf derives handler ids from the name
    with pytest.raises(RuntimeError):
        reconcile(fail=True)
    text = generate_latest(metrics.registry).decode()
    assert 'kubeloop_reconcile_total{handler="reconcile",kind="Dataset",result="ok"} 1.0' in text
    assert 'kubeloop_reconcile_total{handler="reconcile",kind="Dataset",result="error"} 1.0' in text
    assert 'kubeloop_reconcile_duration_seconds_count{kind="Dataset"} 2.0' in text


def test_objects_by_phase_follow_changes_and_deletions() -> None:
    metrics = OperatorMetrics()
    metrics.observe_phase("TrainingRun", "ml/a", "Running")
    metrics.observe_phase("TrainingRun", "ml/b", "Running")
    metrics.observe_phase("TrainingRun", "ml/a", "Succeeded")
    metrics.observe_phase("TrainingRun", "ml/b", None)
    text = generate_latest(metrics.registry).decode()
    assert 'kubeloop_objects{kind="TrainingRun",phase="Succeeded"} 1.0' in text
    assert 'phase="Running"' not in text


def test_retrains_are_counted_by_trigger_and_outcome() -> None:
    metrics = OperatorMetrics()
    metrics.observe_retrain_end("ml", "iris", trigger="Drift", outcome="Succeeded")
    metrics.observe_retrain_end("ml", "iris", trigger="Drift", outcome="Succeeded")
    metrics.observe_retrain_end("ml", "iris", trigger="Manual", outcome="Failed")
    text = generate_latest(metrics.registry).decode()
    labels = 'deployment="iris",namespace="ml"'
    assert f'kubeloop_retrains_total{{{labels},outcome="Succeeded",trigger="Drift"}} 2.0' in text
    assert f'kubeloop_retrains_total{{{labels},outcome="Failed",trigger="Manual"}} 1.0' in text
