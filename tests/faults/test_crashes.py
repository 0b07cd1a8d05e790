"""Crashes and recovery on the default backend (reliability.md §4.2, cases 1-8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import registry
from .harness.checker import Report, check
from .harness.drive import drain, enqueue_jobs, manager, unfinished
from .harness.registry import Context, scenario

# -- case 1 -------------------------------------------------------------------------------------


@scenario("sigkill_workers", case="1", title="random SIGKILL of workers mid-run", fast_n=300, soak_n=10_000,
          backends=("sqlite", "postgres"))  # fmt: skip
def sigkill_workers(ctx: Context) -> Report:
    wm = manager(ctx)
    jobs = enqueue_jobs(wm, ctx.n, "j", sleep_max=0.05 if ctx.soak else 0.02)
    sup = ctx.supervisor(WM_CONCURRENCY="2")
    for _ in range(2):
        sup.start_worker()
    kills = sup.chaos(
        lambda: unfinished(ctx) == 0, every=(0.5, 3.0) if ctx.soak else (0.3, 1.0), timeout=1200
    )
    drain(ctx, sup)
    report = check(ctx.target, sup.ledger, jobs=jobs)
    # At most the runs in flight in each killed process start again.
    extra = sum(c - 1 for c in sup.ledger.starts().values())
    if extra > kills * 2:
        report.fail(f"{extra} extra starts after {kills} kills of 2-slot processes")
    report.figures["enqueued"] = ctx.n
    wm.close()
    return report


@pytest.mark.parametrize("backend", ["sqlite"])
def test_case1_random_sigkills_lose_no_job_and_every_rerun_follows_a_kill(
    tmp_path: Path, backend: str
) -> None:
    report = registry.run("sigkill_workers", backend, "fast", tmp_path)
    report.assert_ok()
    assert report.figures["fault:sigkill"] > 0
