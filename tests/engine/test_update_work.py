"""update_work and unique periodic work (android-reference 2.5, 2.16)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from workmanager import (
    ExistingPeriodicWorkPolicy,
    ExistingWorkPolicy,
    OneTimeWorkRequest,
    PeriodicWorkRequest,
    Result,
    UpdateResult,
    Worker,
    WorkInfo,
    WorkManager,
    WorkNotFoundError,
)
from workmanager.clock import ms_to_datetime
from workmanager.testing import TestClock, create_test_work_manager, get_test_driver

State = WorkInfo.State
PP = ExistingPeriodicWorkPolicy
T0 = 1_700_000_000_000
HOUR = timedelta(hours=1)
seen: list[tuple[Any, int]] = []


class Record(Worker):
    """Records (its input's "v", its generation); retries while input asks it to."""

    name = "record"

    def do_work(self) -> Result:
        seen.append((self.input_data.get("v"), self.generation))
        if self.input_data.get("retry"):
            return Result.retry()
        return Result.success()


class Held(Worker):
    name = "held-update"
    gate: Any = None

    def do_work(self) -> Result:
        Held.gate.hold()
        seen.append((self.input_data.get("v"), self.generation))
        return Result.retry() if self.input_data.get("retry") else Result.success()


@pytest.fixture(autouse=True)
def _clear():
    seen.clear()


def make(clock: TestClock | None = None) -> WorkManager:
    return create_test_work_manager(workers=[Record, Held], clock=clock or TestClock(T0))


def info(wm: WorkManager, id) -> WorkInfo:
    found = wm.get_work_info_by_id(id)
    assert found is not None
    return found


# -- update_work ---------------------------------------------------------------------------------------


def test_updating_unknown_work_raises_work_not_found():
    with pytest.raises(WorkNotFoundError, match="does not exist"):
        make().update_work(OneTimeWorkRequest(Record))


def test_updating_waiting_work_applies_immediately_and_it_runs_with_the_new_spec():
    wm = make()
    old = OneTimeWorkRequest(Record, input_data={"v": "old"}, initial_delay=HOUR)
    wm.enqueue(old)
    new = OneTimeWorkRequest(Record, input_data={"v": "new"}, id=old.id)

    assert wm.update_work(new) is UpdateResult.APPLIED_IMMEDIATELY

    assert seen == [("new", 1)]  # no delay any more: it ran at once, as generation 1
    assert info(wm, old.id).state is State.SUCCEEDED
    assert info(wm, old.id).generation == 1


def test_an_update_keeps_the_enqueue_time_so_a_new_delay_counts_from_the_original_enqueue():
    clock = TestClock(T0)
    wm = make(clock)
    old = OneTimeWorkRequest(Record, initial_delay=HOUR)
    wm.enqueue(old)
    clock.advance(timedelta(minutes=20))
    wm.update_work(OneTimeWorkRequest(Record, initial_delay=2 * HOUR, id=old.id))
    assert info(wm, old.id).next_schedule_time == ms_to_datetime(T0) + 2 * HOUR


def test_an_update_replaces_the_tags_wholesale():
    wm = make()
    old = OneTimeWorkRequest(Record, tags={"a", "b"}, initial_delay=HOUR)
    wm.enqueue(old)
    wm.update_work(OneTimeWorkRequest(Record, tags={"c"}, initial_delay=HOUR, id=old.id))
    assert info(wm, old.id).tags == {"c", "record"}
    assert wm.get_work_infos_by_tag("a") == []
    assert [i.id for i in wm.get_work_infos_by_tag("c")] == [old.id]


def test_updating_finished_work_is_not_applied_and_changes_nothing():
    wm = make()
    done = OneTimeWorkRequest(Record, input_data={"v": 1})
    wm.enqueue(done)
    before = info(wm, done.id)
    result = wm.update_work(OneTimeWorkRequest(Record, input_data={"v": 2}, tags={"x"}, id=done.id))
    assert result is UpdateResult.NOT_APPLIED
    assert info(wm, done.id) == before


def test_updating_blocked_work_keeps_it_blocked():
    wm = make()
    head = OneTimeWorkRequest(Record, initial_delay=HOUR)
    tail = OneTimeWorkRequest(Record, input_data={"v": "old"})
    wm.begin_with(head).then(tail).enqueue()
    result = wm.update_work(OneTimeWorkRequest(Record, input_data={"v": "new"}, id=tail.id))
    assert result is UpdateResult.APPLIED_IMMEDIATELY
    assert info(wm, tail.id).state is State.BLOCKED
    get_test_driver(wm).set_initial_delay_met(head.id)
    assert seen[-1] == ("new", 1)


def test_updating_running_work_applies_for_the_next_run(gate, in_background):
    Held.gate = gate
    wm = make()
    running = OneTimeWorkRequest(Held, input_data={"v": "old", "retry": True})
    thread = in_background(wm.enqueue, running)
    gate.wait_started()

    result = wm.update_work(OneTimeWorkRequest(Held, input_data={"v": "new"}, id=running.id))

    assert result is UpdateResult.APPLIED_FOR_NEXT_RUN
    assert info(wm, running.id).state is State.RUNNING  # not interrupted
    gate.release.set()
    thread.join(10)
    assert info(wm, running.id).state is State.ENQUEUED
    assert seen == [("old", 0)]  # this run kept its old input and generation; it asked to retry
    get_test_driver(wm).set_initial_delay_met(running.id)  # the backoff is over
    assert seen == [("old", 0), ("new", 1)]
    assert info(wm, running.id).state is State.SUCCEEDED


def test_changing_the_type_of_work_is_a_value_error():
    wm = make()
    one_time = OneTimeWorkRequest(Record, initial_delay=HOUR)
    wm.enqueue(one_time)
    with pytest.raises(ValueError, match="type"):
        wm.update_work(PeriodicWorkRequest(Record, repeat_interval=HOUR, id=one_time.id))
    assert info(wm, one_time.id).generation == 0


def test_the_async_twin_updates():
    wm = make()
    old = OneTimeWorkRequest(Record, initial_delay=HOUR)
    wm.enqueue(old)
    new = OneTimeWorkRequest(Record, initial_delay=2 * HOUR, id=old.id)
    assert asyncio.run(wm.update_work_async(new)) is UpdateResult.APPLIED_IMMEDIATELY


# -- unique periodic work ----------------------------------------------------------------------------------


def periodic(v: str = "", interval: timedelta = HOUR, **options) -> PeriodicWorkRequest:
    return PeriodicWorkRequest(Record, repeat_interval=interval, input_data={"v": v}, **options)


def names(wm: WorkManager) -> list[WorkInfo]:
    return wm.get_work_infos_for_unique_work("sync")


def test_periodic_keep_leaves_existing_work_alone():
    wm = make()
    first, second = periodic("1"), periodic("2")
    wm.enqueue_unique_periodic_work("sync", PP.KEEP, first)
    wm.enqueue_unique_periodic_work("sync", PP.KEEP, second)
    assert [i.id for i in names(wm)] == [first.id]
    assert seen == [("1", 0)]  # the first period ran at enqueue; the second request never did


def test_periodic_keep_over_cancelled_work_enqueues_the_new_request():
    wm = make()
    first, second = periodic("1"), periodic("2")
    wm.enqueue_unique_periodic_work("sync", PP.KEEP, first)
    wm.cancel_unique_work("sync")
    wm.enqueue_unique_periodic_work("sync", PP.KEEP, second)
    assert [i.id for i in names(wm)] == [second.id]


@pytest.mark.parametrize("policy", [PP.CANCEL_AND_REENQUEUE, PP.REPLACE])
def test_cancel_and_reenqueue_replaces_the_work_and_restarts_its_period(policy):
    clock = TestClock(T0)
    wm = make(clock)
    first = periodic("1")
    wm.enqueue_unique_periodic_work("sync", policy, first)
    clock.advance(timedelta(minutes=30))
    second = periodic("2")
    wm.enqueue_unique_periodic_work("sync", policy, second)
    assert wm.get_work_info_by_id(first.id) is None
    (current,) = names(wm)
    assert current.id == second.id
    assert seen == [("1", 0), ("2", 0)]  # the new one's first period ran at once
    assert current.next_schedule_time == ms_to_datetime(clock.now_ms()) + HOUR


def test_update_keeps_the_id_and_the_period_and_bumps_the_generation():
    clock = TestClock(T0)
    wm = make(clock)
    first = periodic("1", interval=8 * HOUR)
    wm.enqueue_unique_periodic_work("sync", PP.UPDATE, first)  # none yet: enqueued (and ran)
    clock.advance(3 * HOUR)
    wm.enqueue_unique_periodic_work("sync", PP.UPDATE, periodic("2", interval=6 * HOUR))
    (current,) = names(wm)
    assert current.id == first.id
    assert current.generation == 1
    assert current.periodicity_info is not None
    assert current.periodicity_info.repeat_interval == 6 * HOUR
    # "ran 3 hours ago with the new 6 hour period: next in 3 hours", not 6 from now
    assert current.next_schedule_time == ms_to_datetime(T0) + 6 * HOUR
    get_test_driver(wm).set_initial_delay_met(first.id)
    assert seen[-1] == ("2", 1)


def test_update_over_cancelled_work_enqueues_the_new_request():
    wm = make()
    first = periodic("1")
    wm.enqueue_unique_periodic_work("sync", PP.UPDATE, first)
    wm.cancel_unique_work("sync")
    second = periodic("2")
    wm.enqueue_unique_periodic_work("sync", PP.UPDATE, second)
    assert [i.id for i in names(wm)] == [second.id]


def test_update_onto_one_time_work_is_a_value_error():
    wm = make()
    wm.enqueue_unique_work("sync", ExistingWorkPolicy.KEEP, OneTimeWorkRequest(Record, initial_delay=HOUR))
    with pytest.raises(ValueError, match="one-time work to periodic"):
        wm.enqueue_unique_periodic_work("sync", PP.UPDATE, periodic())


def test_update_onto_a_chain_is_a_value_error():
    wm = make()
    head = OneTimeWorkRequest(Record, initial_delay=HOUR)
    wm.begin_unique_work("sync", ExistingWorkPolicy.KEEP, head).then(OneTimeWorkRequest(Record)).enqueue()
    with pytest.raises(ValueError, match="chain"):
        wm.enqueue_unique_periodic_work("sync", PP.UPDATE, periodic())


def test_update_onto_failed_periodic_work_is_silently_not_applied():
    wm = make()
    first = periodic("1", initial_delay=HOUR)
    wm.enqueue_unique_periodic_work("sync", PP.KEEP, first)
    with wm._storage.transaction() as tx:  # periodic work ends FAILED only in rare cases (2.6)
        tx._conn.execute("UPDATE workspec SET state = 3 WHERE id = ?", (str(first.id),))  # type: ignore[attr-defined]
    wm.enqueue_unique_periodic_work("sync", PP.UPDATE, periodic("2"))
    (current,) = names(wm)
    assert (current.id, current.state, current.generation) == (first.id, State.FAILED, 0)


@pytest.mark.parametrize("policy", [ExistingWorkPolicy.KEEP, "UPDATE", None])
def test_a_periodic_policy_of_the_wrong_kind_is_a_value_error(policy):
    with pytest.raises(ValueError, match="ExistingPeriodicWorkPolicy"):
        make().enqueue_unique_periodic_work("sync", policy, periodic())  # type: ignore[arg-type]


def test_enqueue_unique_periodic_work_needs_a_periodic_request():
    with pytest.raises(ValueError, match="PeriodicWorkRequest"):
        make().enqueue_unique_periodic_work("sync", PP.KEEP, OneTimeWorkRequest(Record))  # type: ignore[arg-type]


def test_the_periodic_async_twin_applies_the_policy():
    wm = make()
    request = periodic("1", initial_delay=HOUR)
    asyncio.run(wm.enqueue_unique_periodic_work_async("sync", PP.KEEP, request))
    assert [i.id for i in names(wm)] == [request.id]
