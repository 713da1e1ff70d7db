"""Five-field cron schedules (minute hour day-of-month month day-of-week), in UTC.

The retrain policy's ``schedule`` needs one question answered: the latest time at or before
now that the schedule names. Fields take ``*``, numbers, ranges ``a-b``, steps ``*/n`` and
``a-b/n``, and comma lists; day-of-week 0 and 7 are Sunday. As in Vixie cron, when both
day-of-month and day-of-week are restricted a day matches either of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))
_SEARCH_DAYS = 366 * 4 + 1  # every schedule that exists fires within four years (29 Feb)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday ... 6 = Sunday (datetime's numbering)
    days_restricted: bool
    weekdays_restricted: bool

    def day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        by_day = day.day in self.days
        by_weekday = day.weekday() in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                first, last = body.split("-", 1)
                start, end = int(first), int(last)
            else:
                start = int(body)
                end = high if step_text else start
        except ValueError:
            raise ValueError(f"cron {name} {part!r} is not a number, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"cron {name} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_schedule(text: str) -> Schedule:
    """Parse ``text``; ``ValueError`` says which field is wrong."""
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(f"cron schedule {text!r} needs 5 fields, has {len(parts)}")
    minutes, hours, days, months = (
        _field(part, name, low, high)
        for part, (name, low, high) in zip(parts, _FIELDS, strict=False)
    )
    cron_weekdays = _field(parts[4], "day of week", 0, 7)
    # cron: 0 and 7 = Sunday, 1 = Monday; datetime: 0 = Monday, 6 = Sunday.
    weekdays = frozenset((day - 1) % 7 for day in cron_weekdays)
    return Schedule(
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )


def latest_fire(schedule: Schedule, now: datetime) -> datetime | None:
    """The latest minute at or before ``now`` the schedule names (None: none in four years)."""
    now = now.astimezone(UTC).replace(second=0, microsecond=0)
    hours = sorted(schedule.hours, reverse=True)
    minutes = sorted(schedule.minutes, reverse=True)
    day = now.replace(hour=0, minute=0)
    for _ in range(_SEARCH_DAYS):
        if schedule.day_matches(day):
            for hour in hours:
                for minute in minutes:
                    moment = day.replace(hour=hour, minute=minute)
                    if moment <= now:
                        return moment
        day -= timedelta(days=1)
    return None
