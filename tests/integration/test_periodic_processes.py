"""Periodic work across several worker processes and a restart runs once per period."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import timedelta

from workmanager import Configuration, PeriodicWorkRequest, WorkInfo, WorkManager

from .conftest import Cluster
from .ledger_app import Mark, Suicide

INTERVAL_S = 1.0


def test_periodic_work_runs_once_per_period_across_three_workers_and_a_restart(cluster: Cluster) -> None:
    wm = WorkManager(
        cluster.db,
        workers=[Mark, Suicide],
        configuration=Configuration(min_periodic_interval=timedelta(seconds=1)),
    )
    request = PeriodicWorkRequest(
        Mark, repeat_interval=timedelta(seconds=INTERVAL_S), input_data={"job": "tick"}
    )
    wm.enqueue(request)
    workers = [cluster.start_worker() for _ in range(3)]
    cluster.wait_for(lambda: cluster.starts()["tick"] >= 3, timeout=30, what="three periods")

    os.killpg(workers[0].pid, signal.SIGKILL)  # one dies mid-stream, another takes its place
    workers[0].wait()
    cluster.start_worker()
    cluster.wait_for(lambda: cluster.starts()["tick"] >= 6, timeout=30, what="six periods")

    starts = sorted(e["t"] for e in cluster.events() if e["event"] == "start")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Each next period counts from the end of the previous run (Android), so no two runs of
    # one period: consecutive starts are at least an interval apart (small clock slack).
    assert min(gaps) >= INTERVAL_S - 0.05, gaps
    assert len({e["pid"] for e in cluster.events()}) >= 2  # really spread over processes
    info = wm.get_work_info_by_id(request.id)
    assert info.state in (WorkInfo.State.ENQUEUED, WorkInfo.State.RUNNING)


def test_after_downtime_of_several_periods_the_work_runs_once_not_once_per_missed_period(
    cluster: Cluster,
) -> None:
    wm = WorkManager(
        cluster.db,
        workers=[Mark, Suicide],
        configuration=Configuration(min_periodic_interval=timedelta(seconds=1)),
    )
    request = PeriodicWorkRequest(
        Mark, repeat_interval=timedelta(seconds=INTERVAL_S), input_data={"job": "tick"}
    )
    wm.enqueue(request)
    first = cluster.start_worker()
    cluster.wait_for(lambda: cluster.starts()["tick"] == 1, timeout=30, what="the first period")
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)

    time.sleep(4 * INTERVAL_S)  # downtime: four periods missed
    cluster.start_worker()
    cluster.wait_for(lambda: cluster.starts()["tick"] >= 2, timeout=30, what="the catch-up run")
    time.sleep(INTERVAL_S * 0.5)

    assert cluster.starts()["tick"] == 2  # one late run, then the next only after an interval
