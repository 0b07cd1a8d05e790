"""Constraints gate starting and running; the execution timeout stops ordinary work."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from workmanager import (
    Configuration,
    Constraints,
    CoroutineWorker,
    ForegroundInfo,
    NetworkType,
    OneTimeWorkRequest,
    Result,
    StopReason,
    Worker,
    WorkInfo,
    WorkManager,
)
from workmanager.engine.constraints import FixedTracker
from workmanager.testing import create_test_work_manager, get_test_driver

S = WorkInfo.State
WAIT_S = 10.0
UNMETERED = Constraints(required_network_type=NetworkType.UNMETERED)
CHARGING = Constraints(requires_charging=True)


class Quick(Worker):
    name = "quick"

    def do_work(self) -> Result:
        return Result.success()


started = threading.Event()


#: Why each Patient run was stopped: (work id, reason), in order (a stopped run is re-run at once).
stop_reasons: list[tuple[uuid.UUID, StopReason]] = []


class Patient(Worker):
    """Runs until stopped (or 10 s), then reports how it ended."""

    name = "patient"

    def do_work(self) -> Result:
        if self.input_data.get("foreground"):
            self.set_foreground(ForegroundInfo(title="syncing"))
        started.set()
        for _ in range(1000):
            if self.is_stopped:
                stop_reasons.append((self.id, self.stop_reason))
                return Result.retry()
            threading.Event().wait(0.01)
        return Result.success()


def threaded(tmp_path, tracker: FixedTracker, **config: object) -> WorkManager:
    started.clear()
    return WorkManager(
        tmp_path / "w.db",
        workers=[Quick, Patient],
        configuration=Configuration(constraint_trackers=(tracker,), **config),  # type: ignore[arg-type]
    )


def wait_state(wm: WorkManager, request: OneTimeWorkRequest, state: WorkInfo.State) -> WorkInfo:
    deadline = threading.Event()
    for _ in range(int(WAIT_S / 0.01)):
        info = wm.get_work_info_by_id(request.id)
        if info is not None and info.state is state:
            return info
        deadline.wait(0.01)
    raise AssertionError(f"{request.id} never became {state.name}: {wm.get_work_info_by_id(request.id)}")


def test_in_the_test_manager_work_with_constraints_waits_until_they_are_declared_met():
    wm = create_test_work_manager(workers=[Quick])
    request = OneTimeWorkRequest(Quick, constraints=UNMETERED)
    wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id).state is S.ENQUEUED

    get_test_driver(wm).set_all_constraints_met(request.id)

    assert wm.get_work_info_by_id(request.id).state is S.SUCCEEDED


def test_in_the_test_manager_work_without_constraints_runs_at_once():
    wm = create_test_work_manager(workers=[Quick])
    request = OneTimeWorkRequest(Quick)
    wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id).state is S.SUCCEEDED


def test_work_whose_constraint_is_unmet_waits_and_starts_when_it_holds(tmp_path):
    tracker = FixedTracker(charging=False)
    with threaded(tmp_path, tracker) as wm:
        request = OneTimeWorkRequest(Quick, constraints=CHARGING)
        other = OneTimeWorkRequest(Quick)
        wm.enqueue([request, other])
        assert wm.await_work(other.id, timeout=WAIT_S).state is S.SUCCEEDED
        assert wm.get_work_info_by_id(request.id).state is S.ENQUEUED

        tracker.set(charging=True)
        wm._engine.trackers.refresh()

        assert wm.await_work(request.id, timeout=WAIT_S).state is S.SUCCEEDED


def test_running_work_that_loses_its_constraint_is_stopped_and_enqueued_again(tmp_path):
    tracker = FixedTracker(connected=True, metered=False)
    with threaded(tmp_path, tracker) as wm:
        request = OneTimeWorkRequest(Patient, constraints=UNMETERED)
        wm.enqueue(request)
        assert started.wait(WAIT_S)

        tracker.set(metered=True)
        wm._engine.trackers.refresh()

        info = wait_state(wm, request, S.ENQUEUED)
        assert info.stop_reason is StopReason.CONSTRAINT_CONNECTIVITY
        assert info.run_attempt_count == 1

        started.clear()
        tracker.set(metered=False)
        wm._engine.trackers.refresh()
        assert started.wait(WAIT_S)  # runs again once the network is unmetered again
        assert wm.get_work_info_by_id(request.id).run_attempt_count == 2


def test_ordinary_work_running_past_the_execution_timeout_is_stopped_with_timeout(tmp_path):
    tracker = FixedTracker()
    with threaded(tmp_path, tracker, max_execution_time=timedelta(milliseconds=300)) as wm:
        request = OneTimeWorkRequest(Patient)
        wm.enqueue(request)
        assert started.wait(WAIT_S)

        # A stopped run goes back to ENQUEUED and is claimed again at once: its ENQUEUED moment
        # is too short to poll for, so the worker records why it was stopped.
        def mine() -> list[StopReason]:  # other tests' runs may still be stopping in the background
            return [reason for work_id, reason in stop_reasons if work_id == request.id]

        for _ in range(int(WAIT_S / 0.01)):
            if mine():
                break
            threading.Event().wait(0.01)

        assert mine()[:1] == [StopReason.TIMEOUT]
        assert not wm.get_work_info_by_id(request.id).state.is_finished  # stopped, not failed


def test_long_running_work_that_called_set_foreground_is_exempt_from_the_timeout(tmp_path):
    tracker = FixedTracker()
    with threaded(tmp_path, tracker, max_execution_time=timedelta(milliseconds=300)) as wm:
        request = OneTimeWorkRequest(Patient, input_data={"foreground": True})
        wm.enqueue(request)
        assert started.wait(WAIT_S)
        threading.Event().wait(0.8)

        assert wm.get_work_info_by_id(request.id).state is S.RUNNING
        wm.cancel_work_by_id(request.id)


hold = threading.Event()


class Exporter(Worker):
    name = "exporter"

    def do_work(self) -> Result:
        self.set_foreground(ForegroundInfo(title="Exporting", text="2 GB"))
        self.set_progress({"done": 3})
        started.set()
        hold.wait(WAIT_S)
        return Result.success()


def test_long_running_work_shows_its_title_text_and_progress_while_it_runs(tmp_path):
    hold.clear()
    started.clear()
    wm = WorkManager(
        tmp_path / "w.db", workers=[Exporter], configuration=Configuration(constraint_trackers=())
    )
    with wm:
        request = OneTimeWorkRequest(Exporter)
        wm.enqueue(request)
        assert started.wait(WAIT_S)

        info = wm.get_work_info_by_id(request.id)
        assert info.state is S.RUNNING
        assert info.foreground_info == ForegroundInfo(title="Exporting", text="2 GB")
        assert info.progress == {"done": 3}

        hold.set()
        finished = wm.await_work(request.id, timeout=WAIT_S)
        assert finished.foreground_info is None
        assert finished.progress == {}


GPU = Constraints(custom={"gpu-free"})


def test_a_custom_constraint_gates_work_until_its_tracker_says_it_holds(tmp_path):
    tracker = FixedTracker(**{"gpu-free": False})
    with threaded(tmp_path, tracker) as wm:
        request = OneTimeWorkRequest(Quick, constraints=GPU)
        other = OneTimeWorkRequest(Quick)
        wm.enqueue([request, other])
        wm.await_work(other.id, timeout=WAIT_S)
        info = wm.get_work_info_by_id(request.id)
        assert info.state is S.ENQUEUED
        assert info.constraints.custom == {"gpu-free"}

        tracker.set(**{"gpu-free": True})
        wm._engine.trackers.refresh()

        assert wm.await_work(request.id, timeout=WAIT_S).state is S.SUCCEEDED


def test_running_work_that_loses_a_custom_constraint_is_stopped_with_constraint_custom(tmp_path):
    tracker = FixedTracker(**{"gpu-free": True})
    with threaded(tmp_path, tracker) as wm:
        request = OneTimeWorkRequest(Patient, constraints=GPU)
        wm.enqueue(request)
        assert started.wait(WAIT_S)

        tracker.set(**{"gpu-free": False})
        wm._engine.trackers.refresh()

        assert wait_state(wm, request, S.ENQUEUED).stop_reason is StopReason.CONSTRAINT_CUSTOM
        wm.cancel_work_by_id(request.id)


def test_a_custom_constraint_no_tracker_knows_is_refused_at_enqueue(tmp_path):
    import pytest

    with threaded(tmp_path, FixedTracker()) as wm:
        request = OneTimeWorkRequest(Quick, constraints=Constraints(custom={"quantum-ready"}))
        with pytest.raises(ValueError, match=r"constraints\.custom.*quantum-ready"):
            wm.enqueue(request)
        assert wm.get_work_info_by_id(request.id) is None


def test_in_the_test_manager_a_custom_constraint_waits_until_declared_met():
    wm = create_test_work_manager(workers=[Quick])
    request = OneTimeWorkRequest(Quick, constraints=GPU)
    wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id).state is S.ENQUEUED
    get_test_driver(wm).set_all_constraints_met(request.id)
    assert wm.get_work_info_by_id(request.id).state is S.SUCCEEDED


cancelled = threading.Event()


class Fetch(CoroutineWorker):
    name = "fetch"

    async def do_work(self) -> Result:
        import asyncio

        started.set()
        try:
            await asyncio.sleep(WAIT_S)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Result.success()


def test_stopping_a_coroutine_worker_cancels_its_coroutine(tmp_path):
    started.clear()
    cancelled.clear()
    wm = WorkManager(tmp_path / "w.db", workers=[Fetch], configuration=Configuration(constraint_trackers=()))
    with wm:
        request = OneTimeWorkRequest(Fetch)
        wm.enqueue(request)
        assert started.wait(WAIT_S)

        wm.cancel_work_by_id(request.id)

        assert cancelled.wait(WAIT_S)  # a real cancellation at the await, not a flag to poll
        assert wm.get_work_info_by_id(request.id).state is S.CANCELLED
