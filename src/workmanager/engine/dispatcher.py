"""The dispatcher: claims work up to the free slots, starts it, and persists how it ended.

One thread owns the loop. Each turn is one write transaction that records the
outcomes finished since the last turn (group commit) and claims as many runnable
rows as there are free slots. Between turns it sleeps until the next due time, a
finished run, or a change to the database (this process's or another's).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from workmanager import faults
from workmanager.clock import to_ms
from workmanager.config import Configuration
from workmanager.data import Data
from workmanager.engine import heap, recovery, runner, triggers
from workmanager.engine.changes import ChangeFeed
from workmanager.engine.constraints import ConstraintState, ConstraintTrackers
from workmanager.engine.states import Failed, Outcome, Stopped, apply_outcomes
from workmanager.info import StopReason
from workmanager.storage.base import ClaimedWork, Storage, Transaction
from workmanager.worker import (
    CoroutineWorker,
    ForegroundInfo,
    ListenableWorker,
    Result,
    Worker,
    WorkerFactory,
    WorkerRegistry,
)

log = logging.getLogger("workmanager.dispatcher")

#: Prune finished work this often while running (and once at start).
PRUNE_INTERVAL_MS = 60 * 60 * 1000


@dataclass
class _Run:
    claimed: ClaimedWork
    worker: ListenableWorker | None
    future: Future[Result] | None = None
    #: time.monotonic() when the run started; the execution timeout counts from here
    started: float = 0.0
    #: long-running work (set_foreground) is exempt from the execution timeout
    foreground: bool = False
    #: why the run was stopped before its worker was built (see _build_and_run)
    stopped_early: StopReason | None = None


class _RunThreads:
    """Threads that run plain Workers' ``do_work``: as many as have run at once, which the
    dispatcher bounds by its slots (it starts a run only into a free one).

    A ThreadPoolExecutor costs a Future (a Condition, a callback list) and a semaphore per
    call: 19 us of CPU per no-op job against 4 us here, measured on this machine. Jobs come
    from the dispatcher only, at most one per free slot, so each submit either takes an idle
    thread or starts one: none ever waits in the queue for a busy thread.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._started = 0

    def submit(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1  # that thread is spoken for
                start = False
            else:
                self._started += 1
                start = True
                number = self._started
        if start:
            threading.Thread(target=self._serve, name=f"{self._name}_{number}", daemon=True).start()
        self._queue.put(fn)

    def _serve(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            try:
                fn()  # the run catches what do_work raises
            except Exception:  # an injected fault, a bug: the thread must outlive it
                log.exception("a run thread's task raised")
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Idle threads end now, busy ones after their run (daemon threads: they never hold
        the interpreter open, as after a crash their work is taken over)."""
        with self._lock:
            count = self._started
        for _ in range(count):
            self._queue.put(None)


class _EventLoopThread:
    """One asyncio loop on a daemon thread, where CoroutineWorkers run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="workmanager-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class Engine:
    """Runs work for one WorkManager in this process."""

    def __init__(
        self,
        storage: Storage,
        config: Configuration,
        factory: WorkerFactory,
        runnable_names: Callable[[], list[str] | None],
        feed: ChangeFeed,
        trackers: ConstraintTrackers | None = None,
    ) -> None:
        self._storage = storage
        #: A backend's one-statement claim for turns that only claim (PostgreSQL), if any.
        self._claim_alone: Callable[..., list[ClaimedWork]] | None = getattr(
            storage, "work_claim_alone", None
        )
        self._config = config
        self._clock = config.clock
        self._factory = factory
        self._runnable_names = runnable_names
        self._feed = feed
        self.runner_id = uuid.uuid4().hex
        self._identity = recovery.ProcessIdentity.current()
        self._max_backoff_ms = to_ms(config.max_backoff)
        self._running: dict[str, _Run] = {}
        self._completions: collections.deque[tuple[ClaimedWork, Outcome]] = collections.deque()
        #: Running time (ms) of finished expedited runs, recorded with the next turn.
        self._expedited_used: collections.deque[int] = collections.deque()
        self._quota_ms = to_ms(config.expedited_quota)
        self._quota_window_ms = to_ms(config.expedited_quota_window)
        self._quota_ok = True
        self._quota_checked_at = float("-inf")
        self._quota_recorded = False
        self._wakeup = threading.Event()
        self._lock = threading.Lock()
        self._loop_thread: _EventLoopThread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._run_threads: _RunThreads | None = None
        #: Records finished runs on a connection of its own while the dispatcher claims (see
        #: _turn_overlapped); only for a storage whose writers do not queue behind one another.
        self._recorder: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._draining = False
        self._stopping = False
        self._next_due: int | None = 0
        #: Whether expedited work waited at the last look: if not, no expedited claim is tried.
        self._expedited_waiting = True
        #: After a claim made without asking (see _turn), the next look asks.
        self._must_ask = False
        #: Due work waits for a slot: the loop sleeps until a run finishes, not until it is due.
        self._waiting_for_slot = False
        self._checked_version = -1
        #: The last look for work left suspects out (this process ran one): when that run
        #: ends, look again, or a waiting suspect would wait for the next work change.
        self._suspects_left_out = False
        self._rescuer = recovery.Rescuer(
            storage,
            self._identity,
            self.runner_id,
            lease_ms=to_ms(config.lease_timeout),
            max_orphaned_runs=config.max_orphaned_runs,
            monotonic=time.monotonic,  # compared with the heartbeats' stamps (see _heartbeat)
        )
        self._pruner = recovery.Pruner(storage, threshold_ms=to_ms(config.prune_threshold))
        # Hourly, or twice per retention period when that is shorter: with a 60 s retention,
        # hourly pruning let finished work pile up for an hour (case 21).
        self._prune_interval_ms = max(1000, min(PRUNE_INTERVAL_MS, to_ms(config.prune_threshold) // 2))
        self._inline_depth = threading.local()
        self.trackers = trackers or ConstraintTrackers([])
        #: Work whose constraints count as met whatever the trackers say (the test driver).
        self.constraints_met_ids: set[str] = set()
        self._timeout_s = (
            None if config.max_execution_time is None else config.max_execution_time.total_seconds()
        )
        #: time.monotonic() when the last heartbeat the database confirmed was sent (_watch_lease).
        self._lease_renewed = time.monotonic()
        self._lease_watch_stop = threading.Event()

    # -- shared pieces -------------------------------------------------------------------------

    @property
    def event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = _EventLoopThread()
            return self._loop_thread.loop

    def _names(self) -> list[str] | None:
        names = self._runnable_names()
        return None if names is None else sorted(names)

    def _progress_updater(self, claimed: ClaimedWork) -> Callable[[uuid.UUID, Data], None]:
        def update(work_id: uuid.UUID, data: Data) -> None:
            data.check_size(self._config.max_data_bytes, "progress")
            with self._storage.transaction() as tx:
                ok = tx.work_progress_set_if_running(claimed.id, claimed.run_token, data.to_json())
            if ok:
                self._feed.bump()
            else:
                log.info("progress of %s dropped: this run no longer owns the work", claimed.id)

        return update

    def _constraint_args(self) -> dict[str, Any]:
        return {
            "constraints": self.trackers.state.sql_params(),
            "constraints_met_ids": sorted(self.constraints_met_ids),
        }

    def _foreground_updater(self, claimed: ClaimedWork) -> Callable[[uuid.UUID, ForegroundInfo], None]:
        def update(work_id: uuid.UUID, info: ForegroundInfo) -> None:
            with self._lock:
                run = self._running.get(claimed.id)
                if run is not None:
                    run.foreground = True  # exempt from the execution timeout from now on
            stored = json.dumps({"title": info.title, "text": info.text})
            with self._storage.transaction() as tx:
                ok = tx.work_foreground_set_if_running(claimed.id, claimed.run_token, stored)
            if ok:
                self._feed.bump()

        return update

    def _prepare(
        self, claimed: ClaimedWork, prerequisite_outputs: list[str], *, inline: bool
    ) -> _Run | Outcome:
        try:
            input_data = runner.merged_input(claimed, prerequisite_outputs)
            # In the try too: a row corrupted from outside (an id that is no uuid) must fail
            # alone, not the turn that claimed it (and every turn after).
            params = runner.params_for(claimed, input_data)
        except Exception as exc:
            log.exception("reading the input of %s failed", claimed.id)
            return Failed(runner.error_output(exc))
        params.background_executor = None if inline else self._executor
        params.progress_updater = self._progress_updater(claimed)
        params.foreground_updater = self._foreground_updater(claimed)
        built = runner.build_worker(claimed, params, self._factory)
        if not isinstance(built, ListenableWorker):
            return built
        params.event_loop = self.event_loop if _needs_loop(built) else None
        return _Run(claimed, built)

    def _start(self, run: _Run) -> Future[Result] | Outcome:
        assert run.worker is not None
        if _interrupted_at("run.before_user_fn", run.claimed):
            return _INTERRUPTED
        try:
            return run.worker.start_work()
        except Exception as exc:
            log.exception("start_work of %s raised", run.claimed.id)
            return Failed(runner.error_output(exc))

    def _apply(self, items: list[tuple[ClaimedWork, Outcome]], now: int) -> bool:
        """Finished runs in a transaction of their own; whether it made a work change."""
        with self._storage.transaction() as tx:
            self._apply_in(tx, items, now)
        return tx.work_changed

    def _apply_in(self, tx: Transaction, items: list[tuple[ClaimedWork, Outcome]], now: int) -> None:
        """Persist finished runs inside ``tx`` (several per transaction: a group commit)."""
        runs = [(c.id, c.run_token, c.is_periodic, outcome) for c, outcome in items]
        apply_outcomes(tx, runs, now=now, max_backoff_ms=self._max_backoff_ms)
        faults.hit("complete.before_commit", len(items))

    # -- inline mode (the test manager) --------------------------------------------------------

    def run_until_idle(self) -> None:
        """Run every runnable work to its end in this thread; used by the test manager."""
        depth = getattr(self._inline_depth, "value", 0)
        if depth:
            return  # a worker enqueued more work: the outer loop picks it up
        self._inline_depth.value = 1
        try:
            while self._run_one_inline():
                pass
        finally:
            self._inline_depth.value = 0

    def _run_one_inline(self) -> bool:
        now = self._clock.now_ms()
        token = random.getrandbits(62)
        with self._storage.transaction() as tx:
            claimed_list: list[ClaimedWork] = []
            for expedited_only in (True, False):  # expedited work first
                claimed_list = claimed_list or tx.work_claim_available(
                    now=now,
                    limit=1,
                    runner_id=self.runner_id,
                    run_token=token,
                    names=self._names(),
                    expedited_only=expedited_only,
                    **self._constraint_args(),
                )
            if not claimed_list:
                return False
            claimed = claimed_list[0]
            outputs = tx.work_prerequisite_outputs(claimed.id) if claimed.has_prerequisites else []
        self._feed.bump()
        prepared = self._prepare(claimed, outputs, inline=True)
        if isinstance(prepared, _Run):
            with self._lock:
                self._running[claimed.id] = prepared
            try:
                started = self._start(prepared)
                if isinstance(started, Future):
                    started_future: Future[Result] = started
                    _wait_quietly(started_future)
                    assert prepared.worker is not None
                    outcome = runner.outcome_of(
                        prepared.worker, started_future, max_data_bytes=self._config.max_data_bytes
                    )
                else:
                    outcome = started
            finally:
                with self._lock:
                    self._running.pop(claimed.id, None)
        else:
            outcome = prepared
        self._apply([(claimed, outcome)], self._clock.now_ms())
        self._feed.bump()
        return True

    # -- threaded mode -------------------------------------------------------------------------

    def start(self) -> None:
        """Register this process, take back work of dead ones, and start the dispatcher thread."""
        heap.keep_freed_heap()
        # The workers' background executor (WorkerParameters.background_executor), and the
        # threads that run plain Workers (a Worker that keeps the standard start_work).
        self._executor = ThreadPoolExecutor(
            self._config.max_concurrency, thread_name_prefix="workmanager-worker"
        )
        self._run_threads = _RunThreads("workmanager-worker-run")
        if self._claim_alone is not None:
            self._recorder = ThreadPoolExecutor(1, thread_name_prefix="workmanager-recorder")
        now = self._clock.now_ms()
        registering = time.monotonic()
        with self._storage.transaction() as tx:
            self._register(tx, now)
        self._lease_renewed = registering
        self._lease_watch_stop.clear()
        threading.Thread(target=self._watch_lease, name="workmanager-lease", daemon=True).start()
        if self._leads():
            self._rescuer.run_once(now)
            self._pruner.run_once(now)
        self._feed.add_listener(self._wakeup.set, work_only=True)
        self.trackers.add_listener(self._on_constraints_changed)
        self.trackers.start()
        self._triggers = triggers.TriggerWatcher(self._storage, self._feed, self._clock)
        self._triggers.start()
        self._thread = threading.Thread(target=self._loop, name="workmanager-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float) -> None:
        """Stop claiming; let running work finish within ``grace_s``; release the rest."""
        if self._thread is None:
            self._close_loop()
            return
        self._draining = True
        self._wakeup.set()
        deadline = time.monotonic() + grace_s  # a real-time wait, whatever the work's clock
        while True:
            with self._lock:
                busy = bool(self._running)
            if not busy or time.monotonic() >= deadline:
                break
            self._feed.wait(self._feed.version, 0.02)
        self._stopping = True
        self._wakeup.set()
        self._thread.join()
        self._lease_watch_stop.set()
        self.trackers.stop()
        self._triggers.stop()
        self._thread = None
        self._feed.remove_listener(self._wakeup.set)
        # What did not finish in time goes back to ENQUEUED now, not to the rescuer later.
        with self._lock:
            leftover = list(self._running.values())
            self._running.clear()
        released = []
        for run in leftover:
            if run.worker is not None:
                run.worker.stop(StopReason.USER)
            if run.future is not None:
                run.future.cancel()
            released.append((run.claimed, Stopped(StopReason.USER)))
        pending = _drain(self._completions) + released
        now = self._clock.now_ms()
        if pending:
            self._apply(pending, now)
        with self._storage.transaction() as tx:
            tx.runner_delete(self.runner_id)
        self._feed.bump()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._run_threads is not None:
            self._run_threads.shutdown()
        if self._recorder is not None:
            self._recorder.shutdown(wait=True)
            self._recorder = None
        self._close_loop()
        if leftover:
            log.warning(
                "released %d running work items that did not finish within %.1f s", len(leftover), grace_s
            )

    def _close_loop(self) -> None:
        with self._lock:
            loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is not None:
            loop_thread.close()

    @property
    def running_count(self) -> int:
        with self._lock:
            return len(self._running)

    def stop_work(self, ids: list[str], reason: StopReason) -> None:
        """Stop running work (cancelled elsewhere); its outcome will not be applied."""
        with self._lock:
            runs = [self._running[i] for i in ids if i in self._running]
            for run in runs:
                if run.worker is None:  # not built yet: _build_and_run stops it
                    run.stopped_early = reason
        for run in runs:
            if run.worker is not None:
                run.worker.stop(reason)
            if run.future is not None and _needs_loop(run.worker):
                run.future.cancel()

    #: How long a turn waits for more runs to finish before committing what has finished.
    GATHER_S = 0.0003

    def _gather_completions(self) -> None:
        """Short runs finish in bursts: when some have finished and others are still running,
        wait a moment so that one commit records several (group commit), not one each."""
        if self._completions:
            with self._lock:
                running = len(self._running)
            if running > 1:
                time.sleep(self.GATHER_S)

    def _on_done(self, run: _Run, future: Future[Result]) -> None:
        assert run.worker is not None
        if _interrupted_at("run.after_user_fn", run.claimed):
            self._finish(run, _INTERRUPTED)
            return
        outcome = runner.outcome_of(run.worker, future, max_data_bytes=self._config.max_data_bytes)
        self._finish(run, outcome)

    def _finish(self, run: _Run, outcome: Outcome) -> None:
        with self._lock:
            if self._running.pop(run.claimed.id, None) is None:
                return  # released at shutdown
            # With the pop, under the lock: _release_unlaunched must find the run in one of the
            # two, or it would put a finished run's row back to be run again.
            self._completions.append((run.claimed, outcome))
        if run.claimed.expedited and run.started:
            self._expedited_used.append(max(1, round((time.monotonic() - run.started) * 1000)))
        # Set already: the loop has not cleared it yet, and it clears it before it takes the
        # completions, so it will find this one. Setting takes a lock and notifies, once per
        # finished run; a burst of short runs mostly finds it set.
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _loop(self) -> None:
        heartbeat_ms = to_ms(self._config.heartbeat_interval)
        rescue_ms = to_ms(self._config.rescue_interval)
        # Upkeep timers run on the monotonic clock: a wall-clock jump back must not stop the
        # heartbeats (others would take this process's work), nor one forward burst them.
        mono = self._mono_ms()
        next_heartbeat = mono + heartbeat_ms
        next_rescue = mono + rescue_ms
        next_prune = mono + self._prune_interval_ms
        external_seen = self._feed.external_work_version
        next_timeout_s: float | None = None
        failing_since: float | None = None
        while not self._stopping:
            self._wakeup.clear()
            self._gather_completions()
            now = self._clock.now_ms()
            mono = self._mono_ms()
            try:
                busy = self._turn(now)
                if self._feed.external_work_version != external_seen:
                    external_seen = self._feed.external_work_version
                    self._notice_foreign_changes()
                if mono >= next_heartbeat:
                    next_heartbeat = mono + heartbeat_ms
                    self._heartbeat(now)
                if mono >= next_rescue:
                    next_rescue = mono + rescue_ms
                    if self._leads() and self._rescuer.run_once(now).requeued:
                        self._feed.bump()
                if mono >= next_prune:
                    next_prune = mono + self._prune_interval_ms
                    if self._leads():
                        self._pruner.run_once(now)
                    with self._storage.transaction() as tx:
                        tx.expedited_usage_prune(now - self._quota_window_ms)
                next_timeout_s = self._stop_timed_out()
                if failing_since is not None:
                    log.warning("the database is back after %.1f s", time.monotonic() - failing_since)
                    failing_since = None
                    self._release_unlaunched(now)
            except Exception:
                # Logged once per outage, not once per retry.
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.exception("dispatcher turn failed; retrying every 0.5 s until it works")
                else:
                    log.debug("dispatcher turn failed again", exc_info=True)
                busy = False
                self._wakeup.wait(0.5)
            if busy:
                continue
            timeout = max(0.0, (min(next_heartbeat, next_rescue, next_prune) - self._mono_ms()) / 1000)
            if self._next_due is not None and not self._draining and not self._waiting_for_slot:
                timeout = min(timeout, max(0.0, (self._next_due - self._clock.now_ms()) / 1000))
            if next_timeout_s is not None:
                timeout = min(timeout, next_timeout_s)
            self._wakeup.wait(timeout)

    def _turn(self, now: int) -> bool:
        """One transaction: record finished runs, claim up to the free slots. True if it did work."""
        with self._lock:
            free = self._config.max_concurrency - len(self._running)
            running_expedited = sum(1 for r in self._running.values() if r.claimed.expedited)
            # A suspect (work orphaned before) may be what kills its process: run one at a time.
            suspects = not any(r.claimed.orphan_count for r in self._running.values())
        if suspects and self._suspects_left_out:
            self._suspects_left_out = False
            self._checked_version = -1  # the suspect this process ran has ended: look again
        # Ordinary work leaves the reserved slots to expedited work.
        ordinary_cap = self._config.max_concurrency - self._config.reserved_expedited_slots
        ordinary_free = min(
            free, max(0, ordinary_cap - (self._config.max_concurrency - free - running_expedited))
        )
        want_expedited = want_ordinary = False
        self._waiting_for_slot = free <= 0
        if free > 0 and not self._draining:
            version = self._feed.work_version
            if version != self._checked_version:
                self._checked_version = version
                if self._next_due is None and not self._must_ask:
                    # Idle, and a work change arrived (new work, most likely due now): claim
                    # at once, and ask when work is due only if the claim comes back short.
                    # Saves a round trip between an enqueue and its start. Expedited work is
                    # claimed with the rest here: every slot but the reserved ones is free.
                    self._next_due, self._expedited_waiting = now, False
                    self._must_ask = True
                else:
                    due = self._storage.work_next_due_and_expedited(
                        self._names(), **self._constraint_args(), suspects=suspects
                    )
                    self._suspects_left_out = not suspects
                    self._next_due, self._expedited_waiting = due if due is not None else (None, False)
                    self._must_ask = False
            if self._next_due is not None and self._next_due <= now:
                want_expedited = self._expedited_waiting
                # With only the reserved slots free, ordinary work waits for a finished run
                # (and is then claimed in the same transaction that records it).
                want_ordinary = ordinary_free > 0
                self._waiting_for_slot = not want_ordinary and not want_expedited
        want_claim = want_expedited or want_ordinary
        # Taken only now: the read above fails when the database does, and finished runs taken
        # before it would be lost with the exception, their rows left RUNNING under a live owner
        # (then put back and run again).
        completions = _drain(self._completions)
        if not completions and not want_claim:
            return False
        claimed: list[ClaimedWork] = []
        full = False
        outputs: dict[str, list[str]] = {}
        names = self._names()
        usage = _drain(self._expedited_used)
        #: Finished runs recorded on the side while this turn claims (see _turn_overlapped).
        recording: Future[bool] | None = None
        try:
            # Ordinary claims only (no expedited work, no quota usage to record): on PostgreSQL
            # one statement, beside the recording of finished runs if there are any.
            ordinary_only = want_ordinary and not want_expedited and not usage
            if ordinary_only and not completions and self._claim_alone:
                claimed, full = self._turn_claim_alone(
                    now, min(free, ordinary_free), names, outputs, suspects
                )
                work_changed = False  # claims change states only
            elif ordinary_only and completions and self._recorder:
                claimed, full, recording = self._turn_overlapped(
                    now, completions, min(free, ordinary_free), names, outputs, suspects
                )
                work_changed = False  # the claim's; the recording's is known once it ends
            else:
                claimed, full, ordinary_free, work_changed = self._turn_transaction(
                    now,
                    completions,
                    usage,
                    want_expedited,
                    want_claim,
                    free,
                    ordinary_free,
                    names,
                    outputs,
                    suspects,
                )
        except BaseException:
            # Nothing of this turn was written (a restarted database, a deadlock): keep the
            # finished runs for the next turn, or they would stay RUNNING under a live owner.
            if recording is None:  # else _turn_overlapped has seen to them
                self._completions.extendleft(reversed(completions))
            self._expedited_used.extendleft(reversed(usage))
            raise
        # Observers hear of every turn; dispatchers (here and elsewhere) only of work changes.
        self._feed.bump(work=work_changed)
        if recording is None:
            faults.hit("complete.after_commit", len(completions))
        faults.hit("claim.after_commit", len(claimed))
        if want_claim:
            if full:
                # A full claim means more may be waiting: claim again when slots free up,
                # without asking for the next due time first.
                self._next_due = now
                self._checked_version = self._feed.work_version
            elif not claimed and ordinary_free == 0:
                # Only the reserved slots are free and no expedited work could be claimed:
                # the ordinary work stays due; stop trying expedited claims until a change.
                self._expedited_waiting = False
                self._checked_version = self._feed.work_version
            else:
                self._next_due = None
                self._checked_version = -1
        try:
            for c in claimed:
                self._launch(c, outputs.get(c.id, []))
            if claimed:
                # Let go of the GIL: the run threads just woken take it now, rather than wait
                # while this thread goes on to its next turn (0.19 -> 0.08 ms from launch to
                # the run thread running, for a run started alone).
                time.sleep(0)
        finally:
            # Waited for only now (the claimed work runs meanwhile), and always: runs whose
            # recording failed must be back in the queue before this turn ends.
            failed = None if recording is None else self._settle(recording, completions)
        if recording is not None:
            if failed is not None:
                raise failed  # the loop logs it; a later turn records the runs
            self._feed.bump(work=recording.result())
            faults.hit("complete.after_commit", len(completions))
        return True

    def _turn_overlapped(
        self,
        now: int,
        completions: list[tuple[ClaimedWork, Outcome]],
        limit: int,
        names: list[str] | None,
        outputs: dict[str, list[str]],
        suspects: bool,
    ) -> tuple[list[ClaimedWork], bool, Future[bool]]:
        """Record finished runs and claim new work at the same time, on two connections.

        One transaction doing both made the server and this process take turns: the server
        idle while runs were launched and decoded, this process idle while the server
        recorded, claimed and flushed. The two touch different rows (RUNNING ones are
        recorded, ENQUEUED ones claimed), and the claim needs nothing the recording writes:
        work whose prerequisites it unblocks is claimed by a later turn, as a work change.

        Returns the claimed work, whether the claim was full, and the recording, which says
        whether it made a work change; the caller waits for it (_settle) after launching the
        claimed work. If the claim fails, the recording is waited for here and the claim's
        error raised.
        """
        assert self._recorder is not None
        recording = self._recorder.submit(self._apply, completions, now)
        try:
            # Durable, as when it shared the recording's transaction: work that is draining
            # keeps its claims through a crash of the server, rather than starting twice.
            claimed, full = self._turn_claim_alone(now, limit, names, outputs, suspects, durable=True)
        except BaseException:
            self._settle(recording, completions)
            raise
        return claimed, full, recording

    def _settle(
        self, recording: Future[bool], completions: list[tuple[ClaimedWork, Outcome]]
    ) -> BaseException | None:
        """Wait for a recording; if it failed, put its runs back in the queue and return why."""
        try:
            recording.result()
        except BaseException as exc:
            self._completions.extendleft(reversed(completions))
            return exc
        return None

    def _turn_claim_alone(
        self,
        now: int,
        limit: int,
        names: list[str] | None,
        outputs: dict[str, list[str]],
        suspects: bool,
        *,
        durable: bool = False,
    ) -> tuple[list[ClaimedWork], bool]:
        """A turn that only claims ordinary work, as the storage's one statement (PostgreSQL:
        Storage.work_claim_alone); returns the claimed work and whether the claim was full.

        Not ``durable``, the claim does not wait for the disk: a crash of the database's
        machine that undid it puts the work back to ENQUEUED (G3)."""
        faults.hit("claim.before_commit")  # the statement is the commit: this is before it
        assert self._claim_alone is not None
        claimed: list[ClaimedWork] = self._claim_alone(
            now=now,
            limit=limit,
            runner_id=self.runner_id,
            run_token=random.getrandbits(62),
            names=names,
            suspects=suspects,
            durable=durable,
            **self._constraint_args(),
        )
        if not suspects or any(c.orphan_count for c in claimed):
            self._suspects_left_out = True  # other suspects may wait: look when it ends
        if any(c.has_prerequisites for c in claimed):
            # Read after the claim's commit, in one transaction for the turn: a SUCCEEDED
            # prerequisite's output no longer changes, and it is not pruned while this
            # dependent is unfinished.
            with self._storage.transaction(durable=False) as tx:
                _read_prerequisite_outputs(tx, claimed, outputs)
        return claimed, len(claimed) == limit

    def _turn_transaction(
        self,
        now: int,
        completions: list[tuple[ClaimedWork, Outcome]],
        usage: list[int],
        want_expedited: bool,
        want_claim: bool,
        free: int,
        ordinary_free: int,
        names: list[str] | None,
        outputs: dict[str, list[str]],
        suspects: bool,
    ) -> tuple[list[ClaimedWork], bool, int, bool]:
        """The turn's one transaction: finished runs, expedited usage, then the claims.

        Returns the claimed work, whether the claim was full, the ordinary free slots, and
        whether the transaction made a work change (see ChangeFeed). ``suspects``: whether
        the claims may take a suspect (this process runs none); they take at most one."""
        claimed: list[ClaimedWork] = []
        full = False
        # Claims alone need not wait for the disk: a crash of the database's machine that
        # undid one puts the work back to ENQUEUED (G3). Outcomes must (they are reported).
        durable = bool(completions or usage)
        with self._storage.transaction(durable=durable) as tx:
            self._apply_in(tx, completions, now)
            for used_ms in usage:
                tx.expedited_usage_add(now, used_ms)
                self._quota_recorded = True  # read the quota again before the next claim
            if want_claim:
                token = random.getrandbits(62)
                constraint_args = self._constraint_args()
                if want_expedited:
                    if self._within_quota(tx, now):
                        claimed = tx.work_claim_available(
                            now=now,
                            limit=free,
                            runner_id=self.runner_id,
                            run_token=token,
                            names=names,
                            expedited_only=True,
                            suspects=suspects,
                            **constraint_args,
                        )
                        full = len(claimed) == free
                    else:
                        # Out of quota: expedited work runs as ordinary work (its
                        # OutOfQuotaPolicy; DROP_WORK_REQUEST was applied at enqueue), and
                        # needs no reserved slot.
                        ordinary_free = free
                ordinary_limit = min(free - len(claimed), ordinary_free)
                if ordinary_limit > 0:
                    ordinary = tx.work_claim_available(
                        now=now,
                        limit=ordinary_limit,
                        runner_id=self.runner_id,
                        run_token=token,
                        names=names,
                        suspects=suspects and not any(c.orphan_count for c in claimed),
                        **constraint_args,
                    )
                    full = full or len(ordinary) == ordinary_limit
                    claimed += ordinary
                if not suspects or any(c.orphan_count for c in claimed):
                    self._suspects_left_out = True  # other suspects may wait: look when it ends
                _read_prerequisite_outputs(tx, claimed, outputs)
                faults.hit("claim.before_commit", len(claimed))
        return claimed, full, ordinary_free, tx.work_changed

    def _launch(self, claimed: ClaimedWork, prerequisite_outputs: list[str]) -> None:
        if self._run_threads is not None and _plain_worker_class(self._factory, claimed.worker_name):
            # Built on the run thread, not here: decoding the input and building the worker
            # was half of what the dispatcher did per run, in series with its claims. There it
            # overlaps the next claim's round trip (PostgreSQL: the server's time).
            run = _Run(claimed, None, started=time.monotonic())
            with self._lock:
                self._running[claimed.id] = run
            self._run_threads.submit(lambda: self._build_and_run(run, prerequisite_outputs))
            return
        prepared = self._prepare(claimed, prerequisite_outputs, inline=False)
        run = prepared if isinstance(prepared, _Run) else _Run(claimed, None)
        run.started = time.monotonic()
        with self._lock:
            self._running[claimed.id] = run
        if not isinstance(prepared, _Run):
            self._finish(run, prepared)
            return
        self._start_built(run, on_run_thread=False)

    def _build_and_run(self, run: _Run, prerequisite_outputs: list[str]) -> None:
        """On a run thread: build the worker of a run _launch registered, then run it."""
        prepared = self._prepare(run.claimed, prerequisite_outputs, inline=False)
        if not isinstance(prepared, _Run):
            self._finish(run, prepared)
            return
        with self._lock:
            if self._running.get(run.claimed.id) is not run:
                return  # released at shutdown before it started: the row is back in the queue
            run.worker = prepared.worker
            stopped_early = run.stopped_early
        if stopped_early is not None:
            assert run.worker is not None
            run.worker.stop(stopped_early)
            self._finish(run, Stopped(stopped_early))
            return
        self._start_built(run, on_run_thread=True)

    def _start_built(self, run: _Run, *, on_run_thread: bool) -> None:
        """Start a run whose worker is built: a plain Worker's do_work on a run thread (this
        one, if the caller is on one), anything else through its start_work."""
        worker = run.worker
        if (
            self._run_threads is not None
            and isinstance(worker, Worker)
            # Not overridden, by the class or on the instance (metrics wrap start_work there).
            and type(worker).start_work is Worker.start_work
            and "start_work" not in worker.__dict__
        ):
            if _interrupted_at("run.before_user_fn", run.claimed):
                self._finish(run, _INTERRUPTED)
                return
            if on_run_thread:
                self._run_plain(run, worker)
            else:
                self._run_threads.submit(lambda: self._run_plain(run, worker))
            return
        started = self._start(run)
        if not isinstance(started, Future):
            self._finish(run, started)
            return
        run.future = started
        started.add_done_callback(lambda f: self._on_done(run, f))

    def _run_plain(self, run: _Run, worker: Worker) -> None:
        """On a run thread: a Worker's do_work, as Worker.start_work would run it."""
        result: object = None
        error: BaseException | None = None
        try:
            result = worker.do_work()
        except BaseException as exc:  # as an executor's future would hold it
            error = exc
        if _interrupted_at("run.after_user_fn", run.claimed):
            self._finish(run, _INTERRUPTED)
            return
        try:
            outcome = runner.outcome_of_return(
                worker, result, error, max_data_bytes=self._config.max_data_bytes
            )
        except Exception as exc:  # a Result whose output cannot even be measured
            outcome = Failed(runner.error_output(exc))
        self._finish(run, outcome)

    def _release_unlaunched(self, now: int) -> None:
        """After failed turns, a claim may have committed without our hearing of it: put such
        rows (ours, RUNNING, not running here) back, or they would stay RUNNING under a live owner."""
        with self._lock:
            # Finished runs waiting to be recorded are still RUNNING in the database: keep them.
            running = [*self._running, *(claimed.id for claimed, _ in list(self._completions))]
        with self._storage.transaction() as tx:
            released = tx.work_release_unlaunched(self.runner_id, running, now)
        if released:
            log.warning("put back %d work item(s) whose claim committed while the database failed", released)
            self._feed.bump()

    #: The expedited quota is read from the database at most this often (it is a budget of
    #: minutes per hour: a second's staleness does not matter, a query per turn does).
    QUOTA_CHECK_INTERVAL_S = 1.0

    def _within_quota(self, tx: Transaction, now: int) -> bool:
        checked = time.monotonic()
        if self._quota_recorded or checked - self._quota_checked_at >= self.QUOTA_CHECK_INTERVAL_S:
            self._quota_ok = tx.expedited_usage_since(now - self._quota_window_ms) < self._quota_ms
            self._quota_checked_at = checked
            self._quota_recorded = False
        return self._quota_ok

    def _leads(self) -> bool:
        """Whether this process does the cluster-wide duties (rescue, pruning) now.

        PostgreSQL elects one process (an advisory lock, taken over within a rescue interval
        when its holder dies); on SQLite every process may, since they share one host."""
        try_lead = getattr(self._storage, "try_lead", None)
        return True if try_lead is None else bool(try_lead())

    def _stop_timed_out(self) -> float | None:
        """Stop ordinary work past the execution timeout; seconds until the next one is due."""
        if self._timeout_s is None:
            return None
        now = time.monotonic()
        expired: list[str] = []
        soonest: float | None = None
        with self._lock:
            for work_id, run in self._running.items():
                if run.foreground or run.worker is None or run.worker.is_stopped:
                    continue
                left = run.started + self._timeout_s - now
                if left <= 0:
                    expired.append(work_id)
                elif soonest is None or left < soonest:
                    soonest = left
        if expired:
            log.warning("stopping %d work item(s) that ran past %.0f s", len(expired), self._timeout_s)
            self.stop_work(expired, StopReason.TIMEOUT)
        return soonest

    def _on_constraints_changed(self, state: ConstraintState) -> None:
        """New answers: look for claimable work again; stop running work that lost a constraint."""
        self._checked_version = -1
        self._wakeup.set()
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            if run.claimed.id in self.constraints_met_ids:
                continue
            reason = state.unmet_reason(run.claimed.constraints, run.claimed.custom_constraints)
            if reason is not None:
                self.stop_work([run.claimed.id], reason)

    def _mono_ms(self) -> int:
        return round(self._clock.monotonic() * 1000)

    def _heartbeat(self, now: int) -> None:
        faults.hit("heartbeat")
        sent = time.monotonic()
        with self._storage.transaction() as tx:
            # The host's monotonic clock (shared by its processes), not the injectable one:
            # it is what other processes here compare against theirs (recovery.runner_is_dead).
            alive = tx.runner_heartbeat(self.runner_id, now, mono=time.monotonic())
            if not alive:
                # Someone judged us dead (we were paused past our lease): register again;
                # the runs they took back are fenced off by their tokens.
                self._register(tx, now)
        self._lease_renewed = sent

    def _watch_lease(self) -> None:
        """Stop every run once this process has gone a lease without renewing it.

        The database was unreachable, or the dispatcher is stuck in a call that never returns
        (a partition that answers nothing): another process may have taken the work over by
        now, so it must not go on running here too. Its own thread, because the dispatcher's
        may be the one stuck. The runs' outcomes are fenced like any other."""
        lease_s = self._config.lease_timeout.total_seconds()
        check_s = self._config.heartbeat_interval.total_seconds()
        while not self._lease_watch_stop.wait(check_s):
            silent_s = time.monotonic() - self._lease_renewed
            if silent_s <= lease_s:
                continue
            with self._lock:
                ids = [  # runs not built yet too: they must not start
                    i for i, r in self._running.items() if r.worker is None or not r.worker.is_stopped
                ]
            if ids:
                log.warning(
                    "no heartbeat confirmed for %.1f s, over the %.1f s lease: stopping %d run(s) that "
                    "another process may have taken over",
                    silent_s,
                    lease_s,
                    len(ids),
                )
                self.stop_work(ids, StopReason.UNKNOWN)

    def _register(self, tx: Transaction, now: int) -> None:
        """This process's runner row: how others tell whether its work is still owned."""
        tx.runner_upsert(
            id=self.runner_id,
            host=self._identity.host,
            boot_id=self._identity.boot_id,
            pid=self._identity.pid,
            process_started=self._identity.process_started,
            now=now,
            workers=json.dumps(self._names()),
            mono=time.monotonic(),
        )

    def _notice_foreign_changes(self) -> None:
        """Stop running work that another process cancelled, replaced or took back."""
        with self._lock:
            mine = {i: r.claimed.run_token for i, r in self._running.items()}
        if not mine:
            return
        states = self._storage.work_owned_states(list(mine))
        lost = []
        for work_id, token in mine.items():
            state = states.get(work_id)
            if state is None or state[0] != 1 or state[1] != token:
                reason = StopReason.CANCELLED_BY_APP if state is None else _stop_reason(state[2])
                lost.append((work_id, reason))
        for work_id, reason in lost:
            self.stop_work([work_id], reason)


#: The outcome of a run cut short by a fault injected around the user's code: back to ENQUEUED,
#: its attempt kept, to run again, as a kill there would have it rescued and run again.
_INTERRUPTED = Stopped(StopReason.UNKNOWN)


def _interrupted_at(point: str, claimed: ClaimedWork) -> bool:
    """Pass a run's fault point; whether an injected fault fired there.

    Caught here: escaping, it left the run registered (its slot held, its row RUNNING under
    a live owner) until shutdown."""
    try:
        faults.hit(point)
    except Exception:
        log.exception("the run of %s was interrupted at %s", claimed.id, point)
        return True
    return False


def _stop_reason(value: int) -> StopReason:
    try:
        reason = StopReason(value)
    except ValueError:
        return StopReason.UNKNOWN
    return StopReason.UNKNOWN if reason is StopReason.NOT_STOPPED else reason


T = TypeVar("T")


def _read_prerequisite_outputs(
    tx: Transaction, claimed: list[ClaimedWork], outputs: dict[str, list[str]]
) -> None:
    """The outputs of the prerequisites of each claimed run that has any, into ``outputs``."""
    for c in claimed:
        if c.has_prerequisites:
            outputs[c.id] = tx.work_prerequisite_outputs(c.id)


def _drain(queue: collections.deque[T]) -> list[T]:
    """Everything in ``queue`` now; other threads may keep appending meanwhile."""
    items: list[T] = []
    while True:
        try:
            items.append(queue.popleft())
        except IndexError:
            return items


def _plain_worker_class(factory: WorkerFactory, name: str) -> bool:
    """Whether the worker registered under ``name`` is a Worker that keeps the standard
    start_work (its do_work runs on a run thread), as far as the class tells; a custom
    factory could build anything, so its workers are built before they are started."""
    if type(factory) is not WorkerRegistry:
        return False
    cls = factory.get(name)
    return cls is not None and issubclass(cls, Worker) and cls.start_work is Worker.start_work


def _needs_loop(worker: ListenableWorker | None) -> bool:
    return isinstance(worker, CoroutineWorker)


def _wait_quietly(future: Future[Result]) -> None:
    try:
        future.result()
    except BaseException:  # the outcome mapping reports it
        pass
