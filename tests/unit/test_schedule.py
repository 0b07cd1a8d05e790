"""Pure scheduling math: backoff and next run time (android-reference 2.7, 2.8)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workmanager import BackoffPolicy
from workmanager.engine.schedule import backoff_delay_ms, clamp_backoff, next_run_time
from workmanager.storage.base import NEVER, ScheduleFields

SECOND = 1000
MINUTE = 60 * SECOND
MAX_BACKOFF_MS = 5 * 60 * MINUTE  # 18_000_000
MIN_BACKOFF_MS = 10 * SECOND
T0 = 1_700_000_000_000

bases = st.integers(min_value=MIN_BACKOFF_MS, max_value=MAX_BACKOFF_MS)
attempts = st.integers(min_value=1, max_value=2_000)
policies = st.sampled_from(list(BackoffPolicy))


def fields(
    *,
    interval_ms: int = 0,
    flex_ms: int = 0,
    initial_delay_ms: int = 0,
    backoff_policy: BackoffPolicy = BackoffPolicy.EXPONENTIAL,
    backoff_delay_ms: int = 30 * SECOND,
    last_enqueue_time: int = T0,
    period_count: int = 0,
    run_attempt_count: int = 0,
    next_schedule_time_override: int | None = None,
) -> ScheduleFields:
    return ScheduleFields(
        interval_ms=interval_ms,
        flex_ms=flex_ms,
        initial_delay_ms=initial_delay_ms,
        backoff_policy=backoff_policy,
        backoff_delay_ms=backoff_delay_ms,
        last_enqueue_time=last_enqueue_time,
        period_count=period_count,
        run_attempt_count=run_attempt_count,
        next_schedule_time_override=next_schedule_time_override,
    )


def nrt(f: ScheduleFields) -> int:
    return next_run_time(f, max_backoff_ms=MAX_BACKOFF_MS)


# -- backoff --------------------------------------------------------------------------------------


def test_exponential_backoff_follows_androids_worked_example():
    delays = [
        backoff_delay_ms(BackoffPolicy.EXPONENTIAL, 30 * SECOND, n, max_ms=MAX_BACKOFF_MS) // SECOND
        for n in range(1, 13)
    ]
    assert delays == [30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 18000, 18000]


def test_linear_backoff_follows_androids_worked_example():
    delays = [
        backoff_delay_ms(BackoffPolicy.LINEAR, 30 * SECOND, n, max_ms=MAX_BACKOFF_MS) // SECOND
        for n in (1, 2, 3, 600, 601)
    ]
    assert delays == [30, 60, 90, 18000, 18000]


@given(base=bases, n=attempts)
def test_exponential_backoff_doubles_with_each_attempt_until_the_cap(base, n):
    this = backoff_delay_ms(BackoffPolicy.EXPONENTIAL, base, n, max_ms=MAX_BACKOFF_MS)
    following = backoff_delay_ms(BackoffPolicy.EXPONENTIAL, base, n + 1, max_ms=MAX_BACKOFF_MS)
    assert following == min(2 * this, MAX_BACKOFF_MS)


@given(base=bases, n=attempts)
def test_exponential_backoff_is_base_times_two_to_the_attempts_before(base, n):
    expected = min(base * 2 ** (n - 1), MAX_BACKOFF_MS)
    assert backoff_delay_ms(BackoffPolicy.EXPONENTIAL, base, n, max_ms=MAX_BACKOFF_MS) == expected


@given(base=bases, n=attempts)
def test_linear_backoff_is_base_times_attempts(base, n):
    expected = min(base * n, MAX_BACKOFF_MS)
    assert backoff_delay_ms(BackoffPolicy.LINEAR, base, n, max_ms=MAX_BACKOFF_MS) == expected


@given(policy=policies, base=bases, n=attempts)
def test_backoff_never_exceeds_the_maximum(policy, base, n):
    assert backoff_delay_ms(policy, base, n, max_ms=MAX_BACKOFF_MS) <= MAX_BACKOFF_MS


@given(policy=policies, base=bases, n=attempts)
def test_backoff_is_never_below_the_base_delay(policy, base, n):
    assert backoff_delay_ms(policy, base, n, max_ms=MAX_BACKOFF_MS) >= base


@given(policy=policies, base=bases, n=attempts)
def test_backoff_never_shrinks_with_more_attempts(policy, base, n):
    this = backoff_delay_ms(policy, base, n, max_ms=MAX_BACKOFF_MS)
    assert backoff_delay_ms(policy, base, n + 1, max_ms=MAX_BACKOFF_MS) >= this


def test_backoff_after_a_huge_number_of_attempts_is_the_maximum():
    assert backoff_delay_ms(BackoffPolicy.EXPONENTIAL, 30 * SECOND, 10**6, max_ms=MAX_BACKOFF_MS) == (
        MAX_BACKOFF_MS
    )


# -- clamp_backoff --------------------------------------------------------------------------------


def test_clamp_backoff_raises_a_short_delay_to_10_seconds_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        clamped = clamp_backoff(
            timedelta(seconds=1), minimum=timedelta(seconds=10), maximum=timedelta(hours=5)
        )
    assert clamped == timedelta(seconds=10)
    assert any(r.levelno == logging.WARNING and "backoff" in r.getMessage() for r in caplog.records)


def test_clamp_backoff_lowers_a_long_delay_to_5_hours_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        clamped = clamp_backoff(timedelta(hours=6), minimum=timedelta(seconds=10), maximum=timedelta(hours=5))
    assert clamped == timedelta(hours=5)
    assert any(r.levelno == logging.WARNING and "backoff" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("delay", [timedelta(seconds=10), timedelta(seconds=30), timedelta(hours=5)])
def test_clamp_backoff_keeps_a_delay_within_bounds_without_a_warning(delay, caplog):
    with caplog.at_level(logging.WARNING):
        clamped = clamp_backoff(delay, minimum=timedelta(seconds=10), maximum=timedelta(hours=5))
    assert clamped == delay
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- next_run_time, in Android's order of priority (2.8) ------------------------------------------


def test_one_time_work_runs_at_last_enqueue_plus_initial_delay():
    assert nrt(fields(initial_delay_ms=5 * MINUTE)) == T0 + 5 * MINUTE


def test_one_time_work_without_delay_runs_at_last_enqueue():
    assert nrt(fields()) == T0


def test_one_time_work_never_enqueued_never_runs():
    assert nrt(fields(last_enqueue_time=-1, initial_delay_ms=MINUTE)) == NEVER


def test_backed_off_one_time_work_waits_the_backoff_from_last_enqueue_ignoring_initial_delay():
    f = fields(initial_delay_ms=5 * MINUTE, run_attempt_count=2, backoff_delay_ms=30 * SECOND)
    assert nrt(f) == T0 + 60 * SECOND


def test_backed_off_linear_work_waits_base_times_attempts():
    f = fields(run_attempt_count=3, backoff_policy=BackoffPolicy.LINEAR, backoff_delay_ms=30 * SECOND)
    assert nrt(f) == T0 + 90 * SECOND


def test_backoff_in_next_run_time_is_capped_at_the_maximum():
    f = fields(run_attempt_count=30, backoff_delay_ms=30 * SECOND)
    assert nrt(f) == T0 + MAX_BACKOFF_MS


def test_first_period_runs_after_initial_delay_when_flex_equals_interval():
    f = fields(interval_ms=60 * MINUTE, flex_ms=60 * MINUTE, initial_delay_ms=MINUTE)
    assert nrt(f) == T0 + MINUTE


def test_first_period_waits_for_the_flex_window_to_open():
    f = fields(interval_ms=60 * MINUTE, flex_ms=15 * MINUTE, initial_delay_ms=MINUTE)
    assert nrt(f) == T0 + MINUTE + 45 * MINUTE


def test_later_periods_run_one_interval_after_last_enqueue_without_flex():
    f = fields(interval_ms=60 * MINUTE, flex_ms=15 * MINUTE, initial_delay_ms=MINUTE, period_count=3)
    assert nrt(f) == T0 + 60 * MINUTE


def test_backoff_takes_priority_over_the_period():
    f = fields(interval_ms=60 * MINUTE, flex_ms=60 * MINUTE, period_count=2, run_attempt_count=1)
    assert nrt(f) == T0 + 30 * SECOND


def test_a_schedule_override_takes_priority_over_backoff_in_the_first_period():
    override = T0 + 7 * MINUTE
    f = fields(
        interval_ms=60 * MINUTE,
        flex_ms=60 * MINUTE,
        run_attempt_count=2,
        next_schedule_time_override=override,
    )
    assert nrt(f) == override


def test_a_schedule_override_in_a_later_period_waits_at_least_15_minutes_after_last_enqueue():
    f = fields(
        interval_ms=60 * MINUTE,
        flex_ms=60 * MINUTE,
        period_count=1,
        next_schedule_time_override=T0 + MINUTE,
    )
    assert nrt(f) == T0 + 15 * MINUTE


def test_a_schedule_override_in_a_later_period_is_used_when_beyond_15_minutes():
    f = fields(
        interval_ms=60 * MINUTE,
        flex_ms=60 * MINUTE,
        period_count=1,
        next_schedule_time_override=T0 + 20 * MINUTE,
    )
    assert nrt(f) == T0 + 20 * MINUTE


def test_a_schedule_override_is_ignored_for_one_time_work():
    f = fields(initial_delay_ms=MINUTE, next_schedule_time_override=T0 + 99 * MINUTE)
    assert nrt(f) == T0 + MINUTE
