"""Prometheus metrics.

Read from the database at each scrape, so any process can serve them (the dashboard, a
worker): work by state, how long the longest-waiting due work has waited, live worker
processes. Runs and their durations are counted where they happen, in a worker process
(``instrument_runs``): the database keeps no run start time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workmanager.clock import to_ms
from workmanager.info import State
from workmanager.manager import WorkManager
from workmanager.storage.base import NEVER
from workmanager.worker import ListenableWorker, Result, WorkerFactory, WorkerParameters

__all__ = ["WorkCollector", "instrument_runs", "metrics_registry", "render_metrics"]

#: Run durations from milliseconds to the default 10-minute execution limit and beyond.
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 60, 300, 600, 1800, float("inf"))


class WorkCollector(Collector):
    def __init__(self, wm: WorkManager) -> None:
        self._wm = wm

    def collect(self) -> Iterator[Metric]:
        storage = self._wm._storage
        now = self._wm.configuration.clock.now_ms()
        counts = storage.work_count_by_state()
        by_state = GaugeMetricFamily("workmanager_work", "Work in the database by state.", labels=["state"])
        for state in State:
            by_state.add_metric([state.name], counts.get(state.value, 0))
        yield by_state
        finished = GaugeMetricFamily(
            "workmanager_work_finished",
            "Finished work still kept in the database (SUCCEEDED + FAILED + CANCELLED).",
            value=sum(counts.get(s.value, 0) for s in State if s.is_finished),
        )
        yield finished
        oldest_due = storage.work_oldest_due()
        wait_ms = 0 if oldest_due is None or oldest_due >= NEVER else max(0, now - oldest_due)
        yield GaugeMetricFamily(
            "workmanager_queue_wait_seconds",
            "How long the longest-waiting ENQUEUED work has been due without starting.",
            value=wait_ms / 1000,
        )
        lease_ms = to_ms(self._wm.configuration.lease_timeout)
        runners = storage.runner_list()
        yield GaugeMetricFamily(
            "workmanager_worker_processes",
            "Worker processes with a heartbeat within the lease timeout.",
            value=sum(1 for r in runners if now - r.heartbeat_at <= lease_ms),
        )


def metrics_registry(wm: WorkManager) -> CollectorRegistry:
    """A registry of our own (not the process-wide default), so two apps never collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkCollector(wm))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def instrument_runs(wm: WorkManager, registry: CollectorRegistry) -> None:
    """Count this process's runs by worker and outcome, and time them.

    The worker factories (the registry and any custom one) hand out workers whose
    ``start_work`` future is timed; nothing else changes, and processes without metrics
    pay nothing.
    """
    runs = Counter(
        "workmanager_runs",
        "Runs finished in this process, by worker name and outcome "
        "(success, failure, retry, stopped, error: the worker raised).",
        ["worker", "outcome"],
        registry=registry,
    )
    durations = Histogram(
        "workmanager_run_duration_seconds",
        "How long runs in this process took, by worker name.",
        ["worker"],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )

    def observe(worker: ListenableWorker) -> None:
        start_work = worker.start_work

        def timed() -> Future[Result]:
            started = time.monotonic()
            future = start_work()

            def done(finished: Future[Result]) -> None:
                durations.labels(worker.name).observe(time.monotonic() - started)
                if worker.is_stopped:
                    outcome = "stopped"
                elif finished.cancelled() or finished.exception() is not None:
                    outcome = "error"
                else:
                    result = finished.result()
                    outcome = result.kind.value if isinstance(result, Result) else "error"
                runs.labels(worker.name, outcome).inc()

            future.add_done_callback(done)
            return future

        worker.start_work = timed  # type: ignore[method-assign]

    factories: list[WorkerFactory] = [wm._registry]
    if wm.configuration.worker_factory is not None:
        factories.append(wm.configuration.worker_factory)
    for factory in factories:
        create = factory.create_worker

        def create_observed(
            name: str, params: WorkerParameters, create: Any = create
        ) -> ListenableWorker | None:
            worker: ListenableWorker | None = create(name, params)
            if isinstance(worker, ListenableWorker):
                observe(worker)
            return worker

        factory.create_worker = create_observed  # type: ignore[method-assign]
