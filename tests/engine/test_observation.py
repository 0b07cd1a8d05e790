"""Observing work: queries, await_work, flows and the asyncio twins (android-reference 1.8, 2.19)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from workmanager import (
    OneTimeWorkRequest,
    Result,
    Worker,
    WorkInfo,
    WorkManager,
    WorkNotFoundError,
    WorkQuery,
)
from workmanager.testing import TestClock, create_test_work_manager, get_test_driver

State = WorkInfo.State
T0 = 1_700_000_000_000
#: Bound for one awaited emission; reached only when a test is already failing.
STEP_S = 10.0


class SuccessWorker(Worker):
    name = "success"

    def do_work(self) -> Result:
        return Result.success({"ok": True})


class FailureWorker(Worker):
    name = "failure"

    def do_work(self) -> Result:
        return Result.failure()


def delayed(**options: Any) -> OneTimeWorkRequest:
    return OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(hours=1), **options)


async def next_of(flow: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(flow), STEP_S)


def ids(infos: list[WorkInfo]) -> set[uuid.UUID]:
    return {i.id for i in infos}


@pytest.fixture
def wm(closing) -> WorkManager:
    return closing(create_test_work_manager(workers=[SuccessWorker, FailureWorker], clock=TestClock(T0)))


# -- one-shot queries -----------------------------------------------------------------------------


def test_get_work_info_by_id_of_unknown_work_is_none(wm):
    assert wm.get_work_info_by_id(uuid.uuid4()) is None


def test_work_info_compares_by_value(wm):
    request = delayed(tags={"a"})
    wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id) == wm.get_work_info_by_id(request.id)


def test_work_info_of_enqueued_one_time_work_has_no_periodicity(wm):
    request = delayed()
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    assert info.periodicity_info is None
    assert info.generation == 0
    assert info.output_data == {}
    assert info.progress == {}


def test_get_work_infos_by_tag_returns_all_work_with_the_tag_finished_or_not(wm):
    waiting, done, other = delayed(tags={"t"}), OneTimeWorkRequest(SuccessWorker, tags={"t"}), delayed()
    wm.enqueue([waiting, done, other])
    assert ids(wm.get_work_infos_by_tag("t")) == {waiting.id, done.id}


def test_get_work_infos_by_tag_finds_work_by_its_worker_name(wm):
    request = delayed()
    wm.enqueue(request)
    assert ids(wm.get_work_infos_by_tag("success")) == {request.id}


def test_get_work_infos_by_unknown_tag_is_empty(wm):
    wm.enqueue(delayed(tags={"t"}))
    assert wm.get_work_infos_by_tag("nope") == []


def test_work_query_ids_are_or_ed(wm):
    a, b, c = delayed(), delayed(), delayed()
    wm.enqueue([a, b, c])
    assert ids(wm.get_work_infos(WorkQuery(ids=[a.id, b.id]))) == {a.id, b.id}


def test_work_query_tags_are_or_ed(wm):
    x, y, z = delayed(tags={"x"}), delayed(tags={"y"}), delayed(tags={"z"})
    wm.enqueue([x, y, z])
    assert ids(wm.get_work_infos(WorkQuery(tags=["x", "y"]))) == {x.id, y.id}


def test_work_query_states_are_or_ed(wm):
    waiting, succeeded, failed = (
        delayed(),
        OneTimeWorkRequest(SuccessWorker),
        OneTimeWorkRequest(FailureWorker),
    )
    wm.enqueue([waiting, succeeded, failed])
    found = wm.get_work_infos(WorkQuery(states=[State.SUCCEEDED, State.FAILED]))
    assert ids(found) == {succeeded.id, failed.id}


def test_work_query_components_are_and_ed(wm):
    tagged_waiting = delayed(tags={"x"})
    tagged_done = OneTimeWorkRequest(SuccessWorker, tags={"x"})
    untagged_done = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue([tagged_waiting, tagged_done, untagged_done])
    found = wm.get_work_infos(WorkQuery(tags=["x"], states=[State.SUCCEEDED]))
    assert ids(found) == {tagged_done.id}


def test_work_query_ids_and_tags_must_both_match(wm):
    a, b = delayed(tags={"x"}), delayed(tags={"y"})
    wm.enqueue([a, b])
    assert wm.get_work_infos(WorkQuery(ids=[a.id], tags=["y"])) == []


def test_work_query_for_an_unknown_unique_name_finds_nothing(wm):
    wm.enqueue(delayed())
    assert wm.get_work_infos(WorkQuery(unique_work_names=["nobody"])) == []


# -- await_work -----------------------------------------------------------------------------------


def test_await_work_returns_the_info_of_finished_work(wm):
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    info = wm.await_work(request.id, timeout=STEP_S)
    assert info.state is State.SUCCEEDED
    assert info.output_data == {"ok": True}


def test_await_work_waits_for_work_finishing_in_another_thread(closing, gate, in_background):
    class BlockingWorker(Worker):
        name = "blocking"

        def do_work(self) -> Result:
            gate.hold()
            return Result.success({"late": True})

    wm = closing(create_test_work_manager(workers=[BlockingWorker]))
    request = OneTimeWorkRequest(BlockingWorker)
    in_background(wm.enqueue, request)
    gate.wait_started()
    gate.release.set()
    assert wm.await_work(request.id, timeout=STEP_S).output_data == {"late": True}


def test_await_work_of_unknown_work_raises_work_not_found(wm):
    with pytest.raises(WorkNotFoundError):
        wm.await_work(uuid.uuid4(), timeout=STEP_S)


def test_await_work_raises_timeout_error_when_the_work_does_not_finish(closing):
    wm = closing(create_test_work_manager(workers=[SuccessWorker]))
    request = delayed()
    wm.enqueue(request)
    with pytest.raises(TimeoutError):
        wm.await_work(request.id, timeout=0.05)


@pytest.mark.timeout(5)
def test_await_work_timeout_is_real_time_even_with_a_test_clock(wm):
    request = delayed()
    wm.enqueue(request)
    with pytest.raises(TimeoutError):
        wm.await_work(request.id, timeout=0.05)


def test_await_work_async_returns_the_info_of_finished_work(wm):
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    info = asyncio.run(wm.await_work_async(request.id, timeout=STEP_S))
    assert info.state is State.SUCCEEDED


def test_await_work_async_raises_timeout_error_when_the_work_does_not_finish(wm):
    request = delayed()
    wm.enqueue(request)
    with pytest.raises(TimeoutError):
        asyncio.run(wm.await_work_async(request.id, timeout=0.05))


def test_await_work_async_of_unknown_work_raises_work_not_found(wm):
    with pytest.raises(WorkNotFoundError):
        asyncio.run(wm.await_work_async(uuid.uuid4(), timeout=STEP_S))


# -- flows ----------------------------------------------------------------------------------------


def test_a_work_info_flow_emits_the_current_value_then_each_change(wm):
    request = delayed()
    driver = get_test_driver(wm)

    async def scenario() -> list[State | None]:
        flow = wm.get_work_info_by_id_flow(request.id)
        seen = [await next_of(flow)]
        await wm.enqueue_async(request)
        seen.append(await next_of(flow))
        await asyncio.to_thread(driver.set_initial_delay_met, request.id)
        seen.append(await next_of(flow))
        await flow.aclose()
        return [None if info is None else info.state for info in seen]

    assert asyncio.run(scenario()) == [None, State.ENQUEUED, State.SUCCEEDED]


def test_a_work_info_flow_emits_only_when_the_value_changes(wm):
    request, unrelated = delayed(), delayed()
    wm.enqueue(request)

    async def scenario() -> list[State]:
        flow = wm.get_work_info_by_id_flow(request.id)
        first = await next_of(flow)
        pending = asyncio.ensure_future(next_of(flow))
        await wm.enqueue_async(unrelated)  # a commit that does not change this work
        await wm.cancel_work_by_id_async(request.id)
        second = await pending
        await flow.aclose()
        return [first.state, second.state]

    assert asyncio.run(scenario()) == [State.ENQUEUED, State.CANCELLED]


def test_a_work_info_flow_emits_none_when_the_work_is_pruned(wm):
    request = delayed()
    wm.enqueue(request)
    wm.cancel_work_by_id(request.id)

    async def scenario() -> list[State | None]:
        flow = wm.get_work_info_by_id_flow(request.id)
        seen = [await next_of(flow)]
        await wm.prune_work_async()
        seen.append(await next_of(flow))
        await flow.aclose()
        return [None if info is None else info.state for info in seen]

    assert asyncio.run(scenario()) == [State.CANCELLED, None]


def test_a_tag_flow_emits_the_current_list_then_each_change(wm):
    request = delayed(tags={"watched"})

    async def scenario() -> list[list[State]]:
        flow = wm.get_work_infos_by_tag_flow("watched")
        seen = [await next_of(flow)]
        await wm.enqueue_async(request)
        seen.append(await next_of(flow))
        await wm.cancel_all_work_by_tag_async("watched")
        seen.append(await next_of(flow))
        await flow.aclose()
        return [[info.state for info in infos] for infos in seen]

    assert asyncio.run(scenario()) == [[], [State.ENQUEUED], [State.CANCELLED]]


def test_a_query_flow_emits_the_current_list_then_each_change(wm):
    request = delayed(tags={"q"})

    async def scenario() -> list[set[uuid.UUID]]:
        flow = wm.get_work_infos_flow(WorkQuery(tags=["q"], states=[State.ENQUEUED]))
        seen = [await next_of(flow)]
        await wm.enqueue_async(request)
        seen.append(await next_of(flow))
        await wm.cancel_all_work_async()
        seen.append(await next_of(flow))
        await flow.aclose()
        return [ids(infos) for infos in seen]

    assert asyncio.run(scenario()) == [set(), {request.id}, set()]


def test_a_flow_on_a_started_work_manager_shows_progress_then_the_result(tmp_path, gate):
    class ProgressWorker(Worker):
        name = "progress"

        def do_work(self) -> Result:
            self.set_progress({"percent": 50})
            gate.hold()
            return Result.success({"done": True})

    wm = WorkManager(tmp_path / "w.db", workers=[ProgressWorker])
    request = OneTimeWorkRequest(ProgressWorker)

    async def scenario() -> list[WorkInfo]:
        flow = wm.get_work_info_by_id_flow(request.id)
        seen = []
        await wm.enqueue_async(request)
        while not seen or seen[-1].progress != {"percent": 50}:
            seen.append(await next_of(flow))
        gate.release.set()
        while not seen[-1].state.is_finished:
            seen.append(await next_of(flow))
        await flow.aclose()
        return seen

    try:
        wm.start()
        seen = asyncio.run(scenario())
    finally:
        gate.release.set()
        wm.close()
    running = [i for i in seen if i.progress == {"percent": 50}]
    assert running[0].state is State.RUNNING
    assert seen[-1].state is State.SUCCEEDED
    assert seen[-1].progress == {}
    assert seen[-1].output_data == {"done": True}
    assert all(a != b for a, b in itertools.pairwise(seen))


# -- asyncio twins --------------------------------------------------------------------------------


def test_enqueue_async_and_get_work_info_by_id_async_work(wm):
    request = OneTimeWorkRequest(SuccessWorker)

    async def scenario() -> WorkInfo | None:
        await wm.enqueue_async(request)
        return await wm.get_work_info_by_id_async(request.id)

    info = asyncio.run(scenario())
    assert info is not None
    assert info.state is State.SUCCEEDED


def test_get_work_infos_by_tag_async_and_get_work_infos_async_match_the_blocking_calls(wm):
    wm.enqueue([delayed(tags={"t"}), OneTimeWorkRequest(SuccessWorker, tags={"t"})])

    async def scenario() -> tuple[list[WorkInfo], list[WorkInfo]]:
        by_tag = await wm.get_work_infos_by_tag_async("t")
        by_query = await wm.get_work_infos_async(WorkQuery(tags=["t"]))
        return by_tag, by_query

    by_tag, by_query = asyncio.run(scenario())
    assert by_tag == wm.get_work_infos_by_tag("t")
    assert by_query == wm.get_work_infos(WorkQuery(tags=["t"]))


def test_get_work_infos_for_unique_work_async_of_an_unknown_name_is_empty(wm):
    assert asyncio.run(wm.get_work_infos_for_unique_work_async("nobody")) == []


def test_cancel_work_by_id_async_cancels(wm):
    request = delayed()
    wm.enqueue(request)
    asyncio.run(wm.cancel_work_by_id_async(request.id))
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    assert info.state is State.CANCELLED


def test_cancel_all_work_by_tag_async_and_cancel_all_work_async_cancel(wm):
    tagged, other = delayed(tags={"t"}), delayed()
    wm.enqueue([tagged, other])
    asyncio.run(wm.cancel_all_work_by_tag_async("t"))
    assert [wm.get_work_info_by_id(r.id).state for r in (tagged, other)] == [State.CANCELLED, State.ENQUEUED]
    asyncio.run(wm.cancel_all_work_async())
    assert wm.get_work_info_by_id(other.id).state is State.CANCELLED


def test_prune_work_async_prunes(wm):
    request = OneTimeWorkRequest(SuccessWorker)
    wm.enqueue(request)
    asyncio.run(wm.prune_work_async())
    assert wm.get_work_info_by_id(request.id) is None


#: Every blocking call of api.md that is built so far.
BLOCKING_CALLS = [
    "enqueue",
    "get_work_info_by_id",
    "get_work_infos_by_tag",
    "get_work_infos_for_unique_work",
    "get_work_infos",
    "await_work",
    "cancel_work_by_id",
    "cancel_all_work_by_tag",
    "cancel_unique_work",
    "cancel_all_work",
    "prune_work",
    "start",
    "stop",
]


@pytest.mark.parametrize("name", BLOCKING_CALLS)
def test_every_blocking_call_has_an_async_twin(name):
    assert asyncio.iscoroutinefunction(getattr(WorkManager, f"{name}_async", None))


@pytest.mark.parametrize(
    "name",
    ["get_work_info_by_id", "get_work_infos_by_tag", "get_work_infos_for_unique_work", "get_work_infos"],
)
def test_every_get_query_has_a_flow(name):
    assert callable(getattr(WorkManager, f"{name}_flow", None))
