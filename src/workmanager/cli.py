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
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from workmanager.clock import to_ms
from workmanager.config import Configuration
from workmanager.engine import constraints, recovery
from workmanager.engine.constraints import ConstraintTrackers
from workmanager.info import State
from workmanager.manager import WorkManager
from workmanager.requests import ExistingWorkPolicy, OneTimeWorkRequest
from workmanager.storage.base import NEVER
from workmanager.worker import ListenableWorker, WorkerFactory, WorkerParameters

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


class _AnyName(WorkerFactory):
    """For a CLI that only writes and reads: work may name any worker; it never runs here."""

    def create_worker(self, name: str, params: WorkerParameters) -> ListenableWorker | None:
        return None


def _open(database: str | None, app: str | None) -> WorkManager:
    if app:
        return load_app(app)
    database = database or os.environ.get("WORKMANAGER_DATABASE")
    if not database:
        raise click.UsageError(
            "say which database: --database PATH, $WORKMANAGER_DATABASE or --app module:attr"
        )
    return WorkManager(database, configuration=Configuration(worker_factory=_AnyName()))


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


database_option = click.option("--database", "-d", help="Database path (default: $WORKMANAGER_DATABASE).")
app_option = click.option("--app", help="Or the app's WorkManager as module:attr.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


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
@click.option(
    "--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus metrics on 127.0.0.1:PORT."
)
def worker(app: str, grace: float | None, metrics_port: int | None) -> None:
    """Run the work of the WorkManager at APP (module:attr) until SIGINT or SIGTERM.

    On the first signal it stops taking work and lets running work finish within
    the grace period, then puts what is left back in the queue. A second signal
    exits at once (the work is taken over later, as after a crash).

    Example: workmanager worker myapp.tasks:wm
    """
    # The kernel hands a process-directed signal to any thread that does not block it, and
    # one that lands on a helper thread does not wake the main thread from its wait (seen
    # when SIGTERM follows SIGCONT by a few ms). Every thread started from here on (the
    # app's, the engine's, the pool's) inherits this mask; only the main thread unblocks.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    wm = load_app(app)
    if metrics_port is not None:
        _serve_metrics(wm, metrics_port)
    wm.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
    click.echo(f"workmanager worker: running {app} on {wm.database} (pid {os.getpid()})", err=True)
    tty = sys.stderr.isatty()
    last_done = _finished(wm)
    last_t = time.monotonic()
    # A bounded wait as well: a thread started by native code before the mask could still
    # take the signal; the flag is then seen within seconds instead of an hour.
    while not stop.wait(1.0 if tty else 5.0):
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


def _dashboard_extra() -> None:
    try:
        import jinja2  # noqa: F401
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"{exc.name} is missing: the dashboard and metrics need the 'dashboard' extra "
            "(pip install 'workmanager[dashboard]')"
        ) from None


def _serve_metrics(wm: WorkManager, port: int) -> None:
    _dashboard_extra()
    from prometheus_client import start_http_server

    from workmanager.dashboard.metrics import instrument_runs, metrics_registry

    registry = metrics_registry(wm)
    instrument_runs(wm, registry)
    start_http_server(port, addr="127.0.0.1", registry=registry)
    click.echo(f"workmanager worker: metrics on http://127.0.0.1:{port}/metrics", err=True)


@main.command()
@click.argument("app", required=False)
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--token",
    envvar="WORKMANAGER_DASHBOARD_TOKEN",
    help="Required of every request; needed to listen beyond loopback ($WORKMANAGER_DASHBOARD_TOKEN).",
)
@click.option("--allow-actions", is_flag=True, help="Enable cancel and re-enqueue (read-only without).")
@click.option("--allow-host", "allow_hosts", multiple=True, help="Another name the Host header may carry.")
@click.option("--redact", is_flag=True, help="Never show work input and output.")
def dashboard(
    app: str | None,
    database: str | None,
    host: str,
    port: int,
    token: str | None,
    allow_actions: bool,
    allow_hosts: tuple[str, ...],
    redact: bool,
) -> None:
    """Serve the web dashboard for APP (module:attr) or --database, on 127.0.0.1 by default.

    Listening on any other address needs --token (then open /?token=... once). Cancel and
    re-enqueue need --allow-actions.

    Example: workmanager dashboard -d work.db --port 8765
    """
    _dashboard_extra()
    import uvicorn

    from workmanager.dashboard import create_app
    from workmanager.dashboard.security import is_loopback

    if not is_loopback(host) and not token:
        raise click.UsageError(
            f"--host {host} is not a loopback address: anyone who can reach it could read (and with "
            "--allow-actions change) your work. Pass --token (or $WORKMANAGER_DASHBOARD_TOKEN)."
        )
    wm = _open(database, app)
    hosts = list(allow_hosts)
    if host not in ("0.0.0.0", "::"):
        hosts.append(f"[{host}]" if ":" in host else host)
    elif not allow_hosts:
        click.echo(
            "workmanager dashboard: only Host: localhost/127.0.0.1 is accepted; name this machine's "
            "addresses or DNS names with --allow-host",
            err=True,
        )
    asgi = create_app(wm, token=token, read_only=not allow_actions, redact=redact, allowed_hosts=hosts)
    click.echo(f"workmanager dashboard: http://{host}:{port}/ ({wm.database})", err=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Open pages hold event streams that never end by themselves: end them first, or
            # Ctrl-C would wait for every browser tab to go.
            asgi.close_streams()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    try:
        Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it stopped for; it is done
        pass


def _state_name(value: int) -> str:
    """A state's name; a value no workmanager writes (a row corrupted by hand) is shown, not fatal."""
    try:
        return State(value).name
    except ValueError:
        return f"UNKNOWN({value})"


def _counts(wm: WorkManager) -> dict[str, int]:
    return {_state_name(k): v for k, v in wm._storage.work_count_by_state().items()}


def _finished(wm: WorkManager) -> int:
    counts = _counts(wm)
    return counts.get("SUCCEEDED", 0) + counts.get("FAILED", 0) + counts.get("CANCELLED", 0)


@main.command(name="list")
@click.option("--database", "-d", help="Database path (default: $WORKMANAGER_DATABASE).")
@click.option("--app", help="Or the app's WorkManager as module:attr.")
@click.option(
    "--state", type=click.Choice([s.name for s in State], case_sensitive=False), help="Only this state."
)
@click.option("--tag", help="Only work with this tag.")
@click.option("--unique", help="Only work of this unique name.")
@click.option("--worker", "worker_name", help="Only work for this worker name.")
@click.option("--oldest-first", is_flag=True, help="Sort oldest first (default: newest first).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_work(
    database: str | None,
    app: str | None,
    state: str | None,
    tag: str | None,
    unique: str | None,
    worker_name: str | None,
    oldest_first: bool,
    limit: int,
    as_json: bool,
) -> None:
    """List work, newest first, filtered by state, tag, unique name or worker.

    Example: workmanager list -d work.db --state FAILED --tag uploads
    """
    wm = _open(database, app)
    rows = wm._storage.work_list(
        state=State[state.upper()].value if state else None,
        limit=limit,
        tag=tag,
        name=unique,
        worker=worker_name,
        oldest_first=oldest_first,
    )
    items = [
        {
            "id": r["id"],
            "worker": r["worker_name"],
            "state": _state_name(r["state"]),
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


@main.command()
@click.argument("worker_name")
@click.option("--input", "input_json", default="{}", help="Input data as a JSON object.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--delay", type=float, default=0.0, help="Initial delay in seconds.")
@click.option("--unique", help="Enqueue as unique work under this name.")
@click.option(
    "--policy",
    type=click.Choice([p.name for p in ExistingWorkPolicy], case_sensitive=False),
    default="KEEP",
    show_default=True,
    help="ExistingWorkPolicy for --unique.",
)
@database_option
@app_option
@json_option
def enqueue(
    worker_name: str,
    input_json: str,
    tags: tuple[str, ...],
    delay: float,
    unique: str | None,
    policy: str,
    database: str | None,
    app: str | None,
    as_json: bool,
) -> None:
    """Enqueue one-time work for the worker registered as WORKER_NAME.

    Example: workmanager enqueue upload --input '{"path": "a.jpg"}' --tag uploads -d work.db
    """
    try:
        data = json.loads(input_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--input") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--input")
    wm = _open(database, app)
    try:
        request = OneTimeWorkRequest(worker_name, input_data=data, tags=tags, initial_delay=delay)
        if unique:
            wm.enqueue_unique_work(unique, ExistingWorkPolicy[policy.upper()], request)
        else:
            wm.enqueue(request)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        _echo_json({"id": str(request.id)})
    else:
        click.echo(str(request.id))


@main.command()
@click.argument("work_id", required=False)
@click.option("--tag", help="Cancel all unfinished work with this tag.")
@click.option("--unique", help="Cancel the unfinished work of this unique name.")
@click.option("--all", "cancel_all", is_flag=True, help="Cancel all unfinished work.")
@database_option
@app_option
def cancel(
    work_id: str | None,
    tag: str | None,
    unique: str | None,
    cancel_all: bool,
    database: str | None,
    app: str | None,
) -> None:
    """Cancel work (and its dependents): one ID, or --tag, --unique or --all.

    Example: workmanager cancel --tag uploads -d work.db
    """
    chosen = [x for x in (work_id, tag, unique, cancel_all or None) if x]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of ID, --tag, --unique or --all")
    wm = _open(database, app)
    if work_id:
        try:
            parsed = uuid.UUID(work_id)
        except ValueError:
            raise click.BadParameter(f"not a work id: {work_id!r}", param_hint="WORK_ID") from None
        if wm.get_work_info_by_id(parsed) is None:
            click.echo(f"no work with id {parsed}", err=True)
            sys.exit(EXIT_NOT_FOUND)
        wm.cancel_work_by_id(parsed)
    elif tag:
        wm.cancel_all_work_by_tag(tag)
    elif unique:
        wm.cancel_unique_work(unique)
    else:
        wm.cancel_all_work()


@main.command()
@database_option
@app_option
@json_option
def prune(database: str | None, app: str | None, as_json: bool) -> None:
    """Delete all finished work whose dependents are finished (ignores keep_results_for).

    Example: workmanager prune -d work.db
    """
    deleted = _open(database, app).prune_work()
    if as_json:
        _echo_json({"deleted": deleted})
    else:
        click.echo(f"pruned {deleted} finished work item(s)")


EXIT_PROBLEMS = 1


def diagnose(wm: WorkManager, *, now_ms: int, oldest: int = 5) -> dict[str, Any]:
    """Android's diagnostics dump, from the database: what runs, what waits and why."""
    storage = wm._storage
    me = recovery.ProcessIdentity.current()
    lease_ms = to_ms(wm.configuration.lease_timeout)
    runners = storage.runner_list()
    # The host's monotonic clock, as the rescuer does: a wall-clock jump must not show live
    # processes on this host as dead.
    mono = time.monotonic()
    live = [
        r for r in runners if not recovery.runner_is_dead(r, me, now=now_ms, lease_ms=lease_ms, mono=mono)
    ]
    live_ids = {r.id for r in live}
    owners = storage.work_running_runner_ids()
    orphaned = sum(1 for owner in owners if owner not in live_ids)
    state = ConstraintTrackers(
        constraints.default_trackers(os.path.dirname(os.path.abspath(wm.database)))
    ).state
    waiting = []
    for row in storage.work_oldest_waiting(oldest):
        stored = (
            row["required_network_type"],
            row["requires_charging"],
            row["requires_battery_not_low"],
            row["requires_device_idle"],
            row["requires_storage_not_low"],
        )
        unmet = state.unmet_reason(stored)
        waiting.append(
            {
                "id": row["id"],
                "worker": row["worker_name"],
                "due": _time(row["next_run_time"]),
                "late_s": max(0.0, (now_ms - row["next_run_time"]) / 1000),
                "attempts": row["run_attempt_count"],
                "unmet_constraint_here": unmet.name if unmet is not None else None,
            }
        )
    runnable: set[str] = set()
    any_name = False
    for runner in live:
        names = json.loads(runner.workers) if runner.workers else None
        if names is None:
            any_name = True
        else:
            runnable.update(names)
    waiting_names = storage.work_waiting_worker_names()
    unrunnable = {} if any_name else {n: c for n, c in waiting_names.items() if n not in runnable}
    return {
        "database": wm.database,
        "counts": {_state_name(k): v for k, v in sorted(storage.work_count_by_state().items())},
        "workers": [
            {
                "id": r.id,
                "host": r.host,
                "pid": r.pid,
                "heartbeat_age_s": (now_ms - r.heartbeat_at) / 1000,
                "alive": r.id in live_ids,
            }
            for r in runners
        ],
        "running_without_a_live_worker": orphaned,
        "oldest_waiting": waiting,
        "waiting_names_no_live_worker_runs": unrunnable,
    }


@main.command()
@database_option
@app_option
@json_option
def diagnostics(database: str | None, app: str | None, as_json: bool) -> None:
    """What runs, what waits and why (Android's diagnostics dump).

    Counts by state, the live worker processes, work still RUNNING for a process that is
    gone (it is taken over by the next worker), the oldest waiting work with any
    constraint this machine does not meet, and waiting worker names no live process
    can run. Exits 1 when it finds a problem.

    Example: workmanager diagnostics -d work.db
    """
    wm = _open(database, app)
    report = diagnose(wm, now_ms=wm.configuration.clock.now_ms())
    problems = report["running_without_a_live_worker"] or report["waiting_names_no_live_worker_runs"]
    if as_json:
        _echo_json(report)
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console()
        console.print(f"[bold]{report['database']}[/bold]")
        console.print("  ".join(f"{k} {v}" for k, v in report["counts"].items()) or "no work")
        workers = Table(title="worker processes")
        for column in ("id", "host", "pid", "heartbeat age (s)", "alive"):
            workers.add_column(column)
        for w in report["workers"]:
            workers.add_row(
                w["id"][:12], w["host"], str(w["pid"]), f"{w['heartbeat_age_s']:.1f}", str(w["alive"])
            )
        console.print(workers)
        if report["running_without_a_live_worker"]:
            console.print(
                f"[red]{report['running_without_a_live_worker']} work item(s) RUNNING for a process that is gone"
            )
        oldest = Table(title="oldest waiting work")
        for column in ("id", "worker", "due", "late (s)", "attempts", "unmet here"):
            oldest.add_column(column)
        for w in report["oldest_waiting"]:
            oldest.add_row(
                w["id"],
                w["worker"],
                w["due"],
                f"{w['late_s']:.1f}",
                str(w["attempts"]),
                w["unmet_constraint_here"] or "-",
            )
        console.print(oldest)
        for name, count in report["waiting_names_no_live_worker_runs"].items():
            console.print(f"[yellow]{count} waiting for worker {name!r}, which no live worker process runs")
    if problems:
        sys.exit(EXIT_PROBLEMS)


@main.group()
def service() -> None:
    """Run `workmanager worker APP` at login/boot, restarted on failure (a systemd user unit on
    Linux, a launchd agent on macOS)."""


SERVICE_KINDS = ("systemd", "launchd")
kind_option = click.option(
    "--kind",
    type=click.Choice(SERVICE_KINDS),
    default=lambda: "launchd" if sys.platform == "darwin" else "systemd",
    help="Service manager (default: this platform's: launchd on macOS, else systemd).",
)


def _safe(app: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in app)


def _unit_name(app: str) -> str:
    return f"workmanager-{_safe(app)}.service"


def _launchd_label(app: str) -> str:
    return f"io.workmanager.{_safe(app)}"


def _unit_path(app: str, kind: str = "systemd") -> Path:
    if kind == "launchd":
        return Path.home() / "Library" / "LaunchAgents" / f"{_launchd_label(app)}.plist"
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config_home / "systemd" / "user" / _unit_name(app)


def unit_text(app: str, *, python: str, workdir: str, database: str | None) -> str:
    """A systemd user unit that keeps a worker for APP running."""
    environment = f"Environment=WORKMANAGER_DATABASE={database}\n" if database else ""
    return (
        "[Unit]\n"
        f"Description=workmanager worker for {app}\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"WorkingDirectory={workdir}\n"
        f"{environment}"
        f"ExecStart={python} -m workmanager.cli worker {app}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=30\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def launchd_plist(app: str, *, python: str, workdir: str, database: str | None, log_dir: Path) -> bytes:
    """A launchd agent that keeps a worker for APP running (the macOS twin of unit_text)."""
    import plistlib

    agent: dict[str, Any] = {
        "Label": _launchd_label(app),
        "ProgramArguments": [python, "-m", "workmanager.cli", "worker", app],
        "WorkingDirectory": workdir,
        "RunAtLoad": True,
        # Restarted when it exits with an error, as systemd's Restart=on-failure.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        # SIGTERM first (a graceful stop), SIGKILL after this many seconds.
        "ExitTimeOut": 30,
        "ProcessType": "Background",
        "StandardOutPath": str(log_dir / f"{_launchd_label(app)}.log"),
        "StandardErrorPath": str(log_dir / f"{_launchd_label(app)}.log"),
    }
    if database:
        agent["EnvironmentVariables"] = {"WORKMANAGER_DATABASE": database}
    return plistlib.dumps(agent)


def _service_text(app: str, kind: str, database: str | None) -> bytes:
    if kind == "launchd":
        log_dir = Path.home() / "Library" / "Logs"
        return launchd_plist(
            app, python=sys.executable, workdir=os.getcwd(), database=database, log_dir=log_dir
        )
    return unit_text(app, python=sys.executable, workdir=os.getcwd(), database=database).encode()


@service.command("install")
@click.argument("app")
@click.option("--database", "-d", help="Set WORKMANAGER_DATABASE for the worker.")
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@kind_option
def service_install(app: str, database: str | None, print_only: bool, kind: str) -> None:
    """Write a systemd user unit (Linux) or launchd agent (macOS) that runs `workmanager worker APP`
    at login/boot.

    Example: workmanager service install myapp.tasks:wm && systemctl --user enable --now
    workmanager-myapp.tasks-wm.service
    """
    text = _service_text(app, kind, database)
    if print_only:
        click.echo(text.decode(), nl=False)
        return
    path = _unit_path(app, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    click.echo(f"wrote {path}")
    if kind == "launchd":
        click.echo(f"load it: launchctl bootstrap gui/$(id -u) {path}")
        return
    click.echo(f"enable it: systemctl --user daemon-reload && systemctl --user enable --now {path.name}")
    click.echo("start at boot without logging in: loginctl enable-linger")


@service.command("uninstall")
@click.argument("app")
@kind_option
def service_uninstall(app: str, kind: str) -> None:
    """Remove the unit written by `service install APP` (stop it first: systemctl or launchctl)."""
    path = _unit_path(app, kind)
    if not path.exists():
        click.echo(f"no unit at {path}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    path.unlink()
    if kind == "launchd":
        click.echo(f"removed {path}; if loaded, run: launchctl bootout gui/$(id -u)/{_launchd_label(app)}")
    else:
        click.echo(f"removed {path}; run: systemctl --user daemon-reload")


@service.command("status")
@click.argument("app")
@json_option
@kind_option
def service_status(app: str, as_json: bool, kind: str) -> None:
    """Whether the unit for APP is installed (and, where its service manager runs, active)."""
    path = _unit_path(app, kind)
    active = None
    if path.exists() and kind == "systemd" and shutil.which("systemctl"):
        probe = subprocess.run(
            ["systemctl", "--user", "is-active", path.name], capture_output=True, text=True, check=False
        )
        active = probe.stdout.strip() or None
    elif path.exists() and kind == "launchd" and shutil.which("launchctl"):
        probe = subprocess.run(
            ["launchctl", "list", _launchd_label(app)], capture_output=True, text=True, check=False
        )
        active = "loaded" if probe.returncode == 0 else "not loaded"
    status = {"unit": str(path), "installed": path.exists(), "active": active}
    if as_json:
        _echo_json(status)
    else:
        click.echo(
            f"{path.name}: {'installed' if status['installed'] else 'not installed'}"
            + (f", {active}" if active else "")
        )
    if not path.exists():
        sys.exit(EXIT_NOT_FOUND)


if __name__ == "__main__":
    main()
