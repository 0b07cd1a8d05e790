"""Time (reliability.md §4.2, cases 17-19): wall-clock jumps in worker processes, downtime, DST.

The wall clock of the worker processes is shifted through the harness's offset file (H3:
``WM_CLOCK_OFFSET_FILE``); their monotonic clock, like a real machine's, does not jump.
The in-process halves (formula, TestClock) are tests/engine/test_periodic_work.py and
tests/unit/test_cron.py; these add what only several processes show.
"""

from __future__ import annotations

import itertools
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest

from workmanager import (
    Configuration,
    ExistingPeriodicWorkPolicy,
    PeriodicWorkRequest,
    Result,
    Worker,
    WorkInfo,
    WorkManager,
    cron,
)
from workmanager.testing import TestClock

from .harness import registry
from .harness.app import Mark
from .harness.checker import Report, check
from .harness.drive import enqueue_jobs, manager
from .harness.ledger import Ledger
from .harness.registry import Context, scenario
from .harness.target import require_postgres

S = WorkInfo.State
HOUR_MS = 3_600_000
T0 = 1_790_000_000_000


def _jump(ctx: Context, offset_file: Path, offset_ms: int, sup: object) -> None:
    offset_file.write_text(str(offset_ms))
    sup.log_fault("clock_jump", 0, offset_ms=offset_ms)  # type: ignore[attr-defined]


@scenario("clock_jump_forward", case="17", title="the workers' wall clock jumps +2 h mid-run",
          fast_n=10, soak_n=40)  # fmt: skip
def clock_jump_forward(ctx: Context) -> Report:
    """``n`` jobs of 5 s running in two workers (lease 60 s) and a 15-min periodic item; the
    wall clock jumps +2 h. No live run may be taken over or run twice, and the periodic item
    runs at most once at once (not 8 times), its next period anchored after that run."""
    offset = ctx.workdir / "clock-offset"
    offset.write_text("0")
    wm = manager(ctx)
    periodic = PeriodicWorkRequest(Mark, timedelta(minutes=15), input_data={"job": "p"})
    wm.enqueue(periodic)
    jobs = enqueue_jobs(wm, ctx.n, "r", ticks=500)
    sup = ctx.supervisor(WM_CONCURRENCY=str(ctx.n // 2 + 1), WM_CLOCK_OFFSET_FILE=str(offset))
    sup.start_worker()
    sup.start_worker()
    sup.wait_for(lambda: len([j for j in sup.ledger.starts() if j != "p"]) == ctx.n, 60, "every job to start")
    sup.wait_for(lambda: sup.ledger.count("end")["p"] == 1, 60, "the first period")
    _jump(ctx, offset, 2 * HOUR_MS, sup)
    sup.wait_for(lambda: all(sup.ledger.count("end")[j] >= 1 for j in jobs.values()), 120, "the jobs to end")
    time.sleep(2.0)  # time for a wrong burst of periods to show
    report = Report()
    periods = sup.ledger.count("end")["p"]
    if periods > 2:
        report.fail(f"after a +2 h jump the 15-min periodic item ran {periods} times, not at most 2")
    last_end_ms = max(e["t"] for e in sup.ledger.events() if e["job"] == "p" and e["event"] == "end") * 1000
    next_ms = int(
        ctx.target.sql("SELECT next_run_time FROM workspec WHERE id = ?", (str(periodic.id),))[0][0]
    )
    if next_ms < last_end_ms + 2 * HOUR_MS + 14 * 60_000:
        report.fail("the next period is not anchored after the run that followed the jump")
    sup.stop_all()
    report.merge(check(ctx.target, sup.ledger, jobs=jobs, reruns_ok=["p"]))
    report.figures["periods_doubled"] = max(0, periods - 2)
    report.figures["enqueued"] = ctx.n + 1
    wm.close()
    return report


def test_case17_a_forward_wall_clock_jump_neither_rescues_live_runs_nor_bursts_periods(
    tmp_path: Path,
) -> None:
    registry.run("clock_jump_forward", "sqlite", "fast", tmp_path).assert_ok()


@scenario("clock_jump_backward", case="18", title="the workers' wall clock jumps -1 h mid-run (short lease)",
          fast_n=6, soak_n=20)  # fmt: skip
def clock_jump_backward(ctx: Context) -> Report:
    """Runs of 5 s under a 2 s lease; the wall clock jumps -1 h. Heartbeats must go on (they
    run on the monotonic clock), so no live run is taken over; a 15-min periodic item that has
    just run does not run again (its next period is wall-clock anchored, as on Android: it
    waits the extra hour; tests/engine/test_periodic_work.py pins that)."""
    offset = ctx.workdir / "clock-offset"
    offset.write_text("0")
    wm = manager(ctx)
    periodic = PeriodicWorkRequest(Mark, timedelta(minutes=15), input_data={"job": "p"})
    wm.enqueue(periodic)
    jobs = enqueue_jobs(wm, ctx.n, "r", ticks=500)
    lease = {"WM_HEARTBEAT": "0.2", "WM_LEASE": "2"}
    sup = ctx.supervisor(WM_CONCURRENCY=str(ctx.n // 2 + 1), WM_CLOCK_OFFSET_FILE=str(offset), **lease)
    sup.start_worker()
    sup.start_worker()
    sup.wait_for(lambda: len([j for j in sup.ledger.starts() if j != "p"]) == ctx.n, 60, "every job to start")
    sup.wait_for(lambda: sup.ledger.count("end")["p"] == 1, 60, "the first period")
    _jump(ctx, offset, -HOUR_MS, sup)
    sup.wait_for(lambda: all(sup.ledger.count("end")[j] >= 1 for j in jobs.values()), 120, "the jobs to end")
    time.sleep(1.0)
    report = Report()
    if sup.ledger.count("end")["p"] != 1:
        report.fail(f"the periodic item ran again after a -1 h jump ({sup.ledger.count('end')['p']} runs)")
    sup.stop_all()
    report.merge(check(ctx.target, sup.ledger, jobs=jobs, reruns_ok=["p"]))
    report.figures["periods_doubled"] = max(0, sup.ledger.count("end")["p"] - 1)
    report.figures["enqueued"] = ctx.n + 1
    wm.close()
    return report


def test_case18_a_backward_wall_clock_jump_stops_no_heartbeat_and_reruns_no_period(tmp_path: Path) -> None:
    registry.run("clock_jump_backward", "sqlite", "fast", tmp_path).assert_ok()


# -- case 19 ------------------------------------------------------------------------------------


class Tick(Worker):
    """Counts its runs in this process (the scenario runs work in-process, on a TestClock)."""

    name = "tick"
    runs: ClassVar[list[str]] = []

    def do_work(self) -> Result:
        Tick.runs.append(str(self.id))
        return Result.success()


@scenario("periodic_catch_up", case="19", title="downtime of 3 h, registration at every start, DST",
          fast_n=20, soak_n=200, backends=("sqlite", "postgres"))  # fmt: skip
def periodic_catch_up(ctx: Context) -> Report:
    """``n`` "app starts" each register the same 15-min periodic work (KEEP or UPDATE): one item.
    Then ``n`` / 4 stretches of 3 h downtime (a TestClock), each followed by one worker pass:
    exactly one run after each, not 12."""
    report = Report()
    clock = TestClock(T0)
    config = Configuration(clock=clock)
    Tick.runs.clear()
    for i in range(ctx.n):
        app = WorkManager(ctx.target.url, workers=[Tick], configuration=config)
        policy = ExistingPeriodicWorkPolicy.UPDATE if i % 2 else ExistingPeriodicWorkPolicy.KEEP
        app.enqueue_unique_periodic_work("sync", policy, PeriodicWorkRequest(Tick, timedelta(minutes=15)))
        app.close()
    wm = WorkManager(ctx.target.url, workers=[Tick], configuration=config)
    items = [i for i in wm.get_work_infos_for_unique_work("sync") if not i.state.is_finished]
    if len(items) != 1:
        report.fail(f"{ctx.n} registrations at start-up left {len(items)} periodic items, not 1")
    wm._engine.run_until_idle()
    doubled = 0
    downtimes = max(1, ctx.n // 4)
    for k in range(downtimes):
        before = len(Tick.runs)
        clock.advance(timedelta(hours=3))
        wm._engine.run_until_idle()
        ran = len(Tick.runs) - before
        if ran != 1:
            doubled += max(0, ran - 1)
            report.fail(f"after downtime {k + 1} of 3 h the 15-min item ran {ran} times, not once")
    report.figures.update(enqueued=ctx.n, periods_doubled=doubled, downtimes=downtimes)
    report.merge(check(ctx.target, Ledger(ctx.workdir / "ledger"), jobs={}, expect=None))
    wm.close()
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case19_downtime_yields_one_late_run_and_registration_at_every_start_one_item(
    tmp_path: Path, backend: str
) -> None:
    if backend == "postgres":
        require_postgres()
    registry.run("periodic_catch_up", backend, "fast", tmp_path).assert_ok()


DST = [
    ("Europe/Berlin", date(2026, 3, 29)),  # 02:00 -> 03:00
    ("Europe/Berlin", date(2026, 10, 25)),  # 03:00 -> 02:00
    ("America/New_York", date(2026, 3, 8)),  # 02:00 -> 03:00
    ("America/New_York", date(2026, 11, 1)),  # 02:00 -> 01:00
]


def _times(expression: str, zone: str, day: date, count: int) -> list[datetime]:
    z = ZoneInfo(zone)
    t = int(datetime.combine(day - timedelta(days=1), datetime.min.time(), z).timestamp() * 1000)
    out = []
    for _ in range(count):
        t = cron.next_time_ms(expression, zone, t)
        out.append(datetime.fromtimestamp(t / 1000, z))
    return out


@pytest.mark.parametrize(("zone", "day"), DST)
def test_case19_a_daily_cron_time_runs_exactly_once_a_day_across_a_dst_change(zone: str, day: date) -> None:
    """Pinned convention: a time the spring-forward skips runs when the clock jumps (03:00); a
    time the fall-back repeats runs at its first occurrence only (it ran twice in Berlin)."""
    runs = _times("30 2 * * *", zone, day, 3)
    assert [r.date() for r in runs] == [day - timedelta(days=1), day, day + timedelta(days=1)]


@pytest.mark.parametrize(("zone", "day"), DST)
def test_case19_a_half_hourly_cron_names_each_wall_clock_time_at_most_once_across_a_dst_change(
    zone: str, day: date
) -> None:
    runs = [r for r in _times("*/30 1-3 * * *", zone, day, 14) if r.date() == day]
    walls = [(r.hour, r.minute) for r in runs]
    assert len(walls) == len(set(walls))
    assert all(b > a for a, b in itertools.pairwise(runs))
    assert len(runs) >= 4  # the night is not skipped
