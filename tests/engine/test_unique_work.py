"""Unique work: ExistingWorkPolicy REPLACE, KEEP, APPEND, APPEND_OR_REPLACE and their edge cases
(android-reference 1.6, 2.4), and the database's guard on the name."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any as Gate  # the conftest fixture's type

import pytest

from workmanager import (
    ExistingWorkPolicy,
    OneTimeWorkRequest,
    PeriodicWorkRequest,
    Result,
    StopReason,
    WorkContinuation,
    Worker,
    WorkInfo,
    WorkManager,
)
from workmanager.engine import records
from workmanager.testing import TestClock, create_test_work_manager, get_test_driver

State = WorkInfo.State
P = ExistingWorkPolicy
T0 = 1_700_000_000_000
NAME = "sync"


class Ok(Worker):
    name = "ok"

    def do_work(self) -> Result:
        return Result.success({"n": self.input_data.get("n", 0)})


class Fail(Worker):
    name = "fail"

    def do_work(self) -> Result:
        return Result.failure()


class Held(Worker):
    """Waits on the test's gate, then succeeds (or retries when stopped)."""

    name = "held"
    gate: Gate | None = None
    stopped_with: list[StopReason] = []

    def do_work(self) -> Result:
        assert Held.gate is not None
        Held.gate.hold()
        if self.is_stopped:
            Held.stopped_with.append(self.stop_reason)
            return Result.retry()
        return Result.success({"held": True})


@pytest.fixture
def held(gate: Gate) -> Gate:
    Held.gate = gate
    Held.stopped_with = []
    return gate


def make() -> WorkManager:
    return create_test_work_manager(workers=[Ok, Fail, Held], clock=TestClock(T0))


def ok(n: int = 0, **options) -> OneTimeWorkRequest:
    return OneTimeWorkRequest(Ok, input_data={"n": n}, **options)


def later(n: int = 0) -> OneTimeWorkRequest:
    return ok(n, initial_delay=timedelta(hours=1))


def state(wm: WorkManager, request: OneTimeWorkRequest) -> State | None:
    info = wm.get_work_info_by_id(request.id)
    return None if info is None else info.state


def named(wm: WorkManager, name: str = NAME) -> dict[object, State]:
    """Every row with the name: id -> state."""
    return {i.id: i.state for i in wm.get_work_infos_for_unique_work(name)}


def start_held(wm: WorkManager, in_background, held: Gate, name: str = NAME):
    """Unique work RUNNING on a helper thread until the gate opens: (request, thread)."""
    running = OneTimeWorkRequest(Held)
    thread = in_background(wm.enqueue_unique_work, name, P.KEEP, running)
    held.wait_started()
    assert state(wm, running) is State.RUNNING
    return running, thread


# -- REPLACE ----------------------------------------------------------------------------------------


def test_replace_deletes_the_old_work_and_enqueues_the_new():
    wm = make()
    old, new = later(1), later(2)
    wm.enqueue_unique_work(NAME, P.REPLACE, old)
    wm.enqueue_unique_work(NAME, P.REPLACE, new)
    assert wm.get_work_info_by_id(old.id) is None
    assert named(wm) == {new.id: State.ENQUEUED}


def test_replace_deletes_the_whole_old_chain_finished_rows_too():
    wm = make()
    done, waiting, blocked = ok(1), later(2), ok(3)
    wm.begin_unique_work(NAME, P.APPEND, done).enqueue()
    wm.begin_unique_work(NAME, P.APPEND, waiting).then(blocked).enqueue()
    new = ok(4)
    wm.enqueue_unique_work(NAME, P.REPLACE, new)
    assert [wm.get_work_info_by_id(r.id) for r in (done, waiting, blocked)] == [None, None, None]
    assert named(wm) == {new.id: State.SUCCEEDED}


def test_replace_over_running_work_stops_it_and_drops_its_result(in_background, held):
    wm = make()
    running, thread = start_held(wm, in_background, held)
    new = ok(7)

    wm.enqueue_unique_work(NAME, P.REPLACE, new)

    assert wm.get_work_info_by_id(running.id) is None
    assert state(wm, new) is State.SUCCEEDED
    held.release.set()
    thread.join(10)
    assert Held.stopped_with == [StopReason.CANCELLED_BY_APP]  # it saw is_stopped, cooperatively
    assert wm.get_work_info_by_id(running.id) is None  # its result did not bring the row back
    assert named(wm) == {new.id: State.SUCCEEDED}


def test_replace_cancels_dependents_of_the_old_chain_outside_the_name():
    wm = make()
    old = later(1)
    outsider = ok(2)
    WorkContinuation.combine([wm.begin_unique_work(NAME, P.KEEP, old)]).then(outsider).enqueue()
    wm.enqueue_unique_work(NAME, P.REPLACE, later(3))
    assert state(wm, outsider) is State.CANCELLED


# -- KEEP ---------------------------------------------------------------------------------------------


def test_keep_while_the_old_work_is_enqueued_does_nothing():
    wm = make()
    old, new = later(1), later(2)
    wm.enqueue_unique_work(NAME, P.KEEP, old)
    wm.enqueue_unique_work(NAME, P.KEEP, new)
    assert wm.get_work_info_by_id(new.id) is None
    assert named(wm) == {old.id: State.ENQUEUED}


def test_keep_drops_the_whole_new_continuation_not_only_its_head():
    wm = make()
    old = later(1)
    wm.enqueue_unique_work(NAME, P.KEEP, old)
    head, tail = later(2), ok(3)
    wm.begin_unique_work(NAME, P.KEEP, head).then(tail).enqueue()
    assert wm.get_work_info_by_id(head.id) is None
    assert wm.get_work_info_by_id(tail.id) is None


def test_keep_while_the_old_work_runs_does_nothing(in_background, held):
    wm = make()
    running, _ = start_held(wm, in_background, held)
    new = ok(2)
    wm.enqueue_unique_work(NAME, P.KEEP, new)
    assert wm.get_work_info_by_id(new.id) is None
    assert state(wm, running) is State.RUNNING
    assert Held.stopped_with == []


@pytest.mark.parametrize("worker", [Ok, Fail])
def test_keep_over_finished_work_deletes_it_and_enqueues_the_new(worker):
    wm = make()
    old = OneTimeWorkRequest(worker)
    wm.enqueue_unique_work(NAME, P.KEEP, old)
    assert state(wm, old) in (State.SUCCEEDED, State.FAILED)
    new = later(2)
    wm.enqueue_unique_work(NAME, P.KEEP, new)
    assert wm.get_work_info_by_id(old.id) is None
    assert named(wm) == {new.id: State.ENQUEUED}


def test_keep_over_cancelled_work_deletes_it_and_enqueues_the_new():
    wm = make()
    old = later(1)
    wm.enqueue_unique_work(NAME, P.KEEP, old)
    wm.cancel_unique_work(NAME)
    new = later(2)
    wm.enqueue_unique_work(NAME, P.KEEP, new)
    assert named(wm) == {new.id: State.ENQUEUED}


# -- APPEND --------------------------------------------------------------------------------------------


def test_append_onto_running_work_waits_for_it(in_background, held):
    wm = make()
    running, _ = start_held(wm, in_background, held)
    appended = ok(2)
    wm.enqueue_unique_work(NAME, P.APPEND, appended)
    assert state(wm, appended) is State.BLOCKED
    held.release.set()
    assert wm.await_work(appended.id, timeout=10).state is State.SUCCEEDED
    assert state(wm, running) is State.SUCCEEDED


def test_append_onto_a_chain_whose_leaves_all_succeeded_runs_at_once():
    wm = make()
    first = ok(1)
    wm.enqueue_unique_work(NAME, P.APPEND, first)
    second = ok(2)
    wm.enqueue_unique_work(NAME, P.APPEND, second)
    assert named(wm) == {first.id: State.SUCCEEDED, second.id: State.SUCCEEDED}


def test_append_after_the_old_chain_was_pruned_starts_a_new_root():
    wm = make()
    wm.enqueue_unique_work(NAME, P.APPEND, ok(1))
    wm.prune_work()
    fresh = later(2)
    wm.enqueue_unique_work(NAME, P.APPEND, fresh)
    assert named(wm) == {fresh.id: State.ENQUEUED}


def test_append_follows_only_the_leaves_of_the_existing_chain():
    wm = make()
    a, b = later(1), ok(2)
    wm.begin_unique_work(NAME, P.APPEND, a).then(b).enqueue()
    c = ok(3)
    wm.enqueue_unique_work(NAME, P.APPEND, c)
    assert state(wm, c) is State.BLOCKED
    get_test_driver(wm).set_initial_delay_met(a.id)
    assert list(named(wm).values()) == [State.SUCCEEDED] * 3


def test_append_onto_a_failed_chain_fails_the_new_work_at_once():
    wm = make()
    wm.enqueue_unique_work(NAME, P.APPEND, OneTimeWorkRequest(Fail))
    appended = ok(2)
    wm.enqueue_unique_work(NAME, P.APPEND, appended)
    assert state(wm, appended) is State.FAILED


def test_append_onto_a_cancelled_chain_cancels_the_new_work_at_once():
    wm = make()
    wm.enqueue_unique_work(NAME, P.APPEND, later(1))
    wm.cancel_unique_work(NAME)
    appended = ok(2)
    wm.enqueue_unique_work(NAME, P.APPEND, appended)
    info = wm.get_work_info_by_id(appended.id)
    assert info is not None and info.state is State.CANCELLED
    assert info.stop_reason is StopReason.CANCELLED_BY_APP


def test_a_failure_poisons_every_later_append_until_the_chain_is_pruned():
    wm = make()
    wm.enqueue_unique_work(NAME, P.APPEND, OneTimeWorkRequest(Fail))
    poisoned = [ok(i) for i in range(3)]
    for request in poisoned:
        wm.enqueue_unique_work(NAME, P.APPEND, request)
    assert {state(wm, r) for r in poisoned} == {State.FAILED}
    wm.prune_work()
    healthy = ok(9)
    wm.enqueue_unique_work(NAME, P.APPEND, healthy)
    assert state(wm, healthy) is State.SUCCEEDED


def test_several_requests_appended_in_one_call_are_siblings_after_the_same_leaves():
    wm = make()
    head = later(0)
    wm.enqueue_unique_work(NAME, P.APPEND, head)
    siblings = [ok(1), ok(2)]
    wm.enqueue_unique_work(NAME, P.APPEND, siblings)
    assert {state(wm, r) for r in siblings} == {State.BLOCKED}
    get_test_driver(wm).set_initial_delay_met(head.id)
    assert {state(wm, r) for r in siblings} == {State.SUCCEEDED}


# -- APPEND_OR_REPLACE -------------------------------------------------------------------------------------


def test_append_or_replace_onto_a_failed_chain_starts_a_fresh_chain():
    wm = make()
    failed = OneTimeWorkRequest(Fail)
    wm.enqueue_unique_work(NAME, P.APPEND_OR_REPLACE, failed)
    fresh = ok(2)
    wm.enqueue_unique_work(NAME, P.APPEND_OR_REPLACE, fresh)
    assert wm.get_work_info_by_id(failed.id) is None
    assert named(wm) == {fresh.id: State.SUCCEEDED}


def test_append_or_replace_onto_a_cancelled_chain_starts_a_fresh_chain():
    wm = make()
    wm.enqueue_unique_work(NAME, P.APPEND_OR_REPLACE, later(1))
    wm.cancel_unique_work(NAME)
    fresh = later(2)
    wm.enqueue_unique_work(NAME, P.APPEND_OR_REPLACE, fresh)
    assert named(wm) == {fresh.id: State.ENQUEUED}


def test_append_or_replace_onto_a_healthy_chain_appends():
    wm = make()
    head = later(1)
    wm.enqueue_unique_work(NAME, P.APPEND_OR_REPLACE, head)
    appended = ok(2)
    wm.enqueue_unique_work(NAME, P.APPEND_OR_REPLACE, appended)
    assert named(wm) == {head.id: State.ENQUEUED, appended.id: State.BLOCKED}


# -- names, queries, cancel ---------------------------------------------------------------------------------


def test_then_children_carry_the_unique_name():
    wm = make()
    head, child = later(1), ok(2)
    wm.begin_unique_work(NAME, P.REPLACE, head).then(child).enqueue()
    assert named(wm) == {head.id: State.ENQUEUED, child.id: State.BLOCKED}


def test_get_work_infos_for_unique_work_includes_finished_rows_of_earlier_appends():
    wm = make()
    first, second = ok(1), later(2)
    wm.enqueue_unique_work(NAME, P.APPEND, first)
    wm.enqueue_unique_work(NAME, P.APPEND, second)
    assert named(wm) == {first.id: State.SUCCEEDED, second.id: State.ENQUEUED}


def test_cancel_unique_work_cancels_the_whole_chain():
    wm = make()
    head, child = later(1), ok(2)
    wm.begin_unique_work(NAME, P.REPLACE, head).then(child).enqueue()
    wm.cancel_unique_work(NAME)
    assert list(named(wm).values()) == [State.CANCELLED, State.CANCELLED]


def test_names_are_independent():
    wm = make()
    a, b = later(1), later(2)
    wm.enqueue_unique_work("a", P.REPLACE, a)
    wm.enqueue_unique_work("b", P.REPLACE, b)
    assert state(wm, a) is State.ENQUEUED and state(wm, b) is State.ENQUEUED


def test_the_async_twin_applies_the_policy():
    import asyncio

    wm = make()
    old, new = later(1), later(2)
    wm.enqueue_unique_work(NAME, P.KEEP, old)
    asyncio.run(wm.enqueue_unique_work_async(NAME, P.REPLACE, new))
    assert named(wm) == {new.id: State.ENQUEUED}


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["REPLACE", 0, None])
def test_an_unknown_policy_is_a_value_error_and_writes_nothing(policy):
    wm = make()
    with pytest.raises(ValueError, match="ExistingWorkPolicy"):
        wm.enqueue_unique_work(NAME, policy, later(1))  # type: ignore[arg-type]
    assert named(wm) == {}


@pytest.mark.parametrize("name", ["", None, 3])
def test_a_unique_name_must_be_a_non_empty_string(name):
    with pytest.raises(ValueError, match="name"):
        make().enqueue_unique_work(name, P.KEEP, later(1))  # type: ignore[arg-type]


def test_periodic_work_through_enqueue_unique_work_is_a_value_error():
    wm = make()
    periodic = PeriodicWorkRequest(Ok, repeat_interval=timedelta(hours=1))
    with pytest.raises(ValueError, match="periodic"):
        wm.enqueue_unique_work(NAME, P.KEEP, periodic)  # type: ignore[arg-type]


def test_a_bad_request_in_a_unique_chain_leaves_the_old_chain_untouched():
    wm = make()
    old = later(1)
    wm.enqueue_unique_work(NAME, P.REPLACE, old)
    elsewhere = later(9)
    wm.enqueue(elsewhere)
    with pytest.raises(ValueError, match="already exists"):
        wm.begin_unique_work(NAME, P.REPLACE, later(2)).then(elsewhere).enqueue()
    assert named(wm) == {old.id: State.ENQUEUED}


# -- the database guard ---------------------------------------------------------------------------------------


def test_the_database_refuses_a_new_chain_while_rows_of_the_old_one_remain():
    wm = make()
    wm.enqueue_unique_work(NAME, P.KEEP, later(1))
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), wm._storage.transaction() as tx:
        tx.uniquename_set_chain(NAME, "another-chain")
    assert len(named(wm)) == 1


def test_the_database_refuses_a_named_row_that_skipped_the_guard():
    wm = make()
    row = records.new_work(later(1), now=T0, config=wm.configuration, names=("unguarded",))
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"), wm._storage.transaction() as tx:
        tx.work_insert([row])
    assert named(wm, "unguarded") == {}
