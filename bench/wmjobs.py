"""The benchmark's workmanager job, through the public API only (imports workmanager)."""

from __future__ import annotations

from bench.util import mark
from workmanager import Configuration, OneTimeWorkRequest, Result, Worker, WorkManager


class Mark(Worker):
    """A no-op job: records its start time and succeeds."""

    name = "bench-mark"

    def do_work(self) -> Result:
        mark(int(self.input_data["i"]))
        return Result.success()


def manager(path: str, configuration: Configuration | None = None) -> WorkManager:
    """A WorkManager on ``path`` that can run ``Mark``, with default settings unless told."""
    if configuration is None:
        return WorkManager(path, workers=[Mark])
    return WorkManager(path, workers=[Mark], configuration=configuration)


def request(i: int) -> OneTimeWorkRequest:
    return OneTimeWorkRequest(Mark, input_data={"i": i})
