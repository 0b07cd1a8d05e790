"""Shared pieces of the benchmark: job start records, statistics, process control, disk facts.

Every benchmark job, whether run by workmanager or by a raw-SQLite floor loop, records
its start as one line ``"<i> <time.time()>\\n"`` appended (``O_APPEND``, no fsync) to a
file of its own process inside the phase's mark directory. The runner reads the files
back for start times.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

MARK_DIR_ENV = "WMBENCH_MARK_DIR"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

_mark_lock = threading.Lock()
_mark_dir: str | None = os.environ.get(MARK_DIR_ENV)
_mark_fd: int | None = None
_mark_key: tuple[str, int] | None = None


def set_mark_dir(path: str | os.PathLike[str]) -> None:
    """Direct this process's job start records to ``path`` (one file per process)."""
    global _mark_dir, _mark_fd, _mark_key
    with _mark_lock:
        if _mark_fd is not None:
            os.close(_mark_fd)
        _mark_dir, _mark_fd, _mark_key = os.fspath(path), None, None


def _fd() -> int:
    global _mark_fd, _mark_key
    key = (_mark_dir or ".", os.getpid())
    if _mark_fd is None or _mark_key != key:
        with _mark_lock:
            if _mark_fd is None or _mark_key != key:
                name = os.path.join(key[0], f"marks-{key[1]}.txt")
                _mark_fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                _mark_key = key
    return _mark_fd


def mark(i: int) -> None:
    """The benchmark job body: record that job ``i`` started, now."""
    os.write(_fd(), f"{i} {time.time():.6f}\n".encode())


def read_marks(mark_dir: str | os.PathLike[str]) -> dict[int, float]:
    """Start time of every job recorded in ``mark_dir`` (the earliest, if a job ran twice)."""
    starts: dict[int, float] = {}
    for path in Path(mark_dir).glob("marks-*.txt"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 2:
                continue  # a record being written right now
            i, t = int(parts[0]), float(parts[1])
            if i not in starts or t < starts[i]:
                starts[i] = t
    return starts


def count_marks(mark_dir: str | os.PathLike[str]) -> int:
    """How many start records ``mark_dir`` holds (cheap: counts newlines)."""
    total = 0
    for path in Path(mark_dir).glob("marks-*.txt"):
        total += path.read_bytes().count(b"\n")
    return total


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_stats(latencies_s: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies given in seconds, reported in milliseconds."""
    ms = [x * 1000.0 for x in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else math.nan,
    }


def spawn(
    module: str, args: Sequence[str], mark_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m module args...`` as its own process group, marks going to ``mark_dir``."""
    env = {**os.environ, **(extra_env or {})}
    env[MARK_DIR_ENV] = os.fspath(mark_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.fspath(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


#: Set by spawn_ready: the file whose appearance starts the workers' work.
GO_FILE_ENV = "WMBENCH_GO_FILE"


def ready_then_wait_for_go() -> None:
    """In a worker process spawned by spawn_ready: say it is ready (its imports done, its
    connections open), then wait for the go. A drain's rate then counts the drain, not the
    interpreters starting on the same two cores (3 more Python processes' imports)."""
    go = os.environ.get(GO_FILE_ENV)
    if not go:
        return
    Path(f"{go}.ready.{os.getpid()}").touch()
    while not os.path.exists(go):
        time.sleep(0.001)


def spawn_ready(
    module: str, args: Sequence[str], mark_dir: Path, logs: Sequence[Path], timeout_s: float = 120.0
) -> list[subprocess.Popen[bytes]]:
    """spawn ``len(logs)`` workers, wait until each has called ready_then_wait_for_go, then let
    them all go at once."""
    go = mark_dir.parent / f"{mark_dir.name}.go"
    procs = [spawn(module, args, mark_dir, log, {GO_FILE_ENV: os.fspath(go)}) for log in logs]
    deadline = time.time() + timeout_s
    for proc, log in zip(procs, logs, strict=True):
        while not Path(f"{go}.ready.{proc.pid}").exists():
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {proc.returncode} before it was ready:\n{log_tail(log)}"
                )
            if time.time() > deadline:
                raise RuntimeError(f"worker not ready after {timeout_s:.0f} s:\n{log_tail(log)}")
            time.sleep(0.005)
    go.touch()
    return procs


def stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> float:
    """SIGTERM the process we spawned, wait up to ``grace_s``, then SIGKILL its group.

    Returns the seconds the process took to exit after SIGTERM.
    """
    t0 = time.perf_counter()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group created for this child only
            proc.wait()
    return time.perf_counter() - t0


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc; None elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a worker's log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def filesystem_of(path: str | os.PathLike[str]) -> dict[str, str]:
    """Device and filesystem type of the mount holding ``path`` (from /proc/mounts)."""
    target = os.path.realpath(path)
    best = ("", "?", "?")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype = line.split()[:3]
                inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best[0]):
                    best = (mnt, dev, fstype)
    except OSError:
        pass
    return {"mount": best[0], "device": best[1], "fstype": best[2]}


def fsync_floor(directory: str | os.PathLike[str], seconds: float = 1.0) -> float:
    """Rate of ``write 4 KiB + fdatasync`` on the data disk, per second."""
    path = os.path.join(directory, "fsync-probe.bin")
    block = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        n = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.remove(path)
