"""PostgreSQL: dispatchers hear work changes only; a process that watches work hears claims
and successes too (they go on a channel of their own, see storage/postgres)."""

from __future__ import annotations

import asyncio
import time

from workmanager import OneTimeWorkRequest, Result, Worker, WorkInfo, WorkManager

S = WorkInfo.State


class Noop(Worker):
    name = "noop"

    def do_work(self) -> Result:
        return Result.success()


def listeners_of(wm: WorkManager) -> list:  # type: ignore[type-arg]
    listeners = list(wm._storage._listeners)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not all(listener.connected for listener in listeners) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert listeners and all(listener.connected for listener in listeners)
    return listeners


def test_a_dispatcher_listens_to_work_changes_only(postgres_url: str) -> None:
    worker = WorkManager(postgres_url, workers=[Noop])
    try:
        worker.start()
        assert not any(listener._hears_state.is_set() for listener in listeners_of(worker))
    finally:
        worker.close()


def test_await_work_in_another_process_hears_the_workers_success(postgres_url: str) -> None:
    worker = WorkManager(postgres_url, workers=[Noop])
    observer = WorkManager(postgres_url, workers=[Noop])
    try:
        worker.start()
        request = OneTimeWorkRequest(Noop)
        observer.enqueue(request)
        assert observer.await_work(request.id, timeout=30).state is S.SUCCEEDED
        assert all(listener._hears_state.is_set() for listener in listeners_of(observer))
    finally:
        observer.close()
        worker.close()


def test_a_flow_joins_the_channel_of_changes_of_state(postgres_url: str) -> None:
    observer = WorkManager(postgres_url, workers=[Noop])
    try:
        request = OneTimeWorkRequest(Noop)
        observer.enqueue(request)

        async def first() -> WorkInfo | None:
            flow = observer.get_work_info_by_id_flow(request.id)
            return await asyncio.wait_for(anext(flow), 30)

        info = asyncio.run(first())
        assert info is not None and info.state is S.ENQUEUED
        assert all(listener._hears_state.is_set() for listener in listeners_of(observer))
    finally:
        observer.close()
