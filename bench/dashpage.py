"""The dashboard's work table at scale: how long one page takes on a big SQLite file.

``python -m bench.dashpage [--rows 1000000] [--db PATH]`` builds (or reuses) a database of
``--rows`` work (97% SUCCEEDED, ~1% FAILED, the rest ENQUEUED, tags ``bench`` and one of 100
batch tags), then times full requests through the dashboard's ASGI app (routing, queries,
template) for the first page, a deep page, and filters common and rare. The median and
the slowest of 20 requests each, after one warm-up; counts by state are cached between
requests as in the running dashboard (their cost is printed on its own).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time

from starlette.testclient import TestClient

from workmanager import Configuration, OneTimeWorkRequest, WorkManager
from workmanager.dashboard import create_app
from workmanager.dashboard.app import _AnyName

BATCH = 10_000


def build(path: str, rows: int) -> None:
    wm = WorkManager(path, configuration=Configuration(worker_factory=_AnyName()))
    for batch in range(rows // BATCH):
        wm.enqueue(
            [
                OneTimeWorkRequest(f"job{i % 7}", input_data={"n": i}, tags=["bench", f"b{batch}"])
                for i in range(BATCH)
            ]
        )
    wm.close()
    with sqlite3.connect(path) as conn:
        # Most kept work is finished; the states are set in bulk here, not by running it.
        conn.execute(
            "UPDATE workspec SET state = 2, finished_at = created_at + 5 WHERE abs(random()) % 100 < 97"
        )
        conn.execute("UPDATE workspec SET state = 3 WHERE state = 2 AND abs(random()) % 100 = 0")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", default=os.path.join(tempfile.gettempdir(), "wm-dashpage.db"))
    args = parser.parse_args()
    if not os.path.exists(args.db):
        started = time.perf_counter()
        build(args.db, args.rows)
        print(f"built {args.rows:,} rows in {time.perf_counter() - started:.0f} s: {args.db}")
    with sqlite3.connect(args.db) as conn:
        total = conn.execute("SELECT count(*) FROM workspec").fetchone()[0]
        deep = conn.execute(
            "SELECT id FROM workspec ORDER BY id DESC LIMIT 1 OFFSET ?",
            (total // 2,),
        ).fetchone()[0]
    wm = WorkManager(args.db, configuration=Configuration(worker_factory=_AnyName()))
    started = time.perf_counter()
    counts = wm._storage.work_count_by_state()
    print(
        f"{total:,} rows {dict(sorted(counts.items()))}; counting by state: {(time.perf_counter() - started) * 1000:.1f} ms"
    )
    client = TestClient(create_app(wm), base_url="http://127.0.0.1", client=("127.0.0.1", 1))
    cases = {
        "first page": "/",
        "page at the middle (keyset cursor)": f"/?before={deep}",
        "state=SUCCEEDED (common)": "/?state=SUCCEEDED",
        "state=ENQUEUED (3%)": "/?state=ENQUEUED",
        "state=FAILED (1%)": "/?state=FAILED",
        "tag=b42 (1%)": "/?tag=b42",
        "worker=job3": "/?worker=job3",
        "worker=nobody (no match: one window)": "/?worker=nobody",
        "state=FAILED&tag=b42": "/?state=FAILED&tag=b42",
        "limit=200": "/?limit=200",
    }
    print(f"{'page':<38} {'median ms':>10} {'max ms':>8}")
    for label, url in cases.items():
        assert client.get(url).status_code == 200
        times = []
        for _ in range(20):
            started = time.perf_counter()
            answer = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200
        print(f"{label:<38} {statistics.median(times):>10.1f} {max(times):>8.1f}")
    wm.close()


if __name__ == "__main__":
    main()
