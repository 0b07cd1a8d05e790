"""Pure scheduling math: when work may run next. Takes ``now``; never reads a clock.

The formula is Android's ``WorkSpec.calculateNextRunTime`` (times in epoch ms).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from workmanager import cron
from workmanager.clock import to_ms
from workmanager.requests import BackoffPolicy
from workmanager.storage.base import NEVER, ScheduleFields

log = logging.getLogger("workmanager.schedule")

#: Android's floor between periodic runs when a schedule override is set.
MIN_PERIODIC_INTERVAL_MS = 15 * 60 * 1000


def backoff_delay_ms(policy: BackoffPolicy, base_ms: int, run_attempt_count: int, *, max_ms: int) -> int:
    """The wait before the next attempt; ``run_attempt_count`` counts runs already started.

    >>> [backoff_delay_ms(BackoffPolicy.EXPONENTIAL, 30_000, n, max_ms=18_000_000) for n in (1, 2, 3)]
    [30000, 60000, 120000]
    >>> backoff_delay_ms(BackoffPolicy.LINEAR, 30_000, 3, max_ms=18_000_000)
    90000
    >>> backoff_delay_ms(BackoffPolicy.EXPONENTIAL, 30_000, 40, max_ms=18_000_000)
    18000000
    """
    attempts = max(run_attempt_count, 1)
    if policy is BackoffPolicy.LINEAR:
        delay = base_ms * attempts
    else:
        # Cap the exponent first: 2**(n-1) for large n is a waste of big integers.
        delay = base_ms * 2 ** min(attempts - 1, 62)
    return min(delay, max_ms)


def next_run_time(f: ScheduleFields, *, max_backoff_ms: int) -> int:
    """When ENQUEUED work becomes eligible; in Android's order of priority.

    >>> one_time = ScheduleFields(0, 0, 5_000, BackoffPolicy.EXPONENTIAL, 30_000, 1_000, 0, 0, None)
    >>> next_run_time(one_time, max_backoff_ms=18_000_000)
    6000
    """
    if f.is_periodic and f.next_schedule_time_override is not None:
        if f.period_count == 0:
            return f.next_schedule_time_override
        return max(f.next_schedule_time_override, f.last_enqueue_time + MIN_PERIODIC_INTERVAL_MS)
    if f.run_attempt_count > 0:
        delay = backoff_delay_ms(
            f.backoff_policy, f.backoff_delay_ms, f.run_attempt_count, max_ms=max_backoff_ms
        )
        return f.last_enqueue_time + delay
    if f.cron is not None:
        # The first named time at or after enqueue (+ initial delay); later, the first named
        # time after the previous run finished: a run missed in downtime happens once, late.
        tz = f.cron_timezone or "UTC"
        if f.period_count == 0:
            return cron.next_time_ms(f.cron, tz, f.last_enqueue_time + f.initial_delay_ms - 1)
        return cron.next_time_ms(f.cron, tz, f.last_enqueue_time)
    if f.is_periodic:
        if f.period_count == 0:
            flex_offset = f.interval_ms - f.flex_ms if f.flex_ms != f.interval_ms else 0
            return f.last_enqueue_time + f.initial_delay_ms + flex_offset
        return f.last_enqueue_time + f.interval_ms
    if f.last_enqueue_time < 0:
        return NEVER
    return f.last_enqueue_time + f.initial_delay_ms


def clamp_backoff(delay: timedelta, *, minimum: timedelta, maximum: timedelta) -> timedelta:
    """Backoff delay clamped to [minimum, maximum], with a warning as on Android."""
    if delay < minimum:
        log.warning("backoff_delay %s is less than the minimum %s; using the minimum", delay, minimum)
        return minimum
    if delay > maximum:
        log.warning("backoff_delay %s is more than the maximum %s; using the maximum", delay, maximum)
        return maximum
    return delay


def clamp_period(
    interval: timedelta, flex: timedelta, *, min_interval: timedelta, min_flex: timedelta
) -> tuple[timedelta, timedelta]:
    """Interval clamped up to its minimum; flex into [min_flex, interval]; each with a warning."""
    if interval < min_interval:
        log.warning(
            "repeat_interval %s is less than the minimum %s; using the minimum", interval, min_interval
        )
        interval = min_interval
    if flex < min_flex:
        log.warning("flex_interval %s is less than the minimum %s; using the minimum", flex, min_flex)
        flex = min_flex
    if flex > interval:
        log.warning("flex_interval %s is more than repeat_interval %s; using the interval", flex, interval)
        flex = interval
    return interval, flex


def ms(delta: timedelta) -> int:
    return to_ms(delta)
