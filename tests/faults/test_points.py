"""Case 2: a SIGKILL at each named fault point (reliability.md §4.2), 200 jobs a point in the soak.

Worker-side points run two one-slot worker processes armed with ``<point>=kill:p``, replaced
as they die, until the queue drains; enqueue-side points run an enqueuer process armed the
same way, restarted from where it died. Every re-run must follow a kill of the process that
ran the job before (the checker), and one slot per process bounds them: a kill can cut the
run in flight and one that ended but whose completion had not committed yet (it rides with
the next turn's claim: a group commit).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from workmanager import OneTimeWorkRequest, PeriodicWorkRequest, WorkInfo, faults

from .harness import registry
from .harness.app import Mark
from .harness.checker import Report, check, periods_doubled
from .harness.drive import drain, enqueue_jobs, manager, recover, unfinished
from .harness.ledger import read_lines
from .harness.registry import Context, scenario

S = WorkInfo.State

PROBABILITY = {"heartbeat": 0.2, "rescue.mid_batch": 0.2, "periodic.reschedule.mid": 0.1}


def _sub(ctx: Context, point: str) -> Context:
    return Context(ctx.name, ctx.backend, ctx.tier, ctx.n, ctx.seed, ctx.workdir / point)


def kill_spec(point: str, ctx: Context) -> str:
    # The fast tier's few jobs need a likelier kill, or some runs would see none at all.
    p = PROBABILITY.get(point, 0.05) if ctx.soak else max(0.2, PROBABILITY.get(point, 0.0))
    return f"{point}=kill:{p}"


def _point_kills(report: Report, point: str) -> int:
    return report.figures.get(f"fault:point:{point}:kill", 0)


# -- worker-side points -------------------------------------------------------------------------


def worker_point(ctx: Context, point: str) -> Report:
    wm = manager(ctx)
    # Every kill here is the test's, not the job's: no job should be failed as a crash loop.
    sup = ctx.supervisor(WM_CONCURRENCY="1", WM_MAX_ORPHANED="1000")
    env: dict[str, str] = {}
    chaos = False
    if point == "chain.unblock.mid":
        jobs: dict[str, str] = {}
        for i in range(ctx.n // 2):
            a = OneTimeWorkRequest(Mark, input_data={"job": f"a{i}"})
            b = OneTimeWorkRequest(Mark, input_data={"job": f"b{i}"})
            wm.begin_with(a).then(b).enqueue()
            jobs |= {str(a.id): f"a{i}", str(b.id): f"b{i}"}
    else:
        sleep_max = {"heartbeat": 0.1, "rescue.mid_batch": 0.3}.get(point, 0.02)
        jobs = enqueue_jobs(wm, ctx.n, "j", sleep_max=sleep_max)
    if point == "heartbeat":
        env = {"WM_HEARTBEAT": "0.1", "WM_LEASE": "5"}
    if point == "rescue.mid_batch":
        env = {"WM_CONCURRENCY": "2"}
        chaos = True  # someone must die for there to be anything to rescue
    if chaos:
        for _ in range(2):
            sup.start_worker(faults_spec=kill_spec(point, ctx), **env)
        sup.chaos(
            lambda: unfinished(ctx) == 0,
            every=(0.3, 1.0),
            timeout=600,
            restart=lambda: sup.start_worker(faults_spec=kill_spec(point, ctx), **env),
        )
    else:
        sup.keep_alive(2, lambda: unfinished(ctx) == 0, faults_spec=kill_spec(point, ctx), **env)
    drain(ctx, sup)
    report = check(ctx.target, sup.ledger, jobs=jobs)
    # One slot per process, yet a kill can cut two runs: the one running and the one that ended
    # just before, whose completion rides with the next turn's transaction (group commit).
    kills = _point_kills(report, point) + report.figures.get("fault:sigkill", 0)
    slots = int(env.get("WM_CONCURRENCY", "1"))
    if report.figures["reruns"] > 2 * slots * kills:
        report.fail(
            f"{point}: {report.figures['reruns']} re-runs after {kills} kills of {slots}-slot processes"
        )
    report.figures["enqueued"] = len(jobs)
    wm.close()
    return report


def periodic_point(ctx: Context, point: str) -> Report:
    wm = manager(ctx)
    from datetime import timedelta

    items = {}
    for i in range(5):
        r = PeriodicWorkRequest(Mark, timedelta(seconds=1), input_data={"job": f"p{i}"})
        wm.enqueue(r)
        items[str(r.id)] = f"p{i}"
    sup = ctx.supervisor(WM_CONCURRENCY="1", WM_MAX_ORPHANED="1000")
    run_for = 30.0 if ctx.soak else 8.0
    deadline = time.monotonic() + run_for
    sup.keep_alive(2, lambda: time.monotonic() > deadline, faults_spec=kill_spec(point, ctx))
    recover(ctx, sup)
    report = check(ctx.target, sup.ledger, jobs=items, expect=S.ENQUEUED, reruns_ok=items.values())
    doubled = periods_doubled(sup.ledger, items.values(), interval_s=1.0, fault_log=sup.faults_logged())
    report.figures["periods_doubled"] = len(doubled)
    for job in doubled:
        report.fail(f"periodic {job} ran twice in one period with no fault to explain it")
    ends = sup.ledger.count("end")
    for job in items.values():
        if ends[job] < 2:
            report.fail(f"periodic {job} ended only {ends[job]} period(s) in {run_for:.0f} s")
    report.figures["enqueued"] = len(items)
    wm.close()
    return report


def prune_point(ctx: Context, point: str) -> Report:
    """Finished work past retention; three workers in a row die in the middle of pruning it at
    start-up (each must leave all of it: a prune is one transaction); a fourth prunes it all."""
    wm = manager(ctx)
    jobs = enqueue_jobs(wm, ctx.n, "j")
    # The drain keeps the default retention: it must not prune what the check then looks for.
    sup = ctx.supervisor(WM_CONCURRENCY="4")
    drain(ctx, sup)
    report = check(ctx.target, sup.ledger, jobs=jobs)
    time.sleep(1.2)  # all of it is past retention now

    def rows() -> int:
        return int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])

    for _ in range(3):
        proc = sup.start_worker(faults_spec=f"{point}=kill", WM_RETENTION="1")
        proc.wait(timeout=60)
        if rows() != ctx.n:
            report.fail(f"a kill in the middle of pruning left {rows()} of {ctx.n} rows: half a prune")
    survivor = sup.start_worker(WM_RETENTION="1")
    sup.wait_for(lambda: rows() == 0, 30, "the prune")
    sup.term(survivor)
    survivor.wait(timeout=30)
    after = check(ctx.target, sup.ledger, jobs={}, expect=None)
    report.violations += after.violations
    report.figures.update({k: v for k, v in after.figures.items() if k.startswith("fault:")})
    report.figures["enqueued"] = ctx.n
    wm.close()
    return report


# -- enqueue-side points ------------------------------------------------------------------------


def enqueue_point(ctx: Context, point: str) -> Report:
    """An enqueuer killed at the point, restarted from where it died; nothing acknowledged is lost,
    and the call in flight when it died is absent (before commit) or present (after)."""
    wm = manager(ctx)
    sup = ctx.supervisor()
    acks = ctx.workdir / "acks.jsonl"
    mode = "replace" if point == "unique.replace.mid" else "plain"
    report = Report()
    next_index = 0
    kills = 0
    for _ in range(ctx.n * 2):
        if next_index >= ctx.n:
            break
        proc = sup.run_script(
            ["enqueuer.py", mode, "--acks", str(acks), "--start", str(next_index),
             "--count", str(ctx.n - next_index)],
            faults_spec=kill_spec(point, ctx),
        )  # fmt: skip
        proc.wait(timeout=300)
        lines = read_lines(acks)
        tried = [e for e in lines if e["event"] == "try"]
        acked = {i for e in lines if e["event"] == "ack" for i in e["ids"]}
        if proc.returncode == 0:
            next_index = ctx.n
            break
        kills += 1
        in_flight = [e for e in tried if e["ids"][0] not in acked]
        if not in_flight:
            report.fail(f"enqueuer died ({proc.returncode}) outside an enqueue call")
            break
        last = in_flight[-1]
        present = bool(ctx.target.sql("SELECT count(*) FROM workspec WHERE id = ?", (last["ids"][0],))[0][0])
        want_present = point == "enqueue.after_commit"
        if present != want_present:
            report.fail(f"{point}: the enqueue in flight at the kill is {'present' if present else 'absent'}")
        next_index = int(last["jobs"][-1][1:]) + 1
    lines = read_lines(acks)
    acked_jobs = {
        i: j for e in lines if e["event"] == "ack" for i, j in zip(e["ids"], e["jobs"], strict=True)
    }
    present_ids = {r[0] for r in ctx.target.sql("SELECT id FROM workspec")}
    if mode == "replace":
        last_ack = [e for e in lines if e["event"] == "ack"][-1]["ids"][0]
        if present_ids != {last_ack}:
            report.fail(
                f"after {kills} kills mid-REPLACE the name holds {len(present_ids)} rows, not the last one"
            )
        jobs = {last_ack: acked_jobs[last_ack]}
    else:
        jobs = {i: j for i, j in acked_jobs.items()}
        jobs |= {r[0]: json.loads(r[1])["job"] for r in ctx.target.sql("SELECT id, input FROM workspec")}
    drain(ctx, sup)
    final = check(ctx.target, sup.ledger, jobs=jobs)
    final.violations += report.violations
    final.figures["enqueued"] = len(jobs)
    wm.close()
    return final


def point_case(ctx: Context, point: str) -> Report:
    sub = _sub(ctx, point)
    try:
        if point.startswith(("enqueue.", "unique.")):
            report = enqueue_point(sub, point)
        elif point == "periodic.reschedule.mid":
            report = periodic_point(sub, point)
        elif point == "prune.mid":
            report = prune_point(sub, point)
        else:
            report = worker_point(sub, point)
    finally:
        sub.close()
    if _point_kills(report, point) == 0:
        report.fail(f"{point}: no kill fired (the point is never reached?)")
    return report


@scenario("kill_at_each_point", case="2", title="SIGKILL at each named fault point", fast_n=40, soak_n=200,
          backends=("sqlite", "postgres"), soak_n_by_backend={"postgres": 50})  # fmt: skip
def kill_at_each_point(ctx: Context) -> Report:
    total = Report()
    for point in faults.POINTS:
        report = point_case(ctx, point)
        report.violations = [f"[{point}] {v}" for v in report.violations]
        total.merge(report)
    return total


@pytest.mark.parametrize("point", faults.POINTS)
def test_case2_a_kill_at_each_fault_point_loses_nothing_and_reruns_only_where_a_run_was_cut(
    tmp_path: Path, point: str
) -> None:
    with registry.context("kill_at_each_point", "sqlite", "fast", tmp_path) as ctx:
        report = point_case(ctx, point)
    report.assert_ok()
