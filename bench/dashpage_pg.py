"""The dashboard's page queries on PostgreSQL at scale, in a throwaway schema.

``python -m bench.dashpage_pg [--rows 1000000] [--url postgresql://postgres@127.0.0.1:5432/test]``
fills a new schema with ``--rows`` work by SQL (UUIDv7 ids in creation order, one a millisecond;
97% SUCCEEDED, 1% FAILED, 2% ENQUEUED; a tag per 10,000 consecutive rows, so one tag's rows all
lie together, far back), times each page
query through the storage (median and slowest of 10 after a warm-up), and drops the schema.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import psycopg

from workmanager import Configuration
from workmanager.storage import open_storage
from workmanager.storage.base import PAGE_BOTTOM


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    schema = f"wmdashbench_{uuid.uuid4().hex[:8]}"
    storage = open_storage(f"{args.url}?schema={schema}", Configuration())
    try:
        with psycopg.connect(args.url, autocommit=True, options=f"-c search_path={schema}") as conn:
            started = time.perf_counter()
            conn.execute(
                """
                INSERT INTO workspec (id, worker_name, tags, state, next_run_time, created_at)
                SELECT substr(t, 1, 8) || '-' || substr(t, 9, 4) || '-7' || substr(h, 13, 3) || '-'
                           || '8' || substr(h, 17, 3) || '-' || substr(h, 21, 12),
                       'job' || (i %% 7), '["bench"]',
                       CASE WHEN r < 0.97 THEN 2 WHEN r < 0.98 THEN 3 ELSE 0 END,
                       1700000000000 + i, 1700000000000 + i
                FROM (SELECT i, random() AS r, lpad(to_hex(1700000000000 + i), 12, '0') AS t,
                             replace(gen_random_uuid()::text, '-', '') AS h
                      FROM generate_series(1, %s) AS i) AS s""",
                (args.rows,),
            )
            conn.execute(
                "INSERT INTO worktag (tag, work_id) "
                "SELECT 'b' || ((created_at - 1700000000000) / 10000), id FROM workspec"
            )
            conn.execute("ANALYZE")
            print(f"{args.rows:,} rows in {time.perf_counter() - started:.0f} s")
            deep = conn.execute(
                "SELECT id FROM workspec ORDER BY id DESC LIMIT 1 OFFSET %s",
                (args.rows // 2,),
            ).fetchone()
        started = time.perf_counter()
        storage.work_count_by_state()
        print(f"counting by state: {(time.perf_counter() - started) * 1000:.0f} ms")
        far_tag = f"b{args.rows // 10_000 // 3}"
        cases: dict[str, dict[str, Any]] = {
            "first page": {"via": "id"},
            "page at the middle": {"via": "id", "before": str(deep[0])},
            "state=SUCCEEDED": {"via": "id", "state": 2},
            "state=FAILED (1%)": {"via": "state", "state": 3},
            f"tag={far_tag} (1%, all far back)": {"via": "tag", "tag": far_tag},
            f"state=FAILED&tag={far_tag}": {"via": "state", "state": 3, "tag": far_tag},
            "worker=nobody (one window)": {"via": "id", "worker": "nobody", "window": True},
            # A worker's name as a tag: no worktag rows (migration 0004); the dashboard's probe
            # answers the cap for it, so the page walks the primary key or the state's index.
            "tag=job3 (a worker's name, 1/7)": {"via": "id", "tag": "job3", "window": True},
            "state=FAILED&tag=job3": {"via": "state", "state": 3, "tag": "job3"},
        }
        started = time.perf_counter()
        probe = storage.work_count_upto(cap=20_000, tag="job3")
        print(f"probing tag=job3: {probe:,} ({(time.perf_counter() - started) * 1000:.1f} ms)")
        print(f"{'page':<36} {'median ms':>10} {'max ms':>8}")
        for label, case in cases.items():
            before = case.pop("before", None)
            window = case.pop("window", False)

            def one(before: str | None = before, window: bool = window, case: dict[str, Any] = case) -> None:
                floor = storage.work_page_floor(before=before, scan=20_000) if window else None
                storage.work_page(before=before, floor=floor or PAGE_BOTTOM, limit=51, **case)

            one()
            times = []
            for _ in range(10):
                started = time.perf_counter()
                one()
                times.append((time.perf_counter() - started) * 1000)
            print(f"{label:<36} {statistics.median(times):>10.1f} {max(times):>8.1f}")
    finally:
        storage.close()
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
