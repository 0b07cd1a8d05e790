"""One-time work through the test manager: results, retries, delays, progress, enqueue rules."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from workmanager import (
    BackoffPolicy,
    Configuration,
    CoroutineWorker,
    DataTooLargeError,
    OneTimeWorkRequest,
    Result,
    StopReason,
    WorkAlreadyExistsError,
    Worker,
    WorkerNotRegisteredError,
    WorkInfo,
)
from workmanager.testing import TestClock, create_test_work_manager, get_test_driver, run_worker

State = WorkInfo.State
T0 = 1_700_000_000_000


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class SuccessWorker(Worker):
    name = "success"

    def do_work(self) -> Result:
        return Result.success({"url": "https://example.invalid/" + str(self.input_data.get("path"))})


class FailureWorker(Worker):
    name = "failure"

    def do_work(self) -> Result:
        return Result.failure({"why": "bad input"})


class RaisingWorker(Worker):
    name = "raising"

    def do_work(self) -> Result:
        raise ValueError("disk full")


class RetryWorker(Worker):
    name = "retry"

    def do_work(self) -> Result:
        return Result.retry()


class BrokenConstructorWorker(Worker):
    name = "broken-constructor"

    def __init__(self, params):
        raise RuntimeError("cannot build")

    def do_work(self) -> Result:  # pragma: no cover - never built
        return Result.success()


class NotAResultWorker(Worker):
    name = "not-a-result"

    def do_work(self):
        return {"oops": True}


class EchoCoroutineWorker(CoroutineWorker):
    name = "echo-coroutine"

    async def do_work(self) -> Result:
        return Result.success({"echo": self.input_data["say"]})


class RaisingCoroutineWorker(CoroutineWorker):
    name = "raising-coroutine"

    async def do_work(self) -> Result:
        raise KeyError("missing")


class IntrospectingWorker(Worker):
    name = "introspecting"

    def do_work(self) -> Result:
        return Result.success(
            {
                "id": str(self.id),
                "tags": sorted(self.tags),
                "attempt": self.run_attempt_count,
                "generation": self.generation,
                "stopped": self.is_stopped,
            }
        )


def info_of(wm, request) -> WorkInfo:
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    return info


# -- results --------------------------------------------------------------------------------------


def test_success_stores_the_output():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker, input_data={"path": "a.jpg"})
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.SUCCEEDED
    assert info.output_data == {"url": "https://example.invalid/a.jpg"}


def test_finished_work_reports_no_next_schedule_time():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    assert info_of(wm, request).next_schedule_time is None


def test_a_run_counts_one_attempt():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    assert info_of(wm, request).run_attempt_count == 1


def test_failure_stores_the_output():
    wm = create_test_work_manager(workers=[FailureWorker])
    request = OneTimeWorkRequest(FailureWorker)
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.FAILED
    assert info.output_data == {"why": "bad input"}


def test_an_exception_fails_the_work_recording_its_type_and_message():
    wm = create_test_work_manager(workers=[RaisingWorker])
    request = OneTimeWorkRequest(RaisingWorker)
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.FAILED
    assert info.output_data["error"] == "ValueError"
    assert info.output_data["message"] == "disk full"


def test_an_exception_is_logged_with_its_traceback(caplog):
    wm = create_test_work_manager(workers=[RaisingWorker])
    with caplog.at_level(logging.ERROR):
        wm.enqueue(OneTimeWorkRequest(RaisingWorker))
    assert any(
        "disk full" in r.getMessage() or (r.exc_info and "disk full" in str(r.exc_info[1]))
        for r in caplog.records
    )


def test_a_worker_whose_constructor_raises_fails_its_work():
    wm = create_test_work_manager(workers=[BrokenConstructorWorker])
    request = OneTimeWorkRequest(BrokenConstructorWorker)
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.FAILED
    assert info.output_data["error"] == "RuntimeError"


def test_a_worker_returning_something_other_than_a_result_fails_its_work():
    wm = create_test_work_manager(workers=[NotAResultWorker])
    request = OneTimeWorkRequest(NotAResultWorker)
    wm.enqueue(request)
    assert info_of(wm, request).state is State.FAILED


def test_work_tags_include_the_worker_name_and_the_request_tags():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker, tags={"upload"})
    wm.enqueue(request)
    assert info_of(wm, request).tags == {"upload", "success"}


def test_the_worker_sees_its_id_tags_and_generation():
    wm = create_test_work_manager(workers=[IntrospectingWorker])
    request = OneTimeWorkRequest(IntrospectingWorker, tags={"t"})
    wm.enqueue(request)
    output = info_of(wm, request).output_data
    assert output["id"] == str(request.id)
    assert output["tags"] == ("introspecting", "t")
    assert output["generation"] == 0
    assert output["stopped"] is False


# -- coroutine workers ----------------------------------------------------------------------------


def test_a_coroutine_worker_runs_and_stores_its_output(closing):
    wm = closing(create_test_work_manager(workers=[EchoCoroutineWorker]))
    request = OneTimeWorkRequest(EchoCoroutineWorker, input_data={"say": "hi"})
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.SUCCEEDED
    assert info.output_data == {"echo": "hi"}


def test_a_coroutine_worker_that_raises_fails_its_work(closing):
    wm = closing(create_test_work_manager(workers=[RaisingCoroutineWorker]))
    request = OneTimeWorkRequest(RaisingCoroutineWorker)
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.FAILED
    assert info.output_data["error"] == "KeyError"


# -- retry and backoff ----------------------------------------------------------------------------


def test_retry_enqueues_the_work_again_after_the_backoff_from_the_retry():
    clock = TestClock(T0)

    class SlowRetryWorker(Worker):
        name = "slow-retry"

        def do_work(self) -> Result:
            clock.advance(timedelta(seconds=5))  # the run takes 5 s
            return Result.retry()

    wm = create_test_work_manager(workers=[SlowRetryWorker], clock=clock)
    request = OneTimeWorkRequest(SlowRetryWorker)
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.ENQUEUED
    assert info.next_schedule_time == at(T0 + 5_000 + 30_000)


def test_retry_increments_the_run_attempt_count():
    wm = create_test_work_manager(workers=[RetryWorker], clock=TestClock(T0))
    request = OneTimeWorkRequest(RetryWorker)
    wm.enqueue(request)
    assert info_of(wm, request).run_attempt_count == 1


def test_retry_stores_no_output_and_no_stop_reason():
    wm = create_test_work_manager(workers=[RetryWorker], clock=TestClock(T0))
    request = OneTimeWorkRequest(RetryWorker)
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.output_data == {}
    assert info.stop_reason is StopReason.NOT_STOPPED


def test_retried_work_does_not_run_again_before_its_backoff_is_met():
    runs = []

    class CountingRetryWorker(Worker):
        name = "counting-retry"

        def do_work(self) -> Result:
            runs.append(self.run_attempt_count)
            return Result.retry()

    wm = create_test_work_manager(workers=[CountingRetryWorker], clock=TestClock(T0))
    wm.enqueue(OneTimeWorkRequest(CountingRetryWorker))
    assert runs == [0]


def test_a_second_retry_waits_twice_the_backoff():
    clock = TestClock(T0)
    wm = create_test_work_manager(workers=[RetryWorker], clock=clock)
    request = OneTimeWorkRequest(RetryWorker, backoff_delay=timedelta(seconds=20))
    wm.enqueue(request)
    clock.advance(timedelta(minutes=1))
    get_test_driver(wm).set_initial_delay_met(request.id)
    info = info_of(wm, request)
    assert info.run_attempt_count == 2
    assert info.next_schedule_time == at(T0 + 60_000 + 40_000)


def test_linear_backoff_grows_by_the_base_delay_each_retry():
    clock = TestClock(T0)
    wm = create_test_work_manager(workers=[RetryWorker], clock=clock)
    request = OneTimeWorkRequest(
        RetryWorker, backoff_policy=BackoffPolicy.LINEAR, backoff_delay=timedelta(seconds=20)
    )
    wm.enqueue(request)
    driver = get_test_driver(wm)
    driver.set_initial_delay_met(request.id)
    driver.set_initial_delay_met(request.id)
    info = info_of(wm, request)
    assert info.run_attempt_count == 3
    assert info.next_schedule_time == at(T0 + 60_000)


def test_a_backoff_delay_below_10_seconds_is_raised_to_10_seconds_with_a_warning(caplog):
    wm = create_test_work_manager(workers=[RetryWorker], clock=TestClock(T0))
    request = OneTimeWorkRequest(RetryWorker, backoff_delay=timedelta(seconds=1))
    with caplog.at_level(logging.WARNING):
        wm.enqueue(request)
    assert info_of(wm, request).next_schedule_time == at(T0 + 10_000)
    assert any("backoff" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_a_backoff_delay_above_5_hours_is_lowered_to_5_hours_with_a_warning(caplog):
    wm = create_test_work_manager(workers=[RetryWorker], clock=TestClock(T0))
    request = OneTimeWorkRequest(RetryWorker, backoff_delay=timedelta(hours=6))
    with caplog.at_level(logging.WARNING):
        wm.enqueue(request)
    assert info_of(wm, request).next_schedule_time == at(T0 + 5 * 3_600_000)
    assert any("backoff" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_the_worker_sees_run_attempt_count_0_first_and_1_on_the_retry():
    seen = []

    class RetryOnceWorker(Worker):
        name = "retry-once"

        def do_work(self) -> Result:
            seen.append(self.run_attempt_count)
            return Result.retry() if self.run_attempt_count == 0 else Result.success()

    wm = create_test_work_manager(workers=[RetryOnceWorker], clock=TestClock(T0))
    request = OneTimeWorkRequest(RetryOnceWorker)
    wm.enqueue(request)
    get_test_driver(wm).set_initial_delay_met(request.id)
    assert seen == [0, 1]
    info = info_of(wm, request)
    assert info.state is State.SUCCEEDED
    assert info.run_attempt_count == 2


def test_set_initial_delay_met_releases_work_waiting_out_a_backoff():
    outcomes = iter([Result.retry(), Result.success({"done": True})])

    class FlakyWorker(Worker):
        name = "flaky"

        def do_work(self) -> Result:
            return next(outcomes)

    wm = create_test_work_manager(workers=[FlakyWorker], clock=TestClock(T0))
    request = OneTimeWorkRequest(FlakyWorker)
    wm.enqueue(request)
    assert info_of(wm, request).state is State.ENQUEUED
    get_test_driver(wm).set_initial_delay_met(request.id)
    info = info_of(wm, request)
    assert info.state is State.SUCCEEDED
    assert info.output_data == {"done": True}


# -- initial delay --------------------------------------------------------------------------------


def test_delayed_work_stays_enqueued_until_its_delay_is_met():
    clock = TestClock(T0)
    wm = create_test_work_manager(workers=[SuccessWorker], clock=clock)
    request = OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(minutes=5))
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.ENQUEUED
    assert info.run_attempt_count == 0


def test_delayed_work_reports_enqueue_time_plus_delay_as_next_schedule_time():
    clock = TestClock(T0)
    clock.advance(timedelta(seconds=7))
    wm = create_test_work_manager(workers=[SuccessWorker], clock=clock)
    request = OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(minutes=5))
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.next_schedule_time == at(T0 + 7_000 + 300_000)
    assert info.next_schedule_time.tzinfo is not None
    assert info.initial_delay == timedelta(minutes=5)


def test_set_initial_delay_met_runs_delayed_work():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    request = OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(minutes=5))
    wm.enqueue(request)
    get_test_driver(wm).set_initial_delay_met(request.id)
    assert info_of(wm, request).state is State.SUCCEEDED


def test_set_initial_delay_met_on_finished_work_is_a_no_op():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    before = info_of(wm, request)
    get_test_driver(wm).set_initial_delay_met(request.id)
    assert info_of(wm, request) == before


def test_set_initial_delay_met_on_unknown_work_raises_value_error():
    import uuid

    wm = create_test_work_manager(workers=[SuccessWorker])
    with pytest.raises(ValueError):
        get_test_driver(wm).set_initial_delay_met(uuid.uuid4())


def test_get_test_driver_refuses_a_manager_that_is_not_a_test_manager(tmp_path):
    from workmanager import WorkManager

    wm = WorkManager(tmp_path / "w.db")
    try:
        with pytest.raises(ValueError):
            get_test_driver(wm)
    finally:
        wm.close()


# -- progress -------------------------------------------------------------------------------------


def test_progress_is_visible_while_running_and_output_is_empty(gate, in_background):
    class ProgressWorker(Worker):
        name = "progress"

        def do_work(self) -> Result:
            self.set_progress({"percent": 50})
            gate.hold()
            return Result.success({"done": True})

    wm = create_test_work_manager(workers=[ProgressWorker])
    request = OneTimeWorkRequest(ProgressWorker)
    in_background(wm.enqueue, request)
    gate.wait_started()
    info = info_of(wm, request)
    assert info.state is State.RUNNING
    assert info.progress == {"percent": 50}
    assert info.output_data == {}
    assert info.run_attempt_count == 1
    assert info.next_schedule_time is None


def test_progress_is_cleared_when_the_work_finishes(gate, in_background):
    class ProgressWorker(Worker):
        name = "progress"

        def do_work(self) -> Result:
            self.set_progress({"percent": 50})
            gate.hold()
            return Result.success({"done": True})

    wm = create_test_work_manager(workers=[ProgressWorker])
    request = OneTimeWorkRequest(ProgressWorker)
    thread = in_background(wm.enqueue, request)
    gate.wait_started()
    gate.release.set()
    thread.join(10)
    info = info_of(wm, request)
    assert info.state is State.SUCCEEDED
    assert info.progress == {}
    assert info.output_data == {"done": True}


def test_a_coroutine_workers_progress_is_visible_while_running(closing, gate, in_background):
    import asyncio

    class AsyncProgressWorker(CoroutineWorker):
        name = "async-progress"

        async def do_work(self) -> Result:
            await self.set_progress_async({"percent": 10})
            await asyncio.to_thread(gate.hold)
            return Result.success()

    wm = closing(create_test_work_manager(workers=[AsyncProgressWorker]))
    request = OneTimeWorkRequest(AsyncProgressWorker)
    in_background(wm.enqueue, request)
    gate.wait_started()
    info = info_of(wm, request)
    assert info.state is State.RUNNING
    assert info.progress == {"percent": 10}


def test_progress_over_the_size_limit_fails_the_work():
    class HugeProgressWorker(Worker):
        name = "huge-progress"

        def do_work(self) -> Result:
            self.set_progress({"blob": "x" * 200})
            return Result.success()

    wm = create_test_work_manager(
        workers=[HugeProgressWorker], configuration=Configuration(max_data_bytes=100)
    )
    request = OneTimeWorkRequest(HugeProgressWorker)
    wm.enqueue(request)
    info = info_of(wm, request)
    assert info.state is State.FAILED
    assert info.output_data["error"] == DataTooLargeError.__name__


# -- enqueue rules --------------------------------------------------------------------------------


def test_enqueue_of_an_unregistered_worker_raises_and_writes_nothing():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(FailureWorker)
    with pytest.raises(WorkerNotRegisteredError, match="failure"):
        wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id) is None
    assert wm.get_work_infos_by_tag("failure") == []


def test_enqueue_by_an_unregistered_name_raises():
    wm = create_test_work_manager(workers=[SuccessWorker])
    with pytest.raises(WorkerNotRegisteredError):
        wm.enqueue(OneTimeWorkRequest("nobody"))


def test_enqueue_by_registered_name_runs_the_registered_worker():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest("success", input_data={"path": "b"})
    wm.enqueue(request)
    assert info_of(wm, request).output_data == {"url": "https://example.invalid/b"}


def test_enqueue_of_a_class_whose_name_is_registered_to_another_class_raises():
    class Impostor(Worker):
        name = "success"

        def do_work(self) -> Result:  # pragma: no cover - never runs
            return Result.failure()

    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(Impostor)
    with pytest.raises(WorkerNotRegisteredError):
        wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id) is None


def test_register_works_as_a_class_decorator():
    wm = create_test_work_manager()

    @wm.register
    class LateWorker(Worker):
        name = "late"

        def do_work(self) -> Result:
            return Result.success()

    request = OneTimeWorkRequest(LateWorker)
    wm.enqueue(request)
    assert info_of(wm, request).state is State.SUCCEEDED


def test_registering_two_classes_under_one_name_raises_value_error_naming_it():
    class Impostor(Worker):
        name = "success"

        def do_work(self) -> Result:  # pragma: no cover - never runs
            return Result.failure()

    wm = create_test_work_manager(workers=[SuccessWorker])
    with pytest.raises(ValueError, match="success"):
        wm.register(Impostor)


def test_work_enqueued_by_a_running_worker_runs_before_the_outer_enqueue_returns():
    wm = create_test_work_manager(workers=[SuccessWorker])
    follow_up = OneTimeWorkRequest(SuccessWorker)

    @wm.register
    class FanOutWorker(Worker):
        name = "fan-out"

        def do_work(self) -> Result:
            wm.enqueue(follow_up)
            return Result.success()

    request = OneTimeWorkRequest(FanOutWorker)
    wm.enqueue(request)
    assert info_of(wm, request).state is State.SUCCEEDED
    assert info_of(wm, follow_up).state is State.SUCCEEDED


def test_enqueue_of_a_list_with_an_unregistered_worker_writes_nothing():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    good = OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(minutes=1))
    bad = OneTimeWorkRequest("nobody")
    with pytest.raises(WorkerNotRegisteredError):
        wm.enqueue([good, bad])
    assert wm.get_work_info_by_id(good.id) is None


def test_enqueue_of_a_list_with_too_large_input_writes_nothing():
    wm = create_test_work_manager(
        workers=[SuccessWorker], configuration=Configuration(max_data_bytes=100), clock=TestClock(T0)
    )
    good = OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(minutes=1))
    bad = OneTimeWorkRequest(SuccessWorker, input_data={"blob": "x" * 200})
    with pytest.raises(DataTooLargeError):
        wm.enqueue([good, bad])
    assert wm.get_work_info_by_id(good.id) is None


def test_enqueue_of_a_list_with_an_already_enqueued_request_writes_nothing():
    wm = create_test_work_manager(workers=[SuccessWorker], clock=TestClock(T0))
    existing = OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(minutes=1))
    wm.enqueue(existing)
    fresh = OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(minutes=1))
    with pytest.raises(WorkAlreadyExistsError):
        wm.enqueue([fresh, existing])
    assert wm.get_work_info_by_id(fresh.id) is None
    assert len(wm.get_work_infos_by_tag("success")) == 1


def test_enqueue_of_a_list_runs_every_request():
    wm = create_test_work_manager(workers=[SuccessWorker, FailureWorker])
    requests = [OneTimeWorkRequest(SuccessWorker), OneTimeWorkRequest(FailureWorker)]
    wm.enqueue(requests)
    assert [info_of(wm, r).state for r in requests] == [State.SUCCEEDED, State.FAILED]


def test_enqueue_of_the_same_request_twice_raises_work_already_exists():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    with pytest.raises(WorkAlreadyExistsError):
        wm.enqueue(request)
    assert info_of(wm, request).state is State.SUCCEEDED


def test_enqueue_of_the_same_request_twice_in_one_list_raises_value_error():
    wm = create_test_work_manager(workers=[SuccessWorker])
    request = OneTimeWorkRequest(SuccessWorker)
    with pytest.raises(ValueError):
        wm.enqueue([request, request])
    assert wm.get_work_info_by_id(request.id) is None


def test_enqueue_of_an_empty_list_raises_value_error():
    wm = create_test_work_manager(workers=[SuccessWorker])
    with pytest.raises(ValueError):
        wm.enqueue([])


# -- run_worker -----------------------------------------------------------------------------------


def test_run_worker_returns_the_workers_result():
    assert run_worker(SuccessWorker, input_data={"path": "a"}) == Result.success(
        {"url": "https://example.invalid/a"}
    )


def test_run_worker_passes_run_attempt_count_and_tags():
    result = run_worker(IntrospectingWorker, tags={"t"}, run_attempt_count=2)
    assert result.output_data["attempt"] == 2
    assert result.output_data["tags"] == ("introspecting", "t")


def test_run_worker_runs_a_coroutine_worker():
    assert run_worker(EchoCoroutineWorker, input_data={"say": "yo"}) == Result.success({"echo": "yo"})


def test_run_worker_returns_retry():
    assert run_worker(RetryWorker) == Result.retry()
