"""Dashboard fixtures: a real WorkManager on a SQLite file, the app, and a real uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from services import POSTGRES_URL, require_postgres
from workmanager import Result, Worker, WorkManager

LOCAL = ("127.0.0.1", 40000)
BASE = "http://127.0.0.1:8765"


class Echo(Worker):
    name = "echo"

    def do_work(self) -> Result:
        return Result.success(dict(self.input_data))


class Boom(Worker):
    name = "boom"

    def do_work(self) -> Result:
        raise RuntimeError("it went <b>wrong</b>")


WORKERS = [Echo, Boom]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "work.db")


@pytest.fixture
def wm(db: str, closing: Callable[[Any], Any]) -> WorkManager:
    """Writes and reads; runs nothing unless a test starts it."""
    return closing(WorkManager(db, workers=WORKERS))  # type: ignore[no-any-return]


def local_client(app: ASGIApp, **kwargs: Any) -> TestClient:
    """A client on this machine, as a browser on 127.0.0.1 would be."""
    kwargs.setdefault("base_url", BASE)
    kwargs.setdefault("client", LOCAL)
    return TestClient(app, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """An app on a real uvicorn server in a thread, stopped at teardown."""

    def __init__(self, app: ASGIApp) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        # force_exit: event streams stay open as long as a page is, and need not be waited for.
        self.server.should_exit = self.server.force_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[[ASGIApp], Served]]:
    servers: list[Served] = []

    def start(app: ASGIApp) -> Served:
        served = Served(app)
        servers.append(served)
        return served

    yield start
    for served in reversed(servers):
        served.stop()


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh schema on the machine's PostgreSQL, dropped afterwards. Without a server the
    test skips, unless CI is set: then it fails."""
    import psycopg

    require_postgres()
    schema = f"wmdash_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
