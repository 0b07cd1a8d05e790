"""The dispatcher's runs: plain Workers on the engine's own threads, anything else through
start_work; and which of its turns wait for the disk."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from workmanager import Configuration, OneTimeWorkRequest, Result, Worker, WorkInfo, WorkManager

State = WorkInfo.State
seen_threads: list[str] = []
barrier = threading.Barrier(3, timeout=20)


class WhereAmI(Worker):
    name = "where-am-i"

    def do_work(self) -> Result:
        seen_threads.append(threading.current_thread().name)
        return Result.success()


class MeetTheOthers(Worker):
    name = "meet"

    def do_work(self) -> Result:
        barrier.wait()  # returns only once three runs wait here at the same time
        return Result.success()


class OwnStart(Worker):
    name = "own-start"

    def do_work(self) -> Result:
        return Result.failure({"by": "do_work"})

    def start_work(self) -> Future[Result]:
        future: Future[Result] = Future()
        future.set_result(Result.success({"by": "start_work"}))
        return future


class Crashing(Worker):
    name = "crashing"

    def do_work(self) -> Result:
        raise KeyError("gone")


class SlowToBuild(Worker):
    """A worker whose constructor waits until the test lets it go on."""

    name = "slow-to-build"
    building = threading.Event()
    go_on = threading.Event()
    built_on: list[str] = []
    ran_on: list[str] = []

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        SlowToBuild.built_on.append(threading.current_thread().name)
        SlowToBuild.building.set()
        SlowToBuild.go_on.wait(20)

    def do_work(self) -> Result:
        SlowToBuild.ran_on.append(threading.current_thread().name)
        return Result.success()


@pytest.fixture
def slow_to_build() -> Iterator[type[SlowToBuild]]:
    SlowToBuild.building.clear()
    SlowToBuild.go_on.clear()
    SlowToBuild.built_on.clear()
    SlowToBuild.ran_on.clear()
    yield SlowToBuild
    SlowToBuild.go_on.set()


def _enqueue_until_built(wm: WorkManager) -> uuid.UUID:
    """Enqueue a SlowToBuild; return its id once its constructor is running."""
    request = OneTimeWorkRequest(SlowToBuild)
    wm.enqueue(request)
    assert SlowToBuild.building.wait(20)
    return request.id


@pytest.fixture
def wm(tmp_path: Path) -> Iterator[WorkManager]:
    manager = WorkManager(
        str(tmp_path / "w.db"),
        workers=[WhereAmI, MeetTheOthers, OwnStart, Crashing, SlowToBuild],
        configuration=Configuration(max_concurrency=3, expedited_reserved_slots=0),
    )
    manager.start()
    yield manager
    manager.close()


def test_a_plain_workers_do_work_runs_on_a_workmanager_worker_thread(wm: WorkManager) -> None:
    request = OneTimeWorkRequest(WhereAmI)
    wm.enqueue(request)

    assert wm.await_work(request.id, timeout=20).state is State.SUCCEEDED
    assert seen_threads[-1].startswith("workmanager-worker")


def test_a_plain_worker_is_built_on_the_thread_that_runs_it_not_the_dispatchers(
    wm: WorkManager, slow_to_build: type[SlowToBuild]
) -> None:
    work_id = _enqueue_until_built(wm)
    slow_to_build.go_on.set()

    assert wm.await_work(work_id, timeout=20).state is State.SUCCEEDED
    assert slow_to_build.built_on == slow_to_build.ran_on
    assert slow_to_build.ran_on[0].startswith("workmanager-worker")


def test_work_cancelled_while_its_worker_is_built_never_runs(
    wm: WorkManager, slow_to_build: type[SlowToBuild]
) -> None:
    work_id = _enqueue_until_built(wm)

    wm.cancel_work_by_id(work_id)
    slow_to_build.go_on.set()

    assert wm.await_work(work_id, timeout=20).state is State.CANCELLED
    wm.stop()  # waits for the run to end: had do_work been called, it would have by now
    assert slow_to_build.ran_on == []


def test_work_released_at_shutdown_while_its_worker_is_built_never_runs_here(
    wm: WorkManager, slow_to_build: type[SlowToBuild]
) -> None:
    work_id = _enqueue_until_built(wm)

    wm.stop(grace=0.1)  # the run has not started: it goes back to the queue
    slow_to_build.go_on.set()

    info = wm.get_work_info_by_id(work_id)
    assert info is not None and info.state is State.ENQUEUED and info.run_attempt_count == 1
    time.sleep(0.5)  # what must not happen has no event to wait for: give do_work time to follow
    assert slow_to_build.ran_on == []


def test_as_many_plain_workers_run_at_once_as_the_concurrency_limit(wm: WorkManager) -> None:
    requests = [OneTimeWorkRequest(MeetTheOthers) for _ in range(3)]
    wm.enqueue(requests)

    assert [wm.await_work(r.id, timeout=30).state for r in requests] == [State.SUCCEEDED] * 3


def test_a_worker_that_overrides_start_work_is_started_through_it(wm: WorkManager) -> None:
    request = OneTimeWorkRequest(OwnStart)
    wm.enqueue(request)

    info = wm.await_work(request.id, timeout=20)
    assert info.state is State.SUCCEEDED
    assert info.output_data == {"by": "start_work"}


def test_a_plain_worker_that_raises_fails_with_the_error_named(wm: WorkManager) -> None:
    request = OneTimeWorkRequest(Crashing)
    wm.enqueue(request)

    info = wm.await_work(request.id, timeout=20)
    assert info.state is State.FAILED
    assert info.output_data["error"] == "KeyError"


def test_a_turn_that_only_claims_skips_the_disk_wait_and_one_that_records_outcomes_does_not(
    tmp_path: Path,
) -> None:
    manager = WorkManager(str(tmp_path / "d.db"), workers=[WhereAmI])
    storage = manager._storage
    turns: list[tuple[bool, bool]] = []  # (durable, recorded an outcome)
    transaction = storage.transaction

    @contextmanager
    def recording(*, durable: bool = True) -> Iterator[Any]:
        with transaction(durable=durable) as tx:
            succeed_many = tx.work_succeed_many
            recorded = []

            def succeed(*args: Any, **kwargs: Any) -> Any:
                recorded.append(True)
                return succeed_many(*args, **kwargs)

            tx.work_succeed_many = succeed  # type: ignore[method-assign]
            try:
                yield tx
            finally:
                tx.work_succeed_many = succeed_many  # type: ignore[method-assign]
        turns.append((durable, bool(recorded)))

    storage.transaction = recording  # type: ignore[method-assign]
    manager.start()
    try:
        request = OneTimeWorkRequest(WhereAmI)
        manager.enqueue(request)
        assert manager.await_work(request.id, timeout=20).state is State.SUCCEEDED
    finally:
        manager.close()

    assert (False, False) in turns  # the claim
    assert all(durable for durable, recorded in turns if recorded)
    assert any(recorded for _, recorded in turns)
