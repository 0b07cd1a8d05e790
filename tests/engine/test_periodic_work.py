"""Periodic work: Android's next-run formula, and the test driver's period calls."""

from __future__ import annotations

from datetime import timedelta

import pytest

from workmanager import Configuration, PeriodicWorkRequest, Result, Worker, WorkInfo
from workmanager.clock import TestClock
from workmanager.testing import create_test_work_manager, get_test_driver

S = WorkInfo.State
T0 = 1_800_000_000_000
HOUR = timedelta(hours=1)
runs: list[int] = []


class Sync(Worker):
    name = "sync"

    def do_work(self) -> Result:
        runs.append(self.run_attempt_count)
        outcome = self.input_data.get("outcome", "success")
        if outcome == "retry":
            return Result.retry()
        if outcome == "failure":
            return Result.failure({"why": "no"})
        return Result.success({"ignored": True})


@pytest.fixture(autouse=True)
def _reset() -> None:
    runs.clear()


def manager(clock: TestClock | None = None):
    return create_test_work_manager(workers=[Sync], clock=clock or TestClock(T0))


def test_the_first_period_runs_at_enqueue_in_the_test_manager():
    wm = manager()
    request = PeriodicWorkRequest(Sync, repeat_interval=HOUR)
    wm.enqueue(request)
    assert runs == [0]
    assert wm.get_work_info_by_id(request.id).state is S.ENQUEUED


def test_periodic_work_returns_to_enqueued_and_never_shows_output():
    wm = manager()
    request = PeriodicWorkRequest(Sync, repeat_interval=HOUR)
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info.state is S.ENQUEUED
    assert info.output_data == {}
    assert info.run_attempt_count == 0


def test_the_next_period_is_an_interval_after_the_run_finished():
    clock = TestClock(T0)
    wm = manager(clock)
    request = PeriodicWorkRequest(Sync, repeat_interval=HOUR)
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info.next_schedule_time.timestamp() * 1000 == T0 + 3_600_000
    assert info.periodicity_info.repeat_interval == HOUR
    assert info.periodicity_info.flex_interval == HOUR


def test_set_period_delay_met_runs_one_more_period():
    wm = manager()
    request = PeriodicWorkRequest(Sync, repeat_interval=HOUR)
    wm.enqueue(request)
    driver = get_test_driver(wm)
    driver.set_period_delay_met(request.id)
    driver.set_period_delay_met(request.id)
    assert runs == [0, 0, 0]


def test_a_failed_period_still_goes_on_to_the_next_period():
    wm = manager()
    request = PeriodicWorkRequest(Sync, repeat_interval=HOUR, input_data={"outcome": "failure"})
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info.state is S.ENQUEUED
    get_test_driver(wm).set_period_delay_met(request.id)
    assert runs == [0, 0]


def test_retry_backs_off_inside_the_period():
    clock = TestClock(T0)
    wm = manager(clock)
    request = PeriodicWorkRequest(
        Sync, repeat_interval=HOUR, input_data={"outcome": "retry"}, backoff_delay=timedelta(seconds=30)
    )
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info.run_attempt_count == 1
    assert info.next_schedule_time.timestamp() * 1000 == T0 + 30_000  # backoff, not the interval
    get_test_driver(wm).set_period_delay_met(request.id)  # releases the backoff too
    assert runs == [0, 1]


def test_set_period_delay_met_on_one_time_work_raises():
    from workmanager import OneTimeWorkRequest

    wm = manager()
    request = OneTimeWorkRequest(Sync, initial_delay=HOUR)
    wm.enqueue(request)
    with pytest.raises(ValueError, match="not periodic"):
        get_test_driver(wm).set_period_delay_met(request.id)


def test_an_interval_below_the_minimum_is_clamped_with_a_warning(caplog):
    wm = manager()
    request = PeriodicWorkRequest(Sync, repeat_interval=timedelta(minutes=1))
    wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id).periodicity_info.repeat_interval == timedelta(minutes=15)
    assert "less than the minimum" in caplog.text


def test_the_minimum_interval_is_configurable():
    wm = create_test_work_manager(
        workers=[Sync],
        configuration=Configuration(
            min_periodic_interval=timedelta(seconds=1), min_periodic_flex=timedelta(seconds=1)
        ),
    )
    request = PeriodicWorkRequest(Sync, repeat_interval=timedelta(seconds=2))
    wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id).periodicity_info.repeat_interval == timedelta(seconds=2)


def test_with_a_flex_window_the_first_run_waits_for_the_window_outside_the_test_manager(tmp_path):
    from workmanager import WorkManager

    clock = TestClock(T0)
    wm = WorkManager(tmp_path / "w.db", workers=[Sync], configuration=Configuration(clock=clock))
    request = PeriodicWorkRequest(Sync, repeat_interval=HOUR, flex_interval=timedelta(minutes=15))
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info.next_schedule_time.timestamp() * 1000 == T0 + 45 * 60_000
    wm.close()


def test_a_forward_clock_jump_of_many_periods_yields_one_run_not_one_per_period():
    clock = TestClock(T0)
    wm = manager(clock)
    wm.enqueue(PeriodicWorkRequest(Sync, repeat_interval=HOUR))
    assert runs == [0]

    clock.advance(10 * HOUR)  # the wall clock jumps (or the machine slept) ten periods ahead
    wm._engine.run_until_idle()  # what a worker does when it wakes

    assert runs == [0, 0]  # one late run; the next is an interval after it


def test_a_backward_clock_jump_never_runs_a_period_twice():
    clock = TestClock(T0)
    wm = manager(clock)
    request = PeriodicWorkRequest(Sync, repeat_interval=HOUR)
    wm.enqueue(request)

    clock.set_wall(T0 - 5 * 3_600_000)  # five hours back
    wm._engine.run_until_idle()
    assert runs == [0]
    clock.set_wall(T0 + 3_600_000)  # the interval after the real last run
    wm._engine.run_until_idle()
    assert runs == [0, 0]
