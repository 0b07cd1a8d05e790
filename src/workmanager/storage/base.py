"""The narrow interface between the engine and a storage backend.

One method per intent, keyword arguments, frozen rows back. Every backend implements
the same names with the statements in its own ``queries.sql``. Writes happen only in
a :class:`Transaction`; a state change is one statement guarded by the state it
expects, returning False when the race was lost.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from workmanager.requests import BackoffPolicy

#: next_run_time of work that is not waiting to run (BLOCKED, RUNNING, finished).
NEVER = 2**62

#: Which index drives a page of the dashboard's work table (Storage.work_page): "id" walks
#: the primary key, the others start from that filter's own index.
PageIndex = Literal["id", "state", "tag", "name"]

#: The dashboard's work table is newest first by id, a page below a cursor (the last id shown)
#: at a time. Generated ids are UUIDv7, whose canonical text sorts in creation order; an id the
#: user set (``OneTimeWorkRequest(..., id=...)``) sorts by its text like any other. The first
#: page has no cursor (None: it starts at the largest id; no constant sorts above every uuid in
#: every collation: Danish reads "aa" as "å", after "g"). A walk with no floor goes down to
#: PAGE_BOTTOM, the empty text, which sorts before every id in every collation.
PAGE_BOTTOM = ""

__all__ = [
    "NEVER",
    "PAGE_BOTTOM",
    "ClaimedWork",
    "InfoRow",
    "NewWork",
    "PageIndex",
    "RunnerRow",
    "ScheduleFields",
    "Storage",
    "Transaction",
    "UpdateTarget",
    "claimed_work",
]


@dataclass(frozen=True)
class ScheduleFields:
    """The columns the next-run formula reads."""

    interval_ms: int  # 0: one-time work
    flex_ms: int
    initial_delay_ms: int
    backoff_policy: BackoffPolicy
    backoff_delay_ms: int
    last_enqueue_time: int  # -1: never enqueued
    period_count: int
    run_attempt_count: int
    next_schedule_time_override: int | None
    #: periodic on a cron schedule (read in cron_timezone) instead of every interval_ms
    cron: str | None = None
    cron_timezone: str | None = None

    @property
    def is_periodic(self) -> bool:
        return self.interval_ms > 0


class NewWork(NamedTuple):
    """One row to insert, with its tags, unique names and prerequisites.

    A named tuple, not a dataclass: one is built per enqueued request, and its first
    fields are the INSERT's parameters in order.
    """

    id: str
    worker_name: str
    state: int
    input: str
    input_merger: str
    initial_delay_ms: int
    interval_ms: int
    flex_ms: int
    required_network_type: int
    requires_charging: int
    requires_battery_not_low: int
    requires_device_idle: int
    requires_storage_not_low: int
    backoff_policy: int
    backoff_delay_ms: int
    last_enqueue_time: int
    next_run_time: int
    minimum_retention_ms: int
    expedited: int
    out_of_quota_policy: int
    stop_reason: int
    created_at: int
    finished_at: int | None
    cron: str | None = None
    cron_timezone: str | None = None
    custom_constraints: str | None = None  # JSON list of names, or None
    trigger_paths: str | None = None  # JSON list of paths, or None
    trigger_update_delay_ms: int = 0
    trigger_max_delay_ms: int = 0
    tags: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    prerequisites: tuple[str, ...] = ()


#: NewWork's leading fields that are the INSERT's parameters (all but tags, names, prerequisites).
_INSERT_FIELDS = len(NewWork._fields) - 3


def insert_params(row: NewWork) -> tuple[Any, ...]:
    """The work INSERT's parameters for ``row``, in both backends' column order: its leading
    fields, then the tags as JSON."""
    return (*row[:_INSERT_FIELDS], tags_to_json(row.tags))


#: A plain row's values of NewWork[6:13] (interval, flex, the five constraint columns) and
#: NewWork[22:27] (finished_at, cron, its time zone, custom constraints, trigger paths):
#: each column's default.
_PLAIN_SCHEDULE = (0, 0, 0, 0, 0, 0, 0)
_PLAIN_EXTRAS = (None, None, None, None, None)


def plain_insert_params(row: NewWork) -> tuple[Any, ...] | None:
    """The parameters of the ``work_insert_plain`` statement, for a row whose other columns
    hold their defaults (one-time work without constraints or triggers, not born finished:
    most rows), else None. Fewer values to bind, and no None among them: Python's sqlite3
    looks up an adapter for every None it binds (two failed attribute lookups), which was a
    tenth of an enqueue's instructions."""
    if row[6:13] != _PLAIN_SCHEDULE or row[22:27] != _PLAIN_EXTRAS:
        return None
    return (*row[:6], *row[13:22], row[27], row[28], tags_to_json(row.tags))


def worktag_rows(row: NewWork) -> Sequence[tuple[str, str]]:
    """The worktag rows of a work row: its tags but its worker's name, which the work row
    itself holds and the index by state and worker name finds (SQLite's claim index,
    PostgreSQL's workspec_state_worker). Most rows have only that tag: none, without a list."""
    tags = row.tags
    if len(tags) == 1 and tags[0] == row.worker_name:
        return ()
    return [(tag, row.id) for tag in tags if tag != row.worker_name]


@functools.lru_cache(maxsize=1024)
def tags_to_json(tags: tuple[str, ...]) -> str:
    """A tag tuple as the JSON list the tags column holds (the same few sets recur: each is
    encoded once)."""
    return json.dumps(tags)


@functools.lru_cache(maxsize=1024)
def tags_from_json(text: str | None) -> tuple[str, ...]:
    """A JSON list column as a tuple; cached, as a worker's runs mostly share their tags."""
    return tuple(json.loads(text)) if text else ()


class ClaimedWork(NamedTuple):
    """A row this process now runs, as the claim returned it.

    A named tuple, not a dataclass: one is built per claimed job, and a frozen dataclass's
    fifteen guarded attribute writes cost more than the rest of decoding its row.
    """

    id: str
    worker_name: str
    input: str
    input_merger: str
    run_attempt_count: int  # after the claim's increment
    generation: int
    interval_ms: int
    run_token: int
    tags: tuple[str, ...]
    has_prerequisites: bool
    #: (network type, charging, battery not low, idle, storage not low), as stored
    constraints: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    expedited: bool = False
    custom_constraints: frozenset[str] = frozenset()
    #: the paths whose change released this work (trigger_paths), if any
    triggered_paths: tuple[str, ...] = ()
    #: runs of this work lost with their process in a row: > 0 makes it a "suspect" (it may be
    #: what killed them), and a process runs at most one suspect at a time
    orphan_count: int = 0

    @property
    def is_periodic(self) -> bool:
        return self.interval_ms > 0


def claimed_work(row: Sequence[Any]) -> ClaimedWork:
    """A claim's returned row (both backends return the same columns) as ClaimedWork."""
    return ClaimedWork(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        tags_from_json(row[8]),
        bool(row[9]),
        (row[10], row[11], row[12], row[13], row[14]),
        bool(row[15]),
        _names_from_json(row[16]),
        tags_from_json(row[17]),
        row[18],
    )


@functools.lru_cache(maxsize=256)
def _names_from_json(text: str | None) -> frozenset[str]:
    """A JSON list column as a frozenset (custom constraint names: a few sets recur)."""
    return frozenset(json.loads(text)) if text else frozenset()


@dataclass(frozen=True)
class InfoRow:
    """The columns a WorkInfo is built from."""

    id: str
    state: int
    output: str
    progress: str | None
    run_attempt_count: int
    generation: int
    required_network_type: int
    requires_charging: int
    requires_battery_not_low: int
    requires_device_idle: int
    requires_storage_not_low: int
    initial_delay_ms: int
    interval_ms: int
    flex_ms: int
    next_run_time: int
    stop_reason: int
    tags: tuple[str, ...]
    #: JSON {"title", "text"} while long-running work runs
    foreground: str | None = None
    custom_constraints: tuple[str, ...] = ()


@dataclass(frozen=True)
class UpdateTarget:
    """The row update_work replaces: what it keeps and what guards the update."""

    state: int
    generation: int
    tags: tuple[str, ...]
    schedule: ScheduleFields
    next_run_time: int


@dataclass(frozen=True)
class TriggerWait:
    id: str
    trigger_paths: tuple[str, ...]
    triggered_paths: tuple[str, ...]


@dataclass(frozen=True)
class RunnerRow:
    id: str
    host: str
    boot_id: str
    pid: int
    process_started: float
    started_at: int
    heartbeat_at: int
    workers: str
    #: the host's monotonic clock (seconds) at the last heartbeat; 0: unknown
    heartbeat_mono: float = 0.0


class Transaction(Protocol):
    """Writes, and the reads that decide them, inside one database transaction."""

    @property
    def work_changed(self) -> bool:
        """After COMMIT: whether the transaction may have made work claimable or taken running
        work away (a "work change"); False when it only claimed work or recorded successes."""
        ...

    def work_insert(self, rows: list[NewWork]) -> None: ...
    def work_states_by_ids(self, ids: list[str]) -> dict[str, int]: ...
    def work_claim_available(
        self,
        *,
        now: int,
        limit: int,
        runner_id: str,
        run_token: int,
        names: list[str] | None,
        constraints: dict[str, Any] | None = None,
        constraints_met_ids: list[str] | None = None,
        expedited_only: bool = False,
        suspects: bool = True,
    ) -> list[ClaimedWork]:
        """``constraints``: the trackers' answers (ConstraintState.sql_params); None: all met.
        ``expedited_only``: claim only expedited work (which goes first).
        ``suspects``: whether the claim may take a suspect (work with orphan_count > 0); it
        never takes more than one, so False when this process already runs one."""
        ...

    def work_prerequisite_outputs(self, work_id: str) -> list[str]: ...
    def work_schedule_fields(self, work_id: str) -> ScheduleFields | None: ...
    def work_succeed_if_running(self, work_id: str, run_token: int, output: str, now: int) -> bool: ...
    def work_succeed_many(self, runs: list[tuple[str, int, str]], now: int) -> None:
        """work_succeed_if_running for each (id, run_token, output), in one batch. Its result is
        not reported: a run no longer ours is left alone, as one at a time."""
        ...

    def work_fail_if_running(self, work_id: str, run_token: int, output: str, now: int) -> bool: ...
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
    ) -> bool: ...
    def work_progress_set_if_running(self, work_id: str, run_token: int, progress: str) -> bool: ...
    def work_foreground_set_if_running(self, work_id: str, run_token: int, foreground: str) -> bool: ...
    def dependency_unblock(self, work_id: str, now: int) -> None: ...
    def dependency_unblock_many(self, work_ids: list[str], now: int) -> None: ...
    def dependency_fail_dependents(self, work_id: str, now: int) -> list[str]: ...
    def work_cancel_tree(self, ids: list[str], now: int) -> list[tuple[str, str | None]]: ...
    def work_unfinished_ids(self, *, tag: str | None = None, name: str | None = None) -> list[str]: ...
    def work_set_next_run_time_if_enqueued(self, work_id: str, next_run_time: int) -> bool: ...
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
    ) -> None: ...
    def runner_heartbeat(self, runner_id: str, now: int, mono: float = 0.0) -> bool:
        """Renew the lease (``mono``: the host's monotonic clock); False if the row is gone."""
        ...

    def runner_delete(self, runner_id: str) -> None: ...
    def runner_list(self) -> list[RunnerRow]: ...
    def work_running_runner_ids(self) -> list[str | None]: ...
    def work_rescue_runner(
        self, runner_id: str | None, *, now: int, max_orphaned_runs: int, lost_output: str
    ) -> list[tuple[str, int]]: ...
    def work_prune_finished(self, *, older_than: int | None) -> int: ...
    def work_release_unlaunched(self, runner_id: str, running: list[str], now: int) -> int:
        """This runner's RUNNING rows that are not in ``running`` go back to ENQUEUED; how many."""
        ...

    def preference_get(self, key: str) -> int | None: ...
    def preference_set(self, key: str, value: int) -> None: ...
    def expedited_usage_add(self, now: int, duration_ms: int) -> None: ...
    def work_trigger_waiting(self) -> list[TriggerWait]:
        """ENQUEUED work with trigger paths: what the trigger watcher must watch."""
        ...

    def work_trigger_fire(self, work_id: str, now: int, triggered_paths: str) -> bool:
        """A change under the work's paths: due after the update delay (bounded by the max delay)."""
        ...

    def expedited_usage_since(self, since: int) -> int:
        """Milliseconds of expedited running time recorded after ``since``."""
        ...

    def expedited_usage_prune(self, before: int) -> None: ...
    # -- unique work and continuations
    def uniquename_lock(self, name: str, chain: str) -> str:
        """Create or lock the name's guard row; return its live chain (``chain`` if new)."""
        ...

    def uniquename_set_chain(self, name: str, chain: str) -> None:
        """Start a new chain; the database refuses while rows of the old chain remain."""
        ...

    def workname_states(self, name: str) -> list[tuple[str, int, bool]]:
        """(id, state, has dependents) of every row with the name."""
        ...

    def work_delete(self, ids: list[str]) -> int: ...
    def work_update_target(self, work_id: str) -> UpdateTarget | None: ...
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
        """Put ``row``'s spec over the work if it is still in ``state`` at ``generation``."""
        ...


class Storage(Protocol):
    """A backend: transactions for writes, plain calls for reads."""

    url: str

    def transaction(self, *, durable: bool = True) -> AbstractContextManager[Transaction]:
        """A write transaction. ``durable=False``: its commit does not wait for the disk, so
        a crash of the database's machine (never of a process) may undo it. Only for claims:
        an undone claim is work back in ENQUEUED, run again (reliability.md G3: a rerun
        after the database was lost)."""
        ...

    def work_insert_alone(self, rows: list[NewWork]) -> None:
        """Transaction.work_insert in a transaction of its own (the common enqueue)."""
        ...

    def work_insert_stream(self, count: int, rows: Iterable[NewWork]) -> None:
        """work_insert_alone for ``count`` rows without unique names or prerequisites, taken
        from ``rows`` as they are written: a backend that streams a batch (PostgreSQL's COPY)
        builds each row while the server stores the ones before it. An error raised while
        rows are taken inserts none of them."""
        ...

    def work_info_by_id(self, work_id: str) -> InfoRow | None: ...
    def work_info_by_tag(self, tag: str) -> list[InfoRow]: ...
    def work_info_by_name(self, name: str) -> list[InfoRow]: ...
    def work_info_query(
        self,
        *,
        ids: list[str] | None,
        tags: list[str] | None,
        names: list[str] | None,
        states: list[int] | None,
    ) -> list[InfoRow]: ...
    def work_next_due(
        self,
        names: list[str] | None,
        constraints: dict[str, Any] | None = None,
        constraints_met_ids: list[str] | None = None,
        suspects: bool = True,
    ) -> int | None:
        """When the earliest waiting work this process can run becomes due; None: none waits.
        ``suspects``: as in work_claim_available (False: suspects do not count)."""
        ...

    def work_next_due_and_expedited(
        self,
        names: list[str] | None,
        constraints: dict[str, Any] | None = None,
        constraints_met_ids: list[str] | None = None,
        suspects: bool = True,
    ) -> tuple[int, bool] | None:
        """work_next_due, and whether any expedited work waits at all (runnable here or not)."""
        ...

    def work_owned_states(self, ids: list[str]) -> dict[str, tuple[int, int | None, int]]: ...
    def work_count_by_state(self) -> dict[int, int]: ...
    def work_oldest_waiting(self, limit: int) -> list[dict[str, Any]]:
        """Diagnostics: ENQUEUED work in due order (id, worker_name, next_run_time, constraints...)."""
        ...

    def work_trigger_waiting(self) -> list[TriggerWait]:
        """ENQUEUED work with trigger paths: what the trigger watcher must watch."""
        ...

    def work_waiting_worker_names(self) -> dict[str, int]:
        """Diagnostics: waiting work per worker name."""
        ...

    def work_list(
        self,
        *,
        state: int | None,
        limit: int,
        tag: str | None = None,
        name: str | None = None,
        worker: str | None = None,
        oldest_first: bool = False,
    ) -> list[dict[str, Any]]: ...
    def work_detail(self, work_id: str) -> dict[str, Any] | None: ...
    # -- the dashboard (reads only)
    def work_page(
        self,
        *,
        via: PageIndex,
        before: str | None,
        limit: int,
        state: int | None = None,
        tag: str | None = None,
        name: str | None = None,
        worker: str | None = None,
        floor: str = PAGE_BOTTOM,
    ) -> list[dict[str, Any]]:
        """Newest first by id, the page of ids below ``before`` (None: the first page): keyset
        pagination. ``via`` says which index drives the search: "id" walks the primary
        key down to ``floor`` (inclusive; fast unless a filter is rare), "state"/"tag"/"name"
        start from that filter's own index."""
        ...

    def work_page_floor(self, *, before: str | None, scan: int) -> str | None:
        """The id of the ``scan``-th row below ``before`` in id order (None: counting from the
        largest id, the first); None if fewer remain."""
        ...

    def work_count_upto(
        self, *, cap: int, state: int | None = None, tag: str | None = None, name: str | None = None
    ) -> int:
        """How many rows the one given filter matches, counting no further than ``cap``."""
        ...

    def work_graph(
        self, work_id: str, *, cap: int
    ) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
        """The dependency graph around the work, either way: (id, worker name, state) of up to
        ``cap`` nodes, and the (work, prerequisite) edges among them."""
        ...

    def work_unique_names(self, work_id: str) -> list[str]: ...
    def work_oldest_due(self) -> int | None:
        """The smallest next_run_time of ENQUEUED work (None: nothing waits)."""
        ...

    def runner_list(self) -> list[RunnerRow]: ...
    def work_running_runner_ids(self) -> list[str | None]: ...
    def preference_get(self, key: str) -> int | None: ...
    def data_changed(self) -> bool:
        """True when another connection committed since the last call (cheap)."""
        ...

    def watch_paths(self) -> Iterator[str]:
        """Files whose modification means another process may have committed."""
        ...

    def close(self) -> None: ...
