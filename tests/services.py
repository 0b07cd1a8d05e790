"""The services some tests need (PostgreSQL, Chromium): one place that says what a missing one means.

Without the service a test skips, unless ``CI`` is set: then it fails, so a missing install
step can never pass CI. Importable from every test module (``pythonpath = tests``).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

#: The machine's PostgreSQL; each test works in a schema of its own.
POSTGRES_URL = os.environ.get("WORKMANAGER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def unavailable(message: str) -> NoReturn:
    """Skip the test for a missing service, or fail it when CI is set."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: this test must run)", pytrace=False)
    pytest.skip(message)


def require_postgres() -> None:
    """The machine's PostgreSQL answers, or the test skips (fails under CI)."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except Exception as exc:
        unavailable(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc}")
