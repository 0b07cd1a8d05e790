"""Testing helpers, shipped to users and used by workmanager's own tests.

``create_test_work_manager`` gives an in-memory WorkManager (the same SQL as
production) whose work runs to its end inside the call that made it runnable, so
a test reads the final WorkInfo right after, with no sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from workmanager.clock import TestClock
from workmanager.config import Configuration
from workmanager.data import Data, DataLike
from workmanager.engine.constraints import FixedTracker  # the constraint fake: FixedTracker(charging=False)
from workmanager.info import State
from workmanager.manager import WorkManager
from workmanager.worker import CoroutineWorker, ListenableWorker, Result, WorkerParameters

__all__ = [
    "FixedTracker",
    "TestClock",
    "TestDriver",
    "create_test_work_manager",
    "get_test_driver",
    "run_worker",
]


def create_test_work_manager(
    workers: Iterable[type[ListenableWorker]] = (),
    *,
    configuration: Configuration | None = None,
    clock: TestClock | None = None,
) -> WorkManager:
    """An in-memory WorkManager that runs work synchronously (Android's SynchronousExecutor mode)."""
    config = configuration or Configuration()
    if clock is not None:
        from dataclasses import replace

        config = replace(config, clock=clock)
    return WorkManager(":memory:", workers=workers, configuration=config, _inline=True)


class TestDriver:
    """Pretends delays have passed, as Android's TestDriver does."""

    __test__ = False  # not a pytest test class

    def __init__(self, wm: WorkManager) -> None:
        self._wm = wm

    def _require(self, id: uuid.UUID) -> State | None:
        info = self._wm.get_work_info_by_id(id)
        if info is None:
            raise ValueError(f"TestDriver: no work with id {id}")
        return info.state

    def set_initial_delay_met(self, id: uuid.UUID) -> None:
        """The work's initial delay (or the backoff it waits out) is over: it runs now."""
        state = self._require(id)
        if state is None or state.is_finished:
            return
        now = self._wm._clock.now_ms()
        with self._wm._storage.transaction() as tx:
            tx.work_set_next_run_time_if_enqueued(str(id), now)
        self._wm._changed()

    def set_all_constraints_met(self, id: uuid.UUID) -> None:
        """The work's constraints count as met from now on: it runs when its delays allow."""
        state = self._require(id)
        if state is None or state.is_finished:
            return
        self._wm._engine.constraints_met_ids.add(str(id))
        info = self._wm.get_work_info_by_id(id)
        if info is not None and info.state is State.ENQUEUED and info.next_schedule_time is None:
            # Waiting for a trigger path to change: that counts as met too.
            with self._wm._storage.transaction() as tx:
                tx.work_set_next_run_time_if_enqueued(str(id), self._wm._clock.now_ms())
        self._wm._changed()

    def set_period_delay_met(self, id: uuid.UUID) -> None:
        """The current period (or the backoff of a retried periodic run) is over: one more run now."""
        info = self._wm.get_work_info_by_id(id)
        if info is None:
            raise ValueError(f"TestDriver: no work with id {id}")
        if info.periodicity_info is None:
            raise ValueError(f"TestDriver.set_period_delay_met: work {id} is not periodic")
        if info.state.is_finished:
            return
        now = self._wm._clock.now_ms()
        with self._wm._storage.transaction() as tx:
            tx.work_set_next_run_time_if_enqueued(str(id), now)
        self._wm._changed()


def get_test_driver(wm: WorkManager) -> TestDriver:
    """The driver of a test WorkManager."""
    if not wm._inline:
        raise ValueError("get_test_driver needs a WorkManager from create_test_work_manager()")
    return TestDriver(wm)


def run_worker(
    worker: type[ListenableWorker],
    *,
    input_data: DataLike = None,
    tags: Iterable[str] = (),
    run_attempt_count: int = 0,
    generation: int = 0,
    id: uuid.UUID | None = None,
) -> Result:
    """Build one worker instance and run it directly, without a database."""
    params = WorkerParameters(
        id=id or uuid.uuid4(),
        input_data=Data.of(input_data),
        tags=frozenset(tags) | {worker.name},
        run_attempt_count=run_attempt_count,
        generation=generation,
    )
    if issubclass(worker, CoroutineWorker):
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        params.event_loop = loop
        try:
            return worker(params).start_work().result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
    with ThreadPoolExecutor(1) as executor:
        params.background_executor = executor
        return worker(params).start_work().result()
