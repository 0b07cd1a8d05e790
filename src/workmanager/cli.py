"""The command line: a thin shell over WorkManager.

workmanager worker myapp.tasks:wm     run the app's work until SIGINT/SIGTERM
workmanager list --database work.db   the newest work, one line each
workmanager show ID --database work.db
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import click

from workmanager.info import State
from workmanager.manager import WorkManager
from workmanager.storage.base import NEVER

log = logging.getLogger("workmanager.cli")

EXIT_USAGE = 2
EXIT_NOT_FOUND = 3


def load_app(spec: str) -> WorkManager:
    """The WorkManager at ``module:attr`` (an instance, or a callable returning one)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(
            f"expected module:attr (e.g. myapp.tasks:wm), got {spec!r}", param_hint="APP"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name!r}: {exc}", param_hint="APP") from exc
    try:
        target: Any = getattr(module, attr)
    except AttributeError:
        raise click.BadParameter(f"{module_name!r} has no attribute {attr!r}", param_hint="APP") from None
    if callable(target) and not isinstance(target, WorkManager):
        target = target()
    if not isinstance(target, WorkManager):
        raise click.BadParameter(f"{spec} is a {type(target).__name__}, not a WorkManager", param_hint="APP")
    return target


def _open(database: str | None, app: str | None) -> WorkManager:
    if app:
        return load_app(app)
    database = database or os.environ.get("WORKMANAGER_DATABASE")
    if not database:
        raise click.UsageError(
            "say which database: --database PATH, $WORKMANAGER_DATABASE or --app module:attr"
        )
    return WorkManager(database)


def _time(ms: int | None) -> str:
    if ms is None or ms < 0 or ms >= NEVER:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """workmanager: persistent background work (Jetpack WorkManager for Python)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("app")
@click.option("--grace", type=float, default=None, help="Seconds running work gets to finish on stop.")
def worker(app: str, grace: float | None) -> None:
    """Run the work of the WorkManager at APP (module:attr) until SIGINT or SIGTERM.

    On the first signal it stops taking work and lets running work finish within
    the grace period, then puts what is left back in the queue. A second signal
    exits at once (the work is taken over later, as after a crash).

    Example: workmanager worker myapp.tasks:wm
    """
    wm = load_app(app)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    wm.start()
    click.echo(f"workmanager worker: running {app} on {wm.database} (pid {os.getpid()})", err=True)
    tty = sys.stderr.isatty()
    last_done = _finished(wm)
    last_t = time.monotonic()
    while not stop.wait(1.0 if tty else 3600):
        if tty:
            counts = _counts(wm)
            done = _finished(wm)
            now = time.monotonic()
            rate = (done - last_done) / max(now - last_t, 1e-9)
            last_done, last_t = done, now
            sys.stderr.write(
                f"\rrunning {counts.get('RUNNING', 0)}  queued {counts.get('ENQUEUED', 0)}  "
                f"done {counts.get('SUCCEEDED', 0)}  failed {counts.get('FAILED', 0)}  {rate:,.0f}/s   "
            )
            sys.stderr.flush()
    if tty:
        sys.stderr.write("\n")
    click.echo("workmanager worker: stopping", err=True)
    wm.stop(grace)
    wm.close()
    # Stopped workers get a moment to notice; ones that ignore their stop would keep the
    # interpreter alive, and their work is already back in the queue.
    deadline = time.monotonic() + 2.0
    for thread in threading.enumerate():
        if thread.name.startswith("workmanager-worker"):
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.name.startswith("workmanager-worker") and t.is_alive() for t in threading.enumerate()):
        os._exit(0)


def _counts(wm: WorkManager) -> dict[str, int]:
    return {State(k).name: v for k, v in wm._storage.work_count_by_state().items()}


def _finished(wm: WorkManager) -> int:
    counts = _counts(wm)
    return counts.get("SUCCEEDED", 0) + counts.get("FAILED", 0) + counts.get("CANCELLED", 0)


@main.command(name="list")
@click.option("--database", "-d", help="Database path (default: $WORKMANAGER_DATABASE).")
@click.option("--app", help="Or the app's WorkManager as module:attr.")
@click.option(
    "--state", type=click.Choice([s.name for s in State], case_sensitive=False), help="Only this state."
)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_work(database: str | None, app: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List the newest work.

    Example: workmanager list -d work.db --state FAILED
    """
    wm = _open(database, app)
    rows = wm._storage.work_list(state=State[state.upper()].value if state else None, limit=limit)
    items = [
        {
            "id": r["id"],
            "worker": r["worker_name"],
            "state": State(r["state"]).name,
            "attempts": r["run_attempt_count"],
            "next_run": _time(r["next_run_time"]) if r["state"] == State.ENQUEUED.value else "-",
            "created": _time(r["created_at"]),
            "tags": sorted(json.loads(r["tags"] or "[]")),
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"work in {wm.database}")
    for column in ("id", "worker", "state", "attempts", "next_run", "created"):
        table.add_column(column)
    for item in items:
        table.add_row(*(str(item[c]) for c in ("id", "worker", "state", "attempts", "next_run", "created")))
    Console().print(table)


@main.command()
@click.argument("work_id")
@click.option("--database", "-d", help="Database path (default: $WORKMANAGER_DATABASE).")
@click.option("--app", help="Or the app's WorkManager as module:attr.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(work_id: str, database: str | None, app: str | None, as_json: bool) -> None:
    """Show every field of one work.

    Example: workmanager show 1b4e28ba-2fa1-11d2-883f-0016d3cca427 -d work.db
    """
    try:
        parsed = uuid.UUID(work_id)
    except ValueError:
        raise click.BadParameter(f"not a work id: {work_id!r}", param_hint="WORK_ID") from None
    wm = _open(database, app)
    info = wm.get_work_info_by_id(parsed)
    detail = wm._storage.work_detail(str(parsed))
    if info is None or detail is None:
        click.echo(f"no work with id {parsed}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    fields: dict[str, Any] = {
        "id": str(info.id),
        "worker": detail["worker_name"],
        "state": info.state.name,
        "tags": sorted(info.tags),
        "run_attempt_count": info.run_attempt_count,
        "generation": info.generation,
        "stop_reason": info.stop_reason.name,
        "initial_delay_s": info.initial_delay.total_seconds(),
        "next_schedule_time": info.next_schedule_time.isoformat() if info.next_schedule_time else None,
        "input": json.loads(detail["input"]),
        "output": dict(info.output_data),
        "progress": dict(info.progress),
        "created": _time(detail["created_at"]),
        "finished": _time(detail["finished_at"]),
        "runner": detail["runner_id"],
    }
    if as_json:
        click.echo(json.dumps(fields, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in fields.items():
        table.add_row(key, json.dumps(value, default=str) if isinstance(value, dict | list) else str(value))
    Console().print(table)


if __name__ == "__main__":
    main()
