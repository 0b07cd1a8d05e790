"""Cron schedules for periodic work (beyond Android)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from workmanager import Configuration, PeriodicWorkRequest, Result, Worker, WorkManager
from workmanager.clock import TestClock
from workmanager.cron import next_time_ms
from workmanager.engine import schedule
from workmanager.requests import BackoffPolicy
from workmanager.storage.base import ScheduleFields

BERLIN = ZoneInfo("Europe/Berlin")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class Nightly(Worker):
    name = "nightly"

    def do_work(self) -> Result:
        return Result.success()


def cron_fields(last_enqueue: int, period_count: int, *, attempts: int = 0) -> ScheduleFields:
    return ScheduleFields(
        interval_ms=86_400_000, flex_ms=86_400_000, initial_delay_ms=0, backoff_policy=BackoffPolicy.EXPONENTIAL,
        backoff_delay_ms=30_000, last_enqueue_time=last_enqueue, period_count=period_count,
        run_attempt_count=attempts, next_schedule_time_override=None, cron="0 3 * * *", cron_timezone="Europe/Berlin",
    )  # fmt: skip


def test_the_next_time_is_read_in_the_given_time_zone():
    after = ms(datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert next_time_ms("0 3 * * *", "Europe/Berlin", after) == ms(datetime(2026, 7, 2, 3, 0, tzinfo=BERLIN))


def test_daylight_saving_keeps_the_wall_clock_time():
    after = ms(datetime(2026, 10, 23, 12, 0, tzinfo=BERLIN))  # summer time ends in the night of 24-25
    first = next_time_ms("0 3 * * *", "Europe/Berlin", after)
    second = next_time_ms("0 3 * * *", "Europe/Berlin", first)
    assert datetime.fromtimestamp(second / 1000, BERLIN).hour == 3
    assert second - first == 25 * 3_600_000


def test_the_first_run_is_the_first_named_time_after_enqueue():
    enqueued = ms(datetime(2026, 7, 1, 12, 0, tzinfo=BERLIN))
    assert schedule.next_run_time(cron_fields(enqueued, 0), max_backoff_ms=18_000_000) == ms(
        datetime(2026, 7, 2, 3, 0, tzinfo=BERLIN)
    )


def test_enqueued_exactly_at_a_named_time_runs_at_that_time():
    enqueued = ms(datetime(2026, 7, 2, 3, 0, tzinfo=BERLIN))
    assert schedule.next_run_time(cron_fields(enqueued, 0), max_backoff_ms=18_000_000) == enqueued


def test_after_a_run_the_next_is_the_next_named_time_after_it_finished():
    finished = ms(datetime(2026, 7, 2, 3, 0, 5, tzinfo=BERLIN))
    assert schedule.next_run_time(cron_fields(finished, 1), max_backoff_ms=18_000_000) == ms(
        datetime(2026, 7, 3, 3, 0, tzinfo=BERLIN)
    )


def test_after_days_of_downtime_there_is_one_late_run_not_one_per_missed_day():
    finished = ms(datetime(2026, 7, 2, 3, 0, 5, tzinfo=BERLIN))
    now = ms(datetime(2026, 7, 9, 12, 0, tzinfo=BERLIN))
    due = schedule.next_run_time(cron_fields(finished, 1), max_backoff_ms=18_000_000)
    assert due < now  # due once, at start-up
    finished_late = now + 1000
    assert schedule.next_run_time(cron_fields(finished_late, 2), max_backoff_ms=18_000_000) == ms(
        datetime(2026, 7, 10, 3, 0, tzinfo=BERLIN)
    )


def test_a_retry_inside_a_cron_period_backs_off():
    failed = ms(datetime(2026, 7, 2, 3, 0, 5, tzinfo=BERLIN))
    assert (
        schedule.next_run_time(cron_fields(failed, 1, attempts=1), max_backoff_ms=18_000_000)
        == failed + 30_000
    )


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"cron": "61 * * * *"}, "cron"),
    ({"cron": "every night"}, "cron"),
    ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone"),
])  # fmt: skip
def test_an_invalid_cron_expression_or_time_zone_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        PeriodicWorkRequest(Nightly, **kwargs)


def test_cron_and_an_interval_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        PeriodicWorkRequest(Nightly, timedelta(hours=1), cron="0 3 * * *")


def test_a_time_zone_without_cron_is_refused():
    with pytest.raises(ValueError, match="only applies to cron"):
        PeriodicWorkRequest(Nightly, timedelta(hours=1), timezone="Europe/Berlin")


def test_cron_work_reports_its_next_time_and_a_daily_interval(tmp_path):
    clock = TestClock(ms(datetime(2026, 7, 1, 12, 0, tzinfo=BERLIN)))
    wm = WorkManager(tmp_path / "w.db", workers=[Nightly], configuration=Configuration(clock=clock))
    request = PeriodicWorkRequest(Nightly, cron="0 3 * * *", timezone="Europe/Berlin")
    wm.enqueue(request)

    info = wm.get_work_info_by_id(request.id)

    assert info.next_schedule_time == datetime(2026, 7, 2, 3, 0, tzinfo=BERLIN)
    assert info.periodicity_info.repeat_interval == timedelta(days=1)
    wm.close()
