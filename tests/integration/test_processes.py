"""Real processes sharing one SQLite file: enqueue in one, run in others, kill some."""

from __future__ import annotations

import os
import signal

from workmanager import OneTimeWorkRequest, StopReason, WorkInfo, WorkManager, WorkQuery

from .conftest import Cluster
from .ledger_app import Mark

S = WorkInfo.State


def app(cluster: Cluster) -> WorkManager:
    return WorkManager(cluster.db, workers=[Mark])


def test_a_worker_process_runs_what_another_process_enqueued(cluster: Cluster) -> None:
    wm = app(cluster)
    request = OneTimeWorkRequest(Mark, input_data={"job": "hello"})
    wm.enqueue(request)
    worker = cluster.start_worker()

    info = wm.await_work(request.id, timeout=30)

    assert info.state is S.SUCCEEDED
    assert info.output_data["pid"] == worker.pid
    assert cluster.starts() == {"hello": 1}


def test_work_enqueued_while_a_worker_idles_starts_without_polling_delay(cluster: Cluster) -> None:
    wm = app(cluster)
    warm_up = OneTimeWorkRequest(Mark, input_data={"job": "warm-up"})
    wm.enqueue(warm_up)
    cluster.start_worker()
    wm.await_work(warm_up.id, timeout=30)

    later = OneTimeWorkRequest(Mark, input_data={"job": "later"})
    wm.enqueue(later)

    assert wm.await_work(later.id, timeout=10).state is S.SUCCEEDED


def test_a_sigkilled_workers_job_runs_again_in_a_fresh_worker_and_succeeds(cluster: Cluster) -> None:
    wm = app(cluster)
    request = OneTimeWorkRequest(Mark, input_data={"job": "slow", "sleep": 30.0})
    wm.enqueue(request)
    first = cluster.start_worker()
    cluster.wait_for(lambda: cluster.starts()["slow"] == 1, what="the first start")

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert wm.get_work_info_by_id(request.id).state is S.RUNNING  # nobody noticed yet
    # The fresh worker sees the dead owner at start-up and runs the job again, quickly this time.
    with wm._storage.transaction() as tx:  # shorten the job's sleep for the rerun
        tx._conn.execute(  # type: ignore[attr-defined]
            "UPDATE workspec SET input = ? WHERE id = ?", ('{"job":"slow","sleep":0.0}', str(request.id))
        )
    cluster.start_worker()

    info = wm.await_work(request.id, timeout=30)
    assert info.state is S.SUCCEEDED
    assert info.run_attempt_count == 2  # the lost run counts as an attempt
    starts = [e for e in cluster.events() if e["event"] == "start"]
    assert [e["attempt"] for e in starts] == [0, 1]
    assert starts[0]["pid"] == first.pid and starts[1]["pid"] != first.pid


def test_a_surviving_worker_takes_over_a_killed_workers_job(cluster: Cluster) -> None:
    wm = app(cluster)
    survivor = cluster.start_worker(WM_CONCURRENCY="1")
    blocker = OneTimeWorkRequest(Mark, input_data={"job": "blocker", "sleep": 1.0})
    victim_job = OneTimeWorkRequest(Mark, input_data={"job": "victim", "sleep": 1.0})
    wm.enqueue(blocker)
    cluster.wait_for(lambda: cluster.starts()["blocker"] == 1, what="survivor busy")
    doomed = cluster.start_worker(WM_CONCURRENCY="1")
    wm.enqueue(victim_job)
    cluster.wait_for(lambda: cluster.starts()["victim"] == 1, what="victim started")
    victim_pid = next(e["pid"] for e in cluster.events() if e["job"] == "victim")
    assert victim_pid == doomed.pid

    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()

    info = wm.await_work(victim_job.id, timeout=30)
    assert info.state is S.SUCCEEDED
    assert info.output_data["pid"] == survivor.pid
    assert info.run_attempt_count == 2


def test_three_worker_processes_drain_thousands_of_jobs_each_started_exactly_once(cluster: Cluster) -> None:
    wm = app(cluster)
    jobs = [OneTimeWorkRequest(Mark, input_data={"job": f"j{i}"}) for i in range(3000)]
    for start in range(0, len(jobs), 500):
        wm.enqueue(jobs[start : start + 500])
    workers = [cluster.start_worker() for _ in range(3)]

    cluster.wait_for(
        lambda: not wm.get_work_infos(WorkQuery(states=[S.ENQUEUED, S.RUNNING])),
        timeout=120,
        what="the queue to drain",
    )

    starts = cluster.starts()
    assert len(starts) == 3000
    assert set(starts.values()) == {1}
    assert len(wm.get_work_infos(WorkQuery(states=[S.SUCCEEDED]))) == 3000
    pids = {e["pid"] for e in cluster.events()}
    assert pids <= {w.pid for w in workers}


def test_sigterm_lets_running_work_finish_within_the_grace_period(cluster: Cluster) -> None:
    wm = app(cluster)
    request = OneTimeWorkRequest(Mark, input_data={"job": "finishing", "sleep": 1.0})
    wm.enqueue(request)
    worker = cluster.start_worker(WM_GRACE="20")
    cluster.wait_for(lambda: cluster.starts()["finishing"] == 1, what="start")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    assert wm.get_work_info_by_id(request.id).state is S.SUCCEEDED


def test_sigterm_puts_work_that_outlasts_the_grace_period_back_in_the_queue(cluster: Cluster) -> None:
    wm = app(cluster)
    request = OneTimeWorkRequest(Mark, input_data={"job": "long", "sleep": 60.0})
    wm.enqueue(request)
    worker = cluster.start_worker(WM_GRACE="0.5")
    cluster.wait_for(lambda: cluster.starts()["long"] == 1, what="start")

    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)

    info = wm.get_work_info_by_id(request.id)
    assert info.state is S.ENQUEUED
    assert info.stop_reason is StopReason.USER
    assert info.run_attempt_count == 1
    assert [e["event"] for e in cluster.events() if e["job"] == "long"] == ["start", "stopped"]


def _blocked_signals(pid: int, tid: str) -> int:
    with open(f"/proc/{pid}/task/{tid}/status") as status:
        line = next(row for row in status if row.startswith("SigBlk:"))
    return int(line.split()[1], 16)


def test_only_the_worker_main_thread_can_take_sigterm_or_sigint(cluster: Cluster) -> None:
    # Otherwise the kernel may hand the signal to a helper thread, which does not wake
    # the main thread's wait: a SIGTERM right after SIGCONT then went unnoticed for an hour.
    wm = app(cluster)
    request = OneTimeWorkRequest(Mark, input_data={"job": "busy", "sleep": 30.0})
    wm.enqueue(request)
    worker = cluster.start_worker()
    cluster.wait_for(lambda: cluster.starts()["busy"] == 1, what="start")
    stop_bits = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGINT - 1))

    threads = {tid: _blocked_signals(worker.pid, tid) for tid in os.listdir(f"/proc/{worker.pid}/task")}

    assert len(threads) > 3  # the engine's threads and the run's pool thread are there
    assert threads.pop(str(worker.pid)) & stop_bits == 0
    assert all(mask & stop_bits == stop_bits for mask in threads.values()), threads


def test_sigterm_right_after_sigcont_stops_the_worker(cluster: Cluster) -> None:
    wm = app(cluster)
    for round_ in range(3):
        job = f"ping-{round_}"
        wm.enqueue(OneTimeWorkRequest(Mark, input_data={"job": job}))
        worker = cluster.start_worker()
        cluster.wait_for(lambda job=job: cluster.starts()[job] == 1, what="the worker to run a job")
        os.killpg(worker.pid, signal.SIGSTOP)
        os.killpg(worker.pid, signal.SIGCONT)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0


def test_cancelling_from_another_process_stops_the_running_worker(cluster: Cluster) -> None:
    wm = app(cluster)
    request = OneTimeWorkRequest(Mark, input_data={"job": "cancel-me", "sleep": 60.0})
    wm.enqueue(request)
    cluster.start_worker()
    cluster.wait_for(lambda: cluster.starts()["cancel-me"] == 1, what="start")

    wm.cancel_work_by_id(request.id)

    cluster.wait_for(
        lambda: any(e["event"] == "stopped" for e in cluster.events()), timeout=10, what="the worker to stop"
    )
    info = wm.get_work_info_by_id(request.id)
    assert info.state is S.CANCELLED
    assert info.stop_reason is StopReason.CANCELLED_BY_APP
