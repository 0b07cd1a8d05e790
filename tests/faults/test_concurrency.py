"""Concurrency and SQLite locking (reliability.md §4.2, cases 9-12; case 9's race itself is
tests/integration/test_unique_races.py, run here as a scenario)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from workmanager import (
    ExistingPeriodicWorkPolicy,
    ExistingWorkPolicy,
    OneTimeWorkRequest,
    PeriodicWorkRequest,
    WorkInfo,
    WorkManager,
    errors,
)

from .harness import registry
from .harness.app import ALL, Mark
from .harness.checker import Report, check
from .harness.drive import manager, unfinished
from .harness.ledger import Ledger, read_lines
from .harness.registry import Context, scenario
from .harness.target import Target, require_postgres

S = WorkInfo.State

# -- case 9 -------------------------------------------------------------------------------------


@scenario("unique_race", case="9", title="8 processes enqueue one unique name at once, every policy",
          fast_n=10, soak_n=200)  # fmt: skip
def unique_race(ctx: Context) -> Report:
    """tests/integration/test_unique_races.py's race, each policy in turn: 8 racer processes
    released together make ``ctx.n`` enqueue_unique calls each on one name while a worker runs
    what they enqueue and a sampler checks the live chain every few ms; then the H7 checker."""
    from integration.conftest import Cluster
    from integration.test_unique_races import PERIODIC_POLICIES, POLICIES, PROCESSES, run_policy

    report = Report()
    calls = samples = 0
    for policy in POLICIES + PERIODIC_POLICIES:
        workdir = ctx.workdir / policy.replace(":", "-")
        workdir.mkdir()
        cluster = Cluster(workdir)
        try:
            samples += run_policy(cluster, policy, ctx.n).samples
        except AssertionError as exc:
            report.fail(f"{policy}: {exc}")
        finally:
            cluster.close()
        calls += PROCESSES * ctx.n
        checked = check(Target("sqlite", workdir), Ledger(cluster.ledger_dir), expect=None)
        checked.violations = [f"{policy}: {v}" for v in checked.violations]
        report.merge(checked)
    report.figures.update(enqueued=calls, samples=samples)
    return report


def test_case9_racing_unique_enqueues_of_every_policy_keep_one_live_chain(tmp_path: Path) -> None:
    registry.run("unique_race", "sqlite", "fast", tmp_path).assert_ok()


# -- case 12 ------------------------------------------------------------------------------------


def _enqueue_in_forked_child(wm: WorkManager, parent_conn_id: int, k: int, n: int, out: Path) -> None:
    # The inherited WorkManager is used as it is; its storage must have opened a connection of
    # its own in this process, never touching the parent's.
    for i in range(n):
        wm.enqueue(OneTimeWorkRequest(Mark, input_data={"job": f"c{k}_{i}"}))
    reused = id(wm._storage._conn) == parent_conn_id  # type: ignore[attr-defined]
    out.write_text("reused" if reused else "own")


def test_case12_forked_children_open_their_own_connection_and_nothing_is_corrupted(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    wm = WorkManager(db, workers=list(ALL))
    wm.enqueue(OneTimeWorkRequest(Mark, input_data={"job": "parent"}))
    parent_conn_id = id(wm._storage._conn)  # type: ignore[attr-defined]
    fork = multiprocessing.get_context("fork")
    children = [
        fork.Process(target=_enqueue_in_forked_child, args=(wm, parent_conn_id, k, 250, tmp_path / f"c{k}"))
        for k in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)

    assert [c.exitcode for c in children] == [0, 0, 0, 0]
    assert {(tmp_path / f"c{k}").read_text() for k in range(4)} == {"own"}
    wm.enqueue(OneTimeWorkRequest(Mark, input_data={"job": "parent-after"}))  # the parent's still works
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("SELECT count(*) FROM workspec").fetchone()[0] == 1002
    conn.close()
    wm.close()


MOUNTINFO = """\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
41 22 0:40 / {mount} rw,relatime shared:20 - {fstype} server:/export rw,vers=4.2
"""


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3"])
def test_case12_a_database_on_a_network_filesystem_is_refused_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    from workmanager.storage import sqlite as sqlite_storage

    fake = tmp_path / "mountinfo"
    fake.write_text(MOUNTINFO.format(mount=tmp_path, fstype=fstype))
    monkeypatch.setattr(sqlite_storage, "MOUNTINFO", str(fake))

    with pytest.raises(errors.DatabaseOpenError, match=rf"network filesystem \({fstype}\)"):
        WorkManager(tmp_path / "w.db", workers=list(ALL))
    assert not (tmp_path / "w.db").exists()


def test_case12_a_database_on_a_local_filesystem_under_a_network_mount_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workmanager.storage import sqlite as sqlite_storage

    fake = tmp_path / "mountinfo"
    # The NFS mount is a sibling folder; the database's own folder is on the local root.
    fake.write_text(MOUNTINFO.format(mount=tmp_path / "elsewhere", fstype="nfs4"))
    monkeypatch.setattr(sqlite_storage, "MOUNTINFO", str(fake))

    WorkManager(tmp_path / "w.db", workers=list(ALL)).close()


# -- case 10 ------------------------------------------------------------------------------------


@scenario("unique_upsert_while_running", case="10", title="KEEP/UPDATE enqueues never disturb a running item",
          fast_n=50, soak_n=50, backends=("sqlite", "postgres"))  # fmt: skip
def unique_upsert_while_running(ctx: Context) -> Report:
    wm = manager(ctx)
    once = OneTimeWorkRequest(Mark, input_data={"job": "once", "sleep": 3.0})
    sync = PeriodicWorkRequest(Mark, timedelta(hours=1), input_data={"job": "sync", "sleep": 3.0})
    wm.enqueue_unique_work("once", ExistingWorkPolicy.KEEP, once)
    wm.enqueue_unique_periodic_work("sync", ExistingPeriodicWorkPolicy.KEEP, sync)
    sup = ctx.supervisor(WM_CONCURRENCY="2")
    sup.start_worker()
    sup.wait_for(
        lambda: sup.ledger.starts()["once"] == 1 and sup.ledger.starts()["sync"] == 1, 60, "both to run"
    )

    def run_of(work_id: uuid.UUID) -> tuple[object, ...]:
        return ctx.target.sql("SELECT state, run_token, run_attempt_count FROM workspec WHERE id = ?",
                              (str(work_id),))[0]  # fmt: skip

    before = {"once": run_of(once.id), "sync": run_of(sync.id)}
    updated = None
    for i in range(ctx.n):
        wm.enqueue_unique_work("once", ExistingWorkPolicy.KEEP,
                               OneTimeWorkRequest(Mark, input_data={"job": f"once-keep{i}"}))  # fmt: skip
        policy = ExistingPeriodicWorkPolicy.UPDATE if i % 2 else ExistingPeriodicWorkPolicy.KEEP
        updated = PeriodicWorkRequest(
            Mark, timedelta(hours=1), input_data={"job": "sync", "sleep": 3.0, "v": i}
        )
        wm.enqueue_unique_periodic_work("sync", policy, updated)
    after = {"once": run_of(once.id), "sync": run_of(sync.id)}
    report = Report()
    for name in before:
        if before[name] != after[name] or before[name][0] != S.RUNNING.value:
            report.fail(
                f"{name}: the running row changed under {ctx.n} upserts: {before[name]} -> {after[name]}"
            )
    sup.wait_for(lambda: sup.ledger.count("end")["once"] == 1 and sup.ledger.count("end")["sync"] == 1, 60,
                 "both runs to end")  # fmt: skip
    starts = sup.ledger.starts()
    if starts["once"] != 1 or starts["sync"] != 1 or any(j.startswith("once-keep") for j in starts):
        report.fail(f"a second run appeared during the upserts: {dict(starts)}")
    stopped = [e for e in sup.ledger.events() if e["event"] == "stopped"]
    if stopped:
        report.fail(f"an upsert stopped a running item: {stopped}")
    # UPDATE applies to the next period: the stored spec is the last update's.
    stored = json.loads(ctx.target.sql("SELECT input FROM workspec WHERE id = ?", (str(sync.id),))[0][0])
    assert updated is not None
    if stored.get("v") != updated.input_data["v"]:
        report.fail(f"the periodic spec after UPDATE is {stored}, not the last update's")
    sup.stop_all()
    report.merge(check(ctx.target, sup.ledger, jobs={str(once.id): "once"}, reruns_ok=["sync"]))
    report.figures["enqueued"] = 2 + 2 * ctx.n
    wm.close()
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case10_keep_and_update_enqueues_leave_a_running_unique_item_alone(
    tmp_path: Path, backend: str
) -> None:
    if backend == "postgres":
        require_postgres()
    registry.run("unique_upsert_while_running", backend, "fast", tmp_path).assert_ok()


# -- case 11 ------------------------------------------------------------------------------------

POLLER = """
import os, sys, time
from workmanager import WorkManager
wm = WorkManager(os.environ["WORKMANAGER_DATABASE"])
stop = sys.argv[1]
while not os.path.exists(stop):
    wm._storage.work_count_by_state()
    time.sleep(0.05)
"""

LONG_READER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN")
conn.execute("SELECT count(*) FROM workspec").fetchone()
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
conn.close()
"""

WAL_LIMIT = 8 * 1024 * 1024


@scenario("sqlite_write_storm", case="11", title="4 enqueuers, 2 workers, a poller and a long reader on one file",
          fast_n=600, soak_n=10_000)  # fmt: skip
def sqlite_write_storm(ctx: Context) -> Report:
    assert ctx.target.path is not None
    report = Report()
    wm = manager(ctx)  # creates and migrates the file before the racers start
    sup = ctx.supervisor(WM_CONCURRENCY="2")
    acks = ctx.workdir / "acks.jsonl"
    stop = ctx.workdir / "stop"
    per = ctx.n // 4
    enqueuers = [
        sup.run_script(
            ["enqueuer.py", "plain", "--acks", str(acks), "--start", str(k * per), "--count", str(per)]
        )
        for k in range(4)
    ]
    sup.start_worker()
    sup.start_worker()
    poller = sup.run_script(["-c", POLLER, str(stop)])
    hold_s = 10.0 if ctx.soak else 3.0
    reader = sup.run_script(["-c", LONG_READER, str(ctx.target.path), str(hold_s)])
    wal = Path(str(ctx.target.path) + "-wal")
    wal_max = 0
    while reader.poll() is None:
        wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
        time.sleep(0.05)
    closed = time.monotonic()
    for proc in enqueuers:
        proc.wait(timeout=600)
    sup.wait_for(lambda: unfinished(ctx) == 0, 600, "the storm to drain")
    wal_max = max(wal_max, wal.stat().st_size if wal.exists() else 0)
    # Checkpoint starvation must end once the reader is gone: the -wal comes back down.
    shrunk_in = None
    while time.monotonic() - closed < 30:
        if not wal.exists() or wal.stat().st_size < WAL_LIMIT:
            shrunk_in = time.monotonic() - closed
            break
        time.sleep(0.2)
    if shrunk_in is None:
        report.fail(
            f"-wal still {wal.stat().st_size} bytes 30 s after the long reader closed (max {wal_max})"
        )
    stop.touch()
    poller.wait(timeout=30)
    codes = [p.returncode for p in enqueuers]
    if any(codes):
        report.fail(f"enqueuer exit codes {codes}: an error escaped the public API")
    log = (ctx.workdir / "scripts.log").read_text() if (ctx.workdir / "scripts.log").exists() else ""
    locked = log.count("database is locked")
    if locked:
        report.fail(f"'database is locked' reached callers {locked} times")
    lines = read_lines(acks)
    acked = {i: j for e in lines if e["event"] == "ack" for i, j in zip(e["ids"], e["jobs"], strict=True)}
    latencies = sorted(e["ms"] for e in lines if e["event"] == "ack")
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0
    if ctx.soak and p99 >= 1000:
        report.fail(f"p99 enqueue latency {p99} ms (goal < 1 s)")
    for name, want in (("journal_mode", "wal"), ("synchronous", 2)):
        got = wm._storage.pragma(name)  # type: ignore[attr-defined]
        if got != want:
            report.fail(f"PRAGMA {name} = {got!r}, expected {want!r}")
    for proc in sup.alive():
        sup.term(proc)
    report.merge(check(ctx.target, sup.ledger, jobs=acked))
    report.figures.update(enqueued=len(acked), p99_enqueue_ms=round(p99), wal_max_bytes=wal_max,
                          wal_shrunk_ms=round((shrunk_in or 0) * 1000), locked_errors=locked)  # fmt: skip
    wm.close()
    return report


def test_case11_a_write_storm_with_a_long_reader_loses_nothing_and_no_lock_error_escapes(
    tmp_path: Path,
) -> None:
    registry.run("sqlite_write_storm", "sqlite", "fast", tmp_path).assert_ok()
