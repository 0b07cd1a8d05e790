"""PostgreSQL: a dispatcher turn records finished runs on one connection while it claims on another.

A failure of either half must not lose the other: a recording that fails puts its runs back
for a later turn while the work claimed beside it still runs; a claim that fails leaves the
runs recorded beside it recorded. Faults are injected with workmanager.faults; each job
records its starts, so "started once" is checked, not assumed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from workmanager import Configuration, OneTimeWorkRequest, Result, Worker, WorkInfo, WorkManager, faults

S = WorkInfo.State


@pytest.fixture(autouse=True)
def disarm() -> Iterator[None]:
    yield
    faults.arm("")


starts: Counter[str] = Counter()
starts_lock = threading.Lock()


class Counted(Worker):
    """Counts its starts by the job's input."""

    name = "counted"

    def do_work(self) -> Result:
        with starts_lock:
            starts[str(self.input_data["job"])] += 1
        return Result.success()


def drain_with(url: str, fault: str, log: Path, jobs: int = 6) -> None:
    """Run ``jobs`` jobs one at a time (a finished run is recorded in the turn that claims the
    next) with ``fault`` armed; every job must end SUCCEEDED having started once."""
    starts.clear()
    config = Configuration(max_concurrency=1)
    wm = WorkManager(url, workers=[Counted], configuration=config)
    try:
        requests = [OneTimeWorkRequest(Counted, input_data={"job": str(i)}) for i in range(jobs)]
        wm.enqueue(requests)
        faults.arm(fault, log_path=str(log))
        wm.start()
        for request in requests:
            assert wm.await_work(request.id, timeout=30).state is S.SUCCEEDED
        assert starts == {str(i): 1 for i in range(jobs)}
    finally:
        wm.close()


def test_a_recording_that_fails_beside_a_claim_is_retried_and_the_claimed_work_runs(
    postgres_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "faults.jsonl"
    drain_with(postgres_url, "complete.before_commit=raise@1", log)
    assert log.read_text().count('"complete.before_commit"') == 1  # the fault did fire


def test_a_claim_that_fails_beside_a_recording_leaves_the_runs_recorded(
    postgres_url: str, tmp_path: Path
) -> None:
    # The first claim finds no finished run to record beside it; the second does.
    log = tmp_path / "faults.jsonl"
    drain_with(postgres_url, "claim.before_commit=raise@2", log)
    assert log.read_text().count('"claim.before_commit"') == 1
