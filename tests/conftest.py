"""Shared fixtures: a gate that holds a worker inside do_work, helper threads to enqueue from,
and a fresh PostgreSQL schema.

The test manager runs work inline in the thread that made it runnable, so to look at a
RUNNING worker a test enqueues from a helper thread and lets the worker wait on the gate.
Every wait is bounded, and teardown opens the gate before joining, so a failing test
never hangs the suite.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from services import POSTGRES_URL, require_postgres

#: Upper bound for any wait on another thread; reached only when a test is already failing.
WAIT_S = 10.0


@dataclass
class Gate:
    """``started`` is set by the worker once inside do_work; it then waits for ``release``."""

    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def hold(self) -> None:
        """Called by the worker: announce the start and wait to be released."""
        self.started.set()
        self.release.wait(WAIT_S)

    def wait_started(self) -> None:
        assert self.started.wait(WAIT_S), "the worker did not start"


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """``closing(wm)`` returns ``wm`` and closes it at teardown (its watcher and event-loop threads)."""
    opened: list[Any] = []

    def register(resource: Any) -> Any:
        opened.append(resource)
        return resource

    yield register
    for resource in reversed(opened):
        resource.close()


@pytest.fixture
def in_background(gate: Gate, closing: Callable[[Any], Any]) -> Iterator[Callable[..., threading.Thread]]:
    """Run ``fn(*args)`` on a helper thread; its exception, if any, fails the test at teardown.

    Teardown opens the gate and joins the threads before ``closing`` closes any manager.
    """
    threads: list[threading.Thread] = []
    errors: list[BaseException] = []

    def start(fn: Callable[..., Any], *args: Any) -> threading.Thread:
        def target() -> None:
            try:
                fn(*args)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        threads.append(thread)
        return thread

    yield start
    gate.release.set()
    for thread in threads:
        thread.join(WAIT_S)
    assert not [t for t in threads if t.is_alive()], "a helper thread did not finish"
    if errors:
        raise errors[0]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the test server (skips without one, fails under CI), dropped afterwards."""
    import psycopg

    require_postgres()
    schema = f"wmtest_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
