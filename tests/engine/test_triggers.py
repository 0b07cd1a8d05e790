"""Content triggers for files: work waits until something under its trigger paths changes."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest

from workmanager import (
    Configuration,
    Constraints,
    OneTimeWorkRequest,
    PeriodicWorkRequest,
    Result,
    Worker,
    WorkInfo,
    WorkManager,
)
from workmanager.engine.triggers import covers
from workmanager.testing import create_test_work_manager, get_test_driver

S = WorkInfo.State
WAIT_S = 15.0
seen: list[tuple[str, ...]] = []


class Import(Worker):
    name = "import"

    def do_work(self) -> Result:
        seen.append(self.triggered_paths)
        return Result.success()


def inbox(path: Path, **delays: timedelta) -> Constraints:
    return Constraints(
        trigger_paths=[path],
        trigger_content_update_delay=delays.get("update", timedelta(milliseconds=100)),
        trigger_max_delay=delays.get("max", timedelta(seconds=5)),
    )


def test_work_with_trigger_paths_waits_and_runs_after_a_change_under_them(tmp_path):
    seen.clear()
    folder = tmp_path / "inbox"
    folder.mkdir()
    with WorkManager(
        tmp_path / "w.db", workers=[Import], configuration=Configuration(constraint_trackers=())
    ) as wm:
        request = OneTimeWorkRequest(Import, constraints=inbox(folder))
        wm.enqueue(request)
        threading.Event().wait(0.5)
        info = wm.get_work_info_by_id(request.id)
        assert info.state is S.ENQUEUED
        assert info.next_schedule_time is None  # no time: it waits for a change

        (folder / "a.csv").write_text("1,2,3\n")

        assert wm.await_work(request.id, timeout=WAIT_S).state is S.SUCCEEDED
    assert seen == [(str(folder / "a.csv"),)]


def test_a_change_elsewhere_does_not_release_the_work(tmp_path):
    folder = tmp_path / "inbox"
    other = tmp_path / "other"
    folder.mkdir()
    other.mkdir()
    with WorkManager(
        tmp_path / "w.db", workers=[Import], configuration=Configuration(constraint_trackers=())
    ) as wm:
        request = OneTimeWorkRequest(Import, constraints=inbox(folder))
        wm.enqueue(request)
        (other / "b.csv").write_text("x")
        threading.Event().wait(1.0)
        assert wm.get_work_info_by_id(request.id).state is S.ENQUEUED


def test_the_test_driver_declaring_constraints_met_releases_triggered_work(tmp_path):
    wm = create_test_work_manager(workers=[Import])
    request = OneTimeWorkRequest(Import, constraints=inbox(tmp_path))
    wm.enqueue(request)
    assert wm.get_work_info_by_id(request.id).state is S.ENQUEUED
    get_test_driver(wm).set_all_constraints_met(request.id)
    assert wm.get_work_info_by_id(request.id).state is S.SUCCEEDED


def test_periodic_work_cannot_have_trigger_paths(tmp_path):
    with pytest.raises(ValueError, match="trigger_paths"):
        PeriodicWorkRequest(Import, timedelta(hours=1), constraints=inbox(tmp_path))


def test_expedited_work_cannot_have_trigger_paths(tmp_path):
    with pytest.raises(ValueError, match="network and storage"):
        OneTimeWorkRequest(Import, expedited=True, constraints=inbox(tmp_path))


def test_a_path_covers_itself_and_what_is_under_it_only():
    assert covers("/data/in", "/data/in")
    assert covers("/data/in", "/data/in/sub/a")
    assert not covers("/data/in", "/data/inbox")
