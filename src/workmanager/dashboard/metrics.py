"""Prometheus metrics, read from the database at each scrape (so any process can serve them):
work by state, how long the longest-waiting due work has waited, and live worker processes.

Per-run figures (runs, failures and durations as they happen) would need the worker's own
process; the database keeps no run start time (see the dashboard's state history).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workmanager.clock import to_ms
from workmanager.info import State
from workmanager.manager import WorkManager
from workmanager.storage.base import NEVER

__all__ = ["WorkCollector", "metrics_registry", "render_metrics"]


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
