"""The app every fault scenario runs in its ``workmanager worker`` processes (``app:wm``).

Workers record what they do in the ledger (H1). The configuration comes from ``WM_*``
environment variables so the supervisor can start processes with short leases, one slot,
a restricted registry (a rolling deploy) or a shifted wall clock (H3).
"""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import timedelta

from workmanager import Configuration, Result, Worker, WorkManager
from workmanager.clock import SystemClock

try:  # a worker process imports this file as `app` (its folder on PYTHONPATH), tests as a package
    from .ledger import record
except ImportError:
    from ledger import record  # type: ignore[no-redef]


class Mark(Worker):
    """Records start and end; sleeps ``sleep`` s (or a seeded 0..``sleep_max`` s); stops when asked.

    Its output names its job (``out_<job>``) so a dependent's merged input shows whose outputs
    it received; its end event records the keys of its own input for the same reason."""

    name = "mark"

    def do_work(self) -> Result:
        job = str(self.input_data["job"])
        record("start", job, id=str(self.id), attempt=self.run_attempt_count)
        sleep_s = float(self.input_data.get("sleep", 0.0) or 0.0)  # type: ignore[arg-type]
        sleep_max = float(self.input_data.get("sleep_max", 0.0) or 0.0)  # type: ignore[arg-type]
        if sleep_max:
            sleep_s = random.Random(f"{job}:{self.run_attempt_count}").uniform(0, sleep_max)
        ticks = int(self.input_data.get("ticks", 0) or 0)  # type: ignore[call-overload]
        for _ in range(ticks):  # 10 ms steps: a SIGSTOP pauses this count, not a deadline
            if self.is_stopped:
                record("stopped", job, id=str(self.id), reason=self.stop_reason.name)
                return Result.retry()
            time.sleep(0.01)
        deadline = time.monotonic() + sleep_s
        progress = bool(self.input_data.get("progress"))
        while time.monotonic() < deadline:
            if progress:  # a zombie's writes must be discarded once it lost the work
                self.set_progress({"pid": os.getpid()})
            if self.is_stopped:
                record("stopped", job, id=str(self.id), reason=self.stop_reason.name)
                return Result.retry()
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        if self.input_data.get("fail"):
            record("failed", job, id=str(self.id))
            return Result.failure({"job": job})
        record("end", job, id=str(self.id), keys=sorted(self.input_data.keys()))
        return Result.success({"pid": os.getpid(), f"out_{job}": 1})


class Suicide(Worker):
    """Kills its own process, as a segfaulting extension or an OOM kill would (a poison job)."""

    name = "suicide"

    def do_work(self) -> Result:
        record("start", str(self.input_data["job"]), id=str(self.id), attempt=self.run_attempt_count)
        os.kill(os.getpid(), signal.SIGKILL)
        return Result.success()


class Hang(Worker):
    """Loops for ``sleep`` s ignoring every request to stop (a hung call)."""

    name = "hang"

    def do_work(self) -> Result:
        job = str(self.input_data["job"])
        record("start", job, id=str(self.id), attempt=self.run_attempt_count)
        deadline = time.monotonic() + float(self.input_data.get("sleep", 3600.0))  # type: ignore[arg-type]
        while time.monotonic() < deadline:
            time.sleep(0.01)
        record("end", job, id=str(self.id), stopped=self.is_stopped)
        return Result.success()


class NewWorker(Mark):
    """A worker only some processes of a rolling deploy know."""

    name = "new_worker"


ALL = (Mark, Suicide, Hang, NewWorker)


class OffsetClock(SystemClock):
    """The system clock with the wall clock shifted by the milliseconds in a file (H3).

    The monotonic clock is never shifted: a jump of the wall clock is what a machine's NTP
    step or an operator's `date -s` does. The file is re-read at most every 20 ms."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._offset_ms = 0
        self._read_at = float("-inf")

    def now_ms(self) -> int:
        now = time.monotonic()
        if now - self._read_at > 0.02:
            self._read_at = now
            try:
                with open(self._path, encoding="ascii") as f:
                    self._offset_ms = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return super().now_ms() + self._offset_ms


def _seconds(name: str, default: float) -> timedelta:
    return timedelta(seconds=float(os.environ.get(name, default)))


def configuration() -> Configuration:
    offset_file = os.environ.get("WM_CLOCK_OFFSET_FILE")
    timeout = os.environ.get("WM_TIMEOUT")
    return Configuration(
        max_concurrency=int(os.environ.get("WM_CONCURRENCY", "2")),
        expedited_reserved_slots=0,
        rescue_interval=_seconds("WM_RESCUE", 0.2),
        heartbeat_interval=_seconds("WM_HEARTBEAT", 10),
        lease_timeout=_seconds("WM_LEASE", 60),
        min_periodic_interval=timedelta(seconds=1),
        min_periodic_flex=timedelta(seconds=1),
        min_backoff=_seconds("WM_MIN_BACKOFF", 10),
        shutdown_grace=_seconds("WM_GRACE", 10),
        max_execution_time=None if timeout is None else timedelta(seconds=float(timeout)),
        max_orphaned_runs=int(os.environ.get("WM_MAX_ORPHANED", "3")),
        prune_threshold=_seconds("WM_RETENTION", 86400),
        clock=OffsetClock(offset_file) if offset_file else SystemClock(),
    )


def make() -> WorkManager:
    try:
        from .storage_faults import apply_fsize_limit_from_env
    except ImportError:
        from storage_faults import apply_fsize_limit_from_env  # type: ignore[no-redef]
    apply_fsize_limit_from_env()
    only = os.environ.get("WM_WORKERS")  # a comma-separated subset: a process of a rolling deploy
    workers = [w for w in ALL if only is None or w.name in only.split(",")]
    return WorkManager(os.environ["WORKMANAGER_DATABASE"], workers=workers, configuration=configuration())


wm = make
