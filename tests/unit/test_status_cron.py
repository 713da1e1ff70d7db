"""Cron schedules of the retrain policy: the latest time a schedule names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubeloop.status.cron import latest_fire, parse_schedule


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        ("* * * * *", "2026-12-07T10:15:42", "2026-12-07T10:15:00"),
        ("0 3 * * *", "2026-12-07T10:15:00", "2026-12-07T03:00:00"),
        ("0 3 * * *", "2026-12-07T02:59:00", "2026-12-06T03:00:00"),
        ("*/15 * * * *", "2026-12-07T10:14:00", "2026-12-07T10:00:00"),
        ("5-10/2 * * * *", "2026-12-07T10:59:00", "2026-12-07T10:09:00"),
        # 2026-12-07 is a Monday; "1" is Monday in cron, 0 and 7 Sunday.
        ("0 0 * * 1", "2026-12-09T00:00:00", "2026-12-07T00:00:00"),
        ("0 0 * * 0", "2026-12-09T00:00:00", "2026-12-06T00:00:00"),
        ("0 0 * * 7", "2026-12-09T00:00:00", "2026-12-06T00:00:00"),
        # Day of month and day of week both restricted: either matches (Vixie cron).
        ("0 0 1 * 1", "2026-12-05T00:00:00", "2026-12-01T00:00:00"),
        ("0 0 1 * 1", "2026-12-08T00:00:00", "2026-12-07T00:00:00"),
        ("30 12 29 2 *", "2026-12-07T00:00:00", "2024-02-29T12:30:00"),
        ("0 0 1,15 6 *", "2026-12-07T00:00:00", "2026-06-15T00:00:00"),
    ],
)
def test_latest_fire(schedule: str, now: str, expected: str) -> None:
    assert latest_fire(parse_schedule(schedule), _at(now)) == _at(expected)


def test_a_schedule_that_never_fires_says_none() -> None:
    assert latest_fire(parse_schedule("0 0 31 2 *"), _at("2026-12-07T00:00:00")) is None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("0 3 * *", "needs 5 fields"),
        ("61 * * * *", "minute '61' is outside 0-59"),
        ("0 24 * * *", "hour '24' is outside 0-23"),
        ("0 0 0 * *", "day of month '0' is outside 1-31"),
        ("0 0 * 13 *", "month '13' is outside 1-12"),
        ("0 0 * * 8", "day of week '8' is outside 0-7"),
        ("*/0 * * * *", "outside"),
        ("a * * * *", "is not a number"),
        ("5-1 * * * *", "outside"),
    ],
)
def test_bad_schedules_name_the_field(schedule: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(schedule)
