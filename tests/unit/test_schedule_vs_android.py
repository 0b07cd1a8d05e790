"""next_run_time agrees with Android's WorkSpec.calculateNextRunTime, for any input.

The reference below transcribes Android's formula as android-reference.md (2.7, 2.8)
states it, independently of engine/schedule.py, and hypothesis compares the two.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from workmanager.engine.schedule import next_run_time
from workmanager.requests import BackoffPolicy
from workmanager.storage.base import NEVER, ScheduleFields

MAX_BACKOFF = 18_000_000
MIN_PERIODIC_INTERVAL = 900_000


def android_next_run_time(
    *,
    is_periodic: bool,
    run_attempt_count: int,
    linear: bool,
    backoff_delay: int,
    last_enqueue_time: int,
    period_count: int,
    initial_delay: int,
    interval: int,
    flex: int,
    override: int | None,
) -> int:
    if is_periodic and override is not None:
        return override if period_count == 0 else max(override, last_enqueue_time + MIN_PERIODIC_INTERVAL)
    if run_attempt_count > 0:  # isBackedOff (the state is ENQUEUED)
        delay = (
            backoff_delay * run_attempt_count
            if linear
            else int(backoff_delay * 2.0 ** (run_attempt_count - 1))
        )
        return last_enqueue_time + min(delay, MAX_BACKOFF)
    if is_periodic:
        if period_count == 0:
            schedule = last_enqueue_time + initial_delay
            if flex != interval:
                schedule += interval - flex
            return schedule
        return last_enqueue_time + interval
    if last_enqueue_time == -1:
        return NEVER  # Long.MAX_VALUE in Android
    return last_enqueue_time + initial_delay


times = st.integers(min_value=0, max_value=4_000_000_000_000)
durations = st.integers(min_value=0, max_value=30 * 86_400_000)


@given(
    is_periodic=st.booleans(),
    attempts=st.integers(min_value=0, max_value=40),
    linear=st.booleans(),
    backoff=st.integers(min_value=10_000, max_value=MAX_BACKOFF),
    last_enqueue=st.one_of(st.just(-1), times),
    period_count=st.integers(min_value=0, max_value=1000),
    initial_delay=durations,
    interval=st.integers(min_value=MIN_PERIODIC_INTERVAL, max_value=30 * 86_400_000),
    flex_fraction=st.floats(min_value=0.0, max_value=1.0),
    override=st.one_of(st.none(), times),
)
def test_next_run_time_matches_androids_formula(
    is_periodic,
    attempts,
    linear,
    backoff,
    last_enqueue,
    period_count,
    initial_delay,
    interval,
    flex_fraction,
    override,
):
    if is_periodic and last_enqueue == -1:
        last_enqueue = 0  # periodic work is always enqueued
    flex = max(300_000, int(interval * flex_fraction)) if is_periodic else 0
    flex = min(flex, interval)
    fields = ScheduleFields(
        interval_ms=interval if is_periodic else 0,
        flex_ms=flex,
        initial_delay_ms=initial_delay,
        backoff_policy=BackoffPolicy.LINEAR if linear else BackoffPolicy.EXPONENTIAL,
        backoff_delay_ms=backoff,
        last_enqueue_time=last_enqueue,
        period_count=period_count if is_periodic else 0,
        run_attempt_count=attempts if last_enqueue != -1 else 0,
        next_schedule_time_override=override,
    )
    expected = android_next_run_time(
        is_periodic=is_periodic,
        run_attempt_count=fields.run_attempt_count,
        linear=linear,
        backoff_delay=backoff,
        last_enqueue_time=last_enqueue,
        period_count=fields.period_count,
        initial_delay=initial_delay,
        interval=interval,
        flex=flex,
        override=override,
    )
    assert next_run_time(fields, max_backoff_ms=MAX_BACKOFF) == expected
