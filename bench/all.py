"""``make bench``: every workload on both backends beside its floor, then one summary table.

    python -m bench.all [--n 10000] [--pg-n 5000] [--scale-rows 100000] [--scale-drain 100000]

Runs, each in its own process and each printing its own details as it goes:
``bench.wmbench`` (SQLite: enqueue, drain by 1/2/4 processes, latency, graphs),
``bench.pgbench`` (PostgreSQL: the same workloads) and ``bench.scale`` (cost at 1,000 rows
vs ``--scale-rows``, query plans, worker RSS while draining ``--scale-drain`` jobs). Then
prints one table: workmanager beside the raw floor measured in the same run, for every
workload on both backends, followed by the scale and memory figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import pgbench, pgserver, wmbench
from bench.util import PROJECT_ROOT


def run(module: str, args: list[str]) -> int:
    print(f"\n$ python -m {module} {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT).returncode


def run_captured(module: str, args: list[str]) -> tuple[int, list[str]]:
    """Run, echoing stdout as it comes, and keep it."""
    print(f"\n$ python -m {module} {' '.join(args)}", flush=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        lines.append(line.rstrip("\n"))
    return proc.wait(), lines


def scale_summary(lines: list[str]) -> list[str]:
    """The ratio tables and the RSS lines of bench.scale's output (not the query plans)."""
    out: list[str] = []
    keep = False
    for line in lines:
        if line.startswith(("SQLite (", "PostgreSQL (")):
            keep = True
        elif "query plans at" in line:
            keep = False
        elif "worker RSS while draining" in line or line.startswith("  RSS from"):
            out.append(line)
            continue
        if keep and line.strip():
            out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--n", type=int, default=int(os.environ.get("WMBENCH_N", "10000")), help="SQLite jobs per phase"
    )
    p.add_argument("--pg-n", type=int, default=5000, help="PostgreSQL jobs per phase")
    p.add_argument(
        "--scale-rows", type=int, default=100_000, help="big database of bench.scale (issue: 1,000,000)"
    )
    p.add_argument(
        "--scale-drain", type=int, default=100_000, help="jobs for the RSS drain (issue: 1,000,000)"
    )
    p.add_argument("--skip", default="", help="comma-separated: sqlite, postgres, scale")
    p.add_argument(
        "--pg-url",
        default=os.environ.get("WMBENCH_POSTGRES", ""),
        help="PostgreSQL server (default: a throwaway cluster of our own, as the harness uses)",
    )
    args = p.parse_args(argv)
    skip = set(args.skip.split(","))
    needs_pg = not {"postgres", "scale"} <= skip
    with pgserver.server(args.pg_url if needs_pg else "unused") as url:
        if url != args.pg_url and needs_pg:
            print(f"throwaway PostgreSQL cluster at {url}", flush=True)
        args.pg_url = url
        return run_all(args, skip)


def run_all(args: argparse.Namespace, skip: set[str]) -> int:
    codes: dict[str, int] = {}
    scale_lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wm-bench-all-") as tmp:
        sqlite_json, pg_json = Path(tmp) / "sqlite.json", Path(tmp) / "pg.json"
        if "sqlite" not in skip:
            codes["sqlite"] = run("bench.wmbench", ["--n", str(args.n), "--out", os.fspath(sqlite_json)])
        if "postgres" not in skip:
            codes["postgres"] = run(
                "bench.pgbench", ["--n", str(args.pg_n), "--url", args.pg_url, "--out", os.fspath(pg_json)]
            )
        if "scale" not in skip:
            codes["scale"], scale_lines = run_captured(
                "bench.scale",
                ["--rows", str(args.scale_rows), "--drain", str(args.scale_drain), "--url", args.pg_url],
            )
        rows: list[tuple[str, ...]] = []
        if sqlite_json.exists():
            rows += [
                ("SQLite", *r) for r in wmbench.table_rows(json.loads(sqlite_json.read_text())["results"])
            ]
        if pg_json.exists():
            rows += [("PostgreSQL", *r) for r in pgbench.rows(json.loads(pg_json.read_text())["results"])]
    headers = ("backend", "workload", "workmanager", "floor", "floor is", "wm vs floor")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    print("\n== make bench: workmanager beside the raw floors, same run ==")
    print(line(headers))
    print("-" * len(line(headers)))
    for r in rows:
        print(line(r))
    print(wmbench.NOTE)
    if scale_lines:
        print("\n== scale (bench.scale) ==")
        print("\n".join(scale_summary(scale_lines)))
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    failed = {k: v for k, v in codes.items() if v}
    if failed:
        print(f"FAILED parts (exit codes): {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
