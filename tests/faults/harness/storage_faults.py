"""H6, storage faults: a database that is full, without privileges.

* ``limit_pages(wm, extra)``: ``PRAGMA max_page_count`` on this process's connection, a few
  pages above what the file holds now: the next writes get a real SQLITE_FULL.
* ``WM_FSIZE_LIMIT`` (bytes) in a worker's environment: ``app.py`` sets ``RLIMIT_FSIZE`` (and
  ignores SIGXFSZ) at start-up, so the process cannot grow any file past it: its ``-wal``
  fills up, ``write()`` fails, SQLite reports SQLITE_FULL. Space comes back when another
  process checkpoints and truncates the ``-wal`` (``free_wal``).
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
from pathlib import Path

from workmanager import WorkManager

FSIZE_ENV = "WM_FSIZE_LIMIT"


def limit_pages(wm: WorkManager, extra: int) -> int:
    """Cap this process's view of the file at its current size plus ``extra`` pages."""
    conn = wm._storage._conn  # type: ignore[attr-defined]
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return int(conn.execute(f"PRAGMA max_page_count = {pages + extra}").fetchone()[0])


def unlimit_pages(wm: WorkManager) -> None:
    wm._storage._conn.execute("PRAGMA max_page_count = 4294967294")  # type: ignore[attr-defined]


def apply_fsize_limit_from_env() -> None:
    """In a worker process: honour WM_FSIZE_LIMIT (called by app.make)."""
    limit = os.environ.get(FSIZE_ENV)
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not death
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))


def free_wal(db: Path) -> int:
    """Give the space back: checkpoint the -wal into the file and truncate it (from a process
    without the limit). Returns the -wal's size before."""
    wal = Path(str(db) + "-wal")
    before = wal.stat().st_size if wal.exists() else 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return before
