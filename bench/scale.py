"""Scale: does an operation cost the same with 1,000 rows and with many? Does a worker's memory stay flat?

``python -m bench.scale [--rows 100000] [--drain 100000] [--backends sqlite,postgres]``
(``make bench-scale``; the issue's figure is ``--rows 1000000 --drain 1000000``).

1. Two databases per backend: a small one with 1,000 rows and a big one with ``--rows``,
   each half finished (SUCCEEDED just now, so automatic pruning keeps them) and half
   waiting far in the future; every row has one tag shared by 10 rows. Filled through the
   storage layer's ``work_insert`` in batches of 10,000 rows, one transaction each.
2. The same operations, timed on both databases in alternating rounds (so a neighbour's
   load hits both alike): ``enqueue`` one request (public API), ``claim`` it and
   ``complete`` it (the storage calls the dispatcher makes: ``work_claim_available``,
   ``work_succeed_many``, one transaction each), ``get_work_info_by_id`` and
   ``get_work_infos_by_tag`` (public API, 10 rows), and ``prune`` (the automatic pruning
   pass, ``work_prune_finished(older_than=now - prune_threshold)``, with 10 rows due for
   deletion), and two reads a running worker makes after work changes: ``next_due`` (the
   dispatcher's ``work_next_due_and_expedited``) and ``trigger_waiting`` (the trigger
   watcher's ``work_trigger_waiting``). Median per operation on each database, and big/small.
3. The query plan of every statement those operations ran on the big database
   (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``), captured from the real calls.
4. Memory: ``--drain`` no-op jobs enqueued, then one worker process
   (``bench.wmbench_worker``) drains them; its RSS is printed at intervals.

workmanager's internals are used for the fill, the claim/complete/prune calls and the
plans (this is a benchmark of them); everything else goes through the public API.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import pgserver, util

SMALL = 1_000
FILL_CHUNK = 10_000
ROWS_PER_TAG = 10
PRUNE_ROWS = 10
FAR_FUTURE_MS = 10 * 365 * 86_400_000
OPS = (
    "enqueue",
    "claim",
    "complete",
    "get_work_info_by_id",
    "get_work_infos_by_tag",
    "prune",
    "next_due",
    "trigger_waiting",
)


def now_ms() -> int:
    return int(time.time() * 1000)


def fill_id(k: int) -> str:
    """The id of the k-th fill row (deterministic, so a lookup can pick one at random)."""
    return str(uuid.UUID(int=(0xB0 << 120) | k))


def new_work(k: int, *, state: int, now: int, next_run: int, last_enqueue: int, tags: tuple[str, ...]) -> Any:
    from workmanager.storage.base import NewWork

    return NewWork(
        id=fill_id(k),
        worker_name="bench-mark",
        state=state,
        input=f'{{"i": {k}}}',
        input_merger="OverwritingInputMerger",
        initial_delay_ms=0,
        interval_ms=0,
        flex_ms=0,
        required_network_type=0,
        requires_charging=0,
        requires_battery_not_low=0,
        requires_device_idle=0,
        requires_storage_not_low=0,
        backoff_policy=0,
        backoff_delay_ms=30_000,
        last_enqueue_time=last_enqueue,
        next_run_time=next_run,
        minimum_retention_ms=0,
        expedited=0,
        out_of_quota_policy=0,
        stop_reason=-256,
        created_at=last_enqueue,
        finished_at=now if state == 2 else None,
        tags=tags,
    )


@dataclass
class Db:
    """One database under test: its URL, a WorkManager (not started) and a storage of our own."""

    label: str
    url: str
    rows: int
    wm: Any = None
    storage: Any = None
    next_k: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)

    def open(self) -> None:
        from bench.wmjobs import manager
        from workmanager import Configuration
        from workmanager.storage import open_storage

        self.wm = manager(self.url)
        self.storage = open_storage(self.url, Configuration())

    def close(self) -> None:
        self.storage.close()
        self.wm.close()

    def fill(self, log: Callable[[str], None]) -> None:
        """``rows`` rows: even k finished just now, odd k waiting 10 years from now."""
        t0 = time.perf_counter()
        now = now_ms()
        tags = max(1, self.rows // ROWS_PER_TAG)
        for start in range(0, self.rows, FILL_CHUNK):
            batch = [
                new_work(
                    k,
                    state=2 if k % 2 == 0 else 0,
                    now=now,
                    next_run=now if k % 2 == 0 else now + FAR_FUTURE_MS,
                    last_enqueue=now,
                    tags=(f"t{k % tags}",),
                )
                for k in range(start, min(start + FILL_CHUNK, self.rows))
            ]
            with self.storage.transaction() as tx:
                tx.work_insert(batch)
            if start and start % 200_000 == 0:
                log(f"{self.label}: {start:,} rows ({start / (time.perf_counter() - t0):,.0f}/s)")
        self.next_k = self.rows
        seconds = time.perf_counter() - t0
        log(f"{self.label}: filled {self.rows:,} rows in {seconds:.1f} s ({self.rows / seconds:,.0f} rows/s)")


class Ops:
    """One cycle of the measured operations on a database; each returns its seconds."""

    def __init__(self, threshold_ms: int) -> None:
        self.threshold_ms = threshold_ms
        self.token = 0
        self.pending: dict[str, str] = {}  # db label -> id enqueued, not yet claimed
        self.claimed: dict[str, tuple[str, int]] = {}

    def enqueue(self, db: Db) -> float:
        from bench.wmjobs import request

        req = request(-1)
        t = time.perf_counter()
        db.wm.enqueue(req)
        took = time.perf_counter() - t
        self.pending[db.label] = str(req.id)
        return took

    def claim(self, db: Db) -> float:
        self.token += 1
        t = time.perf_counter()
        with db.storage.transaction() as tx:
            got = tx.work_claim_available(
                now=now_ms(), limit=1, runner_id="bench-scale", run_token=self.token, names=None
            )
        took = time.perf_counter() - t
        if len(got) != 1 or got[0].id != self.pending.pop(db.label, None):
            raise RuntimeError(
                f"{db.label}: the claim returned {[w.id for w in got]}, not the work just enqueued"
            )
        self.claimed[db.label] = (got[0].id, got[0].run_token)
        return took

    def complete(self, db: Db) -> float:
        work_id, token = self.claimed.pop(db.label)
        t = time.perf_counter()
        with db.storage.transaction() as tx:
            tx.work_succeed_many([(work_id, token, "{}")], now_ms())
        return time.perf_counter() - t

    def get_work_info_by_id(self, db: Db) -> float:
        k = random.randrange(db.rows)
        t = time.perf_counter()
        info = db.wm.get_work_info_by_id(uuid.UUID(fill_id(k)))
        took = time.perf_counter() - t
        if info is None:
            raise RuntimeError(f"{db.label}: fill row {k} not found")
        return took

    def get_work_infos_by_tag(self, db: Db) -> float:
        tag = f"t{random.randrange(max(1, db.rows // ROWS_PER_TAG))}"
        t = time.perf_counter()
        infos = db.wm.get_work_infos_by_tag(tag)
        took = time.perf_counter() - t
        if len(infos) != min(ROWS_PER_TAG, db.rows):
            raise RuntimeError(f"{db.label}: tag {tag} has {len(infos)} rows, expected {ROWS_PER_TAG}")
        return took

    def prune(self, db: Db) -> float:
        """The automatic pruning pass, with PRUNE_ROWS finished rows old enough to go."""
        now = now_ms()
        old = now - self.threshold_ms - 86_400_000
        rows = [
            new_work(db.next_k + j, state=2, now=old, next_run=old, last_enqueue=old, tags=())
            for j in range(PRUNE_ROWS)
        ]
        db.next_k += PRUNE_ROWS
        with db.storage.transaction() as tx:
            tx.work_insert(rows)
        t = time.perf_counter()
        with db.storage.transaction() as tx:
            deleted = tx.work_prune_finished(older_than=now - self.threshold_ms)
        took = time.perf_counter() - t
        if deleted != PRUNE_ROWS:
            raise RuntimeError(f"{db.label}: pruning deleted {deleted} rows, expected {PRUNE_ROWS}")
        return took

    def next_due(self, db: Db) -> float:
        """The dispatcher's read after a work change: when is the next work due, any expedited?"""
        t = time.perf_counter()
        db.storage.work_next_due_and_expedited(None)
        return time.perf_counter() - t

    def trigger_waiting(self, db: Db) -> float:
        """The trigger watcher's read after a burst of commits: work waiting for a file change."""
        t = time.perf_counter()
        db.storage.work_trigger_waiting()
        return time.perf_counter() - t

    def cycle(self, db: Db) -> dict[str, float]:
        return {op: getattr(self, op)(db) for op in OPS}


# ---- statement capture and plans -------------------------------------------------------------


@contextlib.contextmanager
def captured_sqlite(db: Db) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the manager's and our storage's connections run, parameters inlined."""
    seen: list[tuple[str, Any]] = []
    conns = [db.storage._conn, db.wm._storage._conn]
    for conn in conns:
        conn.set_trace_callback(lambda sql: seen.append((sql, None)))
    try:
        yield seen
    finally:
        for conn in conns:
            conn.set_trace_callback(None)


@contextlib.contextmanager
def captured_postgres() -> Iterator[list[tuple[str, Any]]]:
    """Every statement run through psycopg cursors in this process, with its parameters."""
    import psycopg

    seen: list[tuple[str, Any]] = []
    real_execute, real_many = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        seen.append((query, params))
        return real_execute(self, query, params, **kw)

    def executemany(self: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
        params_seq = list(params_seq)
        seen.append((query, params_seq[0] if params_seq else None))
        return real_many(self, query, params_seq, **kw)

    psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        psycopg.Cursor.execute = real_execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = real_many  # type: ignore[method-assign]


def _planned(sql: str) -> bool:
    code = " ".join(line.split("--", 1)[0] for line in sql.splitlines()).split()
    return bool(code) and code[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


def _distinct(seen: list[tuple[str, Any]], text: Callable[[Any], str]) -> list[tuple[str, Any]]:
    """One of each statement (a trigger or an executemany repeats one, other values aside)."""
    out: dict[str, tuple[str, Any]] = {}
    for query, params in seen:
        sql = text(query)
        if _planned(sql):
            out.setdefault(_short(sql, 70), (sql, params))
    return list(out.values())


def _short(sql: str, width: int = 100) -> str:
    one = " ".join(line.split("--", 1)[0].strip() for line in sql.splitlines())
    one = " ".join(one.split())
    return one if len(one) <= width else one[: width - 3] + "..."


def plans_sqlite(db: Db, ops: Ops) -> list[str]:
    out: list[str] = []
    reader = sqlite3.connect(db.url)
    try:
        for op in OPS:
            with captured_sqlite(db) as seen:
                getattr(ops, op)(db)
            for sql, _ in _distinct(seen, str):
                steps = [row[3] for row in reader.execute("EXPLAIN QUERY PLAN " + sql)]
                out.append(f"[{op}] {_short(sql)}")
                out.extend(f"    {s}" for s in steps or ["(no table search)"])
    finally:
        reader.close()
    return out


def plans_postgres(db: Db, ops: Ops, base: str, schema: str) -> list[str]:
    import psycopg

    out: list[str] = []
    for op in OPS:
        with captured_postgres() as seen:
            getattr(ops, op)(db)
        opts = f"-c search_path={schema} -c enable_bitmapscan=off"  # as the storage's sessions
        with psycopg.connect(base, autocommit=True, options=opts) as conn:
            cur = psycopg.ClientCursor(conn)  # parameters inlined: the plan for these values
            as_text = lambda q: q.as_string(conn) if hasattr(q, "as_string") else str(q)  # noqa: E731
            for text, params in _distinct(seen, as_text):
                try:
                    with conn.transaction(force_rollback=True):
                        cur.execute("EXPLAIN " + text, params)
                        steps = [r[0] for r in cur.fetchall()]
                except psycopg.Error as exc:
                    steps = [f"(EXPLAIN failed: {exc})"]
                out.append(f"[{op}] {_short(text)}")
                out.extend(f"    {s}" for s in steps)
    return out


# ---- the run ----------------------------------------------------------------------------------


def measure(small: Db, big: Db, ops: Ops, samples: int, rounds: int, log: Callable[[str], None]) -> None:
    per_round = max(1, samples // rounds)
    for db in (small, big):
        db.times = {op: [] for op in OPS}
        ops.cycle(db)  # warm caches and prepared statements alike
    for r in range(rounds):
        for db in (small, big) if r % 2 == 0 else (big, small):
            for _ in range(per_round):
                for op, seconds in ops.cycle(db).items():
                    db.times[op].append(seconds)
        log(f"round {r + 1}/{rounds} done")


def report(title: str, small: Db, big: Db) -> list[str]:
    lines = [
        title,
        f"{'operation':24s} {'median @ ' + format(small.rows, ','):>16s} {'median @ ' + format(big.rows, ','):>18s}"
        f" {'big / small':>12s}",
    ]
    for op in OPS:
        a, b = statistics.median(small.times[op]), statistics.median(big.times[op])
        flag = "" if b <= 2 * a else "   <-- over 2x"
        lines.append(f"{op:24s} {a * 1e6:13,.0f} µs {b * 1e6:15,.0f} µs {b / a:11.2f}x{flag}")
    lines.append(f"({len(small.times['enqueue'])} samples per operation per database, medians)")
    return lines


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def drain_memory(
    url: str, jobs: int, unfinished: Callable[[], int], folder: Path, log: Callable[[str], None]
) -> list[str]:
    """Enqueue ``jobs``, drain them with one worker process, sample its RSS as it goes."""
    from bench.wmjobs import manager, request

    wm = manager(url)
    t0 = time.perf_counter()
    try:
        for start in range(0, jobs, 1000):
            wm.enqueue([request(i) for i in range(start, min(jobs, start + 1000))])
    finally:
        wm.close()
    log(f"enqueued {jobs:,} jobs for the drain in {time.perf_counter() - t0:.1f} s")
    mark_dir = folder / "drain-marks"
    mark_dir.mkdir(parents=True)
    proc = util.spawn("bench.wmbench_worker", [url], mark_dir, folder / "drain-worker.log")
    samples: list[tuple[float, int, int]] = []  # (seconds, jobs done, RSS KiB)
    t0 = time.perf_counter()
    every = 0.5
    try:
        while True:
            left = unfinished()
            rss = rss_kib(proc.pid)
            if rss is not None:
                samples.append((time.perf_counter() - t0, jobs - left, rss))
                if len(samples) % 20 == 1:  # progress, kept in the log if the run is cut short
                    log(f"drain: {jobs - left:,} of {jobs:,} done, worker RSS {rss / 1024:.1f} MiB")
            if left == 0 or proc.poll() is not None:
                break
            time.sleep(every)
    finally:
        util.stop(proc)
    if proc.returncode not in (None, 0, -15) and samples and samples[-1][1] < jobs:
        raise RuntimeError("drain worker died:\n" + util.log_tail(folder / "drain-worker.log"))
    seconds = samples[-1][0] if samples else float("nan")
    out = [f"worker RSS while draining {jobs:,} jobs ({jobs / seconds:,.0f} jobs/s):"]
    step = max(1, len(samples) // 12)
    shown = samples[::step] + ([samples[-1]] if samples and samples[-1] is not samples[::step][-1] else [])
    out += [f"  {t:7.1f} s  {done:>10,} done  RSS {rss / 1024:7.1f} MiB" for t, done, rss in shown]
    started = [s for s in samples if s[1] >= jobs * 0.1]
    if started:
        first, last = started[0], samples[-1]
        growth = (last[2] - first[2]) / 1024
        out.append(
            f"  RSS from 10 % done to the end: {first[2] / 1024:.1f} -> {last[2] / 1024:.1f} MiB "
            f"({growth:+.1f} MiB over {last[1] - first[1]:,} jobs)"
        )
    return out


def run_sqlite(args: argparse.Namespace, folder: Path, ops: Ops, log: Callable[[str], None]) -> list[str]:
    folder.mkdir()
    small = Db("sqlite small", os.fspath(folder / "small.db"), SMALL)
    big = Db("sqlite big", os.fspath(folder / "big.db"), args.rows)
    out: list[str] = []
    for db in (small, big):
        db.open()
        db.fill(log)
    try:
        measure(small, big, ops, args.samples, args.rounds, log)
        out += report("SQLite (durability full: WAL, synchronous=FULL)", small, big)
        out += ["", f"SQLite query plans at {big.rows:,} rows:", *plans_sqlite(big, ops)]
    finally:
        small.close()
        big.close()
    if args.drain:
        path = os.fspath(folder / "drain.db")
        reader: list[sqlite3.Connection] = []

        def unfinished() -> int:
            if not reader:
                reader.append(sqlite3.connect(f"file:{path}?mode=ro", uri=True))
            return int(reader[0].execute("SELECT count(*) FROM workspec WHERE state IN (0, 1)").fetchone()[0])

        try:
            lines = drain_memory(path, args.drain, unfinished, folder, log)
        finally:
            for conn in reader:
                conn.close()
        out += ["", "SQLite " + lines[0], *lines[1:]]
    return out


def run_postgres(args: argparse.Namespace, folder: Path, ops: Ops, log: Callable[[str], None]) -> list[str]:
    import psycopg

    from bench.pgbench import fresh_schema, schema_url

    out: list[str] = []
    folder.mkdir()
    with fresh_schema(args.url) as s_schema, fresh_schema(args.url) as b_schema:
        small = Db("postgres small", schema_url(args.url, s_schema), SMALL)
        big = Db("postgres big", schema_url(args.url, b_schema), args.rows)
        for db in (small, big):
            db.open()
            db.fill(log)
        try:
            with psycopg.connect(args.url, autocommit=True) as conn:
                for schema in (s_schema, b_schema):  # fresh statistics, as autovacuum would have
                    conn.execute(f'ANALYZE "{schema}".workspec')
                    conn.execute(f'ANALYZE "{schema}".worktag')
            measure(small, big, ops, args.samples, args.rounds, log)
            out += report("PostgreSQL (fsync on, synchronous_commit on)", small, big)
            out += [
                "",
                f"PostgreSQL query plans at {big.rows:,} rows:",
                *plans_postgres(big, ops, args.url, b_schema),
            ]
        finally:
            small.close()
            big.close()
    if args.drain:
        with fresh_schema(args.url) as schema:
            conn = psycopg.connect(args.url, autocommit=True, options=f"-c search_path={schema}")
            try:

                def unfinished() -> int:
                    row = conn.execute("SELECT count(*) FROM workspec WHERE state IN (0, 1)").fetchone()
                    return int(row[0]) if row else 0

                lines = drain_memory(schema_url(args.url, schema), args.drain, unfinished, folder, log)
            finally:
                conn.close()
        out += ["", "PostgreSQL " + lines[0], *lines[1:]]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000, help="rows in the big database (issue: 1,000,000)")
    p.add_argument("--drain", type=int, default=100_000, help="jobs for the memory drain (0: skip)")
    p.add_argument("--samples", type=int, default=200, help="cycles of the operations per database")
    p.add_argument("--rounds", type=int, default=4, help="alternations between the two databases")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument(
        "--url",
        default=os.environ.get("WMBENCH_POSTGRES", ""),
        help="PostgreSQL server (default: a throwaway cluster of our own, bench/pgserver.py)",
    )
    p.add_argument("--dir", default=os.environ.get("WMBENCH_DIR"), help="where the SQLite files go")
    args = p.parse_args(argv)
    from workmanager import Configuration

    # A run stopped with SIGTERM (a background job ignores SIGINT) still stops its worker
    # process and removes its databases (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    folder = Path(tempfile.mkdtemp(prefix="wm-scale-", dir=args.dir))
    threshold_ms = int(Configuration().prune_threshold.total_seconds() * 1000)
    out = [
        f"bench.scale: {SMALL:,} vs {args.rows:,} rows (half finished, half waiting 10 years out); "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    ]
    try:
        for backend in args.backends.split(","):
            ops = Ops(threshold_ms)
            if backend == "sqlite":
                out += ["", *run_sqlite(args, folder / "sqlite", ops, log)]
            elif backend == "postgres":
                with pgserver.server(args.url) as args.url:
                    out += ["", *run_postgres(args, folder / "postgres", ops, log)]
            elif backend:
                p.error(f"--backends: unknown backend {backend!r}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out.append(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
