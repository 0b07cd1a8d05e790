"""The PostgreSQL backend: one database shared by worker processes on any number of machines.

``postgresql://user@host/db?schema=name`` — ``schema`` (default ``public``) is where the
tables live; it is created on first use and is this backend's only addition to libpq's URL
parameters (it is removed before connecting). Connections come from a ``psycopg_pool``
pool in autocommit mode: a read is one round trip, a write is one explicit transaction.

Claims are one ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)``; every write
transaction that changed something sends ``pg_notify``, which the server delivers to listeners
only once the transaction commits: on the schema's channel for a work change, on its state
channel for a change of state only (claims, successes), which only processes that watch work
(await_work, flows, the dashboard) listen to, and only while such a process says it listens
(every server-side NOTIFY wakes every listening connection, whatever its channel). Leases are judged on the
database's clock (:meth:`PostgresStorage.database_now_ms`), never a worker machine's.
Migrations run under a transaction-scoped advisory lock, so any number of processes may
open a new database at once.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from workmanager import errors
from workmanager.config import Configuration
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

try:
    import psycopg
    from psycopg import sql
    from psycopg.pq import TransactionStatus
    from psycopg_pool import ConnectionPool
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the PostgreSQL backend needs psycopg 3 and psycopg_pool: pip install 'workmanager[postgres]'"
    ) from exc

__all__ = ["PostgresStorage", "parse_url"]

log = logging.getLogger("workmanager.storage.postgres")

_Q = load_queries(__name__)

_MIGRATIONS = load_migrations(__name__)
SCHEMA_VERSION = _MIGRATIONS[-1][0]

#: A schema name we accept: it becomes part of an identifier and a channel name.
_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
#: Connection settings for every connection: find a dead peer in seconds, not hours.
_BEGIN, _COMMIT, _ROLLBACK = "BEGIN", "COMMIT", "ROLLBACK"
#: Notification payloads are "<sender token>:<kind>": a work change (work may have become
#: claimable, or running work was taken away) or a change of state only (claims, successes).
_WORK, _STATE = "w", "s"
#: On the work channel, every _PING_S seconds from a process whose listener hears the state
#: channel: "<token>:v", "someone here watches work". Changes of state only are notified only
#: while such a process is known (for _WATCH_TTL_S after it last said so).
_WATCHING = "v"
#: Sent by a listener that has just connected: "<token>:q", "who watches work?". Watching
#: processes answer at once (_WATCHING), instead of at their next ping.
_ASKING = "q"

#: work_claim_available as one autocommitted statement (PostgresStorage.work_claim_alone):
#: its RETURNING clause, the statement's last, also sets synchronous_commit for the
#: statement's own transaction (is_local: it ends with it) and notifies listeners (the same
#: notification sent twice in one transaction is delivered once). Evaluated only for a row
#: claimed: a claim of nothing writes nothing to flush and tells no one.
_CLAIM_RETURNING = _Q["work_claim_available"].rstrip().removesuffix(";")
_CLAIM_ALONE = (
    _CLAIM_RETURNING
    + ",\n    set_config('synchronous_commit', 'off', true), pg_notify(%(channel)s, %(payload)s);"
)
#: The same, committed durably (work_claim_alone(durable=True)).
_CLAIM_ALONE_DURABLE = _CLAIM_RETURNING + ",\n    pg_notify(%(channel)s, %(payload)s);"
#: The same two, telling no one (no process watches work).
_CLAIM_ALONE_QUIET = _CLAIM_RETURNING + ",\n    set_config('synchronous_commit', 'off', true);"
_CLAIM_ALONE_DURABLE_QUIET = _CLAIM_RETURNING + ";"

#: From this many rows, a batch enqueue goes through COPY (see _copy_insert).
_COPY_FROM_ROWS = 64
#: The work_copy columns' types, in order (a test holds them to the table's).
_WORK_COPY_TYPES = (
    ("text", "text", "smallint", "text", "text", "bigint", "bigint", "bigint")
    + ("integer",) * 6
    + ("bigint",) * 4
    + ("integer",) * 3
    + ("bigint", "bigint", "text", "text", "text", "text", "integer", "integer", "text")
)
_WORKTAG_COPY_TYPES = ("text", "text")

_CONNECT_KWARGS: dict[str, Any] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
#: The listener checks an idle connection this often.
_PING_S = 5.0
#: The listener's reconnect backoff: from the first, doubling, to the cap.
_RECONNECT_FIRST_S = 0.1
_RECONNECT_MAX_S = 10.0
#: The pool gives up a reconnect series after this long (then the next request starts anew).
_RECONNECT_GIVE_UP_S = 30.0
#: Even while listening, say "maybe changed" this often (a cheap safety net).
_FALLBACK_S = 5.0
#: How long a process that said it watches work counts as watching (three of its pings).
_WATCH_TTL_S = 3 * _PING_S
#: After asking who watches, notify anyway this long: the answers' round trip.
_ASK_GRACE_S = 0.5

_ALL_MET = {
    "net_connected": True,
    "net_unmetered": True,
    "net_not_roaming": True,
    "net_metered": True,
    "charging": True,
    "battery_not_low": True,
    "device_idle": True,
    "storage_not_low": True,
}


def parse_url(url: str) -> tuple[str, str]:
    """(libpq connection URL without ``schema``, schema name)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [v for k, v in query if k == "schema"]
    schema = schemas[-1] if schemas else "public"
    if not _SCHEMA.match(schema):
        raise ValueError(
            f"schema {schema!r}: use 1-40 lower-case letters, digits and underscores, not starting "
            "with a digit"
        )
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    scheme = "postgresql" if parts.scheme == "postgres" else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, rest, parts.fragment)), schema


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _claim_params(
    now: int,
    limit: int,
    runner_id: str,
    run_token: int,
    names: list[str] | None,
    constraints: dict[str, Any] | None,
    met_ids: list[str] | None,
    suspects: bool,
) -> dict[str, Any]:
    """The parameters of work_claim_available (and of the statements built on it)."""
    return {
        "suspects": suspects,
        "now": now,
        "limit": limit,
        "runner_id": runner_id,
        "run_token": run_token,
        "names": names,
        **_constraint_params(constraints, met_ids),
    }


def _constraint_params(constraints: dict[str, Any] | None, met_ids: list[str] | None) -> dict[str, Any]:
    if constraints is None:
        return {**_ALL_MET, "custom_met": None, "constraints_met_ids": list(met_ids or [])}
    met = {k: bool(v) for k, v in constraints.items() if k != "custom_met"}
    return {
        **met,
        "custom_met": list(constraints.get("custom_met", ())),
        "constraints_met_ids": list(met_ids or []),
    }


def _already_exists(exc: psycopg.errors.UniqueViolation) -> Exception:
    """A duplicate work id as our typed error; any other unique violation as it is."""
    if exc.diag.constraint_name != "workspec_pkey":
        return exc
    detail = (exc.diag.message_detail or "").strip()
    return errors.WorkAlreadyExistsError(
        f"work already exists ({detail or 'duplicate id'}); each request can be enqueued once"
    )


def _full(exc: psycopg.errors.DiskFull) -> errors.StorageFullError:
    """The server's disk is full (SQLSTATE 53100): the transaction was rolled back."""
    return errors.StorageFullError(
        f"the PostgreSQL server's disk is full ({exc.diag.message_primary or exc}); "
        "nothing of this transaction was written"
    )


def _info(row: tuple[Any, ...]) -> InfoRow:
    fields: tuple[Any, ...] = (*row[:16], tags_from_json(row[16]), row[17], tags_from_json(row[18]))
    return InfoRow(*fields)


def _runner(row: tuple[Any, ...]) -> RunnerRow:
    return RunnerRow(*row)


class PostgresTransaction:
    """The write half of the interface, on one connection inside BEGIN ... COMMIT."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        pipeline: psycopg.Pipeline | None = None,
        *,
        channel: str,
        work_payload: str,
    ) -> None:
        self._conn = conn
        self._pipeline = pipeline
        #: One cursor for the transaction's statements: a new cursor per statement (what
        #: Connection.execute makes) cost 17 us of client CPU each, measured on this machine.
        #: Each statement replaces the previous one's results on it (see _exec).
        self._cursor = conn.cursor()
        self._channel = channel
        #: Set when a statement changed work: the transaction then notifies listeners.
        self.changed = False
        #: Set when a change may make work claimable or take running work away (a "work
        #: change"); claims and plain successes are changes only.
        self.changed_work = False
        #: Unblocks sent without waiting: whether they changed a row is read after COMMIT.
        self._unblocks: list[psycopg.Cursor[Any]] = []
        #: The notification payload of a work change (the unblock statement sends it itself).
        self.work_payload = work_payload

    @property
    def work_changed(self) -> bool:
        """After COMMIT: whether this transaction made a work change."""
        return self.changed_work or any(cursor.rowcount > 0 for cursor in self._unblocks)

    def _exec(
        self, name: str, params: Any = None, *, defer: bool = False, keep: bool = False
    ) -> psycopg.Cursor[Any]:
        """Run a statement; with ``defer`` in pipeline mode, without waiting for its result.

        A deferred statement's error surfaces at the next sync or at COMMIT (the transaction
        then fails as a whole); only statements whose results nobody reads are deferred.
        The cursor returned is the transaction's own, whose results the next statement
        replaces: read them at once, or pass ``keep`` for a cursor of the statement's own.
        """
        cursor = self._conn.cursor() if keep else self._cursor
        cursor.execute(_Q[name], params)
        if not defer:
            self._sync()
        return cursor

    def _send(self, statement: str) -> None:
        """A statement without parameters whose result nobody reads (BEGIN, COMMIT)."""
        self._cursor.execute(statement)

    def _sync(self) -> None:
        """In pipeline mode, wait for the statements sent so far (their errors, row counts)."""
        if self._pipeline is not None:
            self._pipeline.sync()

    def read_preferring_index_paths(self, name: str, params: Any) -> psycopg.Cursor[Any]:
        """A read planned with sequential scans priced out (for the rest of the transaction),
        sent without waiting: its rows are there once the transaction has committed."""
        self._send(_Q["prefer_index_paths"])
        return self._exec(name, params, defer=True, keep=True)

    def _changed_rows(self, name: str, params: Any) -> int:
        count = self._exec(name, params).rowcount
        if count > 0:
            self.changed = self.changed_work = True
        return count

    def work_insert(self, rows: list[NewWork]) -> None:
        conn = self._conn
        try:
            with conn.cursor() as cur:
                if len(rows) == 1:
                    plain = plain_insert_params(rows[0])
                    if plain is None:
                        cur.execute(_Q["work_insert"], insert_params(rows[0]))
                    else:
                        cur.execute(_Q["work_insert_plain"], plain)
                    tags = worktag_rows(rows[0])
                    if len(tags) == 1:
                        cur.execute(_Q["worktag_insert"], tags[0])
                    elif tags:
                        cur.executemany(_Q["worktag_insert"], tags)
                else:  # the rows and their tags, from one JSON document
                    batch = json.dumps([insert_params(r) for r in rows])
                    cur.execute(_Q["work_insert_many"], {"rows": batch})
                names = [{"name": n, "work_id": r.id} for r in rows for n in r.names]
                if names:
                    cur.executemany(_Q["workname_insert"], names)
                deps = [(r.id, p) for r in rows for p in r.prerequisites]
                if deps:
                    cur.executemany(_Q["dependency_insert"], deps)
        except psycopg.errors.UniqueViolation as exc:
            raise _already_exists(exc) from exc
        self.changed = self.changed_work = True

    def work_states_by_ids(self, ids: list[str]) -> dict[str, int]:
        return {r[0]: r[1] for r in self._exec("work_states_by_ids", {"ids": ids})}

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
        params = _claim_params(
            now, limit, runner_id, run_token, names, constraints, constraints_met_ids, suspects
        )
        rows = self._exec(
            "work_claim_expedited" if expedited_only else "work_claim_available", params
        ).fetchall()
        if rows:
            self.changed = True
        return [claimed_work(r) for r in rows]

    def work_prerequisite_outputs(self, work_id: str) -> list[str]:
        return [r[0] for r in self._exec("work_prerequisite_outputs", {"id": work_id})]

    def work_schedule_fields(self, work_id: str) -> ScheduleFields | None:
        row = self._exec("work_schedule_fields", {"id": work_id}).fetchone()
        if row is None:
            return None
        return ScheduleFields(row[0], row[1], row[2], BackoffPolicy(row[3]), *row[4:])

    def work_succeed_if_running(self, work_id: str, run_token: int, output: str, now: int) -> bool:
        params = {"id": work_id, "run_token": run_token, "output": output, "now": now}
        return self._changed_rows("work_succeed_if_running", params) == 1

    def work_fail_if_running(self, work_id: str, run_token: int, output: str, now: int) -> bool:
        params = {"id": work_id, "run_token": run_token, "output": output, "now": now}
        return self._changed_rows("work_fail_if_running", params) == 1

    def work_succeed_many(self, runs: list[tuple[str, int, str]], now: int) -> None:
        # Deferred: nothing reads its result, so it travels with the claim and the COMMIT.
        batch = json.dumps([{"id": i, "run_token": t, "output": o} for i, t, o in runs])
        self._exec("work_succeed_many", {"runs": batch, "now": now}, defer=True)
        self.changed = True

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
        return self._changed_rows("work_enqueue_if_running", params) == 1

    def work_foreground_set_if_running(self, work_id: str, run_token: int, foreground: str) -> bool:
        params = {"id": work_id, "run_token": run_token, "foreground": foreground}
        return self._changed_rows("work_foreground_set_if_running", params) == 1

    def work_progress_set_if_running(self, work_id: str, run_token: int, progress: str) -> bool:
        params = {"id": work_id, "run_token": run_token, "progress": progress}
        return self._changed_rows("work_progress_set_if_running", params) == 1

    def dependency_unblock(self, work_id: str, now: int) -> None:
        # Two statements on purpose: the second's snapshot is taken after the first's locks
        # are granted (see dependency_lock_dependents in queries.sql).
        if self._exec("dependency_lock_dependents", {"id": work_id}).fetchall():
            self._changed_rows("dependency_unblock", {"id": work_id, "now": now})

    def dependency_unblock_many(self, work_ids: list[str], now: int) -> None:
        # Deferred, both: in pipeline mode the server still runs them one after the other, so
        # the second's snapshot is taken after the first's locks are granted.
        ids = json.dumps(work_ids)
        self._exec("dependency_lock_dependents_many", {"ids": ids}, defer=True)
        params = {"ids": ids, "now": now, "channel": self._channel, "payload": self.work_payload}
        self._unblocks.append(self._exec("dependency_unblock_many", params, defer=True, keep=True))

    def dependency_fail_dependents(self, work_id: str, now: int) -> list[str]:
        params = {"id": work_id, "now": now, "never": NEVER}
        ids = [r[0] for r in self._exec("dependency_fail_dependents", params)]
        if ids:
            self.changed = self.changed_work = True
        return ids

    def work_cancel_tree(self, ids: list[str], now: int) -> list[tuple[str, str | None]]:
        params = {"ids": ids, "now": now, "never": NEVER}
        rows = [(r[0], r[1]) for r in self._exec("work_cancel_tree", params)]
        if rows:
            self.changed = self.changed_work = True
        return rows

    def work_unfinished_ids(self, *, tag: str | None = None, name: str | None = None) -> list[str]:
        if tag is not None:
            cursor = self._exec("work_unfinished_ids_by_tag", {"tag": tag})
        elif name is not None:
            cursor = self._exec("work_unfinished_ids_by_name", {"name": name})
        else:
            cursor = self._exec("work_unfinished_ids")
        return [r[0] for r in cursor]

    def work_set_next_run_time_if_enqueued(self, work_id: str, next_run_time: int) -> bool:
        params = {"id": work_id, "next_run_time": next_run_time}
        return self._changed_rows("work_set_next_run_time_if_enqueued", params) == 1

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
        self._exec("runner_upsert", params)

    def runner_heartbeat(self, runner_id: str, now: int, mono: float = 0.0) -> bool:
        # The row is stamped with the database's clock; ``now`` is the caller's and unused.
        return self._exec("runner_heartbeat", {"id": runner_id, "mono": mono}).rowcount == 1

    def runner_delete(self, runner_id: str) -> None:
        self._exec("runner_delete", {"id": runner_id})

    def runner_list(self) -> list[RunnerRow]:
        return [_runner(r) for r in self._exec("runner_list")]

    def work_running_runner_ids(self) -> list[str | None]:
        return [r[0] for r in self._exec("work_running_runner_ids")]

    def work_release_unlaunched(self, runner_id: str, running: list[str], now: int) -> int:
        released = self._changed_rows(
            "work_release_unlaunched", {"runner_id": runner_id, "running": running, "now": now}
        )
        if released:
            self.changed = self.changed_work = True
        return released

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
        rows = [(r[0], r[1]) for r in self._exec("work_rescue_runner", params)]
        if rows:
            self.changed = self.changed_work = True
        return rows

    def work_prune_finished(self, *, older_than: int | None) -> int:
        return self._changed_rows("work_prune_finished", {"older_than": older_than})

    def preference_get(self, key: str) -> int | None:
        row = self._exec("preference_get", {"key": key}).fetchone()
        return None if row is None else int(row[0])

    def preference_set(self, key: str, value: int) -> None:
        self._exec("preference_set", {"key": key, "value": value})

    def work_trigger_waiting(self) -> list[TriggerWait]:
        return [
            TriggerWait(r[0], tags_from_json(r[1]), tags_from_json(r[2]))
            for r in self._exec("work_trigger_waiting")
        ]

    def work_trigger_fire(self, work_id: str, now: int, triggered_paths: str) -> bool:
        params = {"id": work_id, "now": now, "triggered_paths": triggered_paths}
        return self._changed_rows("work_trigger_fire", params) == 1

    def expedited_usage_add(self, now: int, duration_ms: int) -> None:
        self._exec("expedited_usage_add", {"now": now, "duration_ms": duration_ms})

    def expedited_usage_since(self, since: int) -> int:
        row = self._exec("expedited_usage_since", {"since": since}).fetchone()
        return int(row[0]) if row else 0

    def expedited_usage_prune(self, before: int) -> None:
        self._exec("expedited_usage_prune", {"before": before})

    # -- unique work and continuations ---------------------------------------------------------

    def uniquename_lock(self, name: str, chain: str) -> str:
        row = self._exec("uniquename_lock", {"name": name, "chain": chain}).fetchone()
        assert row is not None
        return str(row[0])

    def uniquename_set_chain(self, name: str, chain: str) -> None:
        self._exec("uniquename_set_chain", {"name": name, "chain": chain})

    def workname_states(self, name: str) -> list[tuple[str, int, bool]]:
        return [(r[0], r[1], bool(r[2])) for r in self._exec("workname_states", {"name": name})]

    def work_delete(self, ids: list[str]) -> int:
        return self._changed_rows("work_delete", {"ids": ids})

    def work_update_target(self, work_id: str) -> UpdateTarget | None:
        r = self._exec("work_update_target", {"id": work_id}).fetchone()
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
        if self._changed_rows("work_update_if_unchanged", params) != 1:
            return False
        # Tags are replaced wholesale, as on Android.
        self._exec("worktag_delete", {"id": work_id, "tags": list(old_tags)})
        tags = worktag_rows(row._replace(id=work_id))
        if tags:
            with self._conn.cursor() as cur:
                cur.executemany(_Q["worktag_insert"], tags)
            self._sync()
        return True


class PostgresStorage(DashboardReads):
    """A PostgreSQL database (one schema of it), opened, checked and migrated."""

    supports_listen = True

    def __init__(self, url: str, configuration: Configuration, *, max_connections: int = 10) -> None:
        self.url = url
        self._conninfo, self.schema = parse_url(url)
        # enable_bitmapscan=off: a queue table's statistics are always stale (rows change state
        # by the thousand between ANALYZEs), and with a low estimate of waiting rows the planner
        # turns a claim into a bitmap scan of *every* waiting row plus a sort, where walking the
        # claim index in order stops after LIMIT rows: 5x the server CPU per claimed job, seen
        # mid-drain. Every query of ours is written for an index walk.
        options = f"-c search_path={self.schema} -c enable_bitmapscan=off"
        self._kwargs: dict[str, Any] = {**_CONNECT_KWARGS, "options": options}
        #: Listeners on this channel hear every work change committed to this schema.
        self.channel = f"workmanager_{self.schema}"
        #: And on this one every change of state only (claims, successes). Dispatchers do not
        #: listen to it: with every process hearing every claim and success of every other,
        #: each process added to a drain cost the others CPU (and the server a signal each).
        self.state_channel = f"{self.channel}_state"
        #: Until when (time.monotonic()) another process is known to watch work. Until a
        #: listener is connected this process cannot tell, and notifies (_state_watched).
        self._state_watched_until = 0.0
        #: Marks this storage's own notifications, which its listeners ignore.
        self._token = uuid.uuid4().hex
        self._work_payload = f"{self._token}:{_WORK}"
        self._listeners: list[_Listener] = []
        self._closed = False
        self._leader_key = zlib.crc32(f"workmanager.leader.{self.schema}".encode())
        #: The connection that holds the leader's session lock, or asks for it (_leading False).
        self._leader_conn: psycopg.Connection[Any] | None = None
        self._leading = False
        self._leader_mutex = threading.Lock()
        # The leader is asked (try_lead) every rescue interval; silent for a lease, it is gone.
        self._leader_idle_ms = int(
            max(configuration.lease_timeout, 2 * configuration.rescue_interval).total_seconds() * 1000
        )
        self._migrate()
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._conninfo,
            kwargs={**self._kwargs, "autocommit": True},
            min_size=1,
            max_size=max_connections,
            name=f"workmanager-{self.schema}",
            # The pool's reconnect backoff doubles without a cap until reconnect_timeout (5 min
            # by default), so after an outage of a minute or two its next attempt could come a
            # minute after the server is back. Giving up after 30 s lets the next request start
            # a new series at 1 s: the wait after the server returns stays under ~16 s.
            reconnect_timeout=_RECONNECT_GIVE_UP_S,
            open=True,
        )

    def __repr__(self) -> str:
        return f"PostgresStorage({_redacted(self.url)!r})"

    def try_lead(self) -> bool:
        """Hold (or take) the lock of the cluster-wide duties; True while this process holds it.

        One dedicated connection keeps the session lock; when its process dies, the server
        drops the connection and the lock, and the next process to ask takes over."""
        with self._leader_mutex:
            if self._closed:
                return False
            if self._leader_conn is not None and self._leading:
                try:
                    self._leader_conn.execute("SELECT 1")
                    return True
                except psycopg.Error:
                    self._drop_leader_conn()
            if self._leader_conn is None:
                # One connection kept for asking, not a new one per ask: every process but the
                # leader asks each rescue interval, and a connection costs the server a process.
                try:
                    conn = self.connect(autocommit=True)
                except psycopg.Error:
                    return False
                try:
                    conn.execute(_Q["leader_idle_timeout"], {"ms": str(self._leader_idle_ms)})
                except psycopg.errors.UndefinedObject:
                    pass  # before PostgreSQL 14: only TCP keepalives free a partitioned leader's lock
                except psycopg.Error:
                    conn.close()
                    return False
                self._leader_conn = conn
            try:
                row = self._leader_conn.execute(_Q["leader_try_lock"], {"key": self._leader_key}).fetchone()
            except psycopg.Error:
                self._drop_leader_conn()
                return False
            self._leading = row is not None and bool(row[0])
            if self._leading:
                log.info("this process now does the cluster-wide duties of schema %s", self.schema)
            return self._leading

    def _drop_leader_conn(self) -> None:
        assert self._leader_conn is not None
        self._leader_conn.close()
        self._leader_conn = None
        self._leading = False

    # -- opening -------------------------------------------------------------------------------

    def connect(self, **extra: Any) -> psycopg.Connection[Any]:
        """A new connection of our own (not from the pool), search_path on our schema."""
        return psycopg.connect(self._conninfo, **{**self._kwargs, **extra})

    def _migrate(self) -> None:
        where = _redacted(self.url)
        try:
            conn = self.connect(autocommit=True)
        except psycopg.Error as exc:
            raise errors.DatabaseOpenError(f"cannot open database {where!r}: {exc}") from exc
        lock_key = zlib.crc32(f"workmanager.migrate.{self.schema}".encode())
        with conn:
            for number, name, migration in [(0, "", ""), *_MIGRATIONS]:
                try:
                    with conn.transaction():
                        conn.execute(_Q["migrate_lock"], {"key": lock_key})
                        conn.execute(sql.SQL(_Q["schema_create"]).format(schema=sql.Identifier(self.schema)))
                        tables = {r[0] for r in conn.execute(_Q["schema_tables"], {"schema": self.schema})}
                        if "workspec" in tables and "workmanager_schema_version" not in tables:
                            raise errors.NotAWorkManagerDatabaseError(
                                f"schema {self.schema!r} of {where!r} holds a workspec table that is not "
                                "workmanager's; refusing to touch it"
                            )
                        conn.execute(_Q["schema_version_create"])
                        row = conn.execute(_Q["schema_version_get"]).fetchone()
                        current = int(row[0]) if row else 0
                        if current > SCHEMA_VERSION:
                            raise errors.SchemaTooNewError(
                                f"schema {self.schema!r} of {where!r} has schema version {current}, newer "
                                f"than this workmanager's {SCHEMA_VERSION}; upgrade workmanager to open it"
                            )
                        if number == 0 or number <= current:
                            continue  # another process migrated while we waited for the lock
                        log.info("applying migration %s to schema %s", name, self.schema)
                        conn.execute(migration.encode())  # several statements: the simple protocol
                        conn.execute(_Q["schema_version_set"], {"version": number})
                except psycopg.Error as exc:
                    if number == 0:
                        raise errors.DatabaseOpenError(f"cannot open database {where!r}: {exc}") from exc
                    raise errors.StorageError(
                        f"migration {name} failed on schema {self.schema!r} of {where!r}: {exc}; the "
                        f"schema is left at version {number - 1}"
                    ) from exc

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[PostgresTransaction]:
        # Pipeline mode: statements whose results are not read at once (BEGIN, updates, the
        # NOTIFY, COMMIT) travel together, so a transaction costs a round trip per result it
        # reads rather than one per statement. BEGIN and COMMIT are sent as plain statements
        # on the autocommit connection: psycopg's transaction() would wait after each.
        with self._pool.connection() as conn:
            try:
                with conn.pipeline() as pipeline:
                    tx = PostgresTransaction(
                        conn, pipeline, channel=self.channel, work_payload=f"{self._token}:{_WORK}"
                    )
                    tx._send(_BEGIN)
                    if not durable:
                        tx._send(_Q["commit_without_flush"])
                    yield tx
                    if tx.changed and (tx.changed_work or self._state_watched()):
                        kind = _WORK if tx.changed_work else _STATE
                        payload = f"{self._token}:{kind}"
                        channel = self.channel if tx.changed_work else self.state_channel
                        tx._exec("notify", {"channel": channel, "payload": payload}, defer=True)
                    tx._send(_COMMIT)
            except BaseException as exc:
                # A failed statement leaves the transaction aborted (or a deferred error left
                # COMMIT unexecuted): roll back before the connection goes back to the pool.
                if not conn.broken and conn.pgconn.transaction_status != TransactionStatus.IDLE:
                    try:
                        conn.execute(_ROLLBACK)
                    except psycopg.Error:
                        pass  # the pool discards a connection it cannot reset
                if isinstance(exc, psycopg.Error) and not conn.closed:
                    # A pipeline cut short by an error can leave psycopg sure of a prepared
                    # statement the server skipped: every later use of this connection then
                    # failed with "prepared statement _pg3_N does not exist" (seen after a full
                    # disk). The pool replaces a closed connection; errors here are rare.
                    conn.close()
                if isinstance(exc, psycopg.errors.UniqueViolation):
                    # An insert's error arrives with the transaction's one round trip.
                    error = _already_exists(exc)
                    if error is not exc:
                        raise error from exc
                if isinstance(exc, psycopg.errors.DiskFull):
                    raise _full(exc) from exc
                raise

    def work_insert_alone(self, rows: list[NewWork]) -> None:
        """work_insert in a transaction of its own. One plain row (no unique name, no
        prerequisite) is one autocommitted statement: the common enqueue's one round trip;
        a large batch of them goes through COPY."""
        if len(rows) >= _COPY_FROM_ROWS and not any(r.names or r.prerequisites for r in rows):
            self._copy_insert(rows)
            return
        if len(rows) != 1 or rows[0].names or rows[0].prerequisites:
            with self.transaction() as tx:
                tx.work_insert(rows)
            return
        row = rows[0]
        plain = plain_insert_params(row)
        statement = _Q["work_insert_alone"] if plain is None else _Q["work_insert_alone_plain"]
        params = (*(insert_params(row) if plain is None else plain), self.channel, self._work_payload)
        try:
            with self._pool.connection() as conn:
                conn.execute(statement, params)
        except psycopg.errors.UniqueViolation as exc:
            raise _already_exists(exc) from exc
        except psycopg.errors.DiskFull as exc:
            raise _full(exc) from exc

    def work_claim_alone(
        self,
        *,
        now: int,
        limit: int,
        runner_id: str,
        run_token: int,
        names: list[str] | None,
        constraints: dict[str, int] | None = None,
        constraints_met_ids: list[str] | None = None,
        suspects: bool = True,
        durable: bool = False,
    ) -> list[ClaimedWork]:
        """work_claim_available (ordinary work) in a transaction of its own: one autocommitted
        statement, for a dispatcher turn that only claims. It does not wait for the WAL flush
        unless ``durable``.

        A pipelined transaction sends BEGIN, SET LOCAL, the claim, NOTIFY and COMMIT: ~0.7 ms
        of client CPU at the start of an idle worker's job, the larger part of the
        enqueue-to-start latency. The statement here sets synchronous_commit for its own
        implicit transaction and notifies listeners itself (see _CLAIM_ALONE)."""
        params = _claim_params(
            now, limit, runner_id, run_token, names, constraints, constraints_met_ids, suspects
        )
        if self._state_watched():
            params |= {"channel": self.state_channel, "payload": f"{self._token}:{_STATE}"}
            statement = _CLAIM_ALONE_DURABLE if durable else _CLAIM_ALONE
        else:
            statement = _CLAIM_ALONE_DURABLE_QUIET if durable else _CLAIM_ALONE_QUIET
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(statement, params).fetchall()
        except psycopg.errors.DiskFull as exc:
            raise _full(exc) from exc
        return [claimed_work(r) for r in rows]

    def work_insert_stream(self, count: int, rows: Iterable[NewWork]) -> None:
        """work_insert_alone, with a large batch's rows built while COPY sends them: the
        server stores what came before meanwhile (1,000 rows: 2 µs a row less, a seventh)."""
        if count >= _COPY_FROM_ROWS:
            self._copy_insert(rows)
        else:
            self.work_insert_alone(list(rows))

    def _copy_insert(self, rows: Iterable[NewWork]) -> None:
        """Rows and their tags by binary COPY, in one transaction: the server parses no SQL
        and no JSON per row. At 1,000 rows it took half the time of work_insert_many's one
        JSON statement; at 10 rows the same. Not pipelined: COPY cannot be. ``rows`` is read
        once, as it is sent (it may build them: work_insert_stream)."""
        payload = f"{self._token}:{_WORK}"
        tagged: list[tuple[str, str]] = []
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                with cur.copy(_Q["work_copy"]) as copy:
                    copy.set_types(_WORK_COPY_TYPES)
                    for row in rows:
                        copy.write_row(insert_params(row))
                        tagged += worktag_rows(row)
                if tagged:
                    with cur.copy(_Q["worktag_copy"]) as copy:
                        copy.set_types(_WORKTAG_COPY_TYPES)
                        for tag_row in tagged:
                            copy.write_row(tag_row)
                cur.execute(_Q["notify"], {"channel": self.channel, "payload": payload})
        except psycopg.errors.UniqueViolation as exc:
            raise _already_exists(exc) from exc
        except psycopg.errors.DiskFull as exc:
            raise _full(exc) from exc

    @contextmanager
    def transaction_on(self, connection: psycopg.Connection[Any]) -> Iterator[PostgresTransaction]:
        """Write inside the caller's own connection and transaction (transactional enqueue).

        Runs in a savepoint when the connection is in a transaction (so a failure here leaves
        the caller's transaction usable), else in a transaction of its own. Nothing is visible
        to workers until the caller commits; the notification goes out with that commit.
        """
        if not isinstance(connection, psycopg.Connection):
            raise TypeError(f"connection= takes a psycopg 3 Connection, got {type(connection).__name__}")
        with connection.transaction():
            row = connection.execute(_Q["search_path_get"]).fetchone()
            old_path = str(row[0]) if row else ""
            connection.execute(_Q["search_path_set"], {"path": self.schema})
            try:
                # No token: this process's listeners must hear the caller's commit too.
                tx = PostgresTransaction(connection, channel=self.channel, work_payload="")
                yield tx
                if tx.changed:
                    # No token: this process's listeners must hear the caller's commit too.
                    connection.execute(_Q["notify"], {"channel": self.channel, "payload": ""})
            finally:
                if not connection.broken:
                    try:
                        connection.execute(_Q["search_path_set"], {"path": old_path})
                    except psycopg.Error:
                        pass  # the transaction failed; rolling back restores the path anyway

    # -- reads ---------------------------------------------------------------------------------

    def _read(self, name: str, params: Any = None) -> list[Any]:
        with self._pool.connection() as conn:
            return conn.execute(_Q[name], params).fetchall()

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
        params = {"ids": ids, "tags": tags, "names": names, "states": states}
        # Planned with sequential scans priced out: statistics taken while most rows waited
        # (a queue's are always stale) made a query by states read the whole table, dead
        # rows and all, after a drain: 30-50 ms a call where the state index answers in 0.1.
        with self.transaction() as tx:  # pipelined: one round trip
            read = tx.read_preferring_index_paths("work_info_query", params)
        return [_info(r) for r in read.fetchall()]

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
            "names": names,
            "suspects": suspects,
            **_constraint_params(constraints, constraints_met_ids),
        }
        rows = self._read("work_next_due", params)
        return (int(rows[0][0]), bool(rows[0][1])) if rows else None

    def work_owned_states(self, ids: list[str]) -> dict[str, tuple[int, int | None, int]]:
        rows = self._read("work_owned_states", {"ids": ids})
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def work_count_by_state(self) -> dict[int, int]:
        return {int(r[0]): int(r[1]) for r in self._read("work_count_by_state")}

    def work_oldest_waiting(self, limit: int) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            cursor = conn.execute(_Q["work_oldest_waiting"], {"limit": limit})
            columns = [d.name for d in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def work_trigger_waiting(self) -> list[TriggerWait]:
        return [
            TriggerWait(r[0], tags_from_json(r[1]), tags_from_json(r[2]))
            for r in self._read("work_trigger_waiting")
        ]

    def work_waiting_worker_names(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self._read("work_waiting_worker_names")}

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
        with self._pool.connection() as conn:
            cursor = conn.execute(
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
            columns = [d.name for d in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def work_detail(self, work_id: str) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            cursor = conn.execute(_Q["work_detail"], {"id": work_id})
            row = cursor.fetchone()
            if row is None:
                return None
            return dict(zip([d.name for d in cursor.description or ()], row, strict=True))

    # -- the dashboard's reads (storage/_dashboard.py) --------------------------------------------

    def _id_list(self, ids: list[str]) -> Any:
        return ids

    def _rows(self, name: str, params: Any) -> list[Any]:
        # Never prepared: a prepared statement soon runs a generic plan, which cannot see that
        # a filter's value is rare (a tag's page went from 40 ms to 500 ms on its 11th load).
        with self._pool.connection() as conn:
            return conn.execute(_Q[name], params, prepare=False).fetchall()

    def _dicts(self, name: str, params: Any) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            cursor = conn.execute(_Q[name], params, prepare=False)
            columns = [d.name for d in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

    def runner_list(self) -> list[RunnerRow]:
        return [_runner(r) for r in self._read("runner_list")]

    def work_running_runner_ids(self) -> list[str | None]:
        return [r[0] for r in self._read("work_running_runner_ids")]

    def preference_get(self, key: str) -> int | None:
        rows = self._read("preference_get", {"key": key})
        return int(rows[0][0]) if rows else None

    def database_now_ms(self) -> int:
        """The database's clock, which heartbeats are stamped with and leases judged by."""
        return int(self._read("database_now_ms")[0][0])

    # -- knowing about other processes' commits ------------------------------------------------

    def listen(self, on_change: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``on_change(work)`` (from a thread of ours) after each commit by another process;
        ``work``: whether it was a work change (see ChangeFeed), not only claims and successes.

        Also once after every (re)connect, for what was missed meanwhile. Returns the
        function that stops listening.
        """
        listener = _Listener(self, on_change)
        self._listeners.append(listener)

        def stop() -> None:
            listener.close()
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def _state_watched(self) -> bool:
        """Whether a change of state only is worth a notification: another process watches
        work (its listener says so every _PING_S seconds), or this one cannot tell (none of
        its listeners is connected). Unwatched, the NOTIFY would only wake every listening
        connection on the server (PostgreSQL signals them all, whatever the channel)."""
        return time.monotonic() < self._state_watched_until or not self.listening

    def want_state_changes(self) -> None:
        """Have this storage's listeners hear changes of state only too (claims, successes),
        from when this returns (or from their next connection, while they have none)."""
        for listener in list(self._listeners):
            listener.want_state_changes()

    @property
    def listening(self) -> bool:
        return any(listener.connected for listener in self._listeners)

    def data_changed(self) -> bool:
        """While a listener is connected, notifications tell; otherwise assume a change."""
        listeners = list(self._listeners)
        if not listeners:
            return True
        return any(listener.poll_due() for listener in listeners)

    def watch_paths(self) -> Iterator[str]:
        return iter(())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for listener in list(self._listeners):
            listener.close()
        self._listeners.clear()
        with self._leader_mutex:
            if self._leader_conn is not None:
                self._drop_leader_conn()  # hands the cluster-wide duties to another process
        self._pool.close()


class _Listener:
    """A thread holding one connection that LISTENs on the storage's channel, and on its
    state channel once someone wants changes of state (want_state_changes)."""

    #: How long want_state_changes waits for the LISTEN to take effect.
    STATE_LISTEN_WAIT_S = 2.0

    def __init__(self, storage: PostgresStorage, on_change: Callable[[bool], None]) -> None:
        self._storage = storage
        self._on_change = on_change
        self._stop = threading.Event()
        self._stop_token = f"stop:{uuid.uuid4().hex}"
        #: Sent to the thread (on the work channel) to have it LISTEN on the state channel.
        self._state_token = f"state:{uuid.uuid4().hex}"
        self._want_state = False
        #: Set while the connection LISTENs on the state channel.
        self._hears_state = threading.Event()
        self.connected = False
        self._last_poll = 0.0
        self._thread = threading.Thread(target=self._run, name="workmanager-listener", daemon=True)
        self._thread.start()

    def poll_due(self) -> bool:
        """True while disconnected, and every _FALLBACK_S seconds anyway."""
        now = time.monotonic()
        if not self.connected or now - self._last_poll >= _FALLBACK_S:
            self._last_poll = now
            return True
        return False

    def want_state_changes(self) -> None:
        """LISTEN on the state channel too; returns once the LISTEN is in effect (or at once
        while disconnected: until the connection is back, the watcher polls)."""
        if self._hears_state.is_set():
            return
        self._want_state = True
        if not self.connected:
            return
        try:  # wake the thread, which owns the connection
            with self._storage._pool.connection(timeout=self.STATE_LISTEN_WAIT_S) as conn:
                conn.execute(_Q["notify"], {"channel": self._storage.channel, "payload": self._state_token})
        except Exception:  # the next (re)connection LISTENs; the watcher polls meanwhile
            log.debug("could not wake the listener", exc_info=True)
            return
        self._hears_state.wait(self.STATE_LISTEN_WAIT_S)

    def _listen_to_state_changes(self, conn: psycopg.Connection[Any], listen_state: sql.Composed) -> None:
        conn.execute(listen_state)
        self._say_watching(conn)
        self._hears_state.set()

    def _say_watching(self, conn: psycopg.Connection[Any]) -> None:
        """Tell the other processes (on the work channel, which all hear) that this one watches
        work, so that they notify changes of state only."""
        payload = f"{self._storage._token}:{_WATCHING}"
        conn.execute(_Q["ping_watching"], {"channel": self._storage.channel, "payload": payload})

    def _run(self) -> None:
        delay = _RECONNECT_FIRST_S
        outage_logged = False
        storage = self._storage
        listen = sql.SQL(_Q["listen"]).format(channel=sql.Identifier(storage.channel))
        listen_state = sql.SQL(_Q["listen"]).format(channel=sql.Identifier(storage.state_channel))
        while not self._stop.is_set():
            try:
                with storage.connect(autocommit=True) as conn:
                    conn.execute(listen)
                    if self._want_state:
                        self._listen_to_state_changes(conn, listen_state)
                    # Who watches work? Until the answers are in, changes of state are notified.
                    storage._state_watched_until = max(
                        storage._state_watched_until, time.monotonic() + _ASK_GRACE_S
                    )
                    payload = f"{storage._token}:{_ASKING}"
                    conn.execute(_Q["ping_asking"], {"channel": storage.channel, "payload": payload})
                    self.connected = True
                    if outage_logged:
                        log.warning("listening on %s again", storage.channel)
                    outage_logged = False
                    delay = _RECONNECT_FIRST_S
                    self._on_change(True)  # whatever committed while we were not listening
                    next_ping = time.monotonic() + _PING_S
                    while not self._stop.is_set():
                        asked = False
                        # One batch at a time (stop_after): a batch is yielded whole, so nothing
                        # that came with a question is dropped by leaving to answer it; statements
                        # run only between batches, outside the generator.
                        wait_s = max(0.0, next_ping - time.monotonic())
                        for notify in conn.notifies(timeout=wait_s, stop_after=1):
                            if notify.payload == self._stop_token:
                                return
                            sender, _, kind = notify.payload.partition(":")
                            if sender == storage._token or notify.payload == self._state_token:
                                continue  # the state token: LISTEN below
                            if kind == _WATCHING:
                                storage._state_watched_until = time.monotonic() + _WATCH_TTL_S
                            elif kind == _ASKING:
                                asked = True
                            else:
                                self._on_change(kind != _STATE)
                        if self._stop.is_set():
                            return
                        if self._want_state and not self._hears_state.is_set():
                            self._listen_to_state_changes(conn, listen_state)
                        elif self._hears_state.is_set() and (asked or time.monotonic() >= next_ping):
                            self._say_watching(conn)  # also checks the connection, as a ping
                            next_ping = time.monotonic() + _PING_S
                        elif time.monotonic() >= next_ping:
                            conn.execute(_Q["ping"])
                            next_ping = time.monotonic() + _PING_S
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                if not outage_logged:
                    log.warning(
                        "lost the notification connection (%s); polling and reconnecting with backoff",
                        str(exc).strip() or type(exc).__name__,
                    )
                    outage_logged = True
            except Exception:  # never let the thread die silently
                log.exception("listener failed; reconnecting")
            finally:
                self.connected = False
                self._hears_state.clear()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, _RECONNECT_MAX_S)

    def close(self) -> None:
        self._stop.set()
        if self.connected:
            try:  # wake the thread at once instead of at its next ping
                with self._storage._pool.connection(timeout=2) as conn:
                    conn.execute(
                        _Q["notify"], {"channel": self._storage.channel, "payload": self._stop_token}
                    )
            except Exception:  # the pool is closed or the server gone: the ping timeout ends it
                pass
        self._thread.join(timeout=_PING_S + 2)
