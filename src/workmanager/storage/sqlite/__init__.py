"""The SQLite backend: one file in WAL mode shared by any number of processes.

Each process keeps one connection, guarded by a lock. Every write transaction is
``BEGIN IMMEDIATE`` (a read upgraded to a write is what lets "database is locked"
escape the busy timeout), and a busy database is retried, boundedly, so it never
reaches a user. Durability is set and verified at open: WAL + synchronous=FULL.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from workmanager import errors
from workmanager.config import Configuration
from workmanager.ids import random_bytes
from workmanager.requests import BackoffPolicy
from workmanager.storage._dashboard import DashboardReads
from workmanager.storage._migrations import load_migrations
from workmanager.storage._queries import load_queries
from workmanager.storage.base import (
    NEVER,
    ClaimedWork,
    InfoRow,
    NewWork,
    RunnerRow,
    ScheduleFields,
    TriggerWait,
    UpdateTarget,
    claimed_work,
    insert_params,
    plain_insert_params,
    tags_from_json,
    tags_to_json,
    worktag_rows,
)

__all__ = ["APPLICATION_ID", "SqliteStorage"]

log = logging.getLogger("workmanager.storage.sqlite")

#: Marks a file as ours ("WMgr"), so we never write into someone else's database.
APPLICATION_ID = 0x574D6772
_Q = load_queries(__name__)

_MIGRATIONS = load_migrations(__name__)
SCHEMA_VERSION = _MIGRATIONS[-1][0]
#: Bytes per page of a new database file (see _check_and_migrate).
PAGE_SIZE = 2048
#: The -wal is truncated back to this size after a checkpoint has emptied it.
WAL_SIZE_LIMIT = 4 * 1024 * 1024
#: How long a write keeps retrying a locked database before giving up.
_BUSY_GIVE_UP_S = 120.0

T = TypeVar("T")


_ALL_MET = {
    "net_connected": 1,
    "net_unmetered": 1,
    "net_not_roaming": 1,
    "net_metered": 1,
    "charging": 1,
    "battery_not_low": 1,
    "device_idle": 1,
    "storage_not_low": 1,
}


def _constraint_params(constraints: dict[str, Any] | None, met_ids: list[str] | None) -> dict[str, Any]:
    met_ids_json = json.dumps(met_ids or [])
    if constraints is None:  # no trackers: everything counts as met, custom constraints too
        return {**_ALL_MET, "custom_met": None, "constraints_met_ids": met_ids_json}
    custom = json.dumps(sorted(constraints.get("custom_met", ())))
    return {**constraints, "custom_met": custom, "constraints_met_ids": met_ids_json}


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _raise_if_full(exc: BaseException, path: str) -> None:
    """A full disk (SQLITE_FULL: no space, a file size limit, max_page_count) as the typed error."""
    if isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    ):
        raise errors.StorageFullError(
            f"{path!r}: the database or disk is full ({exc}); nothing of this transaction was written"
        ) from exc


def _retry_busy(what: str, action: Callable[[], T]) -> T:
    deadline = time.monotonic() + _BUSY_GIVE_UP_S
    delay = 0.001
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                if _is_busy(exc):
                    raise errors.StorageBusyError(
                        f"{what}: the database stayed locked for over {_BUSY_GIVE_UP_S:.0f} s"
                    ) from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


#: Where the per-name arms go in work_claim_available, work_next_due and work_oldest_waiting.
_ARMS = "/* work_waiting_arm, once per worker name, joined by UNION ALL */"
#: Worker names merged in one statement. Beyond it, one range over all the names, sorted:
#: still right, but it reads every due row of those names.
MAX_MERGED_NAMES = 50
#: A due time no waiting row exceeds (work_next_due looks at all of them).
_ANY_TIME = 2**63 - 1


@functools.lru_cache(maxsize=128)
def _per_name_statement(query: str, names: int) -> str:
    """``query`` with ``names`` arms of work_waiting_arm (``:worker_name_0`` ...), which SQLite
    merges in due order; 0: one arm over the ``:names`` JSON list."""
    arm = _Q["work_waiting_arm"]
    if names == 0:
        arms = arm.replace(
            "worker_name = :worker_name", "worker_name IN (SELECT value FROM json_each(:names))"
        )
    else:
        arms = "\n        UNION ALL\n        ".join(
            arm.replace(":worker_name", f":worker_name_{i}") for i in range(names)
        )
    return _Q[query].replace(_ARMS, arms)


def _waiting_names(conn: sqlite3.Connection) -> list[str]:
    """The worker names with waiting work (for a process that can run any name)."""
    return [r[0] for r in conn.execute(_Q["work_waiting_names"])]


def _per_name(
    conn: sqlite3.Connection, query: str, names: list[str] | None, params: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    """The per-name statement for ``names`` (None: every name with waiting work) and its
    parameters, or None when there is no name to look under."""
    if names is None:
        names = _waiting_names(conn)
    if not names:
        return None
    if len(names) > MAX_MERGED_NAMES:
        return _per_name_statement(query, 0), {**params, "names": json.dumps(names)}
    params = {**params, **{f"worker_name_{i}": name for i, name in enumerate(names)}}
    return _per_name_statement(query, len(names)), params


class SqliteTransaction:
    """The write half of the interface, on a connection inside BEGIN IMMEDIATE."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        #: Rows changed by claims and plain successes in this transaction: changes of state
        #: only (see ChangeFeed). Any other change makes the transaction a work change.
        self.state_only_changes = 0
        #: Set at COMMIT.
        self.work_changed = True

    def _one(self, name: str, params: Any = ()) -> Any:
        row = self._conn.execute(_Q[name], params).fetchone()
        return None if row is None else row[0]

    def work_insert(self, rows: list[NewWork]) -> None:
        conn = self._conn
        try:
            plain = [p for p in map(plain_insert_params, rows) if p is not None]
            if len(plain) == len(rows):
                conn.executemany(_Q["work_insert_plain"], plain)
            else:
                conn.executemany(_Q["work_insert"], map(insert_params, rows))
        except sqlite3.IntegrityError as exc:
            existing = sorted(self.work_states_by_ids([r.id for r in rows]))
            raise errors.WorkAlreadyExistsError(
                f"work {', '.join(existing) or '?'} already exists; each request can be enqueued once"
            ) from exc
        # The tags were filed by the insert's trigger (migration 0003).
        names = [(n, r.id) for r in rows for n in r.names]
        if names:
            conn.executemany(_Q["workname_insert"], names)
        deps = [(r.id, p) for r in rows for p in r.prerequisites]
        if deps:
            conn.executemany(_Q["dependency_insert"], deps)

    def work_states_by_ids(self, ids: list[str]) -> dict[str, int]:
        return dict(self._conn.execute(_Q["work_states_by_ids"], {"ids": json.dumps(ids)}).fetchall())

    def work_claim_available(
        self,
        *,
        now: int,
        limit: int,
        runner_id: str,
        run_token: int,
        names: list[str] | None,
        constraints: dict[str, int] | None = None,
        constraints_met_ids: list[str] | None = None,
        expedited_only: bool = False,
        suspects: bool = True,
    ) -> list[ClaimedWork]:
        params = {
            "suspects": suspects,
            "now": now,
            "limit": limit,
            "runner_id": runner_id,
            "run_token": run_token,
            **_constraint_params(constraints, constraints_met_ids),
        }
        if expedited_only:  # its own partial index, in due order whatever the name
            params["names"] = None if names is None else json.dumps(names)
            rows = self._conn.execute(_Q["work_claim_expedited"], params).fetchall()
        else:
            params["due_by"] = now
            statement = _per_name(self._conn, "work_claim_available", names, params)
            if statement is None:
                return []
            rows = self._conn.execute(*statement).fetchall()
        self.state_only_changes += len(rows)
        return [claimed_work(r) for r in rows]

    def work_prerequisite_outputs(self, work_id: str) -> list[str]:
        return [r[0] for r in self._conn.execute(_Q["work_prerequisite_outputs"], {"id": work_id})]

    def work_schedule_fields(self, work_id: str) -> ScheduleFields | None:
        row = self._conn.execute(_Q["work_schedule_fields"], {"id": work_id}).fetchone()
        if row is None:
            return None
        return ScheduleFields(row[0], row[1], row[2], BackoffPolicy(row[3]), *row[4:])

    def work_succeed_if_running(self, work_id: str, run_token: int, output: str, now: int) -> bool:
        params = {"id": work_id, "run_token": run_token, "output": output, "now": now}
        return self._conn.execute(_Q["work_succeed_if_running"], params).rowcount == 1

    def work_succeed_many(self, runs: list[tuple[str, int, str]], now: int) -> None:
        params = [{"id": i, "run_token": t, "output": o, "now": now} for i, t, o in runs]
        self.state_only_changes += self._conn.executemany(_Q["work_succeed_if_running"], params).rowcount

    def work_fail_if_running(self, work_id: str, run_token: int, output: str, now: int) -> bool:
        params = {"id": work_id, "run_token": run_token, "output": output, "now": now}
        return self._conn.execute(_Q["work_fail_if_running"], params).rowcount == 1

    def work_enqueue_if_running(
        self,
        work_id: str,
        run_token: int,
        *,
        run_attempt_count: int,
        last_enqueue_time: int,
        next_run_time: int,
        period_count: int,
        stop_reason: int,
        next_schedule_time_override: int | None,
    ) -> bool:
        params = {
            "id": work_id,
            "run_token": run_token,
            "run_attempt_count": run_attempt_count,
            "last_enqueue_time": last_enqueue_time,
            "next_run_time": next_run_time,
            "period_count": period_count,
            "stop_reason": stop_reason,
            "next_schedule_time_override": next_schedule_time_override,
        }
        return self._conn.execute(_Q["work_enqueue_if_running"], params).rowcount == 1

    def work_foreground_set_if_running(self, work_id: str, run_token: int, foreground: str) -> bool:
        params = {"id": work_id, "run_token": run_token, "foreground": foreground}
        return self._conn.execute(_Q["work_foreground_set_if_running"], params).rowcount == 1

    def work_progress_set_if_running(self, work_id: str, run_token: int, progress: str) -> bool:
        params = {"id": work_id, "run_token": run_token, "progress": progress}
        return self._conn.execute(_Q["work_progress_set_if_running"], params).rowcount == 1

    def dependency_unblock(self, work_id: str, now: int) -> None:
        self._conn.execute(_Q["dependency_unblock"], {"id": work_id, "now": now})

    def dependency_unblock_many(self, work_ids: list[str], now: int) -> None:
        self._conn.executemany(_Q["dependency_unblock"], [{"id": i, "now": now} for i in work_ids])

    def dependency_fail_dependents(self, work_id: str, now: int) -> list[str]:
        params = {"id": work_id, "now": now, "never": NEVER}
        return [r[0] for r in self._conn.execute(_Q["dependency_fail_dependents"], params)]

    def work_cancel_tree(self, ids: list[str], now: int) -> list[tuple[str, str | None]]:
        params = {"ids": json.dumps(ids), "now": now, "never": NEVER}
        return [(r[0], r[1]) for r in self._conn.execute(_Q["work_cancel_tree"], params)]

    def work_unfinished_ids(self, *, tag: str | None = None, name: str | None = None) -> list[str]:
        if tag is not None:
            cursor = self._conn.execute(_Q["work_unfinished_ids_by_tag"], {"tag": tag})
        elif name is not None:
            cursor = self._conn.execute(_Q["work_unfinished_ids_by_name"], {"name": name})
        else:
            cursor = self._conn.execute(_Q["work_unfinished_ids"])
        return [r[0] for r in cursor]

    def work_set_next_run_time_if_enqueued(self, work_id: str, next_run_time: int) -> bool:
        params = {"id": work_id, "next_run_time": next_run_time}
        return self._conn.execute(_Q["work_set_next_run_time_if_enqueued"], params).rowcount == 1

    def runner_upsert(
        self,
        *,
        id: str,
        host: str,
        boot_id: str,
        pid: int,
        process_started: float,
        now: int,
        workers: str,
        mono: float = 0.0,
    ) -> None:
        params = {
            "mono": mono,
            "id": id,
            "host": host,
            "boot_id": boot_id,
            "pid": pid,
            "process_started": process_started,
            "now": now,
            "workers": workers,
        }
        self._conn.execute(_Q["runner_upsert"], params)

    def runner_heartbeat(self, runner_id: str, now: int, mono: float = 0.0) -> bool:
        params = {"id": runner_id, "now": now, "mono": mono}
        return self._conn.execute(_Q["runner_heartbeat"], params).rowcount == 1

    def runner_delete(self, runner_id: str) -> None:
        self._conn.execute(_Q["runner_delete"], {"id": runner_id})

    def runner_list(self) -> list[RunnerRow]:
        return [RunnerRow(*r) for r in self._conn.execute(_Q["runner_list"])]

    def work_running_runner_ids(self) -> list[str | None]:
        return [r[0] for r in self._conn.execute(_Q["work_running_runner_ids"])]

    def work_rescue_runner(
        self, runner_id: str | None, *, now: int, max_orphaned_runs: int, lost_output: str
    ) -> list[tuple[str, int]]:
        params = {
            "runner_id": runner_id,
            "now": now,
            "never": NEVER,
            "max_orphaned_runs": max_orphaned_runs,
            "lost_output": lost_output,
        }
        return [(r[0], r[1]) for r in self._conn.execute(_Q["work_rescue_runner"], params)]

    def work_release_unlaunched(self, runner_id: str, running: list[str], now: int) -> int:
        params = {"runner_id": runner_id, "running": json.dumps(running), "now": now}
        return self._conn.execute(_Q["work_release_unlaunched"], params).rowcount

    def work_prune_finished(self, *, older_than: int | None) -> int:
        return self._conn.execute(_Q["work_prune_finished"], {"older_than": older_than}).rowcount

    def preference_get(self, key: str) -> int | None:
        value = self._one("preference_get", {"key": key})
        return None if value is None else int(value)

    def preference_set(self, key: str, value: int) -> None:
        self._conn.execute(_Q["preference_set"], {"key": key, "value": value})

    def work_trigger_waiting(self) -> list[TriggerWait]:
        return [
            TriggerWait(r[0], tags_from_json(r[1]), tags_from_json(r[2]))
            for r in self._conn.execute(_Q["work_trigger_waiting"])
        ]

    def work_trigger_fire(self, work_id: str, now: int, triggered_paths: str) -> bool:
        params = {"id": work_id, "now": now, "triggered_paths": triggered_paths}
        return self._conn.execute(_Q["work_trigger_fire"], params).rowcount == 1

    def expedited_usage_add(self, now: int, duration_ms: int) -> None:
        self._conn.execute(_Q["expedited_usage_add"], {"now": now, "duration_ms": duration_ms})

    def expedited_usage_since(self, since: int) -> int:
        return int(self._one("expedited_usage_since", {"since": since}))

    def expedited_usage_prune(self, before: int) -> None:
        self._conn.execute(_Q["expedited_usage_prune"], {"before": before})

    # -- unique work and continuations ---------------------------------------------------------

    def uniquename_lock(self, name: str, chain: str) -> str:
        return str(self._one("uniquename_lock", {"name": name, "chain": chain}))

    def uniquename_set_chain(self, name: str, chain: str) -> None:
        self._conn.execute(_Q["uniquename_set_chain"], {"name": name, "chain": chain})

    def workname_states(self, name: str) -> list[tuple[str, int, bool]]:
        return [(r[0], r[1], bool(r[2])) for r in self._conn.execute(_Q["workname_states"], {"name": name})]

    def work_delete(self, ids: list[str]) -> int:
        return self._conn.execute(_Q["work_delete"], {"ids": json.dumps(ids)}).rowcount

    def work_update_target(self, work_id: str) -> UpdateTarget | None:
        r = self._conn.execute(_Q["work_update_target"], {"id": work_id}).fetchone()
        if r is None:
            return None
        fields = ScheduleFields(r[3], r[4], r[5], BackoffPolicy(r[6]), *r[7:12])
        return UpdateTarget(r[0], r[1], tags_from_json(r[2]), fields, r[12])

    def work_update_if_unchanged(
        self,
        work_id: str,
        row: NewWork,
        *,
        state: int,
        generation: int,
        next_run_time: int,
        old_tags: tuple[str, ...],
    ) -> bool:
        params = {
            name: getattr(row, name)
            for name in (
                "worker_name", "input", "input_merger", "initial_delay_ms", "interval_ms", "flex_ms",
                "required_network_type", "requires_charging", "requires_battery_not_low",
                "requires_device_idle", "requires_storage_not_low", "backoff_policy", "backoff_delay_ms",
                "expedited", "out_of_quota_policy",
            )
        }  # fmt: skip
        params |= {
            "id": work_id,
            "minimum_retention_ms": row.minimum_retention_ms,
            "tags": tags_to_json(row.tags),
            "next_run_time": next_run_time,
            "state": state,
            "generation": generation,
        }
        if self._conn.execute(_Q["work_update_if_unchanged"], params).rowcount != 1:
            return False
        # Tags are replaced wholesale, as on Android.
        self._conn.execute(_Q["worktag_delete"], {"id": work_id, "tags": json.dumps(old_tags)})
        self._conn.executemany(_Q["worktag_insert"], worktag_rows(row._replace(id=work_id)))
        return True


def _info(row: tuple[Any, ...]) -> InfoRow:
    fields: tuple[Any, ...] = (*row[:16], tags_from_json(row[16]), row[17], tags_from_json(row[18]))
    return InfoRow(*fields)


class SqliteStorage(DashboardReads):
    """A SQLite file (or ``:memory:``) opened, checked and migrated."""

    supports_listen = False

    def __init__(self, path: str, configuration: Configuration) -> None:
        self.url = path
        self._memory = path == ":memory:" or path.startswith("file::memory:")
        self._configuration = configuration
        self._lock = threading.RLock()
        self._conn = self._connect(path, configuration)
        self._busy_timeout_ms = int(configuration.busy_timeout.total_seconds() * 1000)
        self._tx = SqliteTransaction(self._conn)
        #: Whether commits are fsynced (durability "full" on a file): only then can a
        #: transaction be made lighter (transaction(durable=False)).
        self._sync_full = not self._memory and configuration.durability == "full"
        # Opening and migrating waited in SQLite's own busy handler; from here on every wait
        # for a lock is ours (_begin_immediate's short steps, _retry_busy for reads): SQLite's
        # handler sleeps 1, 2, 5, 10 ms between tries where a writer holds the lock for well
        # under one.
        self._conn.execute("PRAGMA busy_timeout=0")
        _OPEN.add(self)
        self._data_version = self._read_data_version()
        self._notify_fd = self._state_fd = -1
        #: The token this process last wrote to the notify file, and the last one seen there.
        self._own_work_token = self._seen_work_token = b""
        # A work change's token: random per storage, then a count (a random draw per commit
        # cost more than the write it announces).
        self._token_prefix = random_bytes(4)
        self._token_count = itertools.count(1)
        if not self._memory:
            # Written after every commit, so other processes' watchers wake when a change is
            # visible (see engine/changes.py). Never grow. A work change (see ChangeFeed)
            # writes 8 random bytes to the notify file, so a watcher can tell another
            # process's work change from its own; a change of state only (claims, successes)
            # writes a byte to the state file, which wakes observers, not dispatchers.
            try:
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                self._notify_fd = os.open(self.notify_path, flags, 0o644)
                self._state_fd = os.open(self.notify_path[: -len("notify")] + "state", flags, 0o644)
                self._seen_work_token = os.pread(self._notify_fd, 8, 0)
            except OSError as exc:
                log.info("no notify file (%s); other processes will see changes by polling", exc)

    # -- opening ---------------------------------------------------------------------------

    def _connect(self, path: str, configuration: Configuration) -> sqlite3.Connection:
        if not self._memory:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise errors.DatabaseOpenError(
                    f"cannot open database {path!r}: the folder {parent!r} does not exist"
                )
            if os.path.isdir(path):
                raise errors.DatabaseOpenError(f"cannot open database {path!r}: it is a folder")
            fstype = filesystem_type(parent)
            if fstype in NETWORK_FILESYSTEMS:
                # SQLite's locks and WAL shared memory do not work across machines: two hosts
                # writing one file corrupt it (https://www.sqlite.org/howtocorrupt.html 2.1).
                raise errors.DatabaseOpenError(
                    f"cannot open database {path!r}: {parent!r} is on a network filesystem ({fstype}), "
                    "where SQLite's locking is unreliable; use a local disk, or PostgreSQL to share "
                    "work between machines"
                )
        busy_s = configuration.busy_timeout.total_seconds()
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_s, cached_statements=256
            )
        except sqlite3.Error as exc:
            raise errors.DatabaseOpenError(f"cannot open database {path!r}: {exc}") from exc
        try:
            self._check_and_migrate(conn, path, configuration)
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_and_migrate(self, conn: sqlite3.Connection, path: str, configuration: Configuration) -> None:
        try:
            # One statement, so another process's first migration cannot fall between the two reads.
            app_id, tables = _retry_busy(
                "open",
                lambda: conn.execute(
                    "SELECT (SELECT application_id FROM pragma_application_id),"
                    " (SELECT count(*) FROM sqlite_master)"
                ).fetchone(),
            )
            has_tables = tables > 0
        except sqlite3.DatabaseError as exc:
            raise errors.NotAWorkManagerDatabaseError(
                f"{path!r} is not a workmanager database (not SQLite: {exc}); refusing to touch it"
            ) from exc
        if app_id != APPLICATION_ID and (app_id != 0 or has_tables):
            raise errors.NotAWorkManagerDatabaseError(
                f"{path!r} is not a workmanager database (it holds other tables); refusing to touch it"
            )
        if not self._memory:
            if not has_tables:
                # Only a new file takes it (WAL fixes the page size once written). Every commit
                # writes whole pages to the -wal (an enqueue: the row's leaf, the claim index's
                # and the tag's) and fsyncs them: at 2 KiB it writes half the bytes of 4 KiB,
                # ~7 % faster per durable enqueue here, while rows of up to ~480 bytes (input
                # included) still fit in their leaf (docs/benchmarks.md, "Page size").
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            mode = _retry_busy("open", lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            if str(mode).lower() != "wal":
                raise errors.DatabaseOpenError(f"cannot put {path!r} in WAL mode (got {mode!r})")
        sync = {"full": 2, "normal": 1}[configuration.durability]
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute("PRAGMA foreign_keys=ON")
        # A reader that holds a snapshot stops checkpoints from resetting the -wal, which then
        # grows; without a limit it never shrinks again. With one, the first write after a
        # complete checkpoint truncates it back (reliability.md G9, case 11).
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        # Checkpoint when the -wal nears that limit rather than at SQLite's 1,000 pages: each
        # checkpoint is an fsync of the database file on some commit's path, and a hot page
        # rewritten by many commits is copied once per checkpoint. Past the limit, the -wal
        # would grow again after every truncation.
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint={max(1000, WAL_SIZE_LIMIT * 7 // 8 // page_size)}")
        conn.execute(f"PRAGMA busy_timeout={int(configuration.busy_timeout.total_seconds() * 1000)}")
        if conn.execute("PRAGMA synchronous").fetchone()[0] != sync:
            raise errors.DatabaseOpenError(f"{path!r}: could not set synchronous={configuration.durability}")
        self._migrate(conn, path)

    def _migrate(self, conn: sqlite3.Connection, path: str) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise errors.SchemaTooNewError(
                f"{path!r} has schema version {version}, newer than this workmanager's {SCHEMA_VERSION}; "
                "upgrade workmanager to open it"
            )
        if version == SCHEMA_VERSION:
            return

        def begin() -> None:
            conn.execute("BEGIN IMMEDIATE")

        for number, name, sql in _MIGRATIONS:
            _retry_busy("migrate", begin)
            try:
                # Another process may have migrated while we waited for the lock.
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                if number <= current:
                    conn.execute("COMMIT")
                    continue
                log.info("applying migration %s to %s", name, path)
                for statement in _split_statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={number}")
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise errors.StorageError(
                    f"migration {name} failed on {path!r}: {exc}; the file is left at schema version "
                    f"{number - 1}"
                ) from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[SqliteTransaction]:
        with self._lock:
            conn = self._conn
            tx = self._tx
            changes_before = conn.total_changes
            tx.state_only_changes = 0
            # A commit in WAL mode with synchronous=NORMAL is not fsynced: only the loss of
            # the machine can undo it, and that takes every worker of this file with it.
            relaxed = not durable and self._sync_full
            if relaxed:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._begin_immediate(conn)
                try:
                    yield tx
                except BaseException as exc:
                    self._abort(conn, exc)
                    raise
                self._commit(conn)
            finally:
                if relaxed:
                    conn.execute("PRAGMA synchronous=FULL")
            changes = conn.total_changes - changes_before
            tx.work_changed = changes > tx.state_only_changes
            if changes:
                self._notify(work=tx.work_changed)

    def _commit(self, conn: sqlite3.Connection) -> None:
        """COMMIT, retrying a busy one; if it fails, roll back and raise the typed error."""
        try:
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                _retry_busy("commit", lambda: conn.execute("COMMIT"))
        except BaseException as exc:
            self._abort(conn, exc)
            raise

    def _abort(self, conn: sqlite3.Connection, exc: BaseException) -> None:
        # SQLite has already rolled back after some errors (SQLITE_FULL): a second
        # ROLLBACK would raise and hide the real error.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        _raise_if_full(exc, self.url)

    #: While another process holds the write lock, try again after this long, doubling up to
    #: the second figure. SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries,
    #: where a writer here holds the lock for a fraction of a millisecond: with several
    #: worker processes on one file, its first sleep alone cost a fifth of the throughput.
    BUSY_RETRY_S = (0.00005, 0.002)

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting for the write lock in short steps of our own.

        The connection's busy_timeout is 0 once open (see __init__): this loop and
        _retry_busy are the only waits, and a write pays no PRAGMA to switch between them."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        self._wait_out_busy("begin", lambda: conn.execute("BEGIN IMMEDIATE"))

    def _wait_out_busy(self, what: str, write: Callable[[], object]) -> None:
        """Try a write that found the database locked again, in short steps for the busy
        timeout, then as _retry_busy does."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        delay, longest = self.BUSY_RETRY_S
        while time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, longest)
            try:
                write()
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
        _retry_busy(what, write)

    def work_insert_alone(self, rows: list[NewWork]) -> None:
        """work_insert in a transaction of its own: transaction() without its bookkeeping
        (an insert is always a work change), for the hottest write there is."""
        with self._lock:
            conn = self._conn
            if len(rows) == 1 and not rows[0].names and not rows[0].prerequisites:
                self._insert_one_statement(conn, rows[0])
                self._notify(work=True)
                return
            self._begin_immediate(conn)
            try:
                self._tx.work_insert(rows)
            except BaseException as exc:
                self._abort(conn, exc)
                raise
            self._commit(conn)
            self._notify(work=True)

    def work_insert_stream(self, count: int, rows: Iterable[NewWork]) -> None:
        """work_insert_alone: SQLite runs in this process, so there is nothing to overlap
        the building of rows with."""
        self.work_insert_alone(list(rows))

    def _insert_one_statement(self, conn: sqlite3.Connection, row: NewWork) -> None:
        """One request (its tags filed by trigger) as one autocommitted statement: SQLite's
        implicit transaction spares the BEGIN and COMMIT round trips. A busy database is
        retried as BEGIN IMMEDIATE is; the statement is atomic, so a retry cannot double it."""
        params = plain_insert_params(row)
        statement = _Q["work_insert_plain"]
        if params is None:
            params, statement = insert_params(row), _Q["work_insert"]
        try:
            try:
                conn.execute(statement, params)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            self._wait_out_busy("insert", lambda: conn.execute(statement, params))
        except sqlite3.IntegrityError as exc:
            state = self._tx.work_states_by_ids([row.id])
            raise errors.WorkAlreadyExistsError(
                f"work {', '.join(state) or row.id} already exists; each request can be enqueued once"
            ) from exc
        except BaseException as exc:
            self._abort(conn, exc)
            raise

    def _notify(self, *, work: bool) -> None:
        try:
            if work and self._notify_fd >= 0:
                token = self._token_prefix + (next(self._token_count) & 0xFFFF_FFFF).to_bytes(4)
                os.pwrite(self._notify_fd, token, 0)
                self._own_work_token = token
            elif self._state_fd >= 0:
                os.pwrite(self._state_fd, b"\0", 0)
        except OSError:  # a full disk must not fail a commit that already happened
            pass

    def foreign_work_changed(self) -> bool | None:
        """Whether another process made a work change since the last call (a watcher asks).

        Read from the notify file's token, not from data_version: a state-only commit seen
        first would otherwise hide a work change committed just before it."""
        if self._notify_fd < 0:
            return None
        try:
            token = os.pread(self._notify_fd, 8, 0)
        except OSError:
            return None
        if token == self._seen_work_token:
            return False
        self._seen_work_token = token
        return token != self._own_work_token

    @property
    def notify_path(self) -> str:
        return os.path.abspath(self.url) + "-wmnotify"

    # -- reads -------------------------------------------------------------------------------

    def _read(self, name: str, params: Any = ()) -> list[Any]:
        with self._lock:
            return _retry_busy(name, lambda: self._conn.execute(_Q[name], params).fetchall())

    def work_info_by_id(self, work_id: str) -> InfoRow | None:
        rows = self._read("work_info_by_id", {"id": work_id})
        return _info(rows[0]) if rows else None

    def work_info_by_tag(self, tag: str) -> list[InfoRow]:
        return [_info(r) for r in self._read("work_info_by_tag", {"tag": tag})]

    def work_info_by_name(self, name: str) -> list[InfoRow]:
        return [_info(r) for r in self._read("work_info_by_name", {"name": name})]

    def work_info_query(
        self,
        *,
        ids: list[str] | None,
        tags: list[str] | None,
        names: list[str] | None,
        states: list[int] | None,
    ) -> list[InfoRow]:
        def js(values: list[Any] | None) -> str | None:
            return None if values is None else json.dumps(values)

        params = {"ids": js(ids), "tags": js(tags), "names": js(names), "states": js(states)}
        # Tags and unique names drive work_info_query through their own indexes; without
        # them, ids or states drive one of these (its "IS NULL OR" terms gave them no index).
        query = "work_info_query"
        if tags is None and names is None:
            if ids is not None:
                query = "work_info_query_by_ids"
            elif states is not None:
                query = "work_info_query_by_states"
        return [_info(r) for r in self._read(query, params)]

    def work_next_due(
        self,
        names: list[str] | None,
        constraints: dict[str, int] | None = None,
        constraints_met_ids: list[str] | None = None,
        suspects: bool = True,
    ) -> int | None:
        due = self.work_next_due_and_expedited(names, constraints, constraints_met_ids, suspects)
        return None if due is None else due[0]

    def work_next_due_and_expedited(
        self,
        names: list[str] | None,
        constraints: dict[str, int] | None = None,
        constraints_met_ids: list[str] | None = None,
        suspects: bool = True,
    ) -> tuple[int, bool] | None:
        params = {
            "suspects": suspects,
            "due_by": _ANY_TIME,
            **_constraint_params(constraints, constraints_met_ids),
        }

        def read() -> list[Any]:
            statement = _per_name(self._conn, "work_next_due", names, params)
            return [] if statement is None else self._conn.execute(*statement).fetchall()

        with self._lock:
            rows = _retry_busy("work_next_due", read)
        return (int(rows[0][0]), bool(rows[0][1])) if rows else None

    def work_owned_states(self, ids: list[str]) -> dict[str, tuple[int, int | None, int]]:
        rows = self._read("work_owned_states", {"ids": json.dumps(ids)})
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def work_count_by_state(self) -> dict[int, int]:
        return dict(self._read("work_count_by_state"))

    def work_oldest_waiting(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            # Every waiting row, whatever its constraints and past orphans (the arm's filters off).
            params = {"limit": limit, "due_by": _ANY_TIME, "suspects": True, **_constraint_params(None, None)}
            statement = _per_name(self._conn, "work_oldest_waiting", None, params)
            if statement is None:
                return []
            cursor = self._conn.execute(*statement)
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def work_waiting_worker_names(self) -> dict[str, int]:
        return dict(self._read("work_waiting_worker_names"))

    def work_trigger_waiting(self) -> list[TriggerWait]:
        return [
            TriggerWait(r[0], tags_from_json(r[1]), tags_from_json(r[2]))
            for r in self._read("work_trigger_waiting")
        ]

    def work_list(
        self,
        *,
        state: int | None,
        limit: int,
        tag: str | None = None,
        name: str | None = None,
        worker: str | None = None,
        oldest_first: bool = False,
    ) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(
                _Q["work_list"],
                {
                    "state": state,
                    "limit": limit,
                    "tag": tag,
                    "name": name,
                    "worker": worker,
                    "oldest_first": oldest_first,
                },
            )
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def work_detail(self, work_id: str) -> dict[str, Any] | None:
        with self._lock:
            cursor = self._conn.execute(_Q["work_detail"], {"id": work_id})
            row = cursor.fetchone()
            if row is None:
                return None
            return dict(zip([d[0] for d in cursor.description], row, strict=True))

    # -- the dashboard's reads (storage/_dashboard.py) --------------------------------------------

    def _id_list(self, ids: list[str]) -> Any:
        return json.dumps(ids)

    def _rows(self, name: str, params: Any) -> list[Any]:
        return self._read(name, params)

    def _dicts(self, name: str, params: Any) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            cursor = self._conn.execute(_Q[name], params)
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

        with self._lock:
            return _retry_busy(name, run)

    def runner_list(self) -> list[RunnerRow]:
        return [RunnerRow(*r) for r in self._read("runner_list")]

    def work_running_runner_ids(self) -> list[str | None]:
        return [r[0] for r in self._read("work_running_runner_ids")]

    def preference_get(self, key: str) -> int | None:
        rows = self._read("preference_get", {"key": key})
        return int(rows[0][0]) if rows else None

    def _read_data_version(self) -> int:
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def data_changed(self) -> bool:
        version = self._read_data_version()
        changed = version != self._data_version
        self._data_version = version
        return changed

    def watch_paths(self) -> Iterator[str]:
        if self._notify_fd >= 0:
            yield self.notify_path
        if self._state_fd >= 0:
            yield self.notify_path[: -len("notify")] + "state"

    def pragma(self, name: str) -> Any:
        """Read a PRAGMA (for diagnostics and tests)."""
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        with self._lock:
            return self._conn.execute(f"PRAGMA {name}").fetchone()[0]

    def _after_fork_in_child(self) -> None:
        """A forked child must not use the parent's connection (its locks are the parent's, and
        SQLite forbids carrying a connection across fork()): open one of its own. The parent's is
        kept referenced, never closed here, so that closing cannot touch the parent's files."""
        self._lock = threading.RLock()  # another thread of the parent may have held it
        self._inherited = self._conn
        try:
            self._conn = self._connect(self.url, self._configuration)
        except Exception:
            log.exception("could not reopen %s in the forked process %d", self.url, os.getpid())
            return
        self._tx = SqliteTransaction(self._conn)
        self._data_version = self._read_data_version()

    def close(self) -> None:
        _OPEN.discard(self)
        with self._lock:
            self._conn.close()
            for fd in (self._notify_fd, self._state_fd):
                if fd >= 0:
                    os.close(fd)
            self._notify_fd = self._state_fd = -1


#: Open file databases of this process, reopened in a forked child (os.register_at_fork).
_OPEN: weakref.WeakSet[SqliteStorage] = weakref.WeakSet()


def _reopen_after_fork() -> None:
    for storage in list(_OPEN):
        if not storage._memory:
            storage._after_fork_in_child()


os.register_at_fork(after_in_child=_reopen_after_fork)

#: Where the kernel lists this process's mounts (a test points it at a fake one).
MOUNTINFO = "/proc/self/mountinfo"
#: Filesystems SQLite must not share a file on (locks and shared memory are not coherent).
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "fuse.sshfs"})


def filesystem_type(folder: str) -> str | None:
    """The type of the filesystem ``folder`` is on, from the longest mount point above it
    (None where /proc/self/mountinfo is not readable: not Linux)."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    target = os.path.realpath(folder)
    best, best_type = -1, None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        mount = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > best:
            best, best_type = len(mount), right.split()[0]
    return best_type


def _split_statements(sql: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows where each ends)."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buffer.splitlines()
    ):
        raise ValueError(f"unterminated statement in migration: {buffer[:80]!r}")
    return statements
