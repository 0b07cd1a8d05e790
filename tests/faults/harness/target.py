"""Where a scenario's work lives: a fresh SQLite file, or a fresh PostgreSQL schema.

Scenarios that do not depend on the backend take a :class:`Target` and run on both; the
checker reads the database through :meth:`Target.sql`, a connection of its own.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

from services import POSTGRES_URL, require_postgres  # noqa: F401 - re-exported to the scenarios


class Target:
    def __init__(self, backend: str, workdir: Path) -> None:
        if backend not in ("sqlite", "postgres"):
            raise ValueError(f"backend must be 'sqlite' or 'postgres', got {backend!r}")
        self.backend = backend
        self.workdir = workdir
        if backend == "sqlite":
            self.path: Path | None = workdir / "work.db"
            self.url = str(self.path)
            self.schema: str | None = None
        else:
            self.path = None
            self.schema = f"wmfault_{uuid.uuid4().hex[:12]}"
            sep = "&" if "?" in POSTGRES_URL else "?"
            self.url = f"{POSTGRES_URL}{sep}schema={self.schema}"

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    def sql(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; rows back (SQLite ``?``, PostgreSQL ``%s``)."""
        if self.path is not None:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                with conn:
                    return conn.execute(query, params).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={self.schema}") as pg:
            cur = pg.execute(query.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def drop(self) -> None:
        if self.schema is not None:
            import psycopg

            with psycopg.connect(POSTGRES_URL, autocommit=True) as pg:
                pg.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
