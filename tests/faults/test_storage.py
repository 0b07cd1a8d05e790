"""Storage exhaustion and growth (reliability.md §4.2, cases 20-21)."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from services import unavailable
from workmanager import OneTimeWorkRequest, WorkContinuation, errors

from .harness import registry
from .harness.app import Mark
from .harness.checker import Report, check
from .harness.drive import enqueue_jobs, manager, unfinished
from .harness.registry import Context, scenario
from .harness.storage_faults import (
    FSIZE_ENV,
    MountUnavailable,
    fill,
    free_wal,
    limit_pages,
    small_tmpfs,
    unfill,
    unlimit_pages,
)
from .harness.target import Target
from .postgres.cluster import ClusterTarget, ThrowawayCluster, Unavailable

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
          fast_n=150, soak_n=1000)  # fmt: skip
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
    sup.stop_all()
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


@scenario("disk_full_tmpfs", case="20", title="the SQLite database on a small tmpfs, filled up while work runs",
          fast_n=150, soak_n=300)  # fmt: skip
def disk_full_tmpfs(ctx: Context) -> Report:
    """A real full filesystem: the database on a 4 MB tmpfs, a worker running jobs, then a
    ballast file takes every free byte. Enqueue must raise StorageFullError and write
    nothing; the worker must not exit (its finished runs wait, fenced RUNNING); once the
    ballast is deleted every job finishes, none lost, none run twice, integrity ok."""
    report = Report()
    fs = ctx.workdir / "fs"
    try:
        mount = small_tmpfs(fs, "4m")
        mount.__enter__()
    except MountUnavailable as exc:
        unavailable(f"case 20 on a small filesystem needs mount -t tmpfs: {exc}")
    try:
        ctx.target.path = fs / "work.db"  # the ledger and the fault log stay off the small disk
        ctx.target.url = str(ctx.target.path)
        wm = manager(ctx)
        jobs = enqueue_jobs(wm, ctx.n, "w", sleep_max=0.05)
        free_wal(ctx.target.path)  # 4 MB: the file and a -wal of up to 4 MB would not both fit
        sup = ctx.supervisor(WM_CONCURRENCY="2")
        worker = sup.start_worker()
        rounds = 5 if ctx.soak else 2
        refused = 0
        for r in range(rounds):
            # Wait for the worker to be well into the jobs of this round, then fill the disk.
            progress = (r + 1) * ctx.n // (rounds + 1)
            sup.wait_for(
                lambda p=progress: sum(sup.ledger.starts().values()) >= p, 120, f"progress before fill {r}"
            )
            free_wal(ctx.target.path)  # the next commit anywhere must grow the -wal
            ballast = fill(fs)
            sup.log_fault("disk_full", 0, where="tmpfs", ballast=ballast)
            for k in range(50):
                batch = [OneTimeWorkRequest(Mark, input_data={"job": f"f{r}_{k}_{i}"}) for i in range(20)]
                before = int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])
                try:
                    wm.enqueue(batch)
                except errors.StorageFullError:
                    refused += 1
                    after = int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])
                    if after != before:
                        report.fail(f"a full filesystem kept {after - before} rows of a refused batch")
                    break
                except Exception as exc:
                    report.fail(f"a full filesystem raised {type(exc).__name__}: {exc}, not StorageFullError")
                    break
                jobs.update({str(q.id): str(q.input_data["job"]) for q in batch})
            else:
                report.fail(f"round {r}: 50 batches fitted on a full filesystem")
            time.sleep(2.0)  # the worker's commits fail meanwhile: it must not exit
            if worker.poll() is not None:
                report.fail(f"the worker exited ({worker.returncode}) on a full filesystem")
                worker = sup.start_worker()
            unfill(fs)
        more = enqueue_jobs(wm, 10, "post")  # space is back: enqueue works again
        jobs.update(more)
        sup.wait_for(lambda: unfinished(ctx) == 0, 300, "every job to finish after space came back")
        if worker.poll() is not None:
            report.fail(f"the worker exited ({worker.returncode})")
        sup.stop_all()
        report.merge(check(ctx.target, sup.ledger, jobs=jobs))
        report.figures.update(enqueued=len(jobs), enqueue_refused=refused)
        wm.close()
    finally:
        mount.__exit__(None, None, None)
    return report


def test_case20_a_full_tmpfs_refuses_enqueue_cleanly_and_workers_finish_once_space_is_back(
    tmp_path: Path,
) -> None:
    report = registry.run("disk_full_tmpfs", "sqlite", "fast", tmp_path)
    report.assert_ok()
    assert report.figures["enqueue_refused"] == 2


@scenario("pg_disk_full", case="20", title="PostgreSQL's data directory on a small tmpfs, filled up while work runs",
          fast_n=1000, soak_n=1000, backends=("postgres",))  # fmt: skip
def pg_disk_full(ctx: Context) -> Report:
    """A throw-away server whose data directory is a 64 MB tmpfs (its WAL on the ordinary
    disk: PostgreSQL PANICs when it cannot write WAL, by design), filled by a ballast file
    while a worker runs jobs. Enqueue must raise StorageFullError (a StorageError) and write
    nothing, the worker must stay up, and once the ballast is gone every job finishes once."""
    try:
        cluster = ThrowawayCluster(data_tmpfs="64m")
        cluster.create()
    except (MountUnavailable, Unavailable, OSError) as exc:
        unavailable(f"case 20 on PostgreSQL needs a throw-away server on a tmpfs: {exc}")
    report = Report()
    try:
        ctx.target = ClusterTarget(cluster, ctx.workdir)
        wm = manager(ctx)
        jobs = enqueue_jobs(wm, ctx.n, "w", sleep_max=0.05)
        sup = ctx.supervisor(WM_CONCURRENCY="2")
        worker = sup.start_worker()
        # Five fills of 1,000 jobs in the fast tier too: smaller, it never caught psycopg with a
        # statement the full disk left half-prepared (see PostgresStorage.transaction).
        rounds = 5
        refused = 0
        for r in range(rounds):
            progress = (r + 1) * ctx.n // (rounds + 1)
            sup.wait_for(
                lambda p=progress: sum(sup.ledger.starts().values()) >= p, 120, f"progress before fill {r}"
            )
            ballast = fill(cluster.data)
            sup.log_fault("disk_full", 0, where="pg_data_tmpfs", ballast=ballast)
            for k in range(200):
                batch = [OneTimeWorkRequest(Mark, input_data={"job": f"f{r}_{k}_{i}", "pad": "x" * 400})
                         for i in range(20)]  # fmt: skip
                before = int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])
                try:
                    wm.enqueue(batch)
                except errors.StorageFullError:
                    refused += 1
                    after = int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])
                    if after != before:
                        report.fail(f"a full data directory kept {after - before} rows of a refused batch")
                    break
                except Exception as exc:
                    report.fail(
                        f"a full data directory raised {type(exc).__name__}: {exc}, not StorageFullError"
                    )
                    break
                jobs.update({str(q.id): str(q.input_data["job"]) for q in batch})
            else:
                report.fail(f"round {r}: 200 batches fitted in a full data directory")
            time.sleep(2.0)  # the worker's writes may fail meanwhile: it must not exit
            if worker.poll() is not None:
                report.fail(f"the worker exited ({worker.returncode}) on a full data directory")
                worker = sup.start_worker()
            unfill(cluster.data)
        jobs.update(enqueue_jobs(wm, 10, "post"))  # space is back: enqueue works again
        sup.wait_for(lambda: unfinished(ctx) == 0, 300, "every job to finish after space came back")
        if worker.poll() is not None:
            report.fail(f"the worker exited ({worker.returncode})")
        sup.stop_all()
        report.merge(check(ctx.target, sup.ledger, jobs=jobs))
        report.figures.update(enqueued=len(jobs), enqueue_refused=refused)
        wm.close()
        ctx.target.drop()
    finally:
        ctx.target = Target("sqlite", ctx.workdir)  # nothing left to drop on the destroyed server
        cluster.destroy()
    return report


def test_case20_a_full_postgresql_data_directory_refuses_enqueue_cleanly_and_workers_finish_later(
    tmp_path: Path,
) -> None:
    report = registry.run("pg_disk_full", "postgres", "fast", tmp_path)
    report.assert_ok()
    assert report.figures["enqueue_refused"] == 5


# -- case 21 ------------------------------------------------------------------------------------


@scenario("retention_and_growth", case="21", title="retention pruning, file and -wal size over a long run",
          fast_n=3000, soak_n=100_000)  # fmt: skip
def retention_and_growth(ctx: Context) -> Report:
    """``n`` trivial jobs enqueued in waves through two workers with a short retention, plus a
    finished parent whose dependent still waits: finished work older than the retention goes
    (the parent stays), the file stops growing, the -wal stays bounded."""
    assert ctx.target.path is not None
    retention_s = 20 if ctx.soak else 3
    wm = manager(ctx)
    parent = OneTimeWorkRequest(Mark, input_data={"job": "parent"})
    later = OneTimeWorkRequest(Mark, input_data={"job": "later"}, initial_delay=timedelta(hours=1))
    dependent = OneTimeWorkRequest(Mark, input_data={"job": "dependent"})
    WorkContinuation.combine([wm.begin_with(parent), wm.begin_with(later)]).then(dependent).enqueue()
    sup = ctx.supervisor(WM_CONCURRENCY="4", WM_RETENTION=str(retention_s))
    sup.start_worker()
    sup.start_worker()
    wal = Path(str(ctx.target.path) + "-wal")
    samples: list[tuple[int, int, int]] = []  # (rows, file bytes, wal bytes)
    waves = 10
    per = ctx.n // waves
    report = Report()
    for w in range(waves):
        enqueue_jobs(wm, per, f"w{w}_")
        sup.wait_for(lambda: unfinished(ctx) <= 1, 600, f"wave {w}")  # `later` waits an hour
        rows = int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])
        samples.append((rows, ctx.target.path.stat().st_size, wal.stat().st_size if wal.exists() else 0))
    time.sleep(retention_s + 2)  # everything finished is past retention now ...
    finished = "SELECT count(*) FROM workspec WHERE state IN (2, 3, 5)"
    sup.wait_for(lambda: int(ctx.target.sql(finished)[0][0]) <= 1,
                 max(30.0, 3 * retention_s), "finished work past retention to be pruned")  # fmt: skip
    kept = {r[0] for r in ctx.target.sql("SELECT id FROM workspec")}
    if str(parent.id) not in kept:
        report.fail("the finished parent of an unfinished dependent was pruned")
    outlived = int(ctx.target.sql(finished)[0][0]) - 1
    if outlived:
        report.fail(f"{outlived} finished rows outlived the retention")
    if str(dependent.id) not in kept:
        report.fail("the waiting dependent is gone")
    half = samples[len(samples) // 2][1]
    final = ctx.target.path.stat().st_size
    if final > 2 * half:
        report.fail(f"the file kept growing: {half} bytes half-way, {final} at the end")
    wal_max = max(s[2] for s in samples)
    if wal_max > 64 * 1024 * 1024:
        report.fail(f"the -wal reached {wal_max} bytes")
    sup.stop_all()
    report.merge(check(ctx.target, sup.ledger, jobs={}, expect=None))
    report.figures.update(enqueued=per * waves + 3, file_bytes_half=half, file_bytes_end=final, wal_max_bytes=wal_max,
                          rows_max=max(s[0] for s in samples))  # fmt: skip
    wm.close()
    return report


def test_case21_finished_work_is_pruned_after_retention_except_what_a_dependent_needs(tmp_path: Path) -> None:
    registry.run("retention_and_growth", "sqlite", "fast", tmp_path).assert_ok()
