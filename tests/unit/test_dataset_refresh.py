"""When a Dataset with spec.refreshInterval is due for another look at its source."""

from __future__ import annotations

from kubeloop.api.dataset import DatasetStatus
from kubeloop.controllers.dataset import _refresh_due

CREATED = "2026-11-27T10:00:00Z"


def test_first_refresh_counts_from_creation() -> None:
    assert not _refresh_due(DatasetStatus(), "1h", CREATED, "2026-11-27T10:59:59Z")
    assert _refresh_due(DatasetStatus(), "1h", CREATED, "2026-11-27T11:00:00Z")


def test_later_refreshes_count_from_the_last_one() -> None:
    status = DatasetStatus(last_refresh="2026-11-27T12:00:00Z")
    assert not _refresh_due(status, "30m", CREATED, "2026-11-27T12:29:00Z")
    assert _refresh_due(status, "30m", CREATED, "2026-11-27T12:30:01Z")
