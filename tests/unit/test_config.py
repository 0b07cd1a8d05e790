"""Configuration: Android's numbers as named defaults, each changeable (android-reference 2.1)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import pytest

from workmanager import Configuration, OneTimeWorkRequest, Result, SystemClock, Worker, WorkInfo
from workmanager.testing import TestClock, create_test_work_manager

T0 = 1_700_000_000_000


class RetryWorker(Worker):
    name = "retry"

    def do_work(self) -> Result:
        return Result.retry()


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _next_schedule_after_one_retry(configuration: Configuration, **request_options) -> datetime | None:
    clock = TestClock(T0)
    wm = create_test_work_manager(workers=[RetryWorker], configuration=configuration, clock=clock)
    request = OneTimeWorkRequest(RetryWorker, **request_options)
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    assert info.state is WorkInfo.State.ENQUEUED
    return info.next_schedule_time


# -- defaults -------------------------------------------------------------------------------------


def test_default_backoff_delay_is_30_seconds():
    assert Configuration().default_backoff_delay == timedelta(seconds=30)


def test_backoff_bounds_are_10_seconds_and_5_hours():
    config = Configuration()
    assert (config.min_backoff, config.max_backoff) == (timedelta(seconds=10), timedelta(hours=5))


def test_minimum_periodic_interval_is_15_minutes_and_flex_5_minutes():
    config = Configuration()
    assert (config.min_periodic_interval, config.min_periodic_flex) == (
        timedelta(minutes=15),
        timedelta(minutes=5),
    )


def test_max_data_bytes_is_10240():
    assert Configuration().max_data_bytes == 10240


def test_prune_threshold_is_one_day():
    assert Configuration().prune_threshold == timedelta(days=1)


def test_durability_defaults_to_full():
    assert Configuration().durability == "full"


def test_max_concurrency_defaults_to_its_named_default():
    from workmanager import config

    assert Configuration().max_concurrency == config.DEFAULT_MAX_CONCURRENCY >= 1


def test_the_clock_defaults_to_the_system_clock():
    assert isinstance(Configuration().clock, SystemClock)


def test_configuration_cannot_be_changed_after_construction():
    config = Configuration()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_data_bytes = 1  # type: ignore[misc]


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_concurrency", 0),
        ("max_data_bytes", 0),
        ("durability", "sometimes"),
        ("max_orphaned_runs", 0),
        ("heartbeat_interval", timedelta(0)),
        ("poll_interval", timedelta(seconds=-1)),
        ("busy_timeout", timedelta(0)),
    ],
)
def test_an_invalid_value_is_rejected_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        Configuration(**{field: value})


def test_min_backoff_above_max_backoff_is_rejected_naming_both():
    with pytest.raises(ValueError, match=r"min_backoff.*max_backoff"):
        Configuration(min_backoff=timedelta(hours=6), max_backoff=timedelta(hours=5))


def test_a_lease_no_longer_than_the_heartbeat_is_rejected_naming_both():
    with pytest.raises(ValueError, match=r"lease_timeout.*heartbeat_interval"):
        Configuration(heartbeat_interval=timedelta(seconds=10), lease_timeout=timedelta(seconds=10))


# -- the defaults at work -------------------------------------------------------------------------


def test_a_retry_waits_the_configured_default_backoff():
    config = Configuration(default_backoff_delay=timedelta(seconds=45))
    assert _next_schedule_after_one_retry(config) == _at(T0 + 45_000)


def test_a_backoff_below_the_configured_minimum_is_raised_to_it_with_a_warning(caplog):
    config = Configuration(min_backoff=timedelta(seconds=20))
    with caplog.at_level(logging.WARNING):
        next_time = _next_schedule_after_one_retry(config, backoff_delay=timedelta(seconds=15))
    assert next_time == _at(T0 + 20_000)
    assert any("backoff" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_a_backoff_above_the_configured_maximum_is_lowered_to_it_with_a_warning(caplog):
    config = Configuration(max_backoff=timedelta(minutes=1))
    with caplog.at_level(logging.WARNING):
        next_time = _next_schedule_after_one_retry(config, backoff_delay=timedelta(minutes=2))
    assert next_time == _at(T0 + 60_000)
    assert any("backoff" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
