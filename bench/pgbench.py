"""PostgreSQL figures, each beside its raw-SQL floor, measured in the same run.

``python -m bench.pgbench [--url URL] [--n N]`` (default: the machine's server,
postgres@127.0.0.1:5432/test; every phase in a fresh schema, dropped after):

1. enqueue one per call: ``wm.enqueue(request)`` vs raw ``INSERT`` + ``COMMIT`` per row;
2. enqueue batched (1000 per call) vs raw ``executemany`` of 1000 rows in one transaction;
3. drain of N no-op jobs by 1, 2 and 4 worker processes (``--processes``;
   ``bench.wmbench_worker`` on the URL) vs a bare claim loop per process: ``UPDATE ... WHERE
   id IN (SELECT id ... FOR UPDATE SKIP LOCKED LIMIT k) RETURNING``, then ``DELETE``, each
   autocommitted, with k = 100 (the batched floor, at every process count) and k = 1 (one
   process, for reference);
4. enqueue-to-start latency p50/p99 (100 jobs, 20 ms apart) with the worker in another
   process (woken by LISTEN/NOTIFY) vs a raw loop in another process that LISTENs and claims.

Worker process for the floors: ``python -m bench.pgbench --raw-worker URL SCHEMA [K]``.
Prints a table and writes ``bench/results/pg-<date>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench import util

RAW_SCHEMA = """
CREATE TABLE jobs (id BIGSERIAL PRIMARY KEY, state INTEGER NOT NULL DEFAULT 0, payload TEXT NOT NULL);
CREATE INDEX jobs_waiting ON jobs (id) WHERE state = 0;
"""
RAW_INSERT = "INSERT INTO jobs (payload) VALUES (%s)"
RAW_CLAIM = (
    "UPDATE jobs SET state = 1 WHERE id IN (SELECT id FROM jobs WHERE state = 0 ORDER BY id"
    " FOR UPDATE SKIP LOCKED LIMIT %s) RETURNING id, payload"
)
RAW_DONE = "DELETE FROM jobs WHERE id = ANY(%s)"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def schema_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


@contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    schema = f"wmbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def raw_connect(base: str, schema: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        base, autocommit=True, options=f"-c search_path={schema}", application_name=app_name(schema)
    )


def app_name(schema: str) -> str:
    """Every connection of a phase carries this name, so its server processes can be found."""
    return f"wmb_{schema}"


def cpu_of(conn: psycopg.Connection[Any], schema: str, pids: list[int]) -> tuple[float, float]:
    """CPU seconds used so far by ``pids`` and by the phase's server backends."""
    workers = sum(util.process_cpu_s(pid) or 0.0 for pid in pids)
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
        (app_name(schema),),
    ).fetchall()
    server = sum(util.process_cpu_s(int(r[0])) or 0.0 for r in rows)
    return workers, server


def raw_worker(base: str, schema: str, batch: int = 1) -> None:
    """The floor's worker: LISTEN, claim ``batch`` jobs per autocommitted statement until SIGTERM."""
    import signal

    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    conn = raw_connect(base, schema)
    listener = raw_connect(base, schema)
    listener.execute("LISTEN jobs")
    util.ready_then_wait_for_go()
    print("worker started", flush=True)
    while not stop[0]:
        rows = conn.execute(RAW_CLAIM, (batch,)).fetchall()
        if not rows:
            for _ in listener.notifies(timeout=0.5, stop_after=1):
                pass
            continue
        for _, body in rows:
            util.mark(int(body))
        conn.execute(RAW_DONE, ([r[0] for r in rows],))


def rate(done: int, seconds: float) -> dict[str, float]:
    return {"rate": done / seconds, "done": done, "seconds": seconds}


class PgBench:
    def __init__(self, base: str, n: int, root: Path) -> None:
        self.base = base
        self.n = n
        self.root = root
        self.results: dict[str, dict[str, Any]] = {}

    def log(self, key: str, fig: dict[str, Any]) -> None:
        self.results[key] = fig
        shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in fig.items()}
        print(f"{key:28s} {shown}", file=sys.stderr, flush=True)

    # -- enqueue --------------------------------------------------------------------------

    def enqueue(self) -> None:
        from bench.wmjobs import manager, request

        one = min(self.n, 3000)
        with fresh_schema(self.base) as schema, raw_connect(self.base, schema) as conn:
            conn.execute(RAW_SCHEMA)
            t = time.perf_counter()
            for i in range(one):
                conn.execute(RAW_INSERT, (str(i),))
            self.log("raw enqueue one/commit", rate(one, time.perf_counter() - t))
            t = time.perf_counter()
            for start in range(0, self.n, 1000):
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(RAW_INSERT, [(str(i),) for i in range(start, min(self.n, start + 1000))])
            self.log("raw enqueue batch 1000", rate(self.n, time.perf_counter() - t))
        with fresh_schema(self.base) as schema:
            wm = manager(schema_url(self.base, schema))
            try:
                t = time.perf_counter()
                for i in range(one):
                    wm.enqueue(request(i))
                self.log("wm enqueue one/call", rate(one, time.perf_counter() - t))
                t = time.perf_counter()
                for start in range(0, self.n, 1000):
                    wm.enqueue([request(i) for i in range(start, min(self.n, start + 1000))])
                self.log("wm enqueue batch 1000", rate(self.n, time.perf_counter() - t))
            finally:
                wm.close()

    # -- drain ----------------------------------------------------------------------------

    def drain(self, key: str, processes: int, *, raw: bool, batch: int = 1) -> None:
        from bench.wmjobs import manager, request

        with fresh_schema(self.base) as schema:
            url = schema_url(self.base, schema)
            mark_dir = self.root / key.replace(" ", "-")
            mark_dir.mkdir()
            if raw:
                conn = raw_connect(self.base, schema)
                conn.execute(RAW_SCHEMA)
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(RAW_INSERT, [(str(i),) for i in range(self.n)])
                count_sql = "SELECT count(*) FROM jobs"
                module, args = "bench.pgbench", ["--raw-worker", self.base, schema, str(batch)]
            else:
                url += f"&application_name={app_name(schema)}"
                wm = manager(url)
                for start in range(0, self.n, 1000):
                    wm.enqueue([request(i) for i in range(start, min(self.n, start + 1000))])
                conn = raw_connect(self.base, schema)
                count_sql = "SELECT count(*) FROM workspec WHERE state IN (0, 1)"
                module, args = "bench.wmbench_worker", [url]

            def left() -> int:
                row = conn.execute(count_sql).fetchone()
                return int(row[0]) if row else 0

            procs = util.spawn_ready(
                module, args, mark_dir, [mark_dir / f"worker-{k}.log" for k in range(processes)]
            )
            try:
                total = left()
                deadline = time.time() + 300
                cpu_from: tuple[int, tuple[float, float]] | None = None
                cpu_to = (0.0, 0.0)
                while (remaining := left()) > 0 and time.time() < deadline:
                    if cpu_from is None and remaining < total:
                        cpu_from = (remaining, cpu_of(conn, schema, [p.pid for p in procs]))
                    cpu_to = cpu_of(conn, schema, [p.pid for p in procs])
                    time.sleep(0.005)
                end = time.time()
            finally:
                for proc in procs:
                    util.stop(proc)
                if not raw:
                    wm.close()
                conn.close()
            starts = util.read_marks(mark_dir)
            first = min(starts.values())
            fig = rate(len(starts), end - first)
            fig["reruns"] = util.count_marks(mark_dir) - len(starts)
            if cpu_from is not None and cpu_from[0] > 0:
                jobs = cpu_from[0]  # finished after the first sample (the last sample is close)
                fig["worker_cpu_us_per_job"] = round((cpu_to[0] - cpu_from[1][0]) / jobs * 1e6)
                fig["server_cpu_us_per_job"] = round((cpu_to[1] - cpu_from[1][1]) / jobs * 1e6)
            self.log(key, fig)

    # -- latency --------------------------------------------------------------------------

    def latency(self, key: str, *, raw: bool, jobs: int = 100, gap_s: float = 0.02) -> None:
        from bench.wmjobs import manager, request

        with fresh_schema(self.base) as schema:
            url = schema_url(self.base, schema)
            mark_dir = self.root / key.replace(" ", "-")
            mark_dir.mkdir()
            if raw:
                conn = raw_connect(self.base, schema)
                conn.execute(RAW_SCHEMA)

                def enqueue(i: int) -> None:
                    with conn.transaction():
                        conn.execute(RAW_INSERT, (str(i),))
                        conn.execute("NOTIFY jobs")

                module, args = "bench.pgbench", ["--raw-worker", self.base, schema]
            else:
                wm = manager(url)

                def enqueue(i: int) -> None:
                    wm.enqueue(request(i))

                module, args = "bench.wmbench_worker", [url]
            proc = util.spawn(module, args, mark_dir, mark_dir / "worker.log")
            try:
                enqueue(10_000_000)  # warm-up
                deadline = time.time() + 60
                while 10_000_000 not in util.read_marks(mark_dir) and time.time() < deadline:
                    time.sleep(0.01)
                time.sleep(1.0)
                before: list[float] = []
                for i in range(jobs):
                    before.append(time.time())
                    enqueue(i)
                    time.sleep(gap_s)
                deadline = time.time() + 30
                while util.count_marks(mark_dir) < jobs + 1 and time.time() < deadline:
                    time.sleep(0.01)
            finally:
                util.stop(proc)
                if raw:
                    conn.close()
                else:
                    wm.close()
            starts = util.read_marks(mark_dir)
            lat = [starts[i] - before[i] for i in range(jobs) if i in starts]
            fig: dict[str, Any] = util.latency_stats(lat)
            fig["missing"] = jobs - len(lat)
            self.log(key, fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--raw-worker":
        raw_worker(argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 1)
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.pgbench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--url", default=os.environ.get("WMBENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    )
    p.add_argument("--n", type=int, default=int(os.environ.get("WMBENCH_N", "10000")))
    p.add_argument(
        "--only", default="enqueue,drain,latency", help="comma-separated phases (default: all three)"
    )
    p.add_argument("--out", default="", help="results JSON (default bench/results/pg-<date>.json)")
    p.add_argument("--processes", default="1,2,4", help="worker process counts for the drain phase")
    p.add_argument(
        "--drain-reps",
        type=int,
        default=3,
        help="workmanager drains per process count, interleaved; the table shows the median",
    )
    args = p.parse_args(argv)
    phases = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="pgbench-") as tmp:
        bench = PgBench(args.url, args.n, Path(tmp))
        if "enqueue" in phases:
            bench.enqueue()
        if "drain" in phases:
            counts = [int(p) for p in args.processes.split(",")]
            for processes in counts:
                if processes == 1:  # the one-job-per-transaction floor, for reference
                    bench.drain("raw drain 1 proc", 1, raw=True)
                bench.drain(f"raw drain {processes} proc batch 100", processes, raw=True, batch=100)
            # A drain of a few thousand jobs lasts under a second, and one such run swings by a
            # quarter on two shared cores: the process counts take turns, and each shows its
            # median run.
            for rep in range(1, args.drain_reps + 1):
                for processes in counts:
                    bench.drain(f"wm drain {processes} proc rep {rep}", processes, raw=False)
            for processes in counts:
                key = f"wm drain {processes} proc"
                reps = [bench.results.pop(f"{key} rep {rep}") for rep in range(1, args.drain_reps + 1)]
                median = sorted(reps, key=lambda fig: fig["rate"])[len(reps) // 2]
                bench.log(key, {**median, "rates": [round(fig["rate"]) for fig in reps]})
        if "latency" in phases:
            bench.latency("raw latency process", raw=True)
            bench.latency("wm latency process", raw=False)
    load = os.getloadavg()
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "n": args.n,
        "url": args.url,
        "server": server_facts(args.url),
        "load_average": [round(x, 2) for x in load],
        "results": bench.results,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS_DIR / f"pg-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(table(bench.results)))
    print(
        f"PostgreSQL {report['server']}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; results: {out}"
    )
    return 0


def server_facts(url: str) -> dict[str, str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {
            k: str(conn.execute(f"SHOW {k}").fetchone()[0])  # type: ignore[index]
            for k in ("server_version", "fsync", "synchronous_commit", "shared_buffers")
        }


def _rate(fig: dict[str, Any] | None) -> str:
    return "-" if not fig or "rate" not in fig else f"{fig['rate']:,.0f}"


def _lat(fig: dict[str, Any] | None) -> str:
    return "-" if not fig or "p50_ms" not in fig else f"{fig['p50_ms']:.2f} / {fig['p99_ms']:.2f}"


def _pct(wm: dict[str, Any] | None, floor: dict[str, Any] | None, key: str, higher_better: bool) -> str:
    if not wm or not floor or key not in wm or key not in floor or not wm[key] or not floor[key]:
        return "-"
    return f"{wm[key] / floor[key] * 100:.0f} %" if higher_better else f"{wm[key] / floor[key]:.1f}x"


def rows(r: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(workload, workmanager, floor, floor kind, wm vs floor) for the results present."""
    g = r.get
    out = [
        (
            "enqueue, 1 request per call (jobs/s)",
            _rate(g("wm enqueue one/call")),
            _rate(g("raw enqueue one/commit")),
            "INSERT, autocommit per row",
            _pct(g("wm enqueue one/call"), g("raw enqueue one/commit"), "rate", True),
        ),
        (
            "enqueue, batches of 1000 (jobs/s)",
            _rate(g("wm enqueue batch 1000")),
            _rate(g("raw enqueue batch 1000")),
            "executemany, 1 txn per chunk",
            _pct(g("wm enqueue batch 1000"), g("raw enqueue batch 1000"), "rate", True),
        ),
    ]
    counts = sorted({int(k.split()[2]) for k in r if k.startswith("wm drain ")})
    for k in counts:
        wm, floor = g(f"wm drain {k} proc"), g(f"raw drain {k} proc batch 100")
        out.append(
            (
                f"drain, {k} worker process{'es' if k > 1 else ''} (jobs/s)",
                _rate(wm),
                _rate(floor),
                f"{k} claim loop{'s' if k > 1 else ''}, 100 jobs per claim",
                _pct(wm, floor, "rate", True),
            )
        )
        if k == 1 and g("raw drain 1 proc"):
            out.append(("", "", _rate(g("raw drain 1 proc")), "claim loop, 1 job per claim",
                        _pct(wm, g("raw drain 1 proc"), "rate", True)))  # fmt: skip
    out.append(
        (
            "latency cross-process, p50 / p99 (ms)",
            _lat(g("wm latency process")),
            _lat(g("raw latency process")),
            "LISTEN + claim loop process",
            _pct(g("wm latency process"), g("raw latency process"), "p50_ms", False),
        )
    )
    return [row for row in out if row[1] != "-" or row[2] != "-"]


def table(r: dict[str, dict[str, Any]]) -> list[str]:
    headers = ("workload", "workmanager", "raw PostgreSQL floor", "floor", "wm vs floor")
    body = rows(r)
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return [
        "workmanager vs raw PostgreSQL, same run",
        line(headers),
        "-" * len(line(headers)),
        *map(line, body),
    ]


if __name__ == "__main__":
    sys.exit(main())
