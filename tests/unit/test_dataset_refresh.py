"""When a Dataset is due for another look at its source: spec.refreshInterval, or a
``kubeloop.io/refresh`` token that has not been answered yet."""

from __future__ import annotations

from typing import Any, cast

import kopf

from kubeloop.api.dataset import REFRESH_ANNOTATION, DatasetStatus
from kubeloop.controllers.dataset import _refresh_due, refresh_attempt, requested_refresh
from kubeloop.resources.dataset import profile_job_name

CREATED = "2026-11-27T10:00:00Z"


def test_first_refresh_counts_from_creation() -> None:
    assert not _refresh_due(DatasetStatus(), "1h", CREATED, "2026-11-27T10:59:59Z")
    assert _refresh_due(DatasetStatus(), "1h", CREATED, "2026-11-27T11:00:00Z")


def test_later_refreshes_count_from_the_last_one() -> None:
    status = DatasetStatus(last_refresh="2026-11-27T12:00:00Z")
    assert not _refresh_due(status, "30m", CREATED, "2026-11-27T12:29:00Z")
    assert _refresh_due(status, "30m", CREATED, "2026-11-27T12:30:01Z")


def body(annotations: dict[str, str], status: dict[str, Any]) -> kopf.Body:
    raw = {"metadata": {"name": "iris", "annotations": annotations}, "status": status}
    return kopf.Body(cast(kopf.RawBody, raw))


def test_a_refresh_token_is_due_until_the_status_echoes_it() -> None:
    token = {REFRESH_ANNOTATION: "iris-retrain-1"}
    assert requested_refresh(body(token, {})) == "iris-retrain-1"
    assert requested_refresh(body(token, {"refreshToken": "iris-retrain-0"})) == "iris-retrain-1"
    assert requested_refresh(body(token, {"refreshToken": "iris-retrain-1"})) is None
    assert requested_refresh(body({}, {})) is None


def test_each_token_has_its_own_stable_job_name() -> None:
    first, second = refresh_attempt("iris-retrain-1"), refresh_attempt("iris-retrain-2")
    assert first == refresh_attempt("iris-retrain-1")
    assert first != second
    name = profile_job_name("iris-feedback", first)
    assert name.startswith("iris-feedback-profile-t")
    assert len(name) <= 63
