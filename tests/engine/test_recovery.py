"""Recovery: work of dead processes is taken back; a stale run is fenced off."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import ClassVar

import psutil
import pytest

from workmanager import Configuration, Data, OneTimeWorkRequest, Result, StopReason, Worker, WorkInfo
from workmanager.engine import records
from workmanager.engine.recovery import ProcessIdentity, Rescuer
from workmanager.storage import open_storage
from workmanager.storage.base import ClaimedWork, Storage

S = WorkInfo.State
T0 = 1_800_000_000_000
LEASE_MS = 60_000


class Noop(Worker):
    name = "noop"

    def do_work(self) -> Result:
        return Result.success()


@pytest.fixture
def storage(tmp_path) -> Iterator[Storage]:
    s = open_storage(str(tmp_path / "w.db"), Configuration())
    yield s
    s.close()


def dead_process() -> tuple[int, float]:
    """The pid and start time of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(proc.pid).create_time()
    proc.wait()
    return proc.pid, started


def register(storage: Storage, runner_id: str, *, pid: int, started: float, host: str | None = None,
             heartbeat_at: int = T0) -> None:  # fmt: skip
    me = ProcessIdentity.current()
    with storage.transaction() as tx:
        tx.runner_upsert(id=runner_id, host=host or me.host, boot_id=me.boot_id, pid=pid,
                         process_started=started, now=heartbeat_at, workers="[]")  # fmt: skip


def enqueue_and_claim(storage: Storage, runner_id: str, token: int = 7) -> ClaimedWork:
    request = OneTimeWorkRequest(Noop)
    with storage.transaction() as tx:
        tx.work_insert([records.new_work(request, now=T0, config=Configuration())])
        (claimed,) = tx.work_claim_available(
            now=T0, limit=1, runner_id=runner_id, run_token=token, names=None
        )
    return claimed


def state_of(storage: Storage, work_id: str) -> tuple[WorkInfo.State, StopReason, int]:
    row = storage.work_info_by_id(work_id)
    assert row is not None
    info = records.work_info(row)
    return info.state, info.stop_reason, info.run_attempt_count


def rescuer(storage: Storage, *, max_orphaned_runs: int = 3) -> Rescuer:
    return Rescuer(storage, ProcessIdentity.current(), "the-rescuer", lease_ms=LEASE_MS,
                   max_orphaned_runs=max_orphaned_runs)  # fmt: skip


def test_running_work_of_a_dead_process_goes_back_to_enqueued_at_once(storage: Storage) -> None:
    pid, started = dead_process()
    register(storage, "dead", pid=pid, started=started)
    claimed = enqueue_and_claim(storage, "dead")

    result = rescuer(storage).run_once(T0 + 1)

    assert result.requeued == (claimed.id,)
    assert state_of(storage, claimed.id) == (S.ENQUEUED, StopReason.UNKNOWN, 1)
    assert storage.work_next_due(None) == T0 + 1  # runnable again right away


def test_running_work_of_a_live_process_is_left_alone(storage: Storage) -> None:
    me = ProcessIdentity.current()
    register(storage, "alive", pid=me.pid, started=me.process_started)
    claimed = enqueue_and_claim(storage, "alive")

    assert rescuer(storage).run_once(T0 + 1).requeued == ()
    assert state_of(storage, claimed.id)[0] is S.RUNNING


def test_a_reused_pid_does_not_keep_a_dead_owner_alive(storage: Storage) -> None:
    me = ProcessIdentity.current()
    register(storage, "old-me", pid=me.pid, started=me.process_started - 3600)  # same pid, older process
    claimed = enqueue_and_claim(storage, "old-me")

    assert rescuer(storage).run_once(T0 + 1).requeued == (claimed.id,)


def test_an_owner_on_another_host_is_dead_only_when_its_lease_lapses(storage: Storage) -> None:
    register(storage, "remote", pid=1, started=0.0, host="elsewhere", heartbeat_at=T0)
    claimed = enqueue_and_claim(storage, "remote")

    assert rescuer(storage).run_once(T0 + LEASE_MS).requeued == ()
    assert rescuer(storage).run_once(T0 + LEASE_MS + 1).requeued == (claimed.id,)


def test_running_work_whose_owner_never_registered_is_taken_back(storage: Storage) -> None:
    claimed = enqueue_and_claim(storage, "nobody")

    assert rescuer(storage).run_once(T0 + 1).requeued == (claimed.id,)


def test_an_owner_that_registered_after_the_first_look_is_not_mistaken_for_unknown(storage: Storage) -> None:
    me = ProcessIdentity.current()
    stale_view: list[object] = []
    rescue = rescuer(storage)
    register(storage, "newcomer", pid=me.pid, started=me.process_started)
    claimed = enqueue_and_claim(storage, "newcomer")
    # The first, lock-free look sees the claim but not yet the runner row (a race with start-up).
    storage.runner_list = lambda: stale_view  # type: ignore[method-assign]

    assert rescue.run_once(T0 + 1).requeued == ()
    assert state_of(storage, claimed.id)[0] is S.RUNNING


def test_work_orphaned_three_times_in_a_row_fails_as_worker_lost(storage: Storage) -> None:
    pid, started = dead_process()
    register(storage, "dead", pid=pid, started=started)
    claimed = enqueue_and_claim(storage, "dead")
    for attempt in (1, 2):
        assert rescuer(storage).run_once(T0 + attempt).requeued == (claimed.id,)
        register(storage, "dead", pid=pid, started=started)
        with storage.transaction() as tx:
            tx.work_claim_available(now=T0 + 10, limit=1, runner_id="dead", run_token=attempt, names=None)

    result = rescuer(storage).run_once(T0 + 20)

    assert result.failed == (claimed.id,)
    info = records.work_info(storage.work_info_by_id(claimed.id))  # type: ignore[arg-type]
    assert info.state is S.FAILED
    assert info.stop_reason is StopReason.WORKER_LOST
    assert info.output_data["error"] == "WorkerLost"
    assert info.run_attempt_count == 3


def test_a_run_that_finishes_normally_resets_the_orphan_count(storage: Storage) -> None:
    pid, started = dead_process()
    register(storage, "dead", pid=pid, started=started)
    claimed = enqueue_and_claim(storage, "dead", token=1)
    rescuer(storage).run_once(T0 + 1)  # orphaned once
    with storage.transaction() as tx:
        tx.work_claim_available(now=T0 + 2, limit=1, runner_id="live", run_token=2, names=None)
        assert tx.work_enqueue_if_running(
            claimed.id, 2, run_attempt_count=2, last_enqueue_time=T0 + 2, next_run_time=T0 + 2, period_count=0,
            stop_reason=int(StopReason.NOT_STOPPED), next_schedule_time_override=None,
        )  # fmt: skip
    for attempt in (3, 4):
        register(storage, "dead", pid=pid, started=started)
        with storage.transaction() as tx:
            tx.work_claim_available(now=T0 + 10, limit=1, runner_id="dead", run_token=attempt, names=None)
        rescuer(storage).run_once(T0 + 10 + attempt)

    assert state_of(storage, claimed.id)[0] is S.ENQUEUED  # two lost runs in a row, not three


def test_a_stale_run_cannot_finish_or_report_progress_after_its_work_was_taken_back(storage: Storage) -> None:
    pid, started = dead_process()
    register(storage, "paused", pid=pid, started=started)
    stale = enqueue_and_claim(storage, "paused", token=111)
    rescuer(storage).run_once(T0 + 1)
    with storage.transaction() as tx:
        (fresh,) = tx.work_claim_available(now=T0 + 2, limit=1, runner_id="other", run_token=222, names=None)

    with storage.transaction() as tx:
        assert not tx.work_succeed_if_running(stale.id, stale.run_token, '{"by":"stale"}', T0 + 3)
        assert not tx.work_progress_set_if_running(stale.id, stale.run_token, '{"p":1}')
        assert tx.work_succeed_if_running(fresh.id, fresh.run_token, '{"by":"fresh"}', T0 + 4)

    info = records.work_info(storage.work_info_by_id(stale.id))  # type: ignore[arg-type]
    assert info.state is S.SUCCEEDED
    assert info.output_data == {"by": "fresh"}


def test_finished_runs_survive_a_turn_whose_transaction_fails(tmp_path):
    from workmanager import WorkManager
    from workmanager.engine.states import Succeeded

    wm = WorkManager(tmp_path / "w2.db", workers=[Noop])
    engine = wm._engine
    claimed = enqueue_and_claim(wm._storage, engine.runner_id)
    engine._completions.append((claimed, Succeeded(Data.EMPTY)))
    real = wm._storage.transaction

    def broken(*, durable: bool = True):  # the database restarts mid-turn
        raise OSError("connection lost")

    wm._storage.transaction = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        engine._turn(T0 + 1)
    assert list(engine._completions) == [(claimed, Succeeded(Data.EMPTY))]  # kept for the next turn

    wm._storage.transaction = real  # type: ignore[method-assign]
    engine._turn(T0 + 2)
    assert state_of(wm._storage, claimed.id)[0] is S.SUCCEEDED
    wm.close()


def test_a_claim_that_committed_unheard_is_put_back_when_the_database_returns(tmp_path):
    from workmanager import WorkManager

    wm = WorkManager(tmp_path / "w3.db", workers=[Noop])
    engine = wm._engine
    unheard = enqueue_and_claim(wm._storage, engine.runner_id)  # committed; the answer never came

    engine._release_unlaunched(T0 + 5)

    assert state_of(wm._storage, unheard.id) == (S.ENQUEUED, StopReason.UNKNOWN, 0)  # not an attempt
    wm.close()


class Timed(Worker):
    """Sleeps 0.3 s and records when it ran."""

    name = "timed"
    runs: ClassVar[list[tuple[str, float, float]]] = []

    def do_work(self) -> Result:
        began = time.monotonic()
        time.sleep(0.3)
        Timed.runs.append((str(self.input_data["job"]), began, time.monotonic()))
        return Result.success()


def test_a_process_runs_one_suspect_at_a_time_and_the_next_as_soon_as_the_first_ends(tmp_path):
    """Work orphaned before may be what killed its process: two such never share one."""
    from workmanager import WorkManager

    path = tmp_path / "w.db"
    storage = open_storage(str(path), Configuration())
    pid, started = dead_process()
    now = int(time.time() * 1000)
    register(storage, "dead", pid=pid, started=started, heartbeat_at=now)
    suspects = [OneTimeWorkRequest(Timed, input_data={"job": job}) for job in ("s1", "s2")]
    with storage.transaction() as tx:
        tx.work_insert([records.new_work(r, now=now, config=Configuration()) for r in suspects])
        tx.work_claim_available(now=now, limit=2, runner_id="dead", run_token=1, names=None)
    assert len(rescuer(storage).run_once(now).requeued) == 2
    storage.close()
    Timed.runs.clear()

    with WorkManager(path, workers=[Timed], configuration=Configuration(max_concurrency=2)) as wm:
        for request in suspects:
            info = wm.await_work(request.id, timeout=10)
            assert info is not None and info.state is S.SUCCEEDED

    first, second = sorted(Timed.runs, key=lambda run: run[1])
    assert second[1] >= first[2]  # one after the other, never side by side
    assert second[1] - first[2] < 1.0  # not left waiting for some later change
