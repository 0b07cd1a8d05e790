"""Small steps every scenario takes: open the database here, enqueue, wait, drain."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workmanager import OneTimeWorkRequest, WorkManager

from .app import ALL, Mark, configuration
from .registry import Context
from .supervisor import Supervisor

BATCH = 500


def manager(ctx: Context) -> WorkManager:
    """A WorkManager in the test process for enqueues and reads (never started: it runs nothing)."""
    return WorkManager(ctx.target.url, workers=list(ALL), configuration=configuration())


def enqueue_jobs(
    wm: WorkManager, n: int, prefix: str, worker: type = Mark, **input_data: Any
) -> dict[str, str]:
    """``n`` one-time jobs named ``<prefix><i>``, in batches; their ids to job names."""
    jobs: dict[str, str] = {}
    requests = [
        OneTimeWorkRequest(worker, input_data={"job": f"{prefix}{i}", **input_data}) for i in range(n)
    ]
    for start in range(0, n, BATCH):
        batch = requests[start : start + BATCH]
        wm.enqueue(batch)
        jobs.update({str(r.id): str(r.input_data["job"]) for r in batch})
    return jobs


def unfinished(ctx: Context) -> int:
    """Work that is ENQUEUED or RUNNING (BLOCKED work waits for those)."""
    return int(ctx.target.sql("SELECT count(*) FROM workspec WHERE state IN (0, 1)")[0][0])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, seed: int) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (seed {seed})")
        time.sleep(0.05)


def drain(ctx: Context, sup: Supervisor, *, timeout: float = 300.0, **env: str) -> None:
    """Faults stopped: with one healthy worker (started here), wait until nothing is ENQUEUED
    or RUNNING, then stop every worker gracefully."""
    sup.start_worker(**env)
    wait_until(lambda: unfinished(ctx) == 0, timeout, "the drain", ctx.seed)
    sup.stop_all()


def recover(ctx: Context, sup: Supervisor, *, timeout: float = 60.0) -> None:
    """Faults stopped: stop every worker, then let one clean worker take back what dead ones
    left RUNNING (a worker does so as it starts) and stop it too, releasing its own runs.

    Without this, a kill in the last moment before the scenario stops its workers leaves the
    victim's run RUNNING: nobody was left to notice the death (what a deployment's next
    worker start does, this does)."""
    sup.stop_all()
    clean = sup.start_worker()
    wait_until(
        lambda: (
            int(
                ctx.target.sql(
                    "SELECT count(*) FROM workspec WHERE state = 1 AND runner_id NOT IN "
                    "(SELECT id FROM runner WHERE pid = ?)",
                    (clean.pid,),
                )[0][0]
            )
            == 0
        ),
        timeout,
        "a clean worker to take back the dead workers' runs",
        ctx.seed,
    )
    sup.stop_all()
