"""Regression tests for what the fault cases found in the library, one per fix, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from workmanager import Configuration, OneTimeWorkRequest, Result, Worker, WorkInfo, WorkManager
from workmanager.engine.recovery import Pruner
from workmanager.testing import TestClock

from .harness.target import Target, require_postgres

S = WorkInfo.State
T0 = 1_700_000_000_000
DAY_MS = 24 * 3600 * 1000


class Fails(Worker):
    name = "fails"

    def do_work(self) -> Result:
        return Result.failure()


class Succeeds(Worker):
    name = "succeeds"

    def do_work(self) -> Result:
        return Result.success()


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "postgres":
        require_postgres()
    t = Target(request.param, tmp_path)
    yield t
    t.drop()


# -- found by case 7 (poison job with a chained dependent) -----------------------------------------


def test_a_dependent_failed_or_cancelled_before_it_ever_ran_is_kept_for_the_retention_period(
    target: Target,
) -> None:
    """It was pruned by the very next prune (a worker's start-up): never enqueued, its last
    enqueue time is -1, and -1 + retention is always in the past."""
    wm = WorkManager(target.url, workers=[Fails, Succeeds], configuration=Configuration(clock=TestClock(T0)))
    parent = OneTimeWorkRequest(Succeeds, initial_delay=timedelta(hours=1))
    child = OneTimeWorkRequest(Succeeds)
    wm.begin_with(parent).then(child).enqueue()
    wm.cancel_work_by_id(parent.id)
    pruner = Pruner(wm._storage, threshold_ms=DAY_MS)

    pruner.run_once(T0 + 1000)
    child_info = wm.get_work_info_by_id(child.id)
    assert child_info is not None and child_info.state is S.CANCELLED

    pruner.run_once(T0 + DAY_MS + 1)
    assert wm.get_work_info_by_id(child.id) is None
    wm.close()


# -- found by case 17 (the workers' wall clock jumps +2 h) -----------------------------------------


def test_a_live_process_on_this_host_is_judged_by_its_monotonic_heartbeat_not_the_wall_clock() -> None:
    """After a +2 h jump every heartbeat stamp looked 2 h old and the rescuer took the work of
    every live process on the host: each job ran twice."""
    import os
    import time

    from workmanager.engine.recovery import ProcessIdentity, runner_is_dead
    from workmanager.storage.base import RunnerRow

    me = ProcessIdentity.current()
    two_hours_ago = T0 - 2 * 3_600_000
    beat = time.monotonic()
    row = RunnerRow("r", me.host, me.boot_id, os.getpid(), me.process_started, two_hours_ago, two_hours_ago,
                    "[]", heartbeat_mono=beat)  # fmt: skip

    assert not runner_is_dead(row, me, now=T0, lease_ms=60_000, mono=beat + 1.0)
    assert runner_is_dead(row, me, now=T0, lease_ms=60_000, mono=beat + 61.0)  # a real lapse still counts


# -- found by case 20 (disk full) --------------------------------------------------------------------


def test_an_enqueue_into_a_full_database_raises_storage_full_and_writes_nothing(tmp_path: Path) -> None:
    """It raised sqlite3.OperationalError('cannot rollback - no transaction is active'): SQLite
    had already rolled back, and the library's ROLLBACK hid the real error."""
    from workmanager import errors

    from .harness.app import Mark
    from .harness.storage_faults import limit_pages

    wm = WorkManager(tmp_path / "w.db", workers=[Mark])
    limit_pages(wm, 2)
    batch = [OneTimeWorkRequest(Mark, input_data={"job": f"{i}", "pad": "x" * 2000}) for i in range(50)]

    with pytest.raises(errors.StorageFullError, match="full"):
        wm.enqueue(batch)
    assert all(wm.get_work_info_by_id(r.id) is None for r in batch)
    wm.close()


def test_diagnose_shows_a_live_process_alive_after_a_wall_clock_jump(tmp_path: Path) -> None:
    """The diagnostics judged leases on the wall clock alone, as the rescuer did (case 17)."""
    import os
    import time

    from workmanager.cli import diagnose
    from workmanager.engine.recovery import ProcessIdentity

    wm = WorkManager(tmp_path / "w.db", workers=[Succeeds])
    me = ProcessIdentity.current()
    with wm._storage.transaction() as tx:
        tx.runner_upsert(id="me", host=me.host, boot_id=me.boot_id, pid=os.getpid(),
                         process_started=me.process_started, now=T0, workers="[]",
                         mono=time.monotonic())  # fmt: skip

    report = diagnose(wm, now_ms=T0 + 2 * 3_600_000)  # the wall clock is 2 h ahead of the stamp

    assert [w["alive"] for w in report["workers"]] == [True]
    wm.close()
