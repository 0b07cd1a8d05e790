"""workmanager's benchmark: each figure beside its raw-SQLite floor, measured in the same run.

``make bench`` (``python -m bench.wmbench [--n N] [--cap S] [--keep]``) measures, on SQLite
with the library's default durability (WAL, synchronous=FULL):

1. enqueue, one request per call, vs raw ``INSERT`` + commit per row;
2. enqueue, batches of 1000 requests per call, vs raw ``executemany`` per chunk in one transaction;
3. drain of N pre-enqueued no-op jobs by ONE worker process, vs a raw claim loop in a separate
   process claiming 1 job per transaction and 100 per transaction; rate = jobs / (first job
   start -> the database shows 0 unfinished jobs); then by 2 and 4 worker processes on the
   same file (``--processes``) beside as many raw claim loops of 100;
4. enqueue-to-start latency (200 jobs, 20 ms apart) with work run in the benchmark process and
   in another process, vs a raw claim loop polling ``PRAGMA data_version`` every 1 ms (in a
   thread, and in another process);
5. graphs (bench/wmgraph.py): a fan-out of 10,000 into one join and a 10,000-long chain, each
   enqueued in one call, and the cost of resolving dependents when a prerequisite finishes
   (1k and 10k dependents, success unblocking them and failure failing them), per node.

workmanager is used through its public API only. Environment: ``WMBENCH_N`` (default 10000),
``WMBENCH_DIR`` (where the databases go; default a fresh temp dir, which must be on a real
disk). Results: a table on stdout and ``bench/results/<date>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import rawsqlite, util

RESULTS_DIR = Path(__file__).resolve().parent / "results"
UNFINISHED_SQL = "SELECT count(*) FROM workspec WHERE state IN (0, 1, 4)"  # ENQUEUED, RUNNING, BLOCKED

Figure = dict[str, Any]


class Bench:
    def __init__(self, root: Path, n: int, cap: float, chunk: int, lat_jobs: int, lat_gap: float) -> None:
        self.root = root
        self.n = n
        self.cap = cap
        self.chunk = chunk
        self.lat_jobs = lat_jobs
        self.lat_gap = lat_gap
        self.t_start = time.perf_counter()
        self.wm_error: str | None = None
        self.results: dict[str, Figure] = {}
        self.only: list[str] = []
        self.processes: list[int] = [1, 2, 4]
        self.readers: dict[str, sqlite3.Connection] = {}

    # ---- plumbing ---------------------------------------------------------------------

    def log(self, msg: str) -> None:
        print(f"[{time.perf_counter() - self.t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def phase_dir(self, name: str) -> Path:
        d = self.root / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def run(self, key: str, fn: Callable[[], Figure], needs_wm: bool = False) -> None:
        """Run one phase; a failure is recorded as that phase's error and the run goes on."""
        if self.only and not any(part in key for part in self.only):
            return
        if needs_wm and self.wm_error is not None:
            self.results[key] = {"error": f"workmanager not importable: {self.wm_error}"}
            self.log(f"{key}: skipped (workmanager not importable)")
            return
        self.log(f"{key} ...")
        try:
            fig = fn()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            fig = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            self.close_readers()
            gc.collect()
        self.results[key] = fig
        self.log(f"{key}: {summary(fig)}")

    # ---- 1 & 2: enqueue ---------------------------------------------------------------

    def timed_loop(self, total: int, step: int, body: Callable[[int, int], None]) -> Figure:
        """Call ``body(start, stop)`` over ``range(total)`` in steps; stop early at the cap."""
        done = 0
        capped = False
        t0 = time.perf_counter()
        while done < total:
            stop = min(done + step, total)
            body(done, stop)
            done = stop
            if time.perf_counter() - t0 > self.cap and done < total:
                capped = True
                break
        seconds = time.perf_counter() - t0
        return {"rate": done / seconds, "done": done, "seconds": seconds, "capped": capped}

    #: Enqueue one per call alternates between the floor and workmanager every this many jobs,
    #: so both see the same disk: fsync latency here drifts by 2x within a minute.
    INTERLEAVE = 250

    def enqueue_one(self) -> Figure:
        """Raw INSERT + COMMIT per row and ``wm.enqueue(request)``, alternating in slices."""
        from bench.wmjobs import manager, request

        raw_path = os.fspath(self.phase_dir("raw-enqueue-one") / "raw.db")
        wm_path = os.fspath(self.phase_dir("wm-enqueue-one") / "wm.db")
        conn = rawsqlite.connect(raw_path)
        wm = manager(wm_path)
        seconds = {"raw": 0.0, "wm": 0.0}
        done = 0
        t0 = time.perf_counter()
        try:
            while done < self.n and time.perf_counter() - t0 < 2 * self.cap:
                stop = min(done + self.INTERLEAVE, self.n)
                t = time.perf_counter()
                for i in range(done, stop):
                    rawsqlite.enqueue_one(conn, i)
                seconds["raw"] += time.perf_counter() - t
                t = time.perf_counter()
                for i in range(done, stop):
                    wm.enqueue(request(i))
                seconds["wm"] += time.perf_counter() - t
                done = stop
            capped = done < self.n
            raw: Figure = {
                "rate": done / seconds["raw"],
                "done": done,
                "seconds": seconds["raw"],
                "capped": capped,
            }
            raw["stored"] = rawsqlite.unfinished(conn)
            raw["durability"] = rawsqlite.durability(conn)
            mine: Figure = {
                "rate": done / seconds["wm"],
                "done": done,
                "seconds": seconds["wm"],
                "capped": capped,
            }
            mine["stored"] = self.wm_unfinished(wm_path, wm)
            mine["journal_mode"] = journal_mode(wm_path)
            mine["interleaved_every"] = self.INTERLEAVE
        finally:
            conn.close()
            dispose(wm)
        self.results["raw_enqueue_one"] = raw
        self.results["wm_enqueue_one"] = mine
        return {"rate": mine["rate"], "done": done, "ratio_to_floor": mine["rate"] / raw["rate"]}

    def raw_enqueue_batch(self) -> Figure:
        path = os.fspath(self.phase_dir("raw-enqueue-batch") / "raw.db")
        conn = rawsqlite.connect(path)
        try:
            fig = self.timed_loop(self.n, self.chunk, lambda a, b: rawsqlite.enqueue_batch(conn, range(a, b)))
            fig["stored"] = rawsqlite.unfinished(conn)
            return fig
        finally:
            conn.close()

    def wm_enqueue_one(self) -> Figure:
        from bench.wmjobs import manager, request

        path = os.fspath(self.phase_dir("wm-enqueue-one") / "wm.db")
        wm = manager(path)

        def body(a: int, b: int) -> None:
            for i in range(a, b):
                wm.enqueue(request(i))

        try:
            fig = self.timed_loop(self.n, 1, body)
            fig["stored"] = self.wm_unfinished(path, wm)
            fig["journal_mode"] = journal_mode(path)
            return fig
        finally:
            dispose(wm)

    def wm_enqueue_batch(self) -> Figure:
        from bench.wmjobs import manager, request

        path = os.fspath(self.phase_dir("wm-enqueue-batch") / "wm.db")
        wm = manager(path)
        try:
            fig = self.timed_loop(
                self.n, self.chunk, lambda a, b: wm.enqueue([request(i) for i in range(a, b)])
            )
            fig["stored"] = self.wm_unfinished(path, wm)
            return fig
        finally:
            dispose(wm)

    # ---- 3: drain by one worker process -----------------------------------------------

    def drain(
        self,
        name: str,
        prefill: Callable[[int, int], None],
        unfinished: Callable[[], int],
        module: str,
        args: list[str],
        poll_s: float = 0.005,
        processes: int = 1,
    ) -> Figure:
        """Pre-enqueue, start ``processes`` worker processes, wait until nothing is unfinished."""
        mark_dir = self.root / name / "marks"
        mark_dir.mkdir()
        pre = self.timed_loop(self.n, self.chunk, prefill)
        total = pre["done"]
        logs = [self.root / name / f"worker-{k}.log" for k in range(processes)]
        procs = util.spawn_ready(module, args, mark_dir, logs)
        spawned = now = time.time()
        left = total
        capped = False
        cpu_from: tuple[int, float] | None = None  # (jobs left, workers' CPU s) once work began
        cpu_to: float | None = None

        def cpu() -> float | None:
            used = [util.process_cpu_s(proc.pid) for proc in procs]
            return None if None in used else sum(u for u in used if u is not None)

        try:
            while True:
                left = unfinished()
                now = time.time()
                if cpu_from is None and left < total:
                    used = cpu()
                    cpu_from = (left, used) if used is not None else (0, math.nan)
                if left == 0 or (now - spawned > self.cap):
                    cpu_to = cpu()
                if left == 0:
                    break
                for proc, log in zip(procs, logs, strict=True):
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"worker exited with {proc.returncode} with {left} jobs unfinished:\n"
                            + util.log_tail(log)
                        )
                if now - spawned > self.cap:
                    capped = True
                    break
                time.sleep(poll_s)
        finally:
            stop_s = max(util.stop(proc) for proc in procs)
        starts = util.read_marks(mark_dir)
        records = util.count_marks(mark_dir)
        if not starts:
            raise RuntimeError("no job started:\n" + util.log_tail(logs[0]))
        first, last = min(starts.values()), max(starts.values())
        done = total - left
        cpu_us = math.nan
        if cpu_from is not None and cpu_to is not None and cpu_from[0] > left:
            cpu_us = (cpu_to - cpu_from[1]) / (cpu_from[0] - left) * 1e6
        return {
            "rate": done / (now - first),
            "done": done,
            "enqueued": total,
            "processes": processes,
            "seconds": now - first,
            "capped": capped,
            "boot_s": first - spawned,
            "start_to_start_rate": (len(starts) - 1) / (last - first) if last > first else math.nan,
            "ack_lag_ms": (now - last) * 1000.0,
            "wall_rate_with_boot": done / (now - spawned),
            "reruns": records - len(starts),
            "worker_stop_s": stop_s,
            "worker_cpu_us_per_job": cpu_us,
        }

    def raw_drain(self, batch: int, processes: int = 1) -> Figure:
        name = f"raw-drain-{batch}-x{processes}"
        path = os.fspath(self.phase_dir(name) / "raw.db")
        conn = rawsqlite.connect(path)
        reader = readonly(path)
        try:
            return self.drain(
                name,
                lambda a, b: rawsqlite.enqueue_batch(conn, range(a, b)),
                lambda: rawsqlite.unfinished(reader),
                "bench.rawsqlite",
                [path, str(batch)],
                processes=processes,
            )
        finally:
            reader.close()
            conn.close()

    def wm_drain(self, processes: int = 1) -> Figure:
        from bench.wmjobs import manager, request

        name = f"wm-drain-x{processes}"
        path = os.fspath(self.phase_dir(name) / "wm.db")
        wm = manager(path)
        try:
            fig = self.drain(
                name,
                lambda a, b: wm.enqueue([request(i) for i in range(a, b)]),
                lambda: self.wm_unfinished(path, wm),
                "bench.wmbench_worker",
                [path],
                processes=processes,
            )
        finally:
            dispose(wm)
        fig["counted_by"] = self.counted_by
        fig["final_states"] = final_states(path)
        succeeded = fig["final_states"].get("SUCCEEDED")
        if succeeded is not None and succeeded != fig["done"] and not fig["capped"]:
            fig["warning"] = f"{succeeded} of {fig['done']} finished jobs SUCCEEDED: {fig['final_states']}"
        return fig

    counted_by = "sqlite"

    def wm_unfinished(self, path: str, wm: Any) -> int:
        """Unfinished work: a read-only count on the library's table, else the public API."""
        if self.counted_by == "sqlite":
            try:
                if path not in self.readers:
                    self.readers[path] = readonly(path)
                return int(self.readers[path].execute(UNFINISHED_SQL).fetchone()[0])
            except sqlite3.Error as exc:
                self.log(f"read-only count failed ({exc}); counting through the public API")
                self.counted_by = "public-api"
        from workmanager import WorkInfo, WorkQuery

        s = WorkInfo.State
        return len(wm.get_work_infos(WorkQuery(states=[s.ENQUEUED, s.RUNNING, s.BLOCKED])))

    def close_readers(self) -> None:
        for conn in self.readers.values():
            conn.close()
        self.readers.clear()

    # ---- 4: enqueue-to-start latency --------------------------------------------------

    def latency(self, mark_dir: Path, enqueue: Callable[[int], None], alive: Callable[[], None]) -> Figure:
        """Warm up, idle 1 s, then enqueue jobs on a fixed schedule; latency = start - before enqueue."""
        enqueue(-1)
        wait_for(lambda: -1 in util.read_marks(mark_dir), 30.0, alive, "the warm-up job never started")
        time.sleep(1.0)
        before: list[float] = []
        t0 = time.perf_counter() + 0.01
        for k in range(self.lat_jobs):
            delay = t0 + k * self.lat_gap - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            before.append(time.time())
            enqueue(k)
        wanted = self.lat_jobs + 1
        finished = wait_for(lambda: util.count_marks(mark_dir) >= wanted, 30.0, alive, None)
        starts = util.read_marks(mark_dir)
        lat = [starts[k] - before[k] for k in range(self.lat_jobs) if k in starts]
        fig: Figure = util.latency_stats(lat)
        fig["missing"] = self.lat_jobs - len(lat)
        fig["capped"] = not finished
        return fig

    def raw_latency(self, in_process: bool) -> Figure:
        name = "raw-latency-" + ("thread" if in_process else "process")
        d = self.phase_dir(name)
        mark_dir = d / "marks"
        mark_dir.mkdir()
        path = os.fspath(d / "raw.db")
        conn = rawsqlite.connect(path)
        try:
            if in_process:
                util.set_mark_dir(mark_dir)
                stop = threading.Event()
                thread = threading.Thread(target=rawsqlite.claim_loop, args=(path, 1, stop), daemon=True)
                thread.start()
                try:
                    return self.latency(mark_dir, lambda i: rawsqlite.enqueue_one(conn, i), lambda: None)
                finally:
                    stop.set()
                    thread.join(10)
            with worker_process("bench.rawsqlite", [path, "1"], mark_dir, d / "worker.log") as alive:
                return self.latency(mark_dir, lambda i: rawsqlite.enqueue_one(conn, i), alive)
        finally:
            conn.close()

    def wm_graph(self) -> Figure:
        from bench.wmgraph import graph_phase

        return graph_phase(self.phase_dir("wm-graph"))

    def wm_latency(self, in_process: bool) -> Figure:
        from bench.wmjobs import manager, request

        name = "wm-latency-" + ("in-process" if in_process else "process")
        d = self.phase_dir(name)
        mark_dir = d / "marks"
        mark_dir.mkdir()
        path = os.fspath(d / "wm.db")
        wm = manager(path)
        try:
            if in_process:
                util.set_mark_dir(mark_dir)
                wm.start()
                try:
                    return self.latency(mark_dir, lambda i: wm.enqueue(request(i)), lambda: None)
                finally:
                    wm.stop()
            with worker_process("bench.wmbench_worker", [path], mark_dir, d / "worker.log") as alive:
                return self.latency(mark_dir, lambda i: wm.enqueue(request(i)), alive)
        finally:
            dispose(wm)


# ---- helpers ----------------------------------------------------------------------------


def dispose(wm: Any) -> None:
    """Release a manager's database and threads (``close()`` where the library has it)."""
    close = getattr(wm, "close", None)
    if callable(close):
        close()


def readonly(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=10.0)


STATE_NAMES = {0: "ENQUEUED", 1: "RUNNING", 2: "SUCCEEDED", 3: "FAILED", 4: "BLOCKED", 5: "CANCELLED"}


def final_states(path: str) -> dict[str, int]:
    """Work per state, read from the library's table (empty if that layout is not there)."""
    try:
        conn = readonly(path)
        try:
            rows = conn.execute("SELECT state, count(*) FROM workspec GROUP BY state").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return {}
    return {STATE_NAMES.get(state, str(state)): int(count) for state, count in rows}


def journal_mode(path: str) -> str:
    conn = readonly(path)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


@contextmanager
def worker_process(module: str, args: list[str], mark_dir: Path, log: Path) -> Iterator[Callable[[], None]]:
    """A worker process for the duration of the block; yields a check that it is still running."""
    proc = util.spawn(module, args, mark_dir, log)

    def alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{util.log_tail(log)}")

    try:
        yield alive
    finally:
        util.stop(proc)


def wait_for(cond: Callable[[], bool], timeout: float, alive: Callable[[], None], error: str | None) -> bool:
    """Poll ``cond`` every 10 ms; False (or ``error`` raised) on timeout."""
    deadline = time.perf_counter() + timeout
    while not cond():
        alive()
        if time.perf_counter() > deadline:
            if error:
                raise RuntimeError(error)
            return False
        time.sleep(0.01)
    return True


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None, for strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def summary(fig: Figure) -> str:
    if "error" in fig:
        return "ERROR " + fig["error"].splitlines()[0]
    if "rate" in fig:
        return f"{fmt_rate(fig)} jobs/s ({fig['done']} jobs)"
    if "fan_in" in fig:
        return (
            f"fan-in {fig['fan_in']['us_per_node']:.0f} µs/node, chain {fig['chain']['us_per_node']:.0f} µs/node, "
            f"unblock 10k {fig['unblock_10000']['us_per_node']:.1f} µs/node"
        )
    return f"p50 {fig['p50_ms']:.2f} ms, p99 {fig['p99_ms']:.2f} ms"


def fmt_rate(fig: Figure | None) -> str:
    if not fig:
        return "-"
    if "error" in fig:
        return "error"
    return f"{fig['rate']:,.0f}" + ("*" if fig.get("capped") else "")


def fmt_lat(fig: Figure | None) -> str:
    if not fig:
        return "-"
    if "error" in fig:
        return "error"
    return f"{fig['p50_ms']:.2f} / {fig['p99_ms']:.2f}" + ("*" if fig.get("capped") else "")


def ratio(wm: Figure | None, floor: Figure | None, key: str, as_percent: bool) -> str:
    if not wm or not floor or "error" in wm or "error" in floor or not floor.get(key):
        return "-"
    r = wm[key] / floor[key]
    return f"{r * 100:.0f} %" if as_percent else f"{r:.1f}x"


def machine_facts(root: Path) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    facts: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "data_dir": os.fspath(root),
        "filesystem": util.filesystem_of(root),
        "fsync_floor_per_s": util.fsync_floor(root),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    return facts


def workmanager_facts() -> tuple[dict[str, Any], str | None]:
    try:
        import bench.wmjobs  # noqa: F401  (the worker class must import too)
        import workmanager
        from workmanager import Configuration

        return {
            "version": getattr(workmanager, "__version__", "?"),
            "durability": Configuration().durability,
            "max_concurrency": Configuration().max_concurrency,
            "poll_interval_ms": Configuration().poll_interval.total_seconds() * 1000.0,
        }, None
    except Exception as exc:
        return {}, f"{type(exc).__name__}: {exc}"


# ---- output ------------------------------------------------------------------------------


def table_rows(r: dict[str, Figure]) -> list[tuple[str, str, str, str, str]]:
    g = r.get
    return [
        (
            "enqueue, 1 request per call (jobs/s)",
            fmt_rate(g("wm_enqueue_one")),
            fmt_rate(g("raw_enqueue_one")),
            "INSERT + COMMIT per row",
            ratio(g("wm_enqueue_one"), g("raw_enqueue_one"), "rate", True),
        ),
        (
            "enqueue, batches of 1000 (jobs/s)",
            fmt_rate(g("wm_enqueue_batch")),
            fmt_rate(g("raw_enqueue_batch")),
            "executemany, 1 txn per chunk",
            ratio(g("wm_enqueue_batch"), g("raw_enqueue_batch"), "rate", True),
        ),
        (
            "drain, 1 worker process (jobs/s)",
            fmt_rate(g("wm_drain")),
            fmt_rate(g("raw_drain_1")),
            "claim loop, 1 job per claim txn",
            ratio(g("wm_drain"), g("raw_drain_1"), "rate", True),
        ),
        (
            "",
            "",
            fmt_rate(g("raw_drain_100")),
            "claim loop, 100 jobs per claim txn",
            ratio(g("wm_drain"), g("raw_drain_100"), "rate", True),
        ),
        *(
            (
                f"drain, {k} worker processes (jobs/s)",
                fmt_rate(g(f"wm_drain_{k}proc")),
                fmt_rate(g(f"raw_drain_100_{k}proc")),
                f"{k} claim loops, 100 jobs per claim txn",
                ratio(g(f"wm_drain_{k}proc"), g(f"raw_drain_100_{k}proc"), "rate", True),
            )
            for k in sorted(int(key.split("_")[-1][:-4]) for key in r if key.startswith("wm_drain_"))
        ),
        (
            "latency in-process, p50 / p99 (ms)",
            fmt_lat(g("wm_latency_in_process")),
            fmt_lat(g("raw_latency_thread")),
            "claim thread, data_version poll 1 ms",
            ratio(g("wm_latency_in_process"), g("raw_latency_thread"), "p50_ms", False),
        ),
        (
            "latency cross-process, p50 / p99 (ms)",
            fmt_lat(g("wm_latency_process")),
            fmt_lat(g("raw_latency_process")),
            "claim process, data_version poll 1 ms",
            ratio(g("wm_latency_process"), g("raw_latency_process"), "p50_ms", False),
        ),
    ]


NOTE = (
    "wm vs floor: throughput = workmanager as % of the floor (higher is better); "
    "latency = workmanager p50 / floor p50 (lower is better)."
)


def detail_lines(r: dict[str, Figure]) -> list[str]:
    out = [NOTE]
    drains = [k for k in r if k.startswith(("wm_drain", "raw_drain"))]
    for key in drains:
        f = r.get(key)
        if f and "error" not in f:
            out.append(
                f"{key}: {f['done']}/{f['enqueued']} jobs in {f['seconds']:.2f} s; "
                f"boot {f['boot_s'] * 1000:.0f} ms; start-to-start {f['start_to_start_rate']:,.0f}/s; "
                f"ack lag {f['ack_lag_ms']:.0f} ms; incl. boot {f['wall_rate_with_boot']:,.0f}/s; "
                f"worker CPU {f['worker_cpu_us_per_job']:.0f} µs/job; "
                f"re-runs {f['reruns']}; stop {f['worker_stop_s']:.2f} s"
            )
    for prefix, one in (("wm_drain", "wm_drain"), ("raw_drain_100", "raw_drain_100")):
        counts = [(1, r.get(one))] + [
            (int(k[len(prefix) + 1 : -4]), r[k])
            for k in r
            if k.startswith(prefix + "_") and k.endswith("proc")
        ]
        known = [(k, f) for k, f in counts if f and "error" not in f]
        if len(known) > 1 and known[0][0] == 1:
            base = known[0][1]["rate"]
            out.append(
                f"{prefix} by "
                + "/".join(str(k) for k, _ in known)
                + " processes: "
                + " / ".join(f"{f['rate']:,.0f}" for _, f in known)
                + " jobs/s ("
                + ", ".join(f"{k}: {f['rate'] / base:.2f}x" for k, f in known[1:])
                + " of 1 process)"
            )
    for key in ("wm_latency_in_process", "raw_latency_thread", "wm_latency_process", "raw_latency_process"):
        f = r.get(key)
        if f and "error" not in f:
            out.append(
                f"{key}: n={f['n']} p50 {f['p50_ms']:.2f} p95 {f['p95_ms']:.2f} p99 {f['p99_ms']:.2f} "
                f"max {f['max_ms']:.2f} ms; missing {f['missing']}"
            )
    graph = r.get("wm_graph")
    if graph and "error" not in graph:
        for key in ("fan_in", "chain"):
            g = graph[key]
            out.append(
                f"graph {key}: {g['nodes']:,} nodes enqueued in one call in {g['seconds']:.2f} s "
                f"({g['us_per_node']:.0f} µs/node); stored {g['stored']:,}"
            )
        for verb, prefix in (("unblock", "success unblocks"), ("fail", "failure fails")):
            parts = [
                f"{graph[f'{verb}_{k}']['dependents']:,}: {graph[f'{verb}_{k}']['seconds'] * 1000:.0f} ms "
                f"({graph[f'{verb}_{k}']['us_per_node']:.1f} µs/node)"
                for k in (1_000, 10_000)
            ]
            out.append(f"graph resolve: {prefix} dependents — " + "; ".join(parts))
    for key, f in r.items():
        if "warning" in f:
            out.append(f"{key}: WARNING {f['warning']}")
        if "stored" in f and f["stored"] != f["done"]:
            out.append(f"{key}: WARNING {f['stored']} unfinished jobs stored after {f['done']} enqueued")
        if "error" in f and not f["error"].startswith("workmanager not importable"):
            out.append(f"{key}: ERROR {f['error']}")
    return out


def print_report(report: dict[str, Any]) -> None:
    m, wmf, r = report["machine"], report["workmanager"], report["results"]
    raw_dur = r.get("raw_enqueue_one", {}).get("durability", {})
    facts = [
        f"date {m['date']} | host {m['host']} | {m['cores']} cores ({m['cores_usable']} usable), {m['cpu']}",
        f"python {m['python']} | sqlite {m['sqlite']} | {m['platform']}",
        f"data {m['data_dir']} on {m['filesystem']['device']} ({m['filesystem']['fstype']}) | "
        f"write 4 KiB + fdatasync: {m['fsync_floor_per_s']:,.0f}/s at start, "
        f"{m.get('fsync_floor_after_per_s', math.nan):,.0f}/s at end | load average "
        f"{m.get('load_average_start', ['?'])[0]} at start, {m.get('load_average_end', ['?'])[0]} at end",
        f"workmanager {wmf.get('version', '?')} durability={wmf.get('durability', '?')} "
        f"(journal_mode={r.get('wm_enqueue_one', {}).get('journal_mode', '?')}) "
        f"max_concurrency={wmf.get('max_concurrency', '?')} | raw floor journal_mode="
        f"{raw_dur.get('journal_mode', '?')} synchronous={raw_dur.get('synchronous', '?')}",
        f"N={report['params']['n']} per throughput phase, cap {report['params']['cap_s']:g} s per phase "
        f"(* = capped: rate from the jobs done); latency: {report['params']['latency_jobs']} jobs "
        f"{report['params']['latency_gap_ms']:.0f} ms apart",
    ]
    if report.get("workmanager_error"):
        facts.append(f"workmanager NOT importable: {report['workmanager_error']}")
    rows = table_rows(r)
    headers = ("workload", "workmanager", "raw SQLite floor", "floor", "wm vs floor")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\n".join(facts))
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
        line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
        print(line)
        print("-" * len(line))
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        print("\n".join(detail_lines(r)))
        return
    console = Console()
    if console.width < 140:  # not a terminal, or a narrow one: do not wrap the table
        console = Console(width=140)
    for f in facts:
        console.print(f, highlight=False, soft_wrap=True)
    t = Table(title="workmanager vs raw SQLite (WAL, synchronous=FULL), same run")
    for h in headers:
        t.add_column(h, justify="left" if h in ("workload", "floor") else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    for line in detail_lines(r):
        console.print(line, highlight=False, soft_wrap=True)


# ---- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.wmbench", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=int(os.environ.get("WMBENCH_N", "10000")), help="jobs per phase")
    p.add_argument(
        "--cap", type=float, default=60.0, help="seconds per throughput phase before cutting short"
    )
    p.add_argument("--chunk", type=int, default=1000, help="requests per batch enqueue")
    p.add_argument("--latency-jobs", type=int, default=200)
    p.add_argument("--latency-gap-ms", type=float, default=20.0)
    p.add_argument("--dir", default=os.environ.get("WMBENCH_DIR"), help="data directory (default: temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the databases, marks and worker logs")
    p.add_argument(
        "--only", default="", help="run only phases whose name contains one of these (comma-separated)"
    )
    p.add_argument("--processes", default="1,2,4", help="worker process counts for the multi-process drain")
    p.add_argument("--out", default="", help="results JSON (default bench/results/<date>.json)")
    args = p.parse_args(argv)

    if args.dir:
        root = Path(args.dir).resolve() / f"wmbench-{os.getpid()}"
        root.mkdir(parents=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="wmbench-"))
    fs = util.filesystem_of(root)
    if fs["fstype"] in ("tmpfs", "ramfs"):
        print(
            f"WARNING: {root} is on {fs['fstype']}: fsync costs nothing there; set WMBENCH_DIR",
            file=sys.stderr,
        )

    b = Bench(root, args.n, args.cap, args.chunk, args.latency_jobs, args.latency_gap_ms / 1000.0)
    b.only = [part for part in args.only.split(",") if part]
    b.processes = [int(k) for k in args.processes.split(",") if k]
    wm_facts, b.wm_error = workmanager_facts()
    try:
        machine = machine_facts(root)
        b.run("enqueue_one_interleaved", b.enqueue_one, needs_wm=True)
        b.run("raw_enqueue_batch", b.raw_enqueue_batch)
        b.run("wm_enqueue_batch", b.wm_enqueue_batch, needs_wm=True)
        b.run("raw_drain_1", lambda: b.raw_drain(1))
        b.run("raw_drain_100", lambda: b.raw_drain(100))
        b.run("wm_drain", b.wm_drain, needs_wm=True)
        for k in b.processes:
            if k > 1:  # several worker processes on one SQLite file, beside the floor's
                b.run(f"raw_drain_100_{k}proc", lambda k=k: b.raw_drain(100, k))
                b.run(f"wm_drain_{k}proc", lambda k=k: b.wm_drain(k), needs_wm=True)
        b.run("raw_latency_thread", lambda: b.raw_latency(True))
        b.run("wm_latency_in_process", lambda: b.wm_latency(True), needs_wm=True)
        b.run("raw_latency_process", lambda: b.raw_latency(False))
        b.run("wm_latency_process", lambda: b.wm_latency(False), needs_wm=True)
        b.run("wm_graph", b.wm_graph, needs_wm=True)
        machine["fsync_floor_after_per_s"] = util.fsync_floor(root)
        machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    report = {
        "machine": machine,
        "workmanager": wm_facts,
        "workmanager_error": b.wm_error,
        "params": {
            "n": args.n,
            "cap_s": args.cap,
            "chunk": args.chunk,
            "latency_jobs": args.latency_jobs,
            "latency_gap_ms": args.latency_gap_ms,
            "runtime_s": time.perf_counter() - b.t_start,
        },
        "results": b.results,
    }
    print_report(report)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = Path(args.out) if args.out else RESULTS_DIR / f"{dt.date.today().isoformat()}.json"
    out.write_text(json.dumps(finite(report), indent=2, default=str) + "\n")
    print(f"results: {out} (total {report['params']['runtime_s']:.0f} s)")
    return 1 if any("error" in f for f in b.results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
