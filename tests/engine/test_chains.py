"""Chains and joins: WorkContinuation, data passing along, and both cascades
(android-reference 1.7, 2.2, 2.3, 2.17)."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from workmanager import (
    ArrayCreatingInputMerger,
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
from workmanager.clock import ms_to_datetime
from workmanager.continuation import CombineContinuationsWorker
from workmanager.testing import TestClock, create_test_work_manager, get_test_driver

State = WorkInfo.State
T0 = 1_700_000_000_000
ran: list[str] = []
_ran_lock = threading.Lock()


class Echo(Worker):
    """Records its label, then succeeds with the rest of its (merged) input as output."""

    name = "echo"

    def do_work(self) -> Result:
        with _ran_lock:
            ran.append(str(self.input_data.get("label", self.id)))
        return Result.success({k: v for k, v in self.input_data.items() if k != "label"})


class Emit(Worker):
    """Succeeds with ``input["out"]`` (a dict) as output, nothing else."""

    name = "emit"

    def do_work(self) -> Result:
        out = self.input_data.get("out_key")
        return Result.success({str(out): self.input_data["out_value"]} if out else {})


class Fail(Worker):
    name = "fail"

    def do_work(self) -> Result:
        return Result.failure({"why": "broken"})


@pytest.fixture(autouse=True)
def _clear_ran():
    ran.clear()


def make() -> WorkManager:
    return create_test_work_manager(workers=[Echo, Emit, Fail], clock=TestClock(T0))


def echo(label: str, **options) -> OneTimeWorkRequest:
    return OneTimeWorkRequest(Echo, input_data={"label": label}, **options)


def emit(key: str, value, **options) -> OneTimeWorkRequest:
    return OneTimeWorkRequest(Emit, input_data={"out_key": key, "out_value": value}, **options)


def later(label: str) -> OneTimeWorkRequest:
    """Waits an hour (so it stays ENQUEUED) until the test driver says the delay is met."""
    return echo(label, initial_delay=timedelta(hours=1))


def state(wm: WorkManager, request: OneTimeWorkRequest) -> State | None:
    info = wm.get_work_info_by_id(request.id)
    return None if info is None else info.state


def info(wm: WorkManager, request: OneTimeWorkRequest) -> WorkInfo:
    found = wm.get_work_info_by_id(request.id)
    assert found is not None
    return found


# -- chains run in order -------------------------------------------------------------------------------


def test_a_chain_runs_each_step_after_the_previous_one_succeeded():
    wm = make()
    a, b, c = echo("a"), echo("b"), echo("c")
    wm.begin_with(a).then(b).then(c).enqueue()
    assert ran == ["a", "b", "c"]
    assert [state(wm, r) for r in (a, b, c)] == [State.SUCCEEDED] * 3


def test_dependents_are_blocked_until_their_prerequisite_succeeds():
    wm = make()
    a, b, c = later("a"), echo("b"), echo("c")
    wm.begin_with(a).then(b).then(c).enqueue()
    assert [state(wm, r) for r in (a, b, c)] == [State.ENQUEUED, State.BLOCKED, State.BLOCKED]
    assert info(wm, b).next_schedule_time is None

    get_test_driver(wm).set_initial_delay_met(a.id)

    assert ran == ["a", "b", "c"]
    assert [state(wm, r) for r in (a, b, c)] == [State.SUCCEEDED] * 3


def test_a_fan_in_waits_for_every_prerequisite():
    wm = make()
    a, b, join = echo("a"), later("b"), echo("join")
    wm.begin_with([a, b]).then(join).enqueue()
    assert state(wm, a) is State.SUCCEEDED
    assert state(wm, join) is State.BLOCKED

    get_test_driver(wm).set_initial_delay_met(b.id)

    assert state(wm, join) is State.SUCCEEDED
    assert ran[-1] == "join"


def test_a_fan_out_runs_every_dependent_after_the_one_prerequisite():
    wm = make()
    head = later("head")
    children = [echo(f"child{i}") for i in range(5)]
    wm.begin_with(head).then(children).enqueue()
    assert {state(wm, c) for c in children} == {State.BLOCKED}
    get_test_driver(wm).set_initial_delay_met(head.id)
    assert {state(wm, c) for c in children} == {State.SUCCEEDED}
    assert ran[0] == "head" and sorted(ran[1:]) == [f"child{i}" for i in range(5)]


def test_the_initial_delay_of_a_dependent_counts_from_when_it_is_unblocked():
    clock = TestClock(T0)
    wm = create_test_work_manager(workers=[Echo], clock=clock)
    head, delayed = later("head"), echo("delayed", initial_delay=timedelta(minutes=10))
    wm.begin_with(head).then(delayed).enqueue()
    clock.advance(timedelta(hours=2))
    get_test_driver(wm).set_initial_delay_met(head.id)
    unblocked_at = ms_to_datetime(clock.now_ms())
    assert info(wm, delayed).state is State.ENQUEUED
    assert info(wm, delayed).next_schedule_time == unblocked_at + timedelta(minutes=10)


# -- data passes along -------------------------------------------------------------------------------


def test_a_prerequisites_output_is_its_dependents_input():
    wm = make()
    a, b = emit("x", 1), echo("b")
    wm.begin_with(a).then(b).enqueue()
    assert info(wm, b).output_data == {"x": 1}


def test_with_the_overwriting_merger_a_prerequisites_output_overrides_the_own_input():
    wm = make()
    a = emit("k", "from-a")
    b = OneTimeWorkRequest(Echo, input_data={"label": "b", "k": "own"})
    wm.begin_with(a).then(b).enqueue()
    assert info(wm, b).output_data["k"] == "from-a"


def test_with_the_overwriting_merger_each_key_comes_from_some_prerequisite():
    wm = make()
    a, b = emit("k", "a"), emit("k", "b")
    join = echo("join")
    wm.begin_with([a, b]).then(join).enqueue()
    assert info(wm, join).output_data["k"] in ("a", "b")  # Android: the winner is unspecified


def test_only_direct_prerequisites_outputs_flow_not_grandparents():
    wm = make()
    grandparent, parent, child = emit("g", 1), emit("p", 2), echo("child")
    wm.begin_with(grandparent).then(parent).then(child).enqueue()
    assert info(wm, child).output_data == {"p": 2}


def test_the_array_creating_merger_gathers_every_prerequisites_value_into_one_array():
    wm = make()
    a, b, c = emit("n", 1), emit("n", 2), emit("n", 3)
    join = OneTimeWorkRequest(Echo, input_data={"n": 0}, input_merger=ArrayCreatingInputMerger)
    wm.begin_with([a, b, c]).then(join).enqueue()
    n = info(wm, join).output_data["n"]
    assert n[0] == 0  # its own input first, as on Android
    assert sorted(n[1:]) == [1, 2, 3]


def test_the_array_creating_merger_concatenates_arrays():
    wm = make()
    a, b = emit("xs", ["a", "b"]), emit("xs", ["c"])
    join = OneTimeWorkRequest(Echo, input_merger=ArrayCreatingInputMerger)
    wm.begin_with([a, b]).then(join).enqueue()
    assert sorted(info(wm, join).output_data["xs"]) == ["a", "b", "c"]


def test_mismatched_types_in_the_array_creating_merger_fail_the_work():
    wm = make()
    a, b = emit("v", 1), emit("v", "one")
    join = OneTimeWorkRequest(Echo, input_merger=ArrayCreatingInputMerger)
    wm.begin_with([a, b]).then(join).enqueue()
    assert state(wm, join) is State.FAILED


# -- combine -------------------------------------------------------------------------------------------


def test_combine_joins_chains_and_passes_their_outputs_on_as_arrays():
    wm = make()
    left = wm.begin_with(emit("side", "left"))
    right = wm.begin_with(emit("side", "right")).then(emit("side", "right-2"))
    final = echo("final")
    WorkContinuation.combine([left, right]).then(final).enqueue()
    assert state(wm, final) is State.SUCCEEDED
    assert sorted(info(wm, final).output_data["side"]) == ["left", "right-2"]


def test_the_hidden_join_is_unnamed_and_tagged_with_its_worker_name():
    wm = make()
    left = wm.begin_unique_work("left", ExistingWorkPolicy.KEEP, echo("l"))
    joined = WorkContinuation.combine([left, wm.begin_with(echo("r"))])
    joined.enqueue()
    (join_request,) = joined.requests
    join = info(wm, join_request)
    assert join.state is State.SUCCEEDED
    assert CombineContinuationsWorker.name in join.tags
    assert [i.id for i in wm.get_work_infos_for_unique_work("left")] == [left.requests[0].id]


def test_a_diamond_enqueues_its_shared_parent_once():
    wm = make()
    top = wm.begin_with(echo("top"))
    WorkContinuation.combine([top.then(echo("l")), top.then(echo("r"))]).then(echo("bottom")).enqueue()
    assert ran.count("top") == 1
    assert ran[-1] == "bottom"


def test_combine_needs_at_least_one_continuation():
    with pytest.raises(ValueError, match="at least one"):
        WorkContinuation.combine([])


def test_combine_refuses_continuations_of_two_managers():
    with pytest.raises(ValueError, match="one WorkManager"):
        WorkContinuation.combine([make().begin_with(echo("a")), make().begin_with(echo("b"))])


# -- cascades ------------------------------------------------------------------------------------------


def test_a_failed_prerequisite_fails_every_transitive_dependent():
    wm = make()
    a, b, c, d = echo("a"), OneTimeWorkRequest(Fail), echo("c"), echo("d")
    wm.begin_with(a).then(b).then(c).then(d).enqueue()
    assert [state(wm, r) for r in (a, b, c, d)] == [State.SUCCEEDED, State.FAILED, State.FAILED, State.FAILED]
    assert ran == ["a"]


def test_only_the_failing_work_has_output_and_dependents_record_no_stop():
    wm = make()
    b, c = OneTimeWorkRequest(Fail), echo("c")
    wm.begin_with(b).then(c).enqueue()
    assert info(wm, b).output_data == {"why": "broken"}
    assert info(wm, c).output_data == {}
    assert info(wm, c).stop_reason is StopReason.NOT_STOPPED  # failed, never stopped (as Android)


def test_a_join_fails_at_once_when_one_prerequisite_fails_while_another_still_waits():
    wm = make()
    waiting, failing, join = later("waiting"), OneTimeWorkRequest(Fail), echo("join")
    wm.begin_with([waiting, failing]).then(join).enqueue()
    assert state(wm, join) is State.FAILED
    assert state(wm, waiting) is State.ENQUEUED


def test_cancelling_a_prerequisite_cancels_every_transitive_dependent_with_its_stop_reason():
    wm = make()
    a, b, c = later("a"), echo("b"), echo("c")
    wm.begin_with(a).then(b).then(c).enqueue()
    wm.cancel_work_by_id(a.id)
    for request in (a, b, c):
        assert info(wm, request).state is State.CANCELLED
        assert info(wm, request).stop_reason is StopReason.CANCELLED_BY_APP


def test_cancelling_a_finished_prerequisite_cancels_its_pending_dependents_only():
    wm = make()
    a, b = echo("a"), later("b")
    c = echo("c")
    wm.begin_with(a).then(b).then(c).enqueue()
    wm.cancel_work_by_id(a.id)
    assert [state(wm, r) for r in (a, b, c)] == [State.SUCCEEDED, State.CANCELLED, State.CANCELLED]


def test_a_cancelled_branch_cancels_the_join_but_not_the_other_branch():
    wm = make()
    left, right, join = later("left"), later("right"), echo("join")
    wm.begin_with([left, right]).then(join).enqueue()
    wm.cancel_work_by_id(left.id)
    assert state(wm, join) is State.CANCELLED
    assert state(wm, right) is State.ENQUEUED


def test_no_dependent_stays_blocked_on_a_finished_prerequisite():
    wm = make()
    requests = [echo("a"), OneTimeWorkRequest(Fail), echo("c"), later("d"), echo("e")]
    wm.begin_with(requests[:2]).then(requests[2]).enqueue()
    wm.begin_with(requests[3]).then(requests[4]).enqueue()
    wm.cancel_work_by_id(requests[3].id)
    assert State.BLOCKED not in {state(wm, r) for r in requests}


# -- continuation.get_work_infos -------------------------------------------------------------------------


def test_get_work_infos_lists_the_continuation_and_its_prerequisites_ancestors_first():
    wm = make()
    a, b, c, d = later("a"), echo("b"), echo("c"), echo("d")
    first = wm.begin_with([a, b])
    second = first.then(c)
    second.then(d).enqueue()
    infos = second.get_work_infos()
    assert [i.id for i in infos] == [a.id, b.id, c.id]
    assert [i.state for i in infos] == [State.ENQUEUED, State.SUCCEEDED, State.BLOCKED]


def test_get_work_infos_before_enqueue_is_empty():
    wm = make()
    assert wm.begin_with(echo("a")).get_work_infos() == []


def test_get_work_infos_flow_emits_as_the_chain_changes():
    wm = make()
    a, b = later("a"), echo("b")
    chain = wm.begin_with(a).then(b)
    chain.enqueue()

    async def watch() -> list[list[State]]:
        seen: list[list[State]] = []
        async for infos in chain.get_work_infos_flow():
            seen.append([i.state for i in infos])
            if len(seen) == 1:
                await asyncio.to_thread(get_test_driver(wm).set_initial_delay_met, a.id)
            if all(i.state is State.SUCCEEDED for i in infos):
                return seen
        raise AssertionError("the flow ended")

    seen = asyncio.run(asyncio.wait_for(watch(), 10))
    assert seen[0] == [State.ENQUEUED, State.BLOCKED]
    assert seen[-1] == [State.SUCCEEDED, State.SUCCEEDED]
    wm.close()


def test_the_async_twins_enqueue_and_read_a_continuation():
    wm = make()
    chain = wm.begin_with(echo("a")).then(echo("b"))

    async def go() -> list[State]:
        await chain.enqueue_async()
        return [i.state for i in await chain.get_work_infos_async()]

    assert asyncio.run(go()) == [State.SUCCEEDED, State.SUCCEEDED]


# -- enqueue semantics ------------------------------------------------------------------------------------


def test_enqueue_writes_parents_not_enqueued_yet_and_a_second_enqueue_does_nothing(caplog):
    wm = make()
    a, b = later("a"), echo("b")
    chain = wm.begin_with(a).then(b)
    chain.enqueue()
    chain.enqueue()
    assert "already enqueued" in caplog.text
    assert len(wm.get_work_infos_by_tag("echo")) == 2


def test_a_continuation_of_an_enqueued_continuation_depends_on_the_stored_work():
    wm = make()
    a = later("a")
    head = wm.begin_with(a)
    head.enqueue()
    b = echo("b")
    head.then(b).enqueue()
    assert state(wm, b) is State.BLOCKED
    get_test_driver(wm).set_initial_delay_met(a.id)
    assert state(wm, b) is State.SUCCEEDED


def test_a_continuation_whose_prerequisite_no_longer_exists_is_skipped():
    wm = make()
    a = echo("a")
    head = wm.begin_with(a)
    head.enqueue()
    wm.prune_work()
    b = echo("b")
    head.then(b).enqueue()  # as Android: a logged no-op
    assert wm.get_work_info_by_id(b.id) is None


def test_a_long_chain_is_enqueued_in_one_call_without_recursion():
    wm = make()
    requests = [later("0"), *(echo(str(i)) for i in range(1, 1500))]
    chain = wm.begin_with(requests[0])
    for request in requests[1:]:
        chain = chain.then(request)
    chain.enqueue()
    assert state(wm, requests[-1]) is State.BLOCKED
    assert len(chain.get_work_infos()) == 1500


# -- bad input: a clear error, nothing written ---------------------------------------------------------------


def nothing_written(wm: WorkManager) -> bool:
    return wm.get_work_infos_by_tag("echo") == [] and wm.get_work_infos_by_tag("emit") == []


def test_a_cycle_is_a_value_error_and_writes_nothing():
    wm = make()
    a, b = later("a"), echo("b")
    with pytest.raises(ValueError, match="more than once"):
        wm.begin_with(a).then(b).then(a).enqueue()
    assert nothing_written(wm)


def test_the_same_request_in_two_branches_is_a_value_error():
    wm = make()
    shared = echo("shared")
    left, right = wm.begin_with(shared), wm.begin_with(echo("r")).then(shared)
    with pytest.raises(ValueError, match="more than once"):
        WorkContinuation.combine([left, right]).enqueue()
    assert nothing_written(wm)


def test_the_same_request_twice_in_one_step_is_a_value_error():
    wm = make()
    a = echo("a")
    with pytest.raises(ValueError, match="more than once"):
        wm.begin_with([a, a]).enqueue()


def test_a_request_already_enqueued_fails_the_whole_graph_and_writes_nothing():
    wm = make()
    old = later("old")
    wm.enqueue(old)
    fresh = later("fresh")
    with pytest.raises(ValueError, match="already exists"):
        wm.begin_with(fresh).then(old).enqueue()
    assert wm.get_work_info_by_id(fresh.id) is None


def test_an_empty_begin_with_is_a_value_error():
    with pytest.raises(ValueError, match="at least one"):
        make().begin_with([])


def test_then_with_an_empty_list_returns_the_same_continuation():
    chain = make().begin_with(echo("a"))
    assert chain.then([]) is chain


@pytest.mark.parametrize("where", ["begin_with", "then"])
def test_periodic_work_in_a_chain_is_a_value_error(where):
    wm = make()
    periodic = PeriodicWorkRequest(Echo, repeat_interval=timedelta(hours=1))
    with pytest.raises(ValueError, match="periodic work cannot be part of a chain"):
        if where == "begin_with":
            wm.begin_with(periodic)  # type: ignore[arg-type]
        else:
            wm.begin_with(echo("a")).then(periodic)  # type: ignore[arg-type]


def test_an_unregistered_worker_anywhere_in_the_graph_writes_nothing():
    wm = make()
    with pytest.raises(ValueError, match="not registered"):
        wm.begin_with(later("a")).then(OneTimeWorkRequest("nobody")).enqueue()
    assert nothing_written(wm)


def test_any_other_value_in_a_chain_is_a_value_error():
    with pytest.raises(ValueError, match="OneTimeWorkRequest"):
        make().begin_with(["not a request"])  # type: ignore[list-item]
