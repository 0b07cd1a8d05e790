"""Live updates: one shared snapshot of counts per database change, pushed as server-sent events.

The WorkManager's change feed moves on this process's own commits and (through its
watcher: inotify + data_version on SQLite, LISTEN on PostgreSQL) on every other process's.
Each open page holds one event stream; counting by state runs at most once per change and
second, however many pages are open, and the history of counts feeds the chart.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from workmanager.engine.changes import ChangeFeed
from workmanager.info import State
from workmanager.manager import WorkManager

__all__ = ["Hub", "Snapshot"]

#: Counts are recounted at most this often (a million rows take tens of milliseconds).
MIN_RECOUNT_S = 1.0
#: A stream sends at most one event per this interval; changes in between are folded in.
MIN_EVENT_INTERVAL_S = 0.25
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_S = 15.0
#: A stream ends after this long and the browser opens a new one (after RECONNECT_MS), so a
#: server that waits for open requests before it stops (uvicorn does) waits this long at
#: most, even when the dashboard is mounted in an app that never calls close_streams().
STREAM_LIFETIME_S = 30.0
RECONNECT_MS = 250


@dataclass(frozen=True)
class Snapshot:
    version: int
    at_ms: int
    counts: dict[str, int]

    def as_json(self) -> str:
        return json.dumps({"version": self.version, "t": self.at_ms, "counts": self.counts})


class Hub:
    def __init__(self, wm: WorkManager, *, history: int = 720) -> None:
        self._wm = wm
        self._lock = threading.Lock()
        self._latest: Snapshot | None = None
        self._counted_at = 0.0
        #: (time ms, counts) after each change, for the chart; one point per second at most
        self.history: deque[tuple[int, dict[str, int]]] = deque(maxlen=history)
        self._closing = False

    def close(self) -> None:
        """End every event stream (the server is stopping: it would wait for them forever)."""
        self._closing = True
        self._wm._feed.bump()  # wakes the streams' waits

    @property
    def feed(self) -> ChangeFeed:
        # The manager's own feed and watcher: a second watcher on the same storage would
        # consume the data_version changes the manager's watcher waits for.
        self._wm._ensure_watcher()
        return self._wm._feed

    def snapshot(self) -> Snapshot:
        """Counts by state as of the feed's current version (or at most MIN_RECOUNT_S old)."""
        version = self.feed.version
        with self._lock:
            latest = self._latest
            fresh = time.monotonic() - self._counted_at < MIN_RECOUNT_S
            if latest is not None and (latest.version == version or fresh):
                return latest
            raw = self._wm._storage.work_count_by_state()
            counts = {s.name: int(raw.get(s.value, 0)) for s in State}
            now_ms = int(time.time() * 1000)
            snapshot = Snapshot(version, now_ms, counts)
            self._latest, self._counted_at = snapshot, time.monotonic()
            if self.history and now_ms - self.history[-1][0] < 1000:
                self.history[-1] = (now_ms, counts)
            elif not self.history or self.history[-1][1] != counts:
                self.history.append((now_ms, counts))
            return snapshot

    async def events(self) -> AsyncIterator[str]:
        """The event stream of one page: a ``change`` event after each change, with the counts."""
        feed = self.feed
        seen = -1
        last_sent = 0.0
        ends = time.monotonic() + STREAM_LIFETIME_S
        yield f"retry: {RECONNECT_MS}\n\n"
        while not self._closing:
            left = ends - time.monotonic()
            if left <= 0:
                return  # the browser reconnects, and its first event catches up
            timeout = min(KEEPALIVE_S, left)
            version = await feed.wait_async(seen, timeout=timeout) if seen >= 0 else feed.version
            if self._closing:
                return
            if version == seen:
                yield ": keep-alive\n\n"
                continue
            pause = last_sent + MIN_EVENT_INTERVAL_S - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            seen = feed.version
            snapshot = await asyncio.to_thread(self.snapshot)
            yield f"event: change\ndata: {snapshot.as_json()}\n\n"
            if snapshot.version < seen:
                # Counting is rate-limited: these counts predate the change. Send the
                # recount as soon as it is allowed, so the page never stays behind.
                await asyncio.sleep(max(0.0, self._counted_at + MIN_RECOUNT_S - time.monotonic()))
                snapshot = await asyncio.to_thread(self.snapshot)
                yield f"event: change\ndata: {snapshot.as_json()}\n\n"
            last_sent = time.monotonic()
