"""Case 13: the server commits, the worker never hears so (the connection drops after COMMIT).

Worker processes reach PostgreSQL through the proxy, which resets a connection instead of
forwarding the server's COMMIT answer of a claim or of a completion, with a seeded
probability. Each job must still end SUCCEEDED exactly once in the database, none may stay
RUNNING, and no worker may exit.
"""

from __future__ import annotations

import os
from pathlib import Path

from integration.conftest import Cluster
from integration.ledger_app import Mark
from workmanager import OneTimeWorkRequest, WorkInfo, WorkManager

from .proxy import PgProxy

S = WorkInfo.State
#: Fast tier; the soak tier sets WM_SOAK_N (10,000) and WM_DROP (0.01).
N = int(os.environ.get("WM_SOAK_N", "300"))
DROP = float(os.environ.get("WM_DROP", "0.05"))


def run_commit_outcome_unknown(
    tmp_path: Path, pg_url: str, proxy: PgProxy, *, jobs: int, drop: float
) -> dict[str, int]:
    """Drain ``jobs`` through the dropping proxy with 2 workers; checks, then returns figures."""
    cluster = Cluster(tmp_path)
    proxy.drop_after_commit = {"claim": drop, "complete": drop}
    wm = WorkManager(pg_url, workers=[Mark])
    try:
        for start in range(0, jobs, 1000):
            wm.enqueue(
                [
                    OneTimeWorkRequest(Mark, input_data={"job": str(i)})
                    for i in range(start, min(jobs, start + 1000))
                ]
            )
        cluster.env["WORKMANAGER_DATABASE"] = proxy.url(pg_url.split("?")[0]) + "&" + pg_url.split("?")[1]
        workers = [cluster.start_worker(WM_CONCURRENCY="4") for _ in range(2)]
        cluster.wait_for(
            lambda: wm._storage.work_count_by_state() == {S.SUCCEEDED.value: jobs},
            timeout=max(90.0, jobs / 20),
            what=f"{jobs} jobs to succeed through the dropping proxy",
        )
        assert [w.poll() for w in workers] == [None, None], "a worker exited"
        starts = cluster.starts()
        assert set(starts) == {str(i) for i in range(jobs)}
        # A lost claim answer is put back before the run starts; a lost completion answer
        # is retried and fenced (already SUCCEEDED): neither starts a job twice.
        assert {job: n for job, n in starts.items() if n > 1} == {}
        return {
            "jobs": jobs,
            "claim_commits": proxy.commits["claim"],
            "complete_commits": proxy.commits["complete"],
            "claim_answers_dropped": proxy.drops["claim"],
            "complete_answers_dropped": proxy.drops["complete"],
            "duplicate_starts": sum(n - 1 for n in starts.values()),
            "stuck_running": 0,
            "workers_exited": 0,
        }
    finally:
        wm.close()
        cluster.close()


def test_jobs_succeed_exactly_once_when_commit_answers_are_lost(
    tmp_path: Path, pg_url: str, pg_proxy: PgProxy
) -> None:
    figures = run_commit_outcome_unknown(tmp_path, pg_url, pg_proxy, jobs=N, drop=DROP)
    # The fault must really have happened, on both kinds of transaction.
    assert figures["claim_answers_dropped"] > 0 and figures["complete_answers_dropped"] > 0, figures
