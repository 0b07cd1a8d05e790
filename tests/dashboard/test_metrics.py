"""Run metrics counted in the worker process (the database-read ones are in test_app.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workmanager import OneTimeWorkRequest, Result, Worker, WorkManager
from workmanager.dashboard.metrics import instrument_runs, metrics_registry, render_metrics

from .conftest import WORKERS


class Refuse(Worker):
    name = "refuse"

    def do_work(self) -> Result:
        return Result.failure({"reason": "no"})


def test_runs_are_counted_by_worker_and_outcome_and_timed(db: str, closing: Callable[[Any], Any]) -> None:
    wm = closing(WorkManager(db, workers=[*WORKERS, Refuse]))
    registry = metrics_registry(wm)
    instrument_runs(wm, registry)
    requests = [
        OneTimeWorkRequest("echo"),
        OneTimeWorkRequest("echo"),
        OneTimeWorkRequest("boom"),
        OneTimeWorkRequest(Refuse),
    ]
    wm.enqueue(requests)
    wm.start()
    for request in requests:
        wm.await_work(request.id, timeout=10)
    text = render_metrics(registry).decode()
    assert 'workmanager_runs_total{outcome="success",worker="echo"} 2.0' in text
    assert 'workmanager_runs_total{outcome="error",worker="boom"} 1.0' in text
    assert 'workmanager_runs_total{outcome="failure",worker="refuse"} 1.0' in text
    assert 'workmanager_run_duration_seconds_count{worker="echo"} 2.0' in text
    assert 'workmanager_work{state="FAILED"} 2.0' in text


def test_a_process_without_instrumenting_exports_no_run_metrics(wm: WorkManager) -> None:
    text = render_metrics(metrics_registry(wm)).decode()
    assert "workmanager_runs_total" not in text and 'workmanager_work{state="ENQUEUED"} 0.0' in text
