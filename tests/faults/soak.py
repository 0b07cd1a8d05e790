"""``make soak``: every registered fault scenario at soak size (N = 10,000 where the plan says so),
seeded, then one table of figures.

    PYTHONPATH=tests python -m faults.soak [--only NAME ...] [--backend sqlite] [--seed N] [--n N]

Scenarios register themselves (``harness.registry.scenario``) in ``tests/faults/test_*.py``;
this imports them all. Exit status 1 if any invariant was violated or a scenario crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .harness import registry
from .harness.checker import Report

HERE = Path(__file__).resolve().parent

#: (column, figures summed into it). A figure key ending in ":" matches every key it starts.
COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("jobs", ("enqueued",)),
    ("SIGKILL", ("fault:sigkill",)),
    ("point kills", ("fault:point:",)),
    ("zombies", ("fault:sigstop",)),
    ("SIGTERM", ("fault:sigterm",)),
    ("PG restarts", ("fault:pg_restart", "fault:pg_outage", "fault:pg_terminate")),
    ("disk full", ("fault:disk_full",)),
    ("clock jumps", ("fault:clock_jump",)),
    ("lost", ("lost",)),
    ("stuck RUNNING", ("stuck_running",)),
    ("unique viol.", ("unique_violations",)),
    ("unattrib. dups", ("unattributed_duplicates",)),
    ("periods doubled", ("periods_doubled",)),
    ("violations", ("violations",)),
    ("s", ("seconds",)),
]


def load_scenarios() -> None:
    for path in sorted(HERE.glob("test_*.py")):
        importlib.import_module(f"{__package__}.{path.stem}")


def cell(figures: dict[str, int], keys: tuple[str, ...]) -> int:
    total = 0
    for key in keys:
        if key.endswith(":"):
            total += sum(v for k, v in figures.items() if k.startswith(key) and ":kill" in k)
        else:
            total += figures.get(key, 0)
    return total


def table(rows: list[tuple[str, dict[str, int]]]) -> str:
    heads = ["scenario"] + [c for c, _ in COLUMNS]
    body = [[name] + [str(cell(f, keys)) for _, keys in COLUMNS] for name, f in rows]
    totals: dict[str, int] = {}
    for _, f in rows:
        for k, v in f.items():
            if k not in ("seed",):
                totals[k] = totals.get(k, 0) + v
    body.append(["TOTAL"] + [str(cell(totals, keys)) for _, keys in COLUMNS])
    widths = [max(len(r[i]) for r in [heads, *body]) for i in range(len(heads))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = [line, rule]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in body]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", help="scenario names (default: all)")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], help="only this backend")
    parser.add_argument("--seed", type=int, default=registry.default_seed())
    parser.add_argument("--n", type=int, help="override every scenario's N")
    parser.add_argument("--tier", default="soak", choices=["soak", "fast"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    load_scenarios()
    names = args.only or sorted(
        (n for n, sc in registry.SCENARIOS.items() if sc.in_soak),
        key=lambda n: int(registry.SCENARIOS[n].case),
    )
    started = datetime.now(UTC)
    rows: list[tuple[str, dict[str, int]]] = []
    failures: list[str] = []
    for name in names:
        sc = registry.SCENARIOS[name]
        for backend in sc.backends:
            if args.backend and backend != args.backend:
                continue
            label = f"{sc.case}. {name} ({backend})"
            print(f"== {label}: {sc.title} (seed {args.seed})", flush=True)
            with tempfile.TemporaryDirectory(prefix=f"wmsoak-{name}-") as tmp:
                t0 = time.monotonic()
                try:
                    report = registry.run(name, backend, args.tier, Path(tmp), n=args.n, seed=args.seed)
                except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:
                    # A scenario whose service is missing calls services.unavailable (a pytest
                    # skip or fail): in the soak that is a failed row, not a crash of the run.
                    traceback.print_exc()
                    report = Report()
                    report.fail(f"scenario crashed or unavailable: {type(exc).__name__}: {exc}")
                    report.figures["seconds"] = round(time.monotonic() - t0)
            report.figures["violations"] = len(report.violations)
            for v in report.violations[:10]:
                print(f"   VIOLATION: {v}", flush=True)
            if report.violations:
                failures.append(label)
            print(f"   figures: {json.dumps(report.figures, sort_keys=True)}", flush=True)
            rows.append((label, report.figures))
    finished = datetime.now(UTC)
    print()
    print(f"make soak, seed {args.seed}, {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC")
    print(table(rows))
    if args.json:
        payload: dict[str, Any] = {
            "seed": args.seed,
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "rows": [{"scenario": label, **f} for label, f in rows],
        }
        args.json.write_text(json.dumps(payload, indent=1, sort_keys=True))
    if failures:
        print(f"\nFAILED: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
