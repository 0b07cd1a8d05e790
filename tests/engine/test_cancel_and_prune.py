"""Cancelling work and pruning finished work (android-reference 1.9, 1.10, 2.12)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from workmanager import (
    Configuration,
    OneTimeWorkRequest,
    Result,
    StopReason,
    Worker,
    WorkInfo,
    WorkManager,
)
from workmanager.engine.recovery import Pruner
from workmanager.testing import TestClock, create_test_work_manager

State = WorkInfo.State
T0 = 1_700_000_000_000
DAY = timedelta(days=1)
DAY_MS = 86_400_000


class SuccessWorker(Worker):
    name = "success"

    def do_work(self) -> Result:
        return Result.success({"ok": True})


class FailureWorker(Worker):
    name = "failure"

    def do_work(self) -> Result:
        return Result.failure({"why": "no"})


def delayed(**options) -> OneTimeWorkRequest:
    """Work that waits an hour, so it stays ENQUEUED in the test manager."""
    return OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(hours=1), **options)


def state_of(wm: WorkManager, request: OneTimeWorkRequest) -> State | None:
    info = wm.get_work_info_by_id(request.id)
    return None if info is None else info.state


def info_of(wm: WorkManager, request: OneTimeWorkRequest) -> WorkInfo:
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    return info


# -- cancel ---------------------------------------------------------------------------------------


def test_cancel_work_by_id_cancels_enqueued_work():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    request = delayed()
    wm.enqueue(request)
    wm.cancel_work_by_id(request.id)
    assert state_of(wm, request) is State.CANCELLED


def test_cancelled_work_records_cancelled_by_app_as_its_stop_reason():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    request = delayed()
    wm.enqueue(request)
    wm.cancel_work_by_id(request.id)
    assert info_of(wm, request).stop_reason is StopReason.CANCELLED_BY_APP


def test_cancelled_work_has_no_next_schedule_time():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    request = delayed()
    wm.enqueue(request)
    wm.cancel_work_by_id(request.id)
    assert info_of(wm, request).next_schedule_time is None


def test_cancel_work_by_id_leaves_other_work_alone():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    target, other = delayed(), delayed()
    wm.enqueue([target, other])
    wm.cancel_work_by_id(target.id)
    assert state_of(wm, other) is State.ENQUEUED


def test_cancel_all_work_by_tag_cancels_only_work_with_that_tag():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    tagged_a, tagged_b, untagged = delayed(tags={"sync"}), delayed(tags={"sync", "x"}), delayed()
    wm.enqueue([tagged_a, tagged_b, untagged])
    wm.cancel_all_work_by_tag("sync")
    assert [state_of(wm, r) for r in (tagged_a, tagged_b, untagged)] == [
        State.CANCELLED,
        State.CANCELLED,
        State.ENQUEUED,
    ]
    assert info_of(wm, tagged_a).stop_reason is StopReason.CANCELLED_BY_APP


def test_cancel_all_work_by_tag_leaves_finished_work_with_that_tag_alone():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    done = OneTimeWorkRequest(SuccessWorker, tags={"sync"})
    wm.enqueue(done)
    wm.cancel_all_work_by_tag("sync")
    info = info_of(wm, done)
    assert info.state is State.SUCCEEDED
    assert info.stop_reason is StopReason.NOT_STOPPED


def test_cancel_all_work_cancels_every_unfinished_work():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    requests = [delayed(), delayed(tags={"a"}), delayed(tags={"b"})]
    wm.enqueue(requests)
    wm.cancel_all_work()
    assert {state_of(wm, r) for r in requests} == {State.CANCELLED}
    assert {info_of(wm, r).stop_reason for r in requests} == {StopReason.CANCELLED_BY_APP}


def test_cancel_all_work_leaves_finished_work_alone():
    wm = create_test_work_manager(workers=[SuccessWorker, FailureWorker], clock=TestClock(T0))
    succeeded, failed = OneTimeWorkRequest(SuccessWorker), OneTimeWorkRequest(FailureWorker)
    wm.enqueue([succeeded, failed])
    wm.cancel_all_work()
    assert (state_of(wm, succeeded), state_of(wm, failed)) == (State.SUCCEEDED, State.FAILED)


def test_cancel_all_work_records_when_it_ran():
    clock = TestClock(T0)
    wm = create_test_work_manager(workers=[SuccessWorker], clock=clock)
    assert wm.get_last_cancel_all_time_ms() == 0
    clock.advance(timedelta(seconds=3))
    wm.cancel_all_work()
    assert wm.get_last_cancel_all_time_ms() == T0 + 3_000


def test_cancelling_succeeded_work_is_a_no_op():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    before = info_of(wm, request)
    wm.cancel_work_by_id(request.id)
    assert info_of(wm, request) == before


def test_cancelling_failed_work_is_a_no_op():
    wm = create_test_work_manager(workers=[FailureWorker])
    request = OneTimeWorkRequest(FailureWorker)
    wm.enqueue(request)
    before = info_of(wm, request)
    wm.cancel_work_by_id(request.id)
    assert info_of(wm, request) == before


def test_cancelling_cancelled_work_again_changes_nothing():
    clock = TestClock(T0)
    wm = create_test_work_manager(workers=[SuccessWorker], clock=clock)
    request = delayed()
    wm.enqueue(request)
    wm.cancel_work_by_id(request.id)
    before = info_of(wm, request)
    clock.advance(timedelta(minutes=1))
    wm.cancel_work_by_id(request.id)
    assert info_of(wm, request) == before


def test_cancelling_unknown_work_is_a_no_op():
    wm = create_test_work_manager(workers=[SuccessWorker])
    wm.cancel_work_by_id(uuid.uuid4())
    wm.cancel_all_work_by_tag("nothing-has-this-tag")


def test_cancelling_running_work_cancels_it_at_once(gate, in_background):
    class BlockingWorker(Worker):
        name = "blocking"

        def do_work(self) -> Result:
            gate.hold()
            return Result.success({"late": True})

    wm = create_test_work_manager(workers=[BlockingWorker])
    request = OneTimeWorkRequest(BlockingWorker)
    in_background(wm.enqueue, request)
    gate.wait_started()
    wm.cancel_work_by_id(request.id)
    info = info_of(wm, request)
    assert info.state is State.CANCELLED
    assert info.stop_reason is StopReason.CANCELLED_BY_APP


def test_a_cancelled_running_worker_is_told_to_stop_once(gate, in_background):
    seen = {}
    stopped_calls = []

    class BlockingWorker(Worker):
        name = "blocking"

        def do_work(self) -> Result:
            gate.hold()
            seen["is_stopped"] = self.is_stopped
            seen["stop_reason"] = self.stop_reason
            return Result.success()

        def on_stopped(self) -> None:
            stopped_calls.append(self.stop_reason)

    wm = create_test_work_manager(workers=[BlockingWorker])
    request = OneTimeWorkRequest(BlockingWorker)
    thread = in_background(wm.enqueue, request)
    gate.wait_started()
    wm.cancel_work_by_id(request.id)
    gate.release.set()
    thread.join(10)
    assert seen == {"is_stopped": True, "stop_reason": StopReason.CANCELLED_BY_APP}
    assert stopped_calls == [StopReason.CANCELLED_BY_APP]


def test_the_result_of_a_cancelled_running_worker_is_ignored(gate, in_background):
    class BlockingWorker(Worker):
        name = "blocking"

        def do_work(self) -> Result:
            gate.hold()
            return Result.success({"late": True})

    wm = create_test_work_manager(workers=[BlockingWorker])
    request = OneTimeWorkRequest(BlockingWorker)
    thread = in_background(wm.enqueue, request)
    gate.wait_started()
    wm.cancel_work_by_id(request.id)
    gate.release.set()
    thread.join(10)
    info = info_of(wm, request)
    assert info.state is State.CANCELLED
    assert info.output_data == {}


# -- prune_work -----------------------------------------------------------------------------------


def test_prune_work_deletes_succeeded_failed_and_cancelled_work():
    wm = create_test_work_manager(workers=[SuccessWorker, FailureWorker], clock=TestClock(T0))
    succeeded, failed, cancelled = (
        OneTimeWorkRequest(SuccessWorker),
        OneTimeWorkRequest(FailureWorker),
        delayed(),
    )
    wm.enqueue([succeeded, failed, cancelled])
    wm.cancel_work_by_id(cancelled.id)
    wm.prune_work()
    assert [wm.get_work_info_by_id(r.id) for r in (succeeded, failed, cancelled)] == [None, None, None]


def test_prune_work_keeps_unfinished_work():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    waiting = delayed()
    wm.enqueue(waiting)
    wm.prune_work()
    assert state_of(wm, waiting) is State.ENQUEUED


def test_prune_work_ignores_keep_results_for():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    kept = OneTimeWorkRequest(SuccessWorker, keep_results_for=timedelta(days=30))
    wm.enqueue(kept)
    wm.prune_work()
    assert wm.get_work_info_by_id(kept.id) is None


def test_pruned_work_disappears_from_tag_queries():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    done = OneTimeWorkRequest(SuccessWorker, tags={"batch"})
    waiting = delayed(tags={"batch"})
    wm.enqueue([done, waiting])
    wm.prune_work()
    assert [i.id for i in wm.get_work_infos_by_tag("batch")] == [waiting.id]


def test_pruned_work_can_be_enqueued_again_with_the_same_id():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    wm.prune_work()
    wm.enqueue(request)
    assert state_of(wm, request) is State.SUCCEEDED


# -- automatic pruning (Pruner.run_once) ----------------------------------------------------------


def _pruner(wm: WorkManager) -> Pruner:
    return Pruner(wm._storage, threshold_ms=DAY_MS)


def test_automatic_pruning_keeps_finished_work_for_a_day():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    done = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(done)
    _pruner(wm).run_once(T0 + DAY_MS)
    assert state_of(wm, done) is State.SUCCEEDED


def test_automatic_pruning_deletes_finished_work_older_than_a_day():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    done = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(done)
    _pruner(wm).run_once(T0 + DAY_MS + 1)
    assert wm.get_work_info_by_id(done.id) is None


def test_automatic_pruning_keeps_finished_work_for_a_day_plus_keep_results_for():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    done = OneTimeWorkRequest(SuccessWorker, keep_results_for=timedelta(days=2))
    wm.enqueue(done)
    _pruner(wm).run_once(T0 + 3 * DAY_MS)
    assert state_of(wm, done) is State.SUCCEEDED
    _pruner(wm).run_once(T0 + 3 * DAY_MS + 1)
    assert wm.get_work_info_by_id(done.id) is None


def test_automatic_pruning_never_deletes_unfinished_work():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    waiting = delayed()
    wm.enqueue(waiting)
    _pruner(wm).run_once(T0 + 365 * DAY_MS)
    assert state_of(wm, waiting) is State.ENQUEUED


def test_starting_a_work_manager_prunes_finished_work_older_than_a_day(tmp_path):
    path = tmp_path / "w.db"
    first = WorkManager(path, workers=[SuccessWorker], configuration=Configuration(clock=TestClock(T0)))
    old = delayed()
    first.enqueue(old)
    first.cancel_work_by_id(old.id)
    first.close()
    later = WorkManager(
        path, workers=[SuccessWorker], configuration=Configuration(clock=TestClock(T0 + 2 * DAY_MS))
    )
    try:
        later.start()
        assert later.get_work_info_by_id(old.id) is None
    finally:
        later.close()
