"""workmanager.faults: the grammar, each action, and that every named point is placed in the library."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from workmanager import OneTimeWorkRequest, WorkInfo, WorkManager, WorkQuery, faults

from .harness.app import Mark

SRC = Path(faults.__file__).resolve().parent


@pytest.fixture(autouse=True)
def disarm() -> Iterator[None]:
    yield
    faults.arm("")


def test_every_named_point_is_placed_in_the_library() -> None:
    sources = "".join(p.read_text() for p in SRC.rglob("*.py") if p.name != "faults.py")
    # The dispatcher passes a run's points through _interrupted_at, which catches a raise there.
    placed = ("faults.hit", "_interrupted_at")
    missing = [p for p in faults.POINTS if not any(f'{call}("{p}"' in sources for call in placed)]
    assert missing == []


def test_an_unknown_point_is_an_error_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown fault point 'claim\.aftercommit'.*claim\.after_commit"):
        faults.parse("claim.aftercommit=kill")


def test_an_unknown_action_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown action 'explode'"):
        faults.parse("heartbeat=explode")


def test_a_probability_outside_zero_to_one_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        faults.parse("heartbeat=kill:1.5")


def test_a_disarmed_point_does_nothing() -> None:
    faults.hit("complete.before_commit")


def test_an_armed_raise_point_raises_a_database_error() -> None:
    faults.arm("complete.before_commit=raise")
    with pytest.raises(faults.InjectedFault, match=r"complete\.before_commit"):
        faults.hit("complete.before_commit")


def test_a_hit_standing_for_no_items_does_not_fire() -> None:
    faults.arm("claim.before_commit=raise")
    faults.hit("claim.before_commit", 0)


def test_nth_fires_only_on_that_hit(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    faults.arm("heartbeat=raise@3", log_path=str(log))
    faults.hit("heartbeat")
    faults.hit("heartbeat")
    with pytest.raises(faults.InjectedFault):
        faults.hit("heartbeat")
    faults.hit("heartbeat")
    assert [json.loads(line)["hit"] for line in log.read_text().splitlines()] == [3]


def test_the_same_seed_fires_on_the_same_hits() -> None:
    def fired(seed: int) -> list[int]:
        faults.arm("heartbeat=raise:0.3", seed=seed)
        out = []
        for i in range(200):
            try:
                faults.hit("heartbeat")
            except faults.InjectedFault:
                out.append(i)
        return out

    first = fired(7)
    assert first == fired(7)
    assert first != fired(8)
    assert 20 < len(first) < 100


def test_an_enqueue_that_raises_before_commit_writes_nothing(tmp_path: Path) -> None:
    wm = WorkManager(tmp_path / "w.db", workers=[Mark])
    request = OneTimeWorkRequest(Mark, input_data={"job": "x"})
    faults.arm("enqueue.before_commit=raise")
    with pytest.raises(faults.InjectedFault):
        wm.enqueue(request)
    faults.arm("")
    assert wm.get_work_info_by_id(request.id) is None
    wm.close()


def test_an_enqueue_told_it_failed_after_commit_is_stored(tmp_path: Path) -> None:
    wm = WorkManager(tmp_path / "w.db", workers=[Mark])
    request = OneTimeWorkRequest(Mark, input_data={"job": "x"})
    faults.arm("enqueue.after_commit=exec_then_raise")
    with pytest.raises(faults.InjectedFault):
        wm.enqueue(request)
    faults.arm("")
    assert wm.get_work_info_by_id(request.id) is not None
    wm.close()


def test_a_kill_point_sigkills_the_process_after_logging_the_fault(tmp_path: Path) -> None:
    log = tmp_path / "faults.jsonl"
    env = {
        **os.environ,
        faults.ENV: "enqueue.after_commit=kill",
        faults.LOG_ENV: str(log),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent / "harness"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    code = (
        "import sys; from workmanager import WorkManager, OneTimeWorkRequest; from app import Mark;"
        f"wm = WorkManager({str(tmp_path / 'w.db')!r}, workers=[Mark]);"
        "wm.enqueue(OneTimeWorkRequest(Mark, input_data={'job': 'x'})); print('returned')"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert b"returned" not in proc.stdout
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["point"] == "enqueue.after_commit" and entry["action"] == "kill"
    survivor = WorkManager(tmp_path / "w.db", workers=[Mark])
    assert survivor.get_work_infos(WorkQuery(states=[WorkInfo.State.ENQUEUED]))  # committed before the kill
    survivor.close()
