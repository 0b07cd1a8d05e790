"""The change feed: versions, the two kinds of change, async waits that end when cancelled;
and the watcher that moves it when another process writes the notify files."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from workmanager.engine.changes import ChangeFeed, ChangeWatcher


def test_a_work_change_moves_both_versions_a_state_change_only_one() -> None:
    feed = ChangeFeed()
    feed.bump(work=False)
    assert (feed.version, feed.work_version) == (1, 0)
    feed.bump(external=True)
    assert (feed.version, feed.work_version, feed.external_work_version) == (2, 1, 1)


def test_work_only_listeners_hear_only_work_changes() -> None:
    feed = ChangeFeed()
    heard: list[str] = []
    feed.add_listener(lambda: heard.append("any"))
    feed.add_listener(lambda: heard.append("work"), work_only=True)
    feed.bump(work=False)
    feed.bump()
    assert heard == ["any", "any", "work"]


def test_a_cancelled_async_wait_ends_even_while_the_feed_keeps_moving() -> None:
    """asyncio.wait_for (Python 3.11) can swallow a cancellation when its future completes at
    the same moment: on a busy database, await_work_async(timeout=...) then never returned."""
    feed = ChangeFeed()
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            feed.bump()
            time.sleep(0.0001)

    async def wait_forever() -> None:
        while True:
            await feed.wait_async(feed.version, timeout=1.0)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(wait_forever(), 0.05)

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(main())
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    bumper = threading.Thread(target=storm, daemon=True)
    bumper.start()
    runner = threading.Thread(target=run, daemon=True)
    try:
        for _ in range(20):
            outcome.clear()
            runner = threading.Thread(target=run, daemon=True)
            runner.start()
            runner.join(5)
            assert not runner.is_alive(), "the cancelled wait never ended"
            assert outcome == [None]
    finally:
        stop.set()
        bumper.join(5)


#: The watcher follows the notify files with inotify on Linux only; elsewhere it checks
#: data_version on a timer, which these tests (about file events) do not cover. CI is Linux.
inotify_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file events are inotify's")


def _watch(tmp_path: Path) -> tuple[ChangeFeed, ChangeWatcher, Path]:
    notify = tmp_path / "w.db-wmnotify"
    notify.write_bytes(b"\0" * 8)
    feed = ChangeFeed()
    watcher = ChangeWatcher(feed, lambda: True, [str(notify)], poll_interval_s=0.05)
    assert watcher.uses_file_events
    return feed, watcher, notify


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@inotify_only
def test_a_write_to_the_notify_file_wakes_the_watcher_at_once(tmp_path: Path) -> None:
    feed, watcher, notify = _watch(tmp_path)
    try:
        seen = feed.version
        with open(notify, "r+b") as f:
            os.pwrite(f.fileno(), b"changed!", 0)

        assert _wait_for(lambda: feed.version != seen, timeout=0.5)  # not the 1 s safety check
    finally:
        watcher.close()


@inotify_only
def test_writes_to_other_files_beside_it_do_not_wake_the_watcher(tmp_path: Path) -> None:
    _, watcher, _ = _watch(tmp_path)
    try:
        time.sleep(0.05)
        before = watcher.wakeups
        wal = tmp_path / "w.db-wal"
        for _ in range(50):  # as every commit writes the -wal
            with open(wal, "ab") as f:
                f.write(b"x" * 100)
        time.sleep(0.3)

        assert watcher.wakeups == before
    finally:
        watcher.close()


@inotify_only
def test_a_replaced_notify_file_is_watched_again(tmp_path: Path) -> None:
    feed, watcher, notify = _watch(tmp_path)
    try:
        replacement = tmp_path / "new"
        replacement.write_bytes(b"\0" * 8)
        os.replace(replacement, notify)  # the old watch ends with the old file
        time.sleep(1.5)  # the watcher notices within its safety interval and watches the new file
        seen = feed.version
        with open(notify, "r+b") as f:
            os.pwrite(f.fileno(), b"changed!", 0)

        assert _wait_for(lambda: feed.version != seen, timeout=0.5)
    finally:
        watcher.close()
