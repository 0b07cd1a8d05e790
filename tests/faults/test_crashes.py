"""Crashes and recovery on the default backend (reliability.md §4.2, cases 1-8)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from workmanager import OneTimeWorkRequest, StopReason, WorkInfo

from .harness import registry
from .harness.app import Hang, Mark, Suicide
from .harness.checker import Report, check
from .harness.drive import drain, enqueue_jobs, manager, unfinished
from .harness.ledger import read_lines
from .harness.registry import Context, scenario

S = WorkInfo.State

# -- case 1 -------------------------------------------------------------------------------------


# The plan sets cases 1-8 on the default backend (SQLite): PostgreSQL repeats them smaller.
@scenario("sigkill_workers", case="1", title="random SIGKILL of workers mid-run", fast_n=300, soak_n=10_000,
          backends=("sqlite", "postgres"), soak_n_by_backend={"postgres": 2000})  # fmt: skip
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


# -- case 3 -------------------------------------------------------------------------------------


@scenario("kill_during_commit", case="3", title="SIGKILL of an enqueuer mid-batch (atomic batches, chains)",
          fast_n=16, soak_n=500)  # fmt: skip
def kill_during_commit(ctx: Context) -> Report:
    """An enqueuer writing batches of 100 (or chains of 10) back to back, killed at a random
    moment, ``n`` times: every batch and chain is all there or not at all; every acknowledged
    one is there."""
    sup = ctx.supervisor()
    report = Report()
    acks = ctx.workdir / "acks.jsonl"
    # One fork server: each enqueuer starts in milliseconds, not a Python start-up's 0.4 s.
    server = sup.run_script(["enqueuer.py", "serve"], pipes=True)
    assert server.stdin is not None and server.stdout is not None
    acks.touch()
    seen = 0
    for round_ in range(ctx.n):
        mode, batch, prefix = ("chain", 10, f"c{round_}_") if round_ % 2 else ("plain", 100, f"e{round_}_")
        server.stdin.write(json.dumps(["forever", "--acks", str(acks), "--batch", str(batch), "--prefix", prefix]
                                      + (["--chain"] if mode == "chain" else [])) + "\n")  # fmt: skip
        pid = int(server.stdout.readline())
        ready = json.dumps({"event": "ready", "pid": pid}, separators=(",", ":")).encode()
        with acks.open("rb") as f:  # only what is new: the file grows by megabytes
            f.seek(seen)
            new = bytearray()
            sup.wait_for(
                lambda f=f, new=new, ready=ready: new.extend(f.read()) or ready in new,
                60,
                "the enqueuer to start",
            )
            seen = f.tell()
        time.sleep(sup.rng.uniform(0.0, 0.1))
        sup.log_fault("sigkill", pid)
        os.kill(pid, signal.SIGKILL)
    server.stdin.close()
    server.wait(60)
    lines = read_lines(acks)
    present = {r[0] for r in ctx.target.sql("SELECT id FROM workspec")}
    acked = {i for e in lines if e["event"] == "ack" for i in e["ids"]}
    torn = 0
    for e in lines:
        if e["event"] != "try":
            continue
        there = [i in present for i in e["ids"]]
        if any(there) and not all(there):
            torn += 1
            report.fail(f"a batch of {len(there)} is torn: {sum(there)} rows present")
    lost = len(acked - present)
    if lost:
        report.fail(f"{lost} acknowledged enqueues are missing")
    report.figures.update(enqueued=len(present), lost=lost, torn_batches=torn)
    report.merge(check(ctx.target, sup.ledger, jobs={}, expect=None))
    return report


def test_case3_a_killed_batch_enqueue_is_all_or_nothing(tmp_path: Path) -> None:
    report = registry.run("kill_during_commit", "sqlite", "fast", tmp_path)
    report.assert_ok()
    assert report.figures["fault:sigkill"] == 16
    assert report.figures["enqueued"] > 0


# -- case 4 -------------------------------------------------------------------------------------


@scenario("whole_system_crash", case="4", title="every process SIGKILLed at once, then restarted",
          fast_n=1, soak_n=3, backends=("sqlite", "postgres"))  # fmt: skip
def whole_system_crash(ctx: Context) -> Report:
    """3 enqueuers and 2 workers, all SIGKILLed at once (a reboot), ``n`` times; after each,
    two fresh workers must take back every RUNNING row of the dead (G4), and at the end every
    acknowledged enqueue is there and SUCCEEDED."""
    sup = ctx.supervisor(WM_CONCURRENCY="2")
    acks = ctx.workdir / "acks.jsonl"
    report = Report()
    recovery_ms: list[int] = []
    for round_ in range(ctx.n):
        for k in range(3):
            sup.run_script(["enqueuer.py", "forever", "--acks", str(acks), "--prefix", f"r{round_}p{k}_"])
        sup.start_worker()
        sup.start_worker()
        time.sleep(2.0 + sup.rng.uniform(0, 2.0))
        alive = sup.alive()
        for proc in alive:  # as close to "at once" as signals get
            sup.log_fault("sigkill", proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
        for proc in alive:
            proc.wait()
        running = int(ctx.target.sql("SELECT count(*) FROM workspec WHERE state = 1")[0][0])
        t0 = time.monotonic()
        sup.start_worker()
        sup.start_worker()
        sup.wait_for(
            lambda: (
                int(
                    ctx.target.sql(
                        "SELECT count(*) FROM workspec WHERE state = 1 AND runner_id IN "
                        "(SELECT id FROM runner WHERE pid NOT IN (?, ?))",
                        tuple(p.pid for p in sup.alive()[-2:]),
                    )[0][0]
                )
                == 0
            ),
            60,
            "the dead processes' RUNNING rows to be taken back",
        )
        recovery_ms.append(round((time.monotonic() - t0) * 1000))
        report.figures["running_at_crash"] = report.figures.get("running_at_crash", 0) + running
    drain(ctx, sup)
    lines = read_lines(acks)
    acked = {i: j for e in lines if e["event"] == "ack" for i, j in zip(e["ids"], e["jobs"], strict=True)}
    present = {r[0]: json.loads(r[1])["job"] for r in ctx.target.sql("SELECT id, input FROM workspec")}
    missing = set(acked) - set(present)
    for work_id in sorted(missing)[:20]:
        report.fail(f"acknowledged enqueue {acked[work_id]} ({work_id}) is missing after the crash")
    report.merge(check(ctx.target, sup.ledger, jobs={**present, **acked}))
    report.figures["enqueued"] = len(present)
    report.figures["max_recovery_ms"] = max(recovery_ms)
    return report


def test_case4_after_a_whole_system_crash_every_acknowledged_job_is_there_and_runs(tmp_path: Path) -> None:
    report = registry.run("whole_system_crash", "sqlite", "fast", tmp_path)
    report.assert_ok()
    assert report.figures["enqueued"] > 0


# -- case 5 -------------------------------------------------------------------------------------


@scenario("zombie_worker", case="5", title="a worker SIGSTOPped past its lease, then resumed",
          fast_n=1, soak_n=4, backends=("sqlite", "postgres"))  # fmt: skip
def zombie_worker(ctx: Context) -> Report:
    """``n`` jobs of 5 s running in A; A is SIGSTOPped for 6 s with a 2 s lease; B takes them
    over. When A resumes it is told it lost them (``stopped``), its progress writes are
    dropped, and every job records B's run as its outcome."""
    wm = manager(ctx)
    lease = {"WM_HEARTBEAT": "0.2", "WM_LEASE": "2", "WM_CONCURRENCY": str(ctx.n)}
    jobs = enqueue_jobs(wm, ctx.n, "z", ticks=500, progress=True)
    sup = ctx.supervisor()
    a = sup.start_worker(**lease)
    sup.wait_for(lambda: len(sup.ledger.starts()) == ctx.n, 60, "A to start every job")
    sup.stop(a)
    b = sup.start_worker(**lease)
    sup.wait_for(lambda: all(c == 2 for c in sup.ledger.starts().values()), 60, "B to take every job over")
    time.sleep(max(0.0, 6.0 - 0.5))
    sup.cont(a)
    drain(ctx, sup)
    report = check(ctx.target, sup.ledger, jobs=jobs)
    for work_id, job in jobs.items():
        info = wm.get_work_info_by_id(uuid.UUID(work_id))
        assert info is not None
        if info.output_data.get("pid") != b.pid:
            report.fail(
                f"{job}: the outcome is from pid {info.output_data.get('pid')}, not the live run in B"
            )
        a_events = [e["event"] for e in sup.ledger.by_job()[job] if e["pid"] == a.pid]
        if "stopped" not in a_events:
            report.fail(f"{job}: the zombie was never told it lost the work (events {a_events})")
    report.figures["enqueued"] = ctx.n
    wm.close()
    return report


def test_case5_a_zombie_owner_is_fenced_off_and_told_to_stop(tmp_path: Path) -> None:
    report = registry.run("zombie_worker", "sqlite", "fast", tmp_path)
    report.assert_ok()
    assert report.figures["fault:sigstop"] == 1


# -- case 6 -------------------------------------------------------------------------------------


@scenario("graceful_shutdown", case="6", title="SIGTERM once, twice, and with a job that ignores it",
          fast_n=20, soak_n=20)  # fmt: skip
def graceful_shutdown(ctx: Context) -> Report:
    report = Report()
    for variant in ("once", "twice", "ignores"):
        sub = Context(ctx.name, ctx.backend, ctx.tier, ctx.n, ctx.seed, ctx.workdir / variant)
        try:
            r = _shutdown_variant(sub, variant)
        finally:
            sub.close()
        r.violations = [f"[SIGTERM {variant}] {v}" for v in r.violations]
        report.merge(r)
    return report


def _shutdown_variant(ctx: Context, variant: str) -> Report:
    wm = manager(ctx)
    report = Report()
    if variant == "ignores":
        jobs = enqueue_jobs(wm, 1, "h", worker=Hang, sleep=30.0)
    else:
        jobs = enqueue_jobs(wm, ctx.n, "s", sleep=2.0)
    sup = ctx.supervisor(WM_CONCURRENCY="4", WM_GRACE="3" if variant != "ignores" else "1")
    worker = sup.start_worker()
    sup.wait_for(lambda: len(sup.ledger.starts()) >= 1, 60, "a start")
    time.sleep(0.3)
    termed_at = time.time()
    sup.term(worker)
    if variant == "twice":
        time.sleep(0.5)
        sup.log_fault("sigterm:second", worker.pid)  # a crash, by contract: its runs re-run
        worker.send_signal(signal.SIGTERM)
    try:
        code = worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        report.fail("the worker did not exit within 30 s of SIGTERM")
        sup.kill9(worker)
        code = None
    late = [
        e
        for e in sup.ledger.events()
        if e["event"] == "start" and e["pid"] == worker.pid and e["t"] > termed_at
    ]
    if late:
        report.fail(f"{len(late)} runs started after the first SIGTERM")
    running = int(ctx.target.sql("SELECT count(*) FROM workspec WHERE state = 1")[0][0])
    if variant == "once":
        if code != 0:
            report.fail(f"exit status {code} after one SIGTERM")
        if running:
            report.fail(f"{running} rows left RUNNING by a graceful shutdown (left for the rescuer)")
    if variant == "ignores" and running:
        report.fail(f"{running} rows left RUNNING after the grace period: not released")
    report.figures["exit_code"] = code if code is not None else -1
    if variant == "ignores":
        # The hung run is released, not finished: let a fresh worker run it (a short one now).
        with wm._storage.transaction() as tx:
            tx._conn.execute("UPDATE workspec SET input = ? WHERE state = 0",  # type: ignore[attr-defined]
                             ('{"job":"h0","sleep":0.1}',))  # fmt: skip
    drain(ctx, sup)
    # A run released at shutdown runs again by design; Hang cannot say it was stopped.
    report.merge(check(ctx.target, sup.ledger, jobs=jobs, reruns_ok=["h0"]))
    report.figures["enqueued"] = len(jobs)
    wm.close()
    return report


def test_case6_sigterm_releases_or_finishes_work_and_a_second_one_is_a_crash_recovered_later(
    tmp_path: Path,
) -> None:
    report = registry.run("graceful_shutdown", "sqlite", "fast", tmp_path)
    report.assert_ok()


# -- case 7 -------------------------------------------------------------------------------------


@scenario("poison_job", case="7", title="a job that SIGKILLs its worker every time, among normal jobs",
          fast_n=100, soak_n=500, backends=("sqlite", "postgres"))  # fmt: skip
def poison_job(ctx: Context) -> Report:
    wm = manager(ctx)
    poison = OneTimeWorkRequest(Suicide, input_data={"job": "poison"})
    dependent = OneTimeWorkRequest(Mark, input_data={"job": "after-poison"})
    wm.begin_with(poison).then(dependent).enqueue()
    jobs = enqueue_jobs(wm, ctx.n, "n", sleep_max=0.02)
    # Two slots: the job sharing a process with the poison at its first crash dies with it,
    # but after that the poison is a suspect and runs alone among suspects, so its
    # neighbours are not orphaned three times in a row and all succeed.
    sup = ctx.supervisor(WM_CONCURRENCY="2", WM_MAX_ORPHANED="3")
    started = sup.keep_alive(2, lambda: unfinished(ctx) == 0, timeout=600)
    drain(ctx, sup)
    expect = {work_id: S.SUCCEEDED for work_id in jobs}
    expect |= {str(poison.id): S.FAILED, str(dependent.id): S.FAILED}
    report = check(ctx.target, sup.ledger, jobs={**jobs, str(poison.id): "poison", str(dependent.id): "after-poison"},
                   expect=expect, reruns_ok=["poison"])  # fmt: skip
    info = wm.get_work_info_by_id(poison.id)
    assert info is not None
    if info.stop_reason is not StopReason.WORKER_LOST:
        report.fail(f"the poison job ended with {info.stop_reason}, not WORKER_LOST")
    starts = sup.ledger.starts()["poison"]
    if starts != 3:
        report.fail(f"the poison job started {starts} times, not 3")
    restarts = started - 2
    if restarts > 3:
        report.fail(f"the pool was restarted {restarts} times for one poison job")
    # The fix: after its first crash the poison is a suspect, and so is every job that died
    # beside it, so no job loses a second run beside the poison.
    events = sup.ledger.events()
    poison_pids = {e["pid"] for e in events if e["event"] == "start" and e["job"] == "poison"}
    lost_beside: Counter[str] = Counter(
        e["job"] for e in events
        if e["event"] == "start" and e["job"] != "poison" and e["pid"] in poison_pids
        and not any(f["event"] == "end" and f["job"] == e["job"] and f["pid"] == e["pid"] for f in events)
    )  # fmt: skip
    for job, lost in lost_beside.items():
        if lost > 1:
            report.fail(f"{job} lost {lost} runs beside the poison job")
    report.figures.update(enqueued=ctx.n + 2, poison_starts=starts, pool_restarts=restarts,
                          bystander_runs_lost=sum(lost_beside.values()))  # fmt: skip
    wm.close()
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case7_a_poison_job_fails_as_worker_lost_after_three_starts_and_its_neighbours_succeed(
    tmp_path: Path, backend: str
) -> None:
    report = registry.run("poison_job", backend, "fast", tmp_path)
    report.assert_ok()


# -- case 8 -------------------------------------------------------------------------------------


@scenario("hang_and_timeout", case="8", title="jobs past the execution time limit (cooperative and hung)",
          fast_n=20, soak_n=200)  # fmt: skip
def hang_and_timeout(ctx: Context) -> Report:
    """A job that would run an hour, in a process with a 2 s limit and 2 slots, among ``n``
    short jobs: it is stopped at the limit (counted, re-queued) and the short jobs all run.
    A job that ignores the stop request (``Hang``) must not hold its slot for ever either."""
    wm = manager(ctx)
    slow = OneTimeWorkRequest(Mark, input_data={"job": "slow", "sleep": 3600.0})
    hung = OneTimeWorkRequest(Hang, input_data={"job": "hung", "sleep": 3600.0})
    wm.enqueue([slow, hung])
    sup = ctx.supervisor(WM_CONCURRENCY="2", WM_TIMEOUT="2")
    sup.start_worker()
    sup.wait_for(
        lambda: sup.ledger.starts()["slow"] >= 1 and sup.ledger.starts()["hung"] >= 1, 60, "both to start"
    )
    jobs = enqueue_jobs(wm, ctx.n, "q", sleep=0.01)
    report = Report()
    try:
        sup.wait_for(lambda: all(sup.ledger.starts()[j] for j in jobs.values()), 60, "the short jobs to run")
    except AssertionError as exc:
        report.fail(f"short jobs starved behind the over-time jobs: {exc}")
    stopped = [e for e in sup.ledger.events() if e["job"] == "slow" and e["event"] == "stopped"]
    if not stopped:
        report.fail("the over-time job was never asked to stop")
    for big in (slow, hung):
        wm.cancel_work_by_id(big.id)
    drain(ctx, sup)
    expect = {**{i: S.SUCCEEDED for i in jobs}, str(slow.id): S.CANCELLED, str(hung.id): S.CANCELLED}
    report.merge(check(ctx.target, sup.ledger, jobs={**jobs, str(slow.id): "slow", str(hung.id): "hung"},
                       expect=expect, reruns_ok=["slow", "hung"]))  # fmt: skip
    report.figures["enqueued"] = ctx.n + 2
    wm.close()
    return report


def test_case8_work_past_its_time_limit_is_stopped_and_does_not_starve_the_rest(tmp_path: Path) -> None:
    report = registry.run("hang_and_timeout", "sqlite", "fast", tmp_path)
    report.assert_ok()
