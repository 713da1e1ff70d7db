"""The drift benchmark's setup at a tiny size: real pages over HTTP give a scored verdict.

No timing is asserted: this keeps the benchmark runnable (pods, profile, the monitor's check
and the floor) so ``make bench`` does not find it broken.
"""

from __future__ import annotations

from kubeloop.devenv.bench_drift import ALL_METHODS, Workload, measure

TINY = Workload(
    "2 pods x 3 features",
    numeric=2,
    categorical=1,
    methods=ALL_METHODS,
    pods=2,
    rows_first=300,
    rows_per_check=600,
    training_rows=2_000,
    drifted=1,
)


def test_a_tiny_check_scores_every_feature_with_every_method_that_applies() -> None:
    found = measure(TINY, repeat=1)
    assert found.last is not None and found.last_in_process is not None
    evaluation = found.last.check.evaluation
    assert evaluation.verdict in ("Drifted", "NoDrift")
    assert found.last.check.pods == 2
    # Each timed round adds 600 rows on each of 2 pods; the warm-up round and the timed one
    # are in the window (the rows before the first check are only its baseline).
    assert evaluation.samples == 2 * 2 * 600
    scored = {(score.feature, score.method) for score in evaluation.scores}
    assert scored == {
        *(
            (feature, method)
            for feature in ("num_000", "num_001")
            for method in ("psi", "js", "ks")
        ),
        *(("cat_00", method) for method in ("psi", "js", "chi2", "linf")),
        *(("prediction", method) for method in ("psi", "js", "chi2", "linf")),
    }
    assert len(evaluation.scores) == TINY.expected_scores()
    # The shifted feature is the one found drifted by the distances.
    assert any(
        s.feature == "num_000" and s.method == "psi" and s.drifted for s in evaluation.scores
    )
    # The in-process part scored the same pages the same way.
    inner = found.last_in_process.check.evaluation
    assert (inner.verdict, inner.samples, len(inner.scores)) == (
        evaluation.verdict,
        evaluation.samples,
        len(evaluation.scores),
    )
    assert found.last.status.verdict == evaluation.verdict
    assert len(found.ours) == len(found.floor) == len(found.in_process) == 1
    assert found.window_intervals == 120
