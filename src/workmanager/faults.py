"""Named fault points: places in the library where a test can kill, fail or pause the process.

A no-op unless the ``WORKMANAGER_FAULTS`` environment variable arms some points when the
module is first imported; then :func:`hit` looks its point up and maybe acts. Disarmed,
a hit is one call and one test of a module global, so the points stay in production code.

Grammar (comma-separated)::

    WORKMANAGER_FAULTS="claim.after_commit=kill:0.05,complete.before_commit=raise:0.01"
    point=action[:probability[:argument]][@nth]

* ``kill``: SIGKILL this process (a crash: nothing after the point runs, not even ``finally``).
* ``raise``: raise :class:`InjectedFault`, a ``sqlite3.OperationalError`` (what a failing
  database raises); ``raise_pg`` raises ``psycopg.OperationalError`` instead.
* ``exec_then_raise``: the same as ``raise``; meaningful at ``*.after_commit`` points, where
  the operation has happened and the caller is told it failed (Temporal's ExecuteAndTimeout).
* ``sleep``: sleep ``argument`` seconds (default 1), as a stall or a GC pause would.
* ``stop``: SIGSTOP this process (a zombie: alive, silent) until someone sends SIGCONT.

``probability`` defaults to 1. ``@nth`` fires only on the nth hit of the point in this
process (``claim.after_commit=kill@3``). Draws come from ``random.Random`` seeded by
``WORKMANAGER_FAULTS_SEED`` (default: the pid), so a schedule can be replayed; a supervisor
gives each process it starts a seed of its own.

When ``WORKMANAGER_FAULTS_LOG`` names a file, every fault that fires appends one JSON line
(point, action, pid, wall and monotonic time) to it before acting, with ``O_APPEND``, so a
kill cannot lose it: the checker uses the log to attribute duplicate runs to faults.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass

__all__ = ["ACTIONS", "ENV", "LOG_ENV", "POINTS", "SEED_ENV", "InjectedFault", "arm", "hit", "parse"]

ENV = "WORKMANAGER_FAULTS"
LOG_ENV = "WORKMANAGER_FAULTS_LOG"
SEED_ENV = "WORKMANAGER_FAULTS_SEED"

#: Every point placed in the library, in the order a job meets them.
POINTS = (
    "enqueue.before_commit",
    "enqueue.after_commit",
    "unique.replace.mid",
    "claim.before_commit",
    "claim.after_commit",
    "run.before_user_fn",
    "run.after_user_fn",
    "complete.before_commit",
    "complete.after_commit",
    "chain.unblock.mid",
    "periodic.reschedule.mid",
    "heartbeat",
    "rescue.mid_batch",
    "prune.mid",
)
ACTIONS = ("kill", "raise", "raise_pg", "exec_then_raise", "sleep", "stop")


class InjectedFault(sqlite3.OperationalError):
    """Raised by an armed fault point, as a failing database would."""


@dataclass(frozen=True)
class Fault:
    point: str
    action: str
    probability: float = 1.0
    argument: float | None = None
    nth: int | None = None


def parse(spec: str) -> dict[str, Fault]:
    """``WORKMANAGER_FAULTS`` text to faults by point; a typo is an error, not a silent no-op.

    >>> parse("claim.after_commit=kill:0.5")["claim.after_commit"].probability
    0.5
    >>> parse("heartbeat=sleep:1:3@2")["heartbeat"]
    Fault(point='heartbeat', action='sleep', probability=1.0, argument=3.0, nth=2)
    """
    faults: dict[str, Fault] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, eq, rest = item.partition("=")
        if not eq:
            raise ValueError(f"{ENV}: expected point=action in {item!r}")
        if point not in POINTS:
            raise ValueError(f"{ENV}: unknown fault point {point!r}; known: {', '.join(POINTS)}")
        rest, at, nth_text = rest.partition("@")
        action, *numbers = rest.split(":")
        if action not in ACTIONS:
            raise ValueError(f"{ENV}: unknown action {action!r} for {point}; known: {', '.join(ACTIONS)}")
        if len(numbers) > 2:
            raise ValueError(f"{ENV}: at most probability and argument after {action!r}, got {item!r}")
        probability = float(numbers[0]) if numbers else 1.0
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"{ENV}: probability of {point} must be in [0, 1], got {probability}")
        argument = float(numbers[1]) if len(numbers) == 2 else None
        nth = int(nth_text) if at else None
        if nth is not None and nth < 1:
            raise ValueError(f"{ENV}: @nth of {point} must be >= 1, got {nth}")
        faults[point] = Fault(point, action, probability, argument, nth)
    return faults


_armed: dict[str, Fault] = {}
_hits: dict[str, int] = {}
_lock = threading.Lock()
_rng = random.Random()
_log_path: str | None = None


def arm(spec: str, *, seed: int | str | None = None, log_path: str | None = None) -> None:
    """Arm the points in ``spec`` (replacing any armed before); ``""`` disarms all."""
    global _armed, _log_path
    faults = parse(spec)
    with _lock:
        _hits.clear()
        _rng.seed(str(os.getpid()) if seed is None else str(seed))
        _log_path = log_path
        _armed = faults


def hit(point: str, count: int = 1) -> None:
    """Pass fault point ``point``, standing for ``count`` items (0: nothing happened, no hit)."""
    if not _armed or not count:
        return
    fault = _armed.get(point)
    if fault is not None:
        _maybe_fire(fault)


def _maybe_fire(fault: Fault) -> None:
    with _lock:
        n = _hits[fault.point] = _hits.get(fault.point, 0) + 1
        if fault.nth is not None and n != fault.nth:
            return
        if fault.probability < 1.0 and _rng.random() >= fault.probability:
            return
    _record(fault, n)
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif fault.action == "sleep":
        time.sleep(1.0 if fault.argument is None else fault.argument)
    elif fault.action == "raise_pg":
        import psycopg  # only PostgreSQL tests arm it

        raise psycopg.OperationalError(f"injected fault at {fault.point}")
    else:
        raise InjectedFault(f"injected fault at {fault.point}")


def _record(fault: Fault, n: int) -> None:
    if _log_path is None:
        return
    line = json.dumps(
        {
            "kind": f"point:{fault.point}:{fault.action}",
            "point": fault.point,
            "action": fault.action,
            "hit": n,
            "pid": os.getpid(),
            "t": time.time(),
            "t_mono": time.monotonic(),
        }
    )
    fd = os.open(_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


if os.environ.get(ENV):
    arm(
        os.environ[ENV],
        seed=os.environ.get(SEED_ENV),
        log_path=os.environ.get(LOG_ENV) or None,
    )
