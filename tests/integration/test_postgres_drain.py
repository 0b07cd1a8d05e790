"""Real worker processes sharing one PostgreSQL schema: every job runs exactly once.

Skips without a server, fails instead when CI is set (see tests/storage/test_contract.py).
The 20,000-job variant of the issue is marked slow: ``pytest -m slow``.
"""

from __future__ import annotations

import os
import time

import pytest

from services import unavailable
from workmanager import OneTimeWorkRequest, WorkInfo, WorkManager

from .conftest import Cluster
from .ledger_app import Mark

S = WorkInfo.State


def drain(cluster: Cluster, url: str, jobs: int, workers: int) -> float:
    cluster.env["WORKMANAGER_DATABASE"] = url
    wm = WorkManager(url, workers=[Mark])
    try:
        requests = [OneTimeWorkRequest(Mark, input_data={"job": str(i)}) for i in range(jobs)]
        for start in range(0, jobs, 1000):
            wm.enqueue(requests[start : start + 1000])
        started = time.monotonic()
        procs = [cluster.start_worker(WM_CONCURRENCY="8") for _ in range(workers)]
        cluster.wait_for(
            lambda: wm._storage.work_count_by_state() == {S.SUCCEEDED.value: jobs},
            timeout=max(60.0, jobs / 50),
            what=f"{jobs} jobs to succeed",
        )
        elapsed = time.monotonic() - started
        starts = cluster.starts()
        assert len(starts) == jobs
        assert set(starts.values()) == {1}, [job for job, n in starts.items() if n > 1][:10]
        ran_in = {e["pid"] for e in cluster.events() if e["event"] == "start"}
        assert ran_in <= {p.pid for p in procs} and len(ran_in) > 1  # shared out, not one process
        return elapsed
    finally:
        wm.close()


def test_four_worker_processes_drain_postgres_running_each_job_exactly_once(
    cluster: Cluster, postgres_url: str
) -> None:
    drain(cluster, postgres_url, jobs=3000, workers=4)


@pytest.mark.slow
def test_four_worker_processes_drain_20000_jobs_exactly_once(cluster: Cluster, postgres_url: str) -> None:
    drain(cluster, postgres_url, jobs=20_000, workers=4)


def _restart_postgres() -> None:
    import shutil
    import subprocess

    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        unavailable("cannot restart PostgreSQL here (no pg_ctlcluster cluster)")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "restart", "-m", "fast"],
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_every_job_finishes_when_postgres_restarts_mid_drain(cluster: Cluster, postgres_url: str) -> None:
    cluster.env["WORKMANAGER_DATABASE"] = postgres_url
    wm = WorkManager(postgres_url, workers=[Mark])
    jobs = 600
    try:
        wm.enqueue([OneTimeWorkRequest(Mark, input_data={"job": str(i), "sleep": 0.01}) for i in range(jobs)])
        for _ in range(2):
            cluster.start_worker(WM_CONCURRENCY="4")
        cluster.wait_for(lambda: len(cluster.starts()) >= 100, timeout=60, what="the drain to get going")

        _restart_postgres()

        def all_succeeded() -> bool:
            try:
                return wm._storage.work_count_by_state() == {S.SUCCEEDED.value: jobs}
            except Exception:  # our own connections are being re-established too
                return False

        cluster.wait_for(all_succeeded, timeout=180, what="every job to finish after the restart")
        assert set(cluster.starts()) == {str(i) for i in range(jobs)}
    finally:
        wm.close()
