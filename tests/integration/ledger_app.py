"""The app the multi-process tests run in `workmanager worker` processes.

Every run appends one JSON line per event to a per-process ledger file opened with
O_APPEND (a SIGKILL cannot lose a line already written), so the test can check
how often each job started and in which process.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

from workmanager import Configuration, Result, Worker, WorkManager

LEDGER_DIR = os.environ.get("LEDGER_DIR", ".")


def record(event: str, job: str, **extra: object) -> None:
    line = json.dumps({"event": event, "job": job, "pid": os.getpid(), "t": time.time(), **extra})
    fd = os.open(
        os.path.join(LEDGER_DIR, f"ledger-{os.getpid()}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND
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


def make() -> WorkManager:
    return WorkManager(
        os.environ["WORKMANAGER_DATABASE"],
        workers=[Mark],
        configuration=Configuration(
            max_concurrency=int(os.environ.get("WM_CONCURRENCY", "2")),
            rescue_interval=timedelta(milliseconds=200),
            shutdown_grace=timedelta(seconds=float(os.environ.get("WM_GRACE", "10"))),
        ),
    )


wm = make
