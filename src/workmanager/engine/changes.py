"""Knowing when the database changed, without polling it in a loop.

:class:`ChangeFeed` is a version counter that waiters block on. This process bumps it
after each of its own commits; a :class:`ChangeWatcher` thread bumps it when another
process commits. On Linux the watcher sleeps on inotify events for the database's
folder and confirms each with SQLite's cheap ``PRAGMA data_version``; elsewhere it
checks ``data_version`` every poll interval.

The file watched is the storage's notify file, which every workmanager process
writes one byte to *after* each commit. The ``-wal`` file would not do: a commit's
frames are written (and fsynced) before the commit becomes visible, so its event
arrives too early to be confirmed.

A storage that can push changes (PostgreSQL's LISTEN/NOTIFY) is handed in as
``listen``: its thread bumps the feed on each notification, and this watcher only
asks ``data_changed`` every SAFETY_INTERVAL_S as a fallback (the storage answers True
while its listener is disconnected).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("workmanager.changes")

_IN_MODIFY = 0x00000002
_IN_IGNORED = 0x00008000
_EVENT_HEADER = struct.Struct("iIII")


class ChangeFeed:
    """A monotonically increasing version; ``wait`` blocks until it moves.

    Two kinds of change: every change moves ``version`` (what observers of WorkInfo wait
    on); a *work* change (work became claimable, or running work was cancelled, replaced or
    taken back) also moves ``work_version`` (what the dispatcher claims and checks on).
    Another process's claims and plain successes are changes, but not work changes: the
    dispatchers of a busy cluster do not wake one another on every commit.
    """

    def __init__(self) -> None:
        self._version = 0
        self._external_version = 0
        self._work_version = 0
        self._external_work_version = 0
        self._cond = threading.Condition()
        #: Threads in wait(): a bump with none (every enqueue of a process that runs no work)
        #: skips Condition.notify_all, which is Python code.
        self._sleepers = 0
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._listeners: list[tuple[Callable[[], None], bool]] = []
        #: The listeners a bump calls: for every change, and for work changes.
        self._called_on_change: tuple[Callable[[], None], ...] = ()
        self._called_on_work: tuple[Callable[[], None], ...] = ()

    @property
    def version(self) -> int:
        return self._version

    @property
    def external_version(self) -> int:
        """Moves only for changes made by other processes."""
        return self._external_version

    @property
    def work_version(self) -> int:
        """Moves only for work changes."""
        return self._work_version

    @property
    def external_work_version(self) -> int:
        """Moves only for work changes made by other processes."""
        return self._external_work_version

    def add_listener(self, listener: Callable[[], None], *, work_only: bool = False) -> None:
        """Call ``listener`` (quickly, from any thread) on every bump, or every work change."""
        with self._cond:
            self._listeners.append((listener, work_only))
            self._sort_listeners()

    def remove_listener(self, listener: Callable[[], None]) -> None:
        with self._cond:
            self._listeners = [entry for entry in self._listeners if entry[0] != listener]
            self._sort_listeners()

    def _sort_listeners(self) -> None:
        # _cond held
        self._called_on_work = tuple(fn for fn, _ in self._listeners)
        self._called_on_change = tuple(fn for fn, work_only in self._listeners if not work_only)

    def bump(self, *, external: bool = False, work: bool = True) -> None:
        with self._cond:
            self._version += 1
            if external:
                self._external_version += 1
            if work:
                self._work_version += 1
                if external:
                    self._external_work_version += 1
            if self._sleepers:
                self._cond.notify_all()
            waiters: Iterable[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = ()
            if self._async_waiters:
                waiters, self._async_waiters = self._async_waiters, set()
            listeners = self._called_on_work if work else self._called_on_change
        for listener in listeners:
            listener()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed
                pass

    def wait(self, seen: int, timeout: float | None) -> int:
        """Block until the version differs from ``seen`` or ``timeout`` passes; return it."""
        with self._cond:
            if self._version == seen:
                self._sleepers += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._sleepers -= 1
            return self._version

    async def wait_async(self, seen: int, timeout: float | None = None) -> int:
        """``wait`` for a coroutine. Cancelling it ends it, whatever the feed does meanwhile.

        Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives as its
        future completes, and a feed that moves all the time (a busy database) made a
        cancelled await_work_async loop forever."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._version != seen:
                return self._version
            entry = (loop, future)
            self._async_waiters.add(entry)
        timer = loop.call_later(timeout, _resolve, future) if timeout is not None else None
        try:
            await future
        finally:
            if timer is not None:
                timer.cancel()
            with self._cond:
                self._async_waiters.discard(entry)
        return self._version


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Inotify:
    """The few inotify calls we need, through ctypes (Linux only).

    Watches the notify files themselves, not their folder: every commit also writes the
    -wal beside them, and a folder watch woke the watcher thread for each of those writes
    (several times per dispatcher turn) only for it to find no name it cares about.
    """

    def __init__(self, paths: list[str]) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._paths = paths
        #: watch descriptor -> path, for the files watched right now
        self._watches: dict[int, str] = {}
        self.rewatch()
        if not self._watches:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch({paths}) failed")

    def rewatch(self) -> None:
        """Watch every file not watched (one replaced or deleted since loses its watch)."""
        watched = set(self._watches.values())
        for path in self._paths:
            if path not in watched:
                wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), _IN_MODIFY)
                if wd >= 0:
                    self._watches[wd] = path

    @property
    def complete(self) -> bool:
        return len(self._watches) == len(self._paths)

    def read_events(self) -> bool:
        """Consume pending events; whether there were any."""
        seen = False
        while True:
            try:
                buffer = os.read(self.fd, 65536)
            except BlockingIOError:
                return seen
            seen = True
            offset = 0
            while offset + _EVENT_HEADER.size <= len(buffer):
                wd, mask, _, length = _EVENT_HEADER.unpack_from(buffer, offset)
                if mask & _IN_IGNORED:  # the file was deleted or replaced: watch it again later
                    self._watches.pop(wd, None)
                offset += _EVENT_HEADER.size + length

    def close(self) -> None:
        os.close(self.fd)


class ChangeWatcher:
    """A daemon thread that bumps a feed when another process commits."""

    #: Even with file events, confirm with data_version this often (events can be missed,
    #: e.g. on network file systems).
    SAFETY_INTERVAL_S = 1.0
    #: At most one check per this interval: this process's own commits raise events too, and
    #: checking after each would contend with the dispatcher for the connection. The first
    #: event after a quiet spell is checked at once, so an idle worker still wakes immediately.
    MIN_CHECK_INTERVAL_S = 0.002

    def __init__(
        self,
        feed: ChangeFeed,
        data_changed: Callable[[], bool],
        watch_paths: list[str],
        poll_interval_s: float,
        listen: Callable[[Callable[[bool], None]], Callable[[], None]] | None = None,
        foreign_work_changed: Callable[[], bool | None] | None = None,
    ) -> None:
        self._feed = feed
        #: Whether another process made a work change since the last call (None: unknown).
        self._foreign_work_changed = foreign_work_changed
        #: listen(on_change) -> stop: the storage calls on_change(work) after others' commits.
        self._unlisten = (
            listen(lambda work: feed.bump(external=True, work=work)) if listen is not None else None
        )
        self._data_changed = data_changed
        self._poll_interval_s = poll_interval_s
        self._stop_r, self._stop_w = os.pipe()
        self._inotify: _Inotify | None = None
        if watch_paths and sys.platform.startswith("linux"):
            try:
                self._inotify = _Inotify(watch_paths)
            except OSError as exc:
                log.info(
                    "file events unavailable (%s); checking for changes every %.3f s", exc, poll_interval_s
                )
        #: How often the thread woke up (events or its safety interval): a cost to keep low.
        self.wakeups = 0
        self._thread = threading.Thread(target=self._run, name="workmanager-watcher", daemon=True)
        self._thread.start()

    @property
    def uses_file_events(self) -> bool:
        return self._inotify is not None

    def _run(self) -> None:
        fds = [self._stop_r] + ([self._inotify.fd] if self._inotify else [])
        pushed = self._inotify is not None or self._unlisten is not None
        timeout = self.SAFETY_INTERVAL_S if pushed else self._poll_interval_s
        last_check = 0.0
        while True:
            readable, _, _ = select.select(fds, [], [], timeout)
            if self._stop_r in readable:
                return
            self.wakeups += 1
            if self._inotify is not None:
                if not self._inotify.complete:
                    self._inotify.rewatch()  # a notify file was replaced; the check below covers the gap
                if readable:
                    self._inotify.read_events()
                    pause = last_check + self.MIN_CHECK_INTERVAL_S - time.monotonic()
                    if pause > 0:
                        if select.select([self._stop_r], [], [], pause)[0]:
                            return
                        self._inotify.read_events()  # events during the pause are covered by this check
            last_check = time.monotonic()
            try:
                changed = self._data_changed()
                # True/False: another process did (not) make a work change; None: can't tell.
                foreign_work = self._foreign_work_changed() if self._foreign_work_changed else None
                if changed:
                    self._feed.bump(external=True, work=foreign_work is not False)
                elif foreign_work:
                    # The commit was seen already, by an event for a state-only commit.
                    self._feed.bump(external=True, work=True)
            except Exception:  # closed storage or a transient error: keep watching
                log.debug("change check failed", exc_info=True)

    def close(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._stop_r)
        os.close(self._stop_w)
        if self._inotify is not None:
            self._inotify.close()
