"""Storage exhaustion and growth (reliability.md §4.2, cases 20-21)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from workmanager import OneTimeWorkRequest, errors

from .harness import registry
from .harness.app import Mark
from .harness.checker import Report, check
from .harness.drive import enqueue_jobs, manager, unfinished
from .harness.registry import Context, scenario
from .harness.storage_faults import FSIZE_ENV, free_wal, limit_pages, unlimit_pages

# -- case 20 ------------------------------------------------------------------------------------


def full_enqueue(ctx: Context, report: Report) -> dict[str, str]:
    """Enqueue batches of 20 into a file capped a few pages above its size: the call that does
    not fit raises StorageFullError and writes nothing; after the cap is lifted all is well."""
    wm = manager(ctx)
    jobs = enqueue_jobs(wm, 10, "pre")
    limit_pages(wm, 8)
    full_at = None
    for k in range(200):
        batch = [
            OneTimeWorkRequest(Mark, input_data={"job": f"b{k}_{i}", "pad": "x" * 400}) for i in range(20)
        ]
        before = int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])
        try:
            wm.enqueue(batch)
        except errors.StorageFullError as exc:
            full_at = k
            after = int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])
            if after != before:
                report.fail(f"a full database kept {after - before} rows of a failed batch")
            if "full" not in str(exc):
                report.fail(f"StorageFullError does not say what is full: {exc}")
            break
        except Exception as exc:
            report.fail(f"a full database raised {type(exc).__name__}: {exc}, not StorageFullError")
            break
        jobs.update({str(r.id): str(r.input_data["job"]) for r in batch})
    if full_at is None:
        report.fail("the capped file never filled up")
    else:
        ctx.supervisor().log_fault("disk_full", 0, where="enqueue")
    unlimit_pages(wm)
    more = enqueue_jobs(wm, 10, "post")  # space is back: enqueue works again
    jobs.update(more)
    wm.close()
    return jobs


@scenario("disk_full", case="20", title="SQLITE_FULL at enqueue (max_page_count) and in a worker (RLIMIT_FSIZE)",
          fast_n=150, soak_n=2000)  # fmt: skip
def disk_full(ctx: Context) -> Report:
    assert ctx.target.path is not None
    report = Report()
    jobs = full_enqueue(ctx, report)
    wm = manager(ctx)
    jobs.update(enqueue_jobs(wm, ctx.n, "w"))
    free_wal(ctx.target.path)
    size = ctx.target.path.stat().st_size
    limit = size + 256 * 1024  # room for a few dozen commits in the -wal, then full
    sup = ctx.supervisor(WM_CONCURRENCY="2", **{FSIZE_ENV: str(limit)})
    worker = sup.start_worker()
    wal = Path(str(ctx.target.path) + "-wal")
    fills = 0
    deadline = time.monotonic() + 600
    while unfinished(ctx) and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size >= limit - 8192:
            fills += 1
            sup.log_fault("disk_full", worker.pid, where="worker")
            time.sleep(1.0)  # the worker keeps failing its commits meanwhile: it must not die
            if worker.poll() is not None:
                report.fail(f"the worker exited ({worker.returncode}) on a full disk")
                worker = sup.start_worker()
            free_wal(ctx.target.path)
        time.sleep(0.05)
    if fills == 0:
        report.fail("the worker's disk never filled up")
    for proc in sup.alive():
        sup.term(proc)
    for proc in sup.procs:
        proc.wait(timeout=60)
    report.merge(check(ctx.target, sup.ledger, jobs=jobs))
    report.figures.update(enqueued=len(jobs), worker_disk_full=fills)
    wm.close()
    return report


def test_case20_a_full_disk_is_a_typed_error_at_enqueue_and_a_pause_for_workers(tmp_path: Path) -> None:
    report = registry.run("disk_full", "sqlite", "fast", tmp_path)
    report.assert_ok()
    assert report.figures["worker_disk_full"] >= 1
    conn = sqlite3.connect(tmp_path / "work.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
