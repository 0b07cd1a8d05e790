"""The state machine: legal transitions (android-reference 2.2) and guarded outcomes."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest

from workmanager import Configuration, Data, OneTimeWorkRequest, WorkInfo
from workmanager.engine import records
from workmanager.engine.states import (
    TRANSITIONS,
    Failed,
    Retry,
    Succeeded,
    apply_outcome,
    is_legal,
)
from workmanager.storage import open_storage
from workmanager.storage.base import Storage

State = WorkInfo.State
FINISHED = (State.SUCCEEDED, State.FAILED, State.CANCELLED)
T0 = 1_700_000_000_000
MAX_BACKOFF_MS = 5 * 60 * 60 * 1000

LEGAL = [
    (State.ENQUEUED, State.RUNNING),  # claimed
    (State.BLOCKED, State.ENQUEUED),  # last prerequisite succeeded
    (State.RUNNING, State.SUCCEEDED),  # success()
    (State.RUNNING, State.FAILED),  # failure() or an exception
    (State.RUNNING, State.ENQUEUED),  # retry(), next period, stop
    (State.BLOCKED, State.FAILED),  # a prerequisite failed
    (State.ENQUEUED, State.CANCELLED),
    (State.BLOCKED, State.CANCELLED),
    (State.RUNNING, State.CANCELLED),
]

ILLEGAL = [
    (State.ENQUEUED, State.SUCCEEDED),  # work succeeds only by running
    (State.BLOCKED, State.RUNNING),  # blocked work is never claimed
    (State.BLOCKED, State.SUCCEEDED),
    (State.RUNNING, State.BLOCKED),  # nothing becomes BLOCKED after enqueue
    (State.ENQUEUED, State.BLOCKED),
]


# -- the table ------------------------------------------------------------------------------------


def test_finished_states_are_succeeded_failed_and_cancelled():
    assert {s for s in State if s.is_finished} == set(FINISHED)


@pytest.mark.parametrize(("old", "new"), LEGAL, ids=lambda s: s.name)
def test_androids_transitions_are_legal(old, new):
    assert is_legal(old, new)


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=lambda s: s.name)
def test_transitions_android_never_makes_are_illegal(old, new):
    assert not is_legal(old, new)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(FINISHED, State)), ids=lambda s: s.name)
def test_finished_states_are_terminal(old, new):
    assert not is_legal(old, new)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_no_state_transitions_to_itself(state):
    assert not is_legal(state, state)


def test_no_transition_leads_into_blocked():
    assert all(new is not State.BLOCKED for _, new in TRANSITIONS)


def test_running_is_reached_only_from_enqueued():
    assert {old for old, new in TRANSITIONS if new is State.RUNNING} == {State.ENQUEUED}


# -- guarded outcomes -----------------------------------------------------------------------------


@pytest.fixture
def storage() -> Iterator[Storage]:
    s = open_storage(":memory:", Configuration())
    yield s
    s.close()


def _claimed_work(storage: Storage, token: int) -> str:
    request = OneTimeWorkRequest("some-worker")
    row = records.new_work(request, now=T0, config=Configuration())
    with storage.transaction() as tx:
        tx.work_insert([row])
        claimed = tx.work_claim_available(now=T0, limit=1, runner_id="me", run_token=token, names=None)
    assert [c.id for c in claimed] == [str(request.id)]
    return str(request.id)


def _state(storage: Storage, work_id: str) -> State:
    row = storage.work_info_by_id(work_id)
    assert row is not None
    return State(row.state)


def _apply(storage: Storage, work_id: str, token: int, outcome):
    with storage.transaction() as tx:
        return apply_outcome(
            tx, work_id, token, outcome, is_periodic=False, now=T0, max_backoff_ms=MAX_BACKOFF_MS
        )


def test_an_outcome_of_the_owning_run_is_applied(storage):
    work_id = _claimed_work(storage, token=1)
    applied = _apply(storage, work_id, 1, Succeeded(Data({"ok": True})))
    assert applied.applied
    assert applied.new_state is State.SUCCEEDED
    assert _state(storage, work_id) is State.SUCCEEDED


def test_an_outcome_of_a_run_that_no_longer_owns_the_work_changes_nothing(storage):
    work_id = _claimed_work(storage, token=1)
    applied = _apply(storage, work_id, 2, Failed(Data({"error": "late"})))
    assert not applied.applied
    assert _state(storage, work_id) is State.RUNNING


def test_an_outcome_applied_twice_changes_nothing_the_second_time(storage):
    work_id = _claimed_work(storage, token=1)
    _apply(storage, work_id, 1, Succeeded(Data.EMPTY))
    assert not _apply(storage, work_id, 1, Retry()).applied
    assert _state(storage, work_id) is State.SUCCEEDED


def test_an_outcome_for_work_that_no_longer_exists_changes_nothing(storage):
    assert not _apply(storage, str(uuid.uuid4()), 1, Retry()).applied
