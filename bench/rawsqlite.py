"""The raw-SQLite floors: the least a durable SQLite job queue can do, measured in the same run.

One table, ``jobs(id, state, payload)``, in WAL mode with ``synchronous=FULL`` (survives
power loss, like workmanager's default ``durability="full"``).

* enqueue, one per commit: one autocommitted ``INSERT`` per job;
* enqueue, batched: ``executemany`` of a chunk in one transaction;
* claim loop: ``BEGIN IMMEDIATE; UPDATE jobs SET state=1 WHERE id IN (SELECT id ... LIMIT k)
  RETURNING ...; COMMIT``, run the jobs, ``BEGIN IMMEDIATE; DELETE ...; COMMIT`` (two
  commits per claim), with k = 1 (one job per transaction) or k = 100 (batched). When a
  claim finds nothing the loop polls ``PRAGMA data_version`` every 1 ms and claims again
  as soon as another connection has committed.

Worker process: ``python -m bench.rawsqlite <db path> <jobs per claim>`` (stops on SIGTERM).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence

from bench.util import mark, ready_then_wait_for_go

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id      INTEGER PRIMARY KEY,
    state   INTEGER NOT NULL DEFAULT 0,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
"""
INSERT = "INSERT INTO jobs (state, payload) VALUES (0, ?)"
CLAIM = (
    "UPDATE jobs SET state = 1 WHERE id IN (SELECT id FROM jobs WHERE state = 0 ORDER BY id LIMIT ?)"
    " RETURNING id, payload"
)
POLL_S = 0.001


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode, WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(SCHEMA)
    return conn


def durability(conn: sqlite3.Connection) -> dict[str, str]:
    """journal_mode and synchronous as read back from the connection."""
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {
        "journal_mode": str(conn.execute("PRAGMA journal_mode").fetchone()[0]),
        "synchronous": names.get(conn.execute("PRAGMA synchronous").fetchone()[0], "?"),
    }


def payload(i: int) -> str:
    return json.dumps({"i": i})


def enqueue_one(conn: sqlite3.Connection, i: int) -> None:
    """One job, its own durable commit."""
    conn.execute(INSERT, (payload(i),))


def enqueue_batch(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """A chunk of jobs in one durable transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(INSERT, [(payload(i),) for i in ids])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def unfinished(conn: sqlite3.Connection) -> int:
    """Jobs not yet done (done jobs are deleted)."""
    return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])


def claim_loop(path: str, batch: int, stop: threading.Event) -> None:
    """Claim ``batch`` jobs per transaction, run them, delete them; until ``stop`` is set."""
    conn = connect(path)
    try:
        last_version = -1
        had_work = True  # look at once, then only after another connection commits
        while not stop.is_set():
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if not had_work and version == last_version:
                time.sleep(POLL_S)
                continue
            last_version = version
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(CLAIM, (batch,)).fetchall()
            conn.execute("COMMIT")
            had_work = bool(rows)
            if not rows:
                continue
            for _, body in rows:
                mark(json.loads(body)["i"])
            ids = [row[0] for row in rows]
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(ids))})", ids)
            conn.execute("COMMIT")
    finally:
        conn.close()


def main(argv: Sequence[str]) -> None:
    path, batch = argv[0], int(argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ready_then_wait_for_go()
    claim_loop(path, batch, stop)


if __name__ == "__main__":
    main(sys.argv[1:])
