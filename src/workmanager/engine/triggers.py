"""Content triggers for files: release work when something under its trigger paths changes.

Android's content URI triggers, in Python terms. The watcher thread asks storage which
waiting work has trigger paths, watches those paths (watchfiles: inotify, FSEvents or
polling, as the OS allows) and, on a change, makes each matching work due once changes
pause for its update delay, and no later than its max delay after the first change.
It re-reads the waiting work whenever the database changes.
"""

from __future__ import annotations

import json
import logging
import os
import threading

import watchfiles

from workmanager.clock import Clock
from workmanager.engine.changes import ChangeFeed
from workmanager.storage.base import Storage, TriggerWait

log = logging.getLogger("workmanager.triggers")


def covers(trigger_path: str, changed: str) -> bool:
    """Is ``changed`` the trigger path itself or something under it?

    >>> covers("/data/in", "/data/in/a.csv"), covers("/data/in", "/data/inbox/a.csv")
    (True, False)
    """
    return changed == trigger_path or changed.startswith(trigger_path.rstrip(os.sep) + os.sep)


class TriggerWatcher:
    """A daemon thread watching the trigger paths of waiting work."""

    def __init__(self, storage: Storage, feed: ChangeFeed, clock: Clock) -> None:
        self._storage = storage
        self._feed = feed
        self._clock = clock
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Work waiting for a trigger appears or goes only with work changes (see ChangeFeed).
        self._feed.add_listener(self._restart.set, work_only=True)
        self._thread = threading.Thread(target=self._run, name="workmanager-triggers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._restart.set()
        self._feed.remove_listener(self._restart.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    #: Re-read the waiting work at most this often: every commit signals a change, and a
    #: busy process commits every few milliseconds.
    REREAD_INTERVAL_S = 0.25

    def _read_waiting(self) -> tuple[list[TriggerWait], list[str]]:
        waiting = self._storage.work_trigger_waiting()
        paths = sorted({p for w in waiting for p in w.trigger_paths if os.path.exists(p)})
        return waiting, paths

    def _run(self) -> None:
        while not self._stop.is_set():
            self._restart.clear()
            try:
                waiting, paths = self._read_waiting()
            except Exception:
                log.exception("reading work that waits for triggers failed; retrying")
                self._stop.wait(1.0)
                continue
            if not paths:
                self._restart.wait()  # until the database changes (maybe new waiting work) ...
                self._stop.wait(self.REREAD_INTERVAL_S)  # ... and the burst of changes settles
                continue
            try:
                # One watch as long as the paths stay the same, so no change falls in a gap
                # between two watches; the waiting work is re-read between yields.
                for changes in watchfiles.watch(
                    *paths,
                    stop_event=self._stop,
                    debounce=50,
                    rust_timeout=int(self.REREAD_INTERVAL_S * 1000),
                    yield_on_timeout=True,
                    raise_interrupt=False,
                ):
                    if changes:
                        self.fire(waiting, {path for _, path in changes})
                    if self._restart.is_set():
                        self._restart.clear()
                        waiting, new_paths = self._read_waiting()
                        if new_paths != paths:
                            break
            except Exception:
                log.exception("watching trigger paths failed; retrying")
                self._stop.wait(1.0)

    def fire(self, waiting: list[TriggerWait], changed: set[str]) -> int:
        """Make due the waiting work whose trigger paths cover a changed path; how many."""
        now = self._clock.now_ms()
        fired = 0
        with self._storage.transaction() as tx:
            for work in waiting:
                hits = sorted(c for c in changed if any(covers(t, c) for t in work.trigger_paths))
                if hits:
                    merged = sorted(set(work.triggered_paths) | set(hits))
                    fired += tx.work_trigger_fire(work.id, now, json.dumps(merged))
        if fired:
            self._feed.bump()
        return fired
