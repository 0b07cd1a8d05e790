"""The change feed: versions, the two kinds of change, and async waits that end when cancelled."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from workmanager.engine.changes import ChangeFeed


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
