"""Cron schedules for periodic work (beyond Android), on the croniter library.

Pure functions over epoch milliseconds; the time zone is an IANA name, so "0 3 * * *"
in Europe/Berlin means 03:00 Berlin time whatever daylight saving does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

__all__ = ["next_time_ms", "typical_gap", "validate"]


def validate(expression: str, timezone: str) -> None:
    """Raise ValueError naming the field when the expression or the zone is not valid."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise ValueError(f"cron: {expression!r} is not a valid cron expression (e.g. '0 3 * * *')")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"timezone: {timezone!r} is not an IANA time zone (e.g. 'Europe/Berlin')") from None


def next_time_ms(expression: str, timezone: str, after_ms: int) -> int:
    """The first time the expression names strictly after ``after_ms``.

    >>> next_time_ms("0 3 * * *", "UTC", 0)  # 1970-01-01 03:00 UTC
    10800000
    """
    zone = ZoneInfo(timezone)
    start = datetime.fromtimestamp(after_ms / 1000, tz=zone)
    schedule = croniter(expression, start)
    following: datetime = schedule.get_next(datetime)
    # When the clocks go back, an hour of wall-clock times happens twice. Each named time runs
    # once, at its first occurrence: the second is skipped (a daily 02:30 in Europe/Berlin ran
    # twice on the last Sunday of October). A time skipped by spring-forward runs when the
    # clock jumps (croniter's choice, kept).
    while _is_second_occurrence(following, zone):
        following = schedule.get_next(datetime)
    return int(following.timestamp() * 1000)


def _is_second_occurrence(moment: datetime, zone: ZoneInfo) -> bool:
    """Whether ``moment``'s wall-clock time already happened an hour (or so) earlier: fall-back."""
    first = moment.replace(tzinfo=None).replace(tzinfo=zone, fold=0)
    return first.utcoffset() != moment.utcoffset() and first.timestamp() < moment.timestamp()


def typical_gap(expression: str, timezone: str) -> timedelta:
    """The time between two consecutive runs from now: what WorkInfo shows as the interval."""
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    first = next_time_ms(expression, timezone, now_ms)
    return timedelta(milliseconds=next_time_ms(expression, timezone, first) - first)
