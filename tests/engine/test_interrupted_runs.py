"""A fault injected around the user's code (``run.before_user_fn``, ``run.after_user_fn``):
the run is stopped and goes back to ENQUEUED to run again, as a kill there would have it
rescued and run again; its slot is free for the next run at once.

Each test runs two jobs through one slot, so the second runs only if the interrupted run
gave its slot back; before, it stayed registered (its row RUNNING) until shutdown."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from test_overlapped_turns import Counted, starts

from workmanager import Configuration, OneTimeWorkRequest, Result, WorkInfo, WorkManager, faults

S = WorkInfo.State


@pytest.fixture(autouse=True)
def disarm() -> Iterator[None]:
    starts.clear()
    yield
    faults.arm("")


class CountedOwnStart(Counted):
    """Counted, started through its own start_work (the dispatcher's other path)."""

    name = "counted-own-start"

    def start_work(self) -> Future[Result]:
        future: Future[Result] = Future()
        future.set_result(self.do_work())
        return future


def run_two_jobs(tmp_path: Path, worker: type[Counted], fault: str) -> list[WorkInfo]:
    log = tmp_path / "faults.jsonl"
    wm = WorkManager(
        f"sqlite:///{tmp_path / 'wm.db'}",
        workers=[Counted, CountedOwnStart],
        configuration=Configuration(max_concurrency=1),
    )
    try:
        requests = [OneTimeWorkRequest(worker, input_data={"job": str(i)}) for i in range(2)]
        wm.enqueue(requests)
        faults.arm(fault, log_path=str(log))
        wm.start()
        infos = [wm.await_work(r.id, timeout=10) for r in requests]
    finally:
        wm.close()
    point = fault.partition("=")[0]
    assert log.read_text().count(f'"{point}"') == 1  # the fault did fire, once
    return infos


@pytest.mark.parametrize("worker", [Counted, CountedOwnStart], ids=["run-thread", "start-work"])
def test_a_fault_before_the_user_function_puts_the_run_back_to_run_once(
    tmp_path: Path, worker: type[Counted]
) -> None:
    infos = run_two_jobs(tmp_path, worker, "run.before_user_fn=raise@1")
    assert [i.state for i in infos] == [S.SUCCEEDED, S.SUCCEEDED]
    assert starts == {"0": 1, "1": 1}  # the interrupted run had not started the user's code
    # The interrupted attempt counts, as a stopped run's does.
    assert sorted(i.run_attempt_count for i in infos) == [1, 2]


@pytest.mark.parametrize("worker", [Counted, CountedOwnStart], ids=["run-thread", "start-work"])
def test_a_fault_after_the_user_function_puts_the_run_back_to_run_again(
    tmp_path: Path, worker: type[Counted]
) -> None:
    infos = run_two_jobs(tmp_path, worker, "run.after_user_fn=raise@1")
    assert [i.state for i in infos] == [S.SUCCEEDED, S.SUCCEEDED]
    # Its outcome was never recorded: at least once, as after a kill at the same point.
    assert sorted(starts.values()) == [1, 2]
