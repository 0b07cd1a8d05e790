"""Time for the engine: one protocol, read in one place.

All scheduling math takes ``now`` as a value; only the dispatcher, the manager and
recovery ask a :class:`Clock` for it, so tests substitute :class:`TestClock`.
Wall-clock times are integer milliseconds since the Unix epoch, as on Android.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TestClock", "ms_to_datetime", "to_ms"]


class Clock(Protocol):
    """Where the engine reads the time."""

    def now_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; only differences are meaningful."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class TestClock:
    """A clock that moves only when told to; safe to share between threads.

    >>> clock = TestClock(1_000)
    >>> clock.advance(timedelta(seconds=2)); clock.now_ms()
    3000
    """

    __test__ = False  # not a pytest test class

    def __init__(self, start_ms: int | None = None) -> None:
        self._lock = threading.Lock()
        self._now_ms = time.time_ns() // 1_000_000 if start_ms is None else start_ms
        self._mono = 0.0

    def now_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, delta: timedelta | float) -> None:
        """Move both clocks forward by ``delta`` (a timedelta or seconds)."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError(f"TestClock.advance: delta must not be negative, got {seconds} s")
        with self._lock:
            self._now_ms += round(seconds * 1000)
            self._mono += seconds

    def set_wall(self, now_ms: int) -> None:
        """Jump the wall clock (either way) without moving the monotonic clock."""
        with self._lock:
            self._now_ms = now_ms


_ONE_MS = timedelta(milliseconds=1)


def to_ms(delta: timedelta) -> int:
    """A duration in whole milliseconds (rounded down).

    >>> to_ms(timedelta(seconds=1, microseconds=1500))
    1001
    """
    return delta // _ONE_MS


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
