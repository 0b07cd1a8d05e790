"""Faults with real processes: crash loops, paused owners, workers that cannot run a name."""

from __future__ import annotations

import os
import signal

import pytest

from workmanager import OneTimeWorkRequest, StopReason, WorkInfo, WorkManager

from .conftest import Cluster
from .ledger_app import Mark, Suicide

S = WorkInfo.State


def test_work_that_kills_its_process_three_times_in_a_row_fails_as_worker_lost(cluster: Cluster) -> None:
    wm = WorkManager(cluster.db, workers=[Mark, Suicide])
    request = OneTimeWorkRequest(Suicide, input_data={"job": "poison"})
    wm.enqueue(request)

    for attempt in range(1, 4):
        worker = cluster.start_worker()
        worker.wait(timeout=30)  # the job SIGKILLs it
        assert worker.returncode == -signal.SIGKILL
        assert cluster.starts()["poison"] == attempt
    # The next worker to start finds the third orphaned run and ends the crash loop.
    survivor = cluster.start_worker()
    cluster.wait_for(lambda: wm.get_work_info_by_id(request.id).state is S.FAILED, what="FAILED")

    info = wm.get_work_info_by_id(request.id)
    assert info.stop_reason is StopReason.WORKER_LOST
    assert info.output_data["error"] == "WorkerLost"
    assert info.run_attempt_count == 3
    assert survivor.poll() is None  # the pool is not taken down
    assert cluster.starts()["poison"] == 3


def test_a_paused_owner_loses_its_work_after_its_lease_and_cannot_finish_it_later(cluster: Cluster) -> None:
    wm = WorkManager(cluster.db, workers=[Mark, Suicide])
    fast_lease = {"WM_HEARTBEAT": "0.2", "WM_LEASE": "1.5"}
    request = OneTimeWorkRequest(Mark, input_data={"job": "paused", "sleep": 3.0})
    wm.enqueue(request)
    paused = cluster.start_worker(WM_CONCURRENCY="1", **fast_lease)
    cluster.wait_for(lambda: cluster.starts()["paused"] == 1, what="the first start")
    os.killpg(paused.pid, signal.SIGSTOP)  # alive, but silent: only the lease can tell
    try:
        other = cluster.start_worker(WM_CONCURRENCY="1", **fast_lease)
        cluster.wait_for(lambda: cluster.starts()["paused"] == 2, timeout=30, what="the takeover")
    finally:
        os.killpg(paused.pid, signal.SIGCONT)

    info = wm.await_work(request.id, timeout=30)
    assert info.state is S.SUCCEEDED
    assert info.output_data["pid"] == other.pid  # the resumed first run was fenced off
    assert info.run_attempt_count == 2


def test_a_worker_process_does_not_claim_work_it_cannot_run(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGER_DIR", str(cluster.ledger_dir))
    enqueuer = WorkManager(cluster.db, workers=[Mark, Suicide])
    unknown_here = OneTimeWorkRequest(Suicide, input_data={"job": "elsewhere"})
    runnable = OneTimeWorkRequest(Mark, input_data={"job": "here"})
    enqueuer.enqueue([unknown_here, runnable])
    mark_only = WorkManager(cluster.db, workers=[Mark])

    with mark_only:
        assert mark_only.await_work(runnable.id, timeout=30).state is S.SUCCEEDED

    assert enqueuer.get_work_info_by_id(unknown_here.id).state is S.ENQUEUED
    assert cluster.starts()["elsewhere"] == 0
