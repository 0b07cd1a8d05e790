"""WorkManager: the one front door to enqueue, observe, cancel and run work."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

from workmanager import errors, faults
from workmanager.clock import to_ms
from workmanager.config import Configuration
from workmanager.continuation import CombineContinuationsWorker, WorkContinuation, one_time_requests
from workmanager.engine import enqueue as graph
from workmanager.engine import records
from workmanager.engine.changes import ChangeFeed, ChangeWatcher
from workmanager.engine.constraints import NONE_MET, ConstraintTrackers, FixedTracker, default_trackers
from workmanager.engine.dispatcher import Engine
from workmanager.info import State, StopReason, UpdateResult, WorkInfo, WorkQuery
from workmanager.requests import (
    ExistingPeriodicWorkPolicy,
    ExistingWorkPolicy,
    OneTimeWorkRequest,
    OutOfQuotaPolicy,
    PeriodicWorkRequest,
    WorkRequest,
    check_label,
)
from workmanager.storage import open_storage
from workmanager.storage.base import NewWork, Storage, Transaction
from workmanager.worker import DelegatingWorkerFactory, ListenableWorker, WorkerFactory, WorkerRegistry

__all__ = ["WorkManager"]

log = logging.getLogger("workmanager")

W = TypeVar("W", bound=type[ListenableWorker])
T = TypeVar("T")

_LAST_CANCEL_ALL = "last_cancel_all_time"


def default_database() -> str:
    """``$WORKMANAGER_DATABASE``, else ``work.db`` in the user data folder."""
    env = os.environ.get("WORKMANAGER_DATABASE")
    if env:
        return env
    import platformdirs

    folder = Path(platformdirs.user_data_dir("workmanager", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "work.db")


class WorkManager:
    """Persistent background work in a SQLite file (a path, ``sqlite:///...`` or ``:memory:``).

    >>> wm = WorkManager(":memory:")
    >>> wm.get_work_info_by_id(uuid.uuid4()) is None
    True
    """

    _instance: ClassVar[WorkManager | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        database: str | os.PathLike[str] | None = None,
        *,
        workers: Iterable[type[ListenableWorker]] = (),
        configuration: Configuration | None = None,
        _inline: bool = False,
    ) -> None:
        self.configuration = configuration or Configuration()
        self._clock = self.configuration.clock
        self._registry = WorkerRegistry()
        for worker in workers:
            self._registry.register(worker)
        self._registry.register(CombineContinuationsWorker)  # the hidden join of combine()
        custom = self.configuration.worker_factory
        self._factory: WorkerFactory = (
            self._registry if custom is None else DelegatingWorkerFactory([custom, self._registry])
        )
        self.database = os.fspath(database) if database is not None else default_database()
        self._storage: Storage = open_storage(self.database, self.configuration)
        self._feed = ChangeFeed()
        self._watcher: ChangeWatcher | None = None
        self._inline = _inline
        self._engine = Engine(
            self._storage,
            self.configuration,
            self._factory,
            self._runnable_names,
            self._feed,
            self._constraint_trackers(_inline),
        )
        self._state_lock = threading.Lock()
        self._started = False
        self._closed = False

    def _constraint_trackers(self, inline: bool) -> ConstraintTrackers:
        trackers = self.configuration.constraint_trackers
        if trackers is None:
            if inline:
                # As Android's test driver: constraints are unmet until set_all_constraints_met().
                trackers = (FixedTracker(**{f: False for f in NONE_MET.sql_fields()}),)
            else:
                folder = (
                    os.path.dirname(os.path.abspath(self.database)) if self.database != ":memory:" else "."
                )
                trackers = tuple(default_trackers(folder))
        return ConstraintTrackers(
            trackers, poll_interval_s=self.configuration.constraint_poll_interval.total_seconds()
        )

    # -- the process-wide default ---------------------------------------------------------------

    @classmethod
    def initialize(cls, database: str | os.PathLike[str] | None = None, **kwargs: Any) -> WorkManager:
        """Create the process-wide instance; raises if one exists."""
        with cls._instance_lock:
            if cls._instance is not None:
                raise RuntimeError("WorkManager is already initialized; use WorkManager.get_instance()")
            cls._instance = cls(database, **kwargs)
            return cls._instance

    @classmethod
    def get_instance(cls) -> WorkManager:
        """The process-wide instance; created on first use from ``$WORKMANAGER_DATABASE``
        or the user data folder."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    # -- workers ---------------------------------------------------------------------------------

    def register(self, worker: W) -> W:
        """Make a worker class runnable by its ``name``; usable as a class decorator."""
        return self._registry.register(worker)

    def _runnable_names(self) -> list[str] | None:
        known = self._factory.known_names()
        return None if known is None else list(known)

    def _check_worker(self, request: WorkRequest) -> None:
        custom = request.constraints.custom
        unknown = custom - self._engine.trackers.state.custom_known if custom else custom
        if unknown and not self._inline:  # the test manager leaves them unmet until declared met
            raise ValueError(
                f"constraints.custom: no constraint tracker answers for {sorted(unknown)}; register one in "
                "Configuration(constraint_trackers=...) whose read() returns those names"
            )
        if self.configuration.worker_factory is not None:
            return  # a custom factory may create names we cannot list
        registered = self._registry.get(request.worker_name)
        if registered is None:
            raise errors.WorkerNotRegisteredError(
                f"worker {request.worker_name!r} is not registered with this WorkManager; "
                f"pass it in workers=[...] or call wm.register(...) (registered: "
                f"{sorted(self._registry.known_names() - {CombineContinuationsWorker.name}) or 'none'})"
            )
        if request.worker_class is not None and registered is not request.worker_class:
            raise errors.WorkerNotRegisteredError(
                f"worker name {request.worker_name!r} is registered to another class "
                f"({registered.__module__}.{registered.__qualname__})"
            )

    # -- enqueue ---------------------------------------------------------------------------------

    def enqueue(self, requests: WorkRequest | Sequence[WorkRequest], *, connection: Any = None) -> None:
        """Enqueue one request or a list, in one transaction; durable when it returns.

        ``connection``: (PostgreSQL) the application's own open psycopg connection; the work is
        written inside its current transaction, so it exists if and only if that commits.
        """
        if isinstance(requests, WorkRequest):  # one request: no list to check for repeats
            self._check_worker(requests)
            batch = [requests]
        else:
            batch = list(requests)
            if not batch:
                raise ValueError("enqueue needs at least one request, got an empty list")
            seen: set[int] = set()  # the ids' ints: UUID.__hash__ is Python code
            for request in batch:
                if not isinstance(request, WorkRequest):
                    raise ValueError(f"enqueue takes WorkRequests, got {type(request).__name__}")
                key = request.id.int
                if key in seen:
                    raise ValueError(f"request {request.id} appears twice in one enqueue")
                seen.add(key)
                self._check_worker(request)
        now = self._clock.now_ms()
        config = self.configuration
        if connection is None and not self._inline and not _may_drop_out_of_quota(batch):
            # Nothing to read or decide first: the storage's shortest way to insert. A batch's
            # rows are built as the storage writes them (PostgreSQL's COPY streams them).
            faults.hit("enqueue.before_commit")  # one statement here: before it is before commit
            if len(batch) == 1:
                self._storage.work_insert_alone([records.new_work(batch[0], now=now, config=config)])
            else:
                self._storage.work_insert_stream(
                    len(batch), (records.new_work(r, now=now, config=config) for r in batch)
                )
            faults.hit("enqueue.after_commit")
            self._changed()
            return
        self._insert_in_transaction([records.new_work(r, now=now, config=config) for r in batch], connection)

    def _drop_out_of_quota(self, tx: Transaction, rows: list[NewWork]) -> list[NewWork]:
        """Expedited requests with OutOfQuotaPolicy.DROP_WORK_REQUEST are not enqueued while the
        expedited quota is used up (Android: "no work requests are enqueued")."""
        drop = OutOfQuotaPolicy.DROP_WORK_REQUEST.value
        if not any(r.expedited and r.out_of_quota_policy == drop for r in rows):
            return rows
        window_start = rows[0].created_at - to_ms(self.configuration.expedited_quota_window)
        if tx.expedited_usage_since(window_start) < to_ms(self.configuration.expedited_quota):
            return rows
        kept = [r for r in rows if not (r.expedited and r.out_of_quota_policy == drop)]
        log.info("expedited quota used up: dropped %d request(s) (DROP_WORK_REQUEST)", len(rows) - len(kept))
        return kept

    def _transaction(self, connection: Any) -> AbstractContextManager[Transaction]:
        """A transaction of our own, or one inside the caller's connection (transactional enqueue)."""
        if connection is None:
            return self._storage.transaction()
        transaction_on = getattr(self._storage, "transaction_on", None)
        if transaction_on is None:
            raise ValueError(
                "connection= needs a PostgreSQL database; this WorkManager uses " + repr(self.database)
            )
        return transaction_on(connection)  # type: ignore[no-any-return]

    def _insert_in_transaction(self, rows: list[NewWork], connection: Any) -> None:
        """Insert in a transaction of ours or the caller's, after what must be read first
        (the expedited quota) and before what must follow (the test driver's first period)."""
        with self._transaction(connection) as tx:
            rows = self._drop_out_of_quota(tx, rows)
            if not rows:
                return
            tx.work_insert(rows)
            if self._inline:
                # Android's test driver runs a periodic request's first period at enqueue
                # unless it has an initial delay: its flex offset is not waited for.
                for row in rows:
                    if row.interval_ms and not row.initial_delay_ms and row.state == State.ENQUEUED.value:
                        tx.work_set_next_run_time_if_enqueued(row.id, row.created_at)
            faults.hit("enqueue.before_commit")
        faults.hit("enqueue.after_commit")
        self._changed()

    def _changed(self) -> None:
        self._feed.bump()
        if self._inline:
            self._engine.run_until_idle()

    # -- chains, unique work and updates ---------------------------------------------------------

    def begin_with(self, requests: OneTimeWorkRequest | Sequence[OneTimeWorkRequest]) -> WorkContinuation:
        """Start a chain; nothing is written until its ``enqueue()``."""
        batch = one_time_requests(requests, "begin_with")
        if not batch:
            raise ValueError("begin_with needs at least one OneTimeWorkRequest, got an empty list")
        return WorkContinuation(self, batch)

    def begin_unique_work(
        self,
        name: str,
        policy: ExistingWorkPolicy,
        requests: OneTimeWorkRequest | Sequence[OneTimeWorkRequest],
    ) -> WorkContinuation:
        """Start a chain under a unique name; ``policy`` says what happens to the work that already
        carries the name (applied at ``enqueue()``)."""
        _check_name(name)
        if not isinstance(policy, ExistingWorkPolicy):
            raise ValueError(f"policy must be an ExistingWorkPolicy, got {policy!r}")
        batch = one_time_requests(requests, "begin_unique_work")
        if not batch:
            raise ValueError("begin_unique_work needs at least one OneTimeWorkRequest, got an empty list")
        return WorkContinuation(self, batch, name=name, policy=policy)

    def enqueue_unique_work(
        self,
        name: str,
        policy: ExistingWorkPolicy,
        requests: OneTimeWorkRequest | Sequence[OneTimeWorkRequest],
        *,
        connection: Any = None,
    ) -> None:
        """Enqueue one-time work under a unique name (REPLACE, KEEP, APPEND, APPEND_OR_REPLACE).

        ``connection``: as for :meth:`enqueue`."""
        continuation = self.begin_unique_work(name, policy, requests)
        if connection is None:
            continuation.enqueue()
        else:
            self._enqueue_continuation(continuation, connection)

    def enqueue_unique_periodic_work(
        self,
        name: str,
        policy: ExistingPeriodicWorkPolicy,
        request: PeriodicWorkRequest,
        *,
        connection: Any = None,
    ) -> None:
        """Enqueue periodic work under a unique name: KEEP, UPDATE, CANCEL_AND_REENQUEUE (and its
        deprecated alias REPLACE), as Android's ExistingPeriodicWorkPolicy.

        ``connection``: as for :meth:`enqueue`."""
        _check_name(name)
        if not isinstance(policy, ExistingPeriodicWorkPolicy):
            raise ValueError(f"policy must be an ExistingPeriodicWorkPolicy, got {policy!r}")
        if not isinstance(request, PeriodicWorkRequest):
            raise ValueError(
                f"enqueue_unique_periodic_work takes a PeriodicWorkRequest, got {type(request).__name__}"
            )
        self._check_worker(request)
        if policy is ExistingPeriodicWorkPolicy.UPDATE:
            self._write(lambda tx, now: self._update_unique_periodic(tx, name, request, now), connection)
            return
        keep = policy is ExistingPeriodicWorkPolicy.KEEP
        node = graph.Node(
            (request,), name=name, policy=ExistingWorkPolicy.KEEP if keep else ExistingWorkPolicy.REPLACE
        )
        self._write(
            lambda tx, now: graph.apply_graph(tx, [node], now=now, config=self.configuration), connection
        )

    def _update_unique_periodic(
        self, tx: Transaction, name: str, request: PeriodicWorkRequest, now: int
    ) -> graph.Enqueued:
        """Android's WorkerUpdater.enqueueUniquelyNamedPeriodic."""
        tx.uniquename_lock(name, str(request.id))
        rows = tx.workname_states(name)
        if len(rows) > 1:
            raise ValueError(f"cannot apply the UPDATE policy to a chain of work: {name!r} names {len(rows)}")
        if not rows:
            node = graph.Node((request,), name=name, policy=ExistingWorkPolicy.KEEP)
            return graph.apply_graph(tx, [node], now=now, config=self.configuration)
        work_id, state, _ = rows[0]
        target = tx.work_update_target(work_id)
        if target is not None and not target.schedule.is_periodic:
            raise ValueError(
                f"cannot update one-time work to periodic work: {name!r} names one-time work {work_id}"
            )
        if state == WorkInfo.State.CANCELLED.value:
            node = graph.Node((request,), name=name, policy=ExistingWorkPolicy.REPLACE)
            return graph.apply_graph(tx, [node], now=now, config=self.configuration)
        # The existing work keeps its id and its period; finished work: NOT_APPLIED, silently.
        graph.update(tx, work_id, request, now=now, config=self.configuration)
        return graph.Enqueued()

    def update_work(self, request: WorkRequest) -> UpdateResult:
        """Put ``request``'s spec over the enqueued work with its id (Android's updateWork).

        Keeps the work's state, run attempts, enqueue time and period count; ``generation``
        goes up by one. NOT_APPLIED for finished work; APPLIED_FOR_NEXT_RUN while it runs
        (the run goes on with the old spec, the next one uses the new); APPLIED_IMMEDIATELY
        otherwise. Raises WorkNotFoundError for unknown work, ValueError for a change of type.
        """
        if not isinstance(request, WorkRequest):
            raise ValueError(f"update_work takes a WorkRequest, got {type(request).__name__}")
        self._check_worker(request)
        outcome: list[UpdateResult | None] = []

        def apply(tx: Transaction, now: int) -> graph.Enqueued:
            outcome.append(graph.update(tx, str(request.id), request, now=now, config=self.configuration))
            return graph.Enqueued()

        self._write(apply)
        if outcome[0] is None:
            raise errors.WorkNotFoundError(f"cannot update work {request.id}: it does not exist")
        return outcome[0]

    def _enqueue_continuation(self, continuation: WorkContinuation, connection: Any = None) -> None:
        """Write a continuation and its parents not enqueued yet, in one transaction."""
        steps = continuation.graph()
        nodes = []
        for step, prerequisites in steps:
            for request in step.requests:
                self._check_worker(request)
            nodes.append(graph.Node(step.requests, prerequisites, step.name, step.policy))
        self._write(
            lambda tx, now: graph.apply_graph(tx, nodes, now=now, config=self.configuration), connection
        )
        for step, _ in steps:
            step._mark_enqueued()

    def _write(
        self, apply: Callable[[Transaction, int], graph.Enqueued], connection: Any = None
    ) -> graph.Enqueued:
        """Run ``apply`` in one transaction; then stop what it cancelled here and wake the engine."""
        now = self._clock.now_ms()
        with self._transaction(connection) as tx:
            done = apply(tx, now)
            faults.hit("enqueue.before_commit")
        faults.hit("enqueue.after_commit")
        running_here = [work_id for work_id, runner in done.cancelled if runner == self._engine.runner_id]
        if running_here:
            self._engine.stop_work(running_here, StopReason.CANCELLED_BY_APP)
        self._changed()
        return done

    # -- queries ---------------------------------------------------------------------------------

    def get_work_info_by_id(self, id: uuid.UUID) -> WorkInfo | None:
        """The work's current WorkInfo, or None when unknown or pruned."""
        row = self._storage.work_info_by_id(str(_uuid(id)))
        return None if row is None else records.work_info(row)

    def get_work_infos_by_tag(self, tag: str) -> list[WorkInfo]:
        return [records.work_info(r) for r in self._storage.work_info_by_tag(tag)]

    def get_work_infos_for_unique_work(self, name: str) -> list[WorkInfo]:
        return [records.work_info(r) for r in self._storage.work_info_by_name(name)]

    def get_work_infos(self, query: WorkQuery) -> list[WorkInfo]:
        rows = self._storage.work_info_query(
            ids=[str(i) for i in query.ids] or None,
            tags=list(query.tags) or None,
            names=list(query.unique_work_names) or None,
            states=[s.value for s in query.states] or None,
        )
        return [records.work_info(r) for r in rows]

    def get_last_cancel_all_time_ms(self) -> int:
        """When cancel_all_work last ran (epoch ms), 0 if never."""
        return self._storage.preference_get(_LAST_CANCEL_ALL) or 0

    def await_work(self, id: uuid.UUID, timeout: float | None = None) -> WorkInfo:
        """Block until the work is finished; return its WorkInfo.

        Raises WorkNotFoundError for unknown work and TimeoutError after ``timeout`` seconds.
        """
        self._ensure_watcher()
        # Waiting happens in real time, whatever clock schedules the work.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self._feed.version
            info = self.get_work_info_by_id(id)
            if info is None:
                raise errors.WorkNotFoundError(f"no work with id {id}")
            if info.state.is_finished:
                return info
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"work {id} is still {info.state.name} after {timeout} s")
            self._feed.wait(seen, remaining if remaining is not None else 1.0)

    # -- flows -----------------------------------------------------------------------------------

    async def _flow(self, query: Callable[[], T]) -> AsyncIterator[T]:
        # In a thread: the first call may wait for the PostgreSQL listener to join the channel
        # of changes of state (a round trip), which must not block the caller's event loop.
        await asyncio.to_thread(self._ensure_watcher)
        last: Any = _MISSING
        while True:
            seen = self._feed.version
            value = await asyncio.to_thread(query)
            if value != last:
                last = value
                yield value
            await self._feed.wait_async(seen, timeout=1.0)

    def get_work_info_by_id_flow(self, id: uuid.UUID) -> AsyncIterator[WorkInfo | None]:
        """Emits the WorkInfo now and on every change (None while unknown)."""
        return self._flow(lambda: self.get_work_info_by_id(id))

    def get_work_infos_by_tag_flow(self, tag: str) -> AsyncIterator[list[WorkInfo]]:
        return self._flow(lambda: self.get_work_infos_by_tag(tag))

    def get_work_infos_for_unique_work_flow(self, name: str) -> AsyncIterator[list[WorkInfo]]:
        return self._flow(lambda: self.get_work_infos_for_unique_work(name))

    def get_work_infos_flow(self, query: WorkQuery) -> AsyncIterator[list[WorkInfo]]:
        return self._flow(lambda: self.get_work_infos(query))

    # -- cancel and prune ------------------------------------------------------------------------

    def _cancel(self, roots: Callable[[Any], list[str]], *, record_cancel_all: bool = False) -> None:
        now = self._clock.now_ms()
        with self._storage.transaction() as tx:
            ids = roots(tx)
            cancelled = tx.work_cancel_tree(ids, now) if ids else []
            if record_cancel_all:
                tx.preference_set(_LAST_CANCEL_ALL, now)
        running_here = [work_id for work_id, runner in cancelled if runner == self._engine.runner_id]
        if running_here:
            self._engine.stop_work(running_here, StopReason.CANCELLED_BY_APP)
        self._feed.bump()

    def cancel_work_by_id(self, id: uuid.UUID) -> None:
        """Cancel the work and every dependent; a running worker is asked to stop."""
        work_id = str(_uuid(id))
        self._cancel(lambda tx: [work_id])

    def cancel_all_work_by_tag(self, tag: str) -> None:
        self._cancel(lambda tx: tx.work_unfinished_ids(tag=tag))

    def cancel_unique_work(self, name: str) -> None:
        self._cancel(lambda tx: tx.work_unfinished_ids(name=name))

    def cancel_all_work(self) -> None:
        self._cancel(lambda tx: tx.work_unfinished_ids(), record_cancel_all=True)

    def prune_work(self) -> int:
        """Delete all finished work whose dependents are finished, ignoring keep_results_for.

        Returns how many were deleted."""
        with self._storage.transaction() as tx:
            deleted = tx.work_prune_finished(older_than=None)
        self._feed.bump()
        return deleted

    # -- running work in this process ------------------------------------------------------------

    def _ensure_watcher(self, *, state_changes: bool = True) -> None:
        """Hear other processes' commits. ``state_changes``: their claims and successes too,
        which WorkInfo observers wait for and dispatchers need not hear (PostgreSQL sends them
        on a channel of their own)."""
        with self._state_lock:
            if self._watcher is None and not self._closed:
                self._watcher = ChangeWatcher(
                    self._feed,
                    self._storage.data_changed,
                    list(self._storage.watch_paths()),
                    self.configuration.poll_interval.total_seconds(),
                    listen=getattr(self._storage, "listen", None),  # PostgreSQL: LISTEN/NOTIFY
                    foreign_work_changed=getattr(self._storage, "foreign_work_changed", None),  # SQLite
                )
        if state_changes:
            want_state_changes = getattr(self._storage, "want_state_changes", None)  # PostgreSQL
            if want_state_changes is not None:
                want_state_changes()  # at once after the first time

    def start(self) -> None:
        """Run work in this process (threads for Worker, one event loop for CoroutineWorker)."""
        with self._state_lock:
            if self._closed:
                raise RuntimeError("this WorkManager is closed")
            if self._started or self._inline:
                return
            self._started = True
        self._ensure_watcher(state_changes=False)
        self._engine.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop taking work; running work gets ``grace`` seconds (default
        Configuration.shutdown_grace) to finish, then goes back to ENQUEUED."""
        with self._state_lock:
            if not self._started:
                return
            self._started = False
        grace_s = self.configuration.shutdown_grace.total_seconds() if grace is None else grace
        self._engine.stop(grace_s)

    @property
    def is_running(self) -> bool:
        return self._started

    def close(self) -> None:
        """Stop (if started) and close the database."""
        self.stop()
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()
        self._engine.stop(0)
        self._storage.close()

    def __enter__(self) -> WorkManager:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WorkManager({self.database!r})"

    # -- asyncio twins ---------------------------------------------------------------------------

    async def enqueue_async(self, requests: WorkRequest | Sequence[WorkRequest]) -> None:
        await asyncio.to_thread(self.enqueue, requests)

    async def enqueue_unique_work_async(
        self,
        name: str,
        policy: ExistingWorkPolicy,
        requests: OneTimeWorkRequest | Sequence[OneTimeWorkRequest],
    ) -> None:
        await asyncio.to_thread(self.enqueue_unique_work, name, policy, requests)

    async def enqueue_unique_periodic_work_async(
        self, name: str, policy: ExistingPeriodicWorkPolicy, request: PeriodicWorkRequest
    ) -> None:
        await asyncio.to_thread(self.enqueue_unique_periodic_work, name, policy, request)

    async def update_work_async(self, request: WorkRequest) -> UpdateResult:
        return await asyncio.to_thread(self.update_work, request)

    async def get_work_info_by_id_async(self, id: uuid.UUID) -> WorkInfo | None:
        return await asyncio.to_thread(self.get_work_info_by_id, id)

    async def get_work_infos_by_tag_async(self, tag: str) -> list[WorkInfo]:
        return await asyncio.to_thread(self.get_work_infos_by_tag, tag)

    async def get_work_infos_for_unique_work_async(self, name: str) -> list[WorkInfo]:
        return await asyncio.to_thread(self.get_work_infos_for_unique_work, name)

    async def get_work_infos_async(self, query: WorkQuery) -> list[WorkInfo]:
        return await asyncio.to_thread(self.get_work_infos, query)

    async def await_work_async(self, id: uuid.UUID, timeout: float | None = None) -> WorkInfo:
        """Wait (without blocking the loop) until the work is finished."""

        async def finished() -> WorkInfo:
            async for info in self.get_work_info_by_id_flow(id):
                if info is None:
                    raise errors.WorkNotFoundError(f"no work with id {id}")
                if info.state.is_finished:
                    return info
            raise AssertionError("unreachable")

        try:
            return await asyncio.wait_for(finished(), timeout)
        except TimeoutError:
            raise TimeoutError(f"work {id} did not finish within {timeout} s") from None

    async def cancel_work_by_id_async(self, id: uuid.UUID) -> None:
        await asyncio.to_thread(self.cancel_work_by_id, id)

    async def cancel_all_work_by_tag_async(self, tag: str) -> None:
        await asyncio.to_thread(self.cancel_all_work_by_tag, tag)

    async def cancel_unique_work_async(self, name: str) -> None:
        await asyncio.to_thread(self.cancel_unique_work, name)

    async def cancel_all_work_async(self) -> None:
        await asyncio.to_thread(self.cancel_all_work)

    async def prune_work_async(self) -> int:
        return await asyncio.to_thread(self.prune_work)

    async def start_async(self) -> None:
        await asyncio.to_thread(self.start)

    async def get_last_cancel_all_time_ms_async(self) -> int:
        return await asyncio.to_thread(self.get_last_cancel_all_time_ms)

    async def stop_async(self, grace: float | None = None) -> None:
        await asyncio.to_thread(self.stop, grace)


_MISSING = object()


def _check_name(name: str) -> None:
    check_label("a unique work name", name)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValueError(f"not a work id (uuid): {value!r}") from None


def _may_drop_out_of_quota(requests: list[WorkRequest]) -> bool:
    """Whether any request is expedited work that OutOfQuotaPolicy.DROP_WORK_REQUEST may drop."""
    for request in requests:  # a loop, not any(): no generator for the common one request
        if request.expedited and request.out_of_quota_policy is OutOfQuotaPolicy.DROP_WORK_REQUEST:
            return True
    return False
