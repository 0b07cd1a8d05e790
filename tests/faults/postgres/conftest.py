"""Fixtures of the PostgreSQL fault cases: a throw-away server, a schema per test, a proxy.

Without PostgreSQL binaries the cases skip; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from .cluster import ThrowawayCluster, Unavailable
from .proxy import PgProxy


def classify(statement: str) -> str | None:
    """Which of the library's statements a transaction ran, as the proxy tags it."""
    if "SET state = 1, run_attempt_count" in statement:
        return "claim"
    if "SET state = 2" in statement or "SET state = 3" in statement:
        return "complete"
    return None


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[ThrowawayCluster]:
    try:
        cluster = ThrowawayCluster()
        cluster.create()
    except (Unavailable, OSError) as exc:
        message = f"cannot start a throw-away PostgreSQL server: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set: PostgreSQL fault tests must run)", pytrace=False)
        pytest.skip(message)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster: ThrowawayCluster) -> Iterator[str]:
    """A fresh schema on the throw-away server (which an earlier test may have left stopped)."""
    try:
        pg_cluster.wait_ready(timeout=2)
    except psycopg.Error:
        pg_cluster.start()
        pg_cluster.wait_ready()
    schema = f"wmfault_{uuid.uuid4().hex[:12]}"
    yield f"{pg_cluster.url}?schema={schema}"
    try:
        pg_cluster.wait_ready(timeout=2)
    except psycopg.Error:
        pg_cluster.start()
        pg_cluster.wait_ready()
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pg_proxy(pg_cluster: ThrowawayCluster) -> Iterator[PgProxy]:
    proxy = PgProxy(
        ("127.0.0.1", pg_cluster.port), classify=classify, seed=int(os.environ.get("WM_SEED", "7"))
    )
    try:
        yield proxy
    finally:
        proxy.close()
