"""The app the multi-process tests run in `workmanager worker` processes.

Every run appends one JSON line per event to a per-process ledger file opened with
O_APPEND (a SIGKILL cannot lose a line already written), so the test can check
how often each job started and in which process.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta

from workmanager import Configuration, Result, Worker, WorkManager


def record(event: str, job: str, **extra: object) -> None:
    line = json.dumps({"event": event, "job": job, "pid": os.getpid(), "t": time.time(), **extra})
    fd = os.open(
        os.path.join(os.environ["LEDGER_DIR"], f"ledger-{os.getpid()}.jsonl"),
        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    )
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Mark(Worker):
    """Records its start and end; sleeps as long as its input asks."""

    name = "mark"

    def do_work(self) -> Result:
        job = str(self.input_data["job"])
        record("start", job, attempt=self.run_attempt_count)
        sleep_s = float(self.input_data.get("sleep", 0.0) or 0.0)  # type: ignore[arg-type]
        deadline = time.monotonic() + sleep_s
        while time.monotonic() < deadline:
            if self.is_stopped:
                record("stopped", job)
                return Result.retry()
            time.sleep(0.01)
        record("end", job)
        return Result.success({"pid": os.getpid()})


class Suicide(Worker):
    """Kills its own process, as a segfaulting extension or an OOM kill would."""

    name = "suicide"

    def do_work(self) -> Result:
        record("start", str(self.input_data["job"]), attempt=self.run_attempt_count)
        os.kill(os.getpid(), signal.SIGKILL)
        return Result.success()


def make() -> WorkManager:
    return WorkManager(
        os.environ["WORKMANAGER_DATABASE"],
        workers=[Mark, Suicide],
        configuration=Configuration(
            max_concurrency=int(os.environ.get("WM_CONCURRENCY", "2")),
            rescue_interval=timedelta(milliseconds=200),
            heartbeat_interval=timedelta(seconds=float(os.environ.get("WM_HEARTBEAT", "10"))),
            lease_timeout=timedelta(seconds=float(os.environ.get("WM_LEASE", "60"))),
            # Periodic tests use periods of a second or two.
            min_periodic_interval=timedelta(seconds=1),
            min_periodic_flex=timedelta(seconds=1),
            shutdown_grace=timedelta(seconds=float(os.environ.get("WM_GRACE", "10"))),
        ),
    )


wm = make
