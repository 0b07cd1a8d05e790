"""Rolling deploys, chains and cancellation (reliability.md §4.2, cases 25-27)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from workmanager import ExistingWorkPolicy, OneTimeWorkRequest, PeriodicWorkRequest, WorkInfo

from .harness import registry
from .harness.app import Mark, NewWorker
from .harness.checker import Report, check
from .harness.drive import drain, enqueue_jobs, manager, unfinished
from .harness.registry import Context, scenario
from .harness.target import require_postgres

S = WorkInfo.State

# -- case 25 ------------------------------------------------------------------------------------


@scenario("rolling_deploy", case="25", title="a worker name only some processes know (rolling deploy)",
          fast_n=100, soak_n=100, backends=("sqlite", "postgres"))  # fmt: skip
def rolling_deploy(ctx: Context) -> Report:
    """Process A (old release) knows only ``mark``; B also knows ``new_worker``. A never takes a
    ``new_worker`` job (not even to fail it): B runs all of them, A and B share the rest."""
    wm = manager(ctx)
    new_jobs = enqueue_jobs(wm, ctx.n, "new", worker=NewWorker, sleep_max=0.01)
    old_jobs = enqueue_jobs(wm, ctx.n, "old", sleep_max=0.01)
    sup = ctx.supervisor(WM_CONCURRENCY="2")
    a = sup.start_worker(WM_WORKERS="mark")
    time.sleep(1.0)  # A alone first: the new jobs wait for B rather than fail
    report = Report()
    if any(e["pid"] == a.pid and e["job"].startswith("new") for e in sup.ledger.events()):
        report.fail("the old-release process ran a worker it does not know")
    failed_early = int(ctx.target.sql("SELECT count(*) FROM workspec WHERE state = 3")[0][0])
    if failed_early:
        report.fail(f"{failed_early} jobs FAILED while only the old release ran")
    b = sup.start_worker(WM_WORKERS="mark,new_worker")
    sup.wait_for(lambda: unfinished(ctx) == 0, 600, "the queue to drain")
    by_a = [e["job"] for e in sup.ledger.events() if e["pid"] == a.pid and e["event"] == "start"]
    if any(j.startswith("new") for j in by_a):
        report.fail(f"A started {sum(j.startswith('new') for j in by_a)} new_worker jobs")
    for proc in (a, b):
        sup.term(proc)
        proc.wait(timeout=60)
    report.merge(check(ctx.target, sup.ledger, jobs={**new_jobs, **old_jobs}))
    report.figures.update(enqueued=2 * ctx.n, old_release_ran=len(by_a))
    wm.close()
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case25_a_process_never_claims_a_worker_name_it_does_not_know(tmp_path: Path, backend: str) -> None:
    if backend == "postgres":
        require_postgres()
    registry.run("rolling_deploy", backend, "fast", tmp_path).assert_ok()


# -- case 26 ------------------------------------------------------------------------------------


@scenario("chains_under_crashes", case="26", title="A -> (B, C) -> D chains under kills, failures, cancels",
          fast_n=30, soak_n=200, backends=("sqlite", "postgres"))  # fmt: skip
def chains_under_crashes(ctx: Context) -> Report:
    """``n`` chains A -> (B, C) -> D; workers die at chain.unblock.mid (p 0.2) and at random. In a
    tenth of the chains B fails for good (D must be FAILED), in another tenth A is cancelled
    while it runs (B, C, D CANCELLED). Elsewhere D runs once B and C have both succeeded, with
    both their outputs merged into its input."""
    wm = manager(ctx)
    tenth = max(1, ctx.n // 10)
    chains: list[tuple[str, dict[str, OneTimeWorkRequest]]] = []
    for i in range(ctx.n):
        kind = "fail" if i < tenth else "cancel" if i < 2 * tenth else "ok"
        req = {
            "A": OneTimeWorkRequest(
                Mark, input_data={"job": f"A{i}", "ticks": 3000 if kind == "cancel" else 0}
            ),
            "B": OneTimeWorkRequest(
                Mark, input_data={"job": f"B{i}", "fail": kind == "fail", "sleep_max": 0.02}
            ),
            "C": OneTimeWorkRequest(Mark, input_data={"job": f"C{i}", "sleep_max": 0.02}),
            "D": OneTimeWorkRequest(Mark, input_data={"job": f"D{i}"}),
        }
        wm.begin_with(req["A"]).then([req["B"], req["C"]]).then(req["D"]).enqueue()
        chains.append((kind, req))
    spec = "chain.unblock.mid=kill:0.2"
    sup = ctx.supervisor(WM_CONCURRENCY="3", WM_MAX_ORPHANED="1000")
    # Cancel each doomed A as soon as it has started (it would run 30 s), replacing workers
    # that die at the fault point meanwhile.
    pending = {str(req["A"].input_data["job"]): req["A"] for kind, req in chains if kind == "cancel"}

    def cancel_started() -> bool:
        starts = sup.ledger.starts()
        for job, a in list(pending.items()):
            if starts[job]:
                wm.cancel_work_by_id(a.id)
                del pending[job]
        return not pending

    sup.keep_alive(2, cancel_started, faults_spec=spec, timeout=600)
    # keep=2: both workers may just have died at the fault point, and chaos must not count the
    # workers to keep from those alive (none: the soak once stood still here for 15 minutes).
    sup.chaos(lambda: unfinished(ctx) == 0, every=(0.5, 2.0), timeout=900,
              restart=lambda: sup.start_worker(faults_spec=spec), keep=2)  # fmt: skip
    drain(ctx, sup)
    expect: dict[str, S] = {}
    jobs: dict[str, str] = {}
    want = {
        "ok": dict(A=S.SUCCEEDED, B=S.SUCCEEDED, C=S.SUCCEEDED, D=S.SUCCEEDED),
        "fail": dict(A=S.SUCCEEDED, B=S.FAILED, C=S.SUCCEEDED, D=S.FAILED),
        "cancel": dict(A=S.CANCELLED, B=S.CANCELLED, C=S.CANCELLED, D=S.CANCELLED),
    }
    for kind, req in chains:
        for step, r in req.items():
            expect[str(r.id)] = want[kind][step]
            jobs[str(r.id)] = str(r.input_data["job"])
    report = check(
        ctx.target, sup.ledger, jobs=jobs, expect=expect, reruns_ok=[j for j in jobs.values() if j[0] == "A"]
    )
    by_job = sup.ledger.by_job()
    for kind, req in chains:
        d = str(req["D"].input_data["job"])
        b, c = (str(req[s].input_data["job"]) for s in "BC")
        d_starts = [e for e in by_job.get(d, []) if e["event"] == "start"]
        if kind != "ok":
            if d_starts:
                report.fail(f"{d} ran though its chain was {kind}ed")
            continue
        ends = {
            j: min((e["t"] for e in by_job.get(j, []) if e["event"] == "end"), default=None) for j in (b, c)
        }
        if d_starts and any(t is None or t > d_starts[0]["t"] for t in ends.values()):
            report.fail(f"{d} started before both of {b} and {c} had ended")
        d_ends = [e for e in by_job.get(d, []) if e["event"] == "end"]
        if d_ends and not {f"out_{b}", f"out_{c}"} <= set(d_ends[-1]["keys"]):
            report.fail(f"{d}'s merged input lacks an output: {d_ends[-1]['keys']}")
    report.figures["enqueued"] = 4 * ctx.n
    wm.close()
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case26_chains_stay_whole_under_kills_failures_and_cancels(tmp_path: Path, backend: str) -> None:
    if backend == "postgres":
        require_postgres()
    report = registry.run("chains_under_crashes", backend, "fast", tmp_path)
    report.assert_ok()


# -- case 27 ------------------------------------------------------------------------------------


@scenario("cancellation_races", case="27", title="cancel by id, unique name and tag at random moments",
          fast_n=150, soak_n=500, backends=("sqlite", "postgres"))  # fmt: skip
def cancellation_races(ctx: Context) -> Report:
    """``n`` short jobs (a third unique, all tagged by tens) and a periodic item; the workers
    pause after claims and before completion commits (sleep faults) to widen the windows; the
    test cancels by id, unique name and tag at seeded random moments. Every job ends CANCELLED
    or SUCCEEDED (never RUNNING); a cancelled run's late end is fenced off; the cancelled
    periodic item never starts again."""
    wm = manager(ctx)
    rng = __import__("random").Random(ctx.seed)
    requests: list[tuple[OneTimeWorkRequest, str | None]] = []
    for i in range(ctx.n):
        r = OneTimeWorkRequest(Mark, input_data={"job": f"j{i}", "sleep_max": 0.05}, tags=[f"t{i // 10}"])
        name = f"u{i}" if i % 3 == 0 else None
        if name:
            wm.enqueue_unique_work(name, ExistingWorkPolicy.KEEP, r)
        else:
            wm.enqueue(r)
        requests.append((r, name))
    periodic = PeriodicWorkRequest(Mark, timedelta(seconds=1), input_data={"job": "p"})
    wm.enqueue(periodic)
    spec = "claim.after_commit=sleep:0.2:0.05,complete.before_commit=sleep:0.2:0.05"
    sup = ctx.supervisor(WM_CONCURRENCY="3")
    for _ in range(2):
        sup.start_worker(faults_spec=spec)
    cancelled_at: dict[str, float] = {}
    order = list(range(ctx.n))
    rng.shuffle(order)
    for i in order[: ctx.n // 2]:
        r, name = requests[i]
        how = rng.choice(["id", "name", "tag"] if name else ["id", "tag"])
        if how == "id":
            wm.cancel_work_by_id(r.id)
        elif how == "name":
            assert name is not None
            wm.cancel_unique_work(name)
        else:
            wm.cancel_all_work_by_tag(f"t{i // 10}")
        cancelled_at[str(r.id)] = time.time()
        time.sleep(rng.uniform(0, 0.02))
    sup.wait_for(lambda: sup.ledger.count("end")["p"] >= 1, 60, "the periodic item to run")
    wm.cancel_work_by_id(periodic.id)
    periodic_cancelled = time.time()
    sup.wait_for(lambda: unfinished(ctx) == 0, 600, "the races to settle")
    time.sleep(1.5)  # a cancelled periodic item that still ran would have started by now
    report = Report()
    states = {r[0]: int(r[1]) for r in ctx.target.sql("SELECT id, state FROM workspec")}
    for r, _ in requests:
        state = states.get(str(r.id))
        if state not in (S.SUCCEEDED.value, S.CANCELLED.value):
            report.fail(f"{r.input_data['job']} ended {state}, neither SUCCEEDED nor CANCELLED")
        info = wm.get_work_info_by_id(uuid.UUID(str(r.id)))
        if state == S.CANCELLED.value and info is not None and "pid" in info.output_data:
            report.fail(f"{r.input_data['job']} is CANCELLED but carries a run's success output")
    late = [
        e
        for e in sup.ledger.events()
        if e["job"] == "p" and e["event"] == "start" and e["t"] > periodic_cancelled + 0.5
    ]
    if late:
        report.fail(f"the cancelled periodic item started {len(late)} more times")
    sup.stop_all()
    jobs = {str(r.id): str(r.input_data["job"]) for r, _ in requests}
    report.merge(check(ctx.target, sup.ledger, jobs=jobs, expect=None, reruns_ok=["p"]))
    cancelled = sum(1 for r, _ in requests if states.get(str(r.id)) == S.CANCELLED.value)
    fenced = sum(
        1 for r, _ in requests
        if states.get(str(r.id)) == S.CANCELLED.value and sup.ledger.count("end")[str(r.input_data["job"])]
    )  # fmt: skip
    report.figures.update(enqueued=ctx.n + 1, cancels=len(cancelled_at) + 1, cancelled=cancelled,
                          late_ends_fenced=fenced)  # fmt: skip
    wm.close()
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case27_cancels_racing_claims_and_completions_end_cancelled_or_succeeded(
    tmp_path: Path, backend: str
) -> None:
    if backend == "postgres":
        require_postgres()
    registry.run("cancellation_races", backend, "fast", tmp_path).assert_ok()
