"""Enqueue a continuation graph in one transaction: prerequisites, unique-work policy, initial states.

This is Android's ``EnqueueRunnable``. A graph is a list of :class:`Node` (one per
continuation), parents before children. Each node's requests depend on every request
of its parent nodes. A named node without prerequisites is the head of a unique chain:
the name's :class:`ExistingWorkPolicy` is decided by :func:`decide` (pure, over the
states of the rows that carry the name) and applied here, in the same transaction as
the inserts, behind the ``uniquename`` guard row (see migration 0001).

What a node's work is born as comes from its prerequisites (:func:`initial_state`):
ENQUEUED when all succeeded (or there are none), FAILED when one failed, else
CANCELLED when one was cancelled, else BLOCKED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from workmanager import faults
from workmanager.config import Configuration
from workmanager.engine import records, schedule
from workmanager.info import State, UpdateResult
from workmanager.requests import ExistingWorkPolicy, PeriodicWorkRequest, WorkRequest
from workmanager.storage.base import ScheduleFields, Transaction

__all__ = [
    "Decision",
    "Enqueued",
    "Existing",
    "Node",
    "apply_graph",
    "decide",
    "initial_state",
    "update",
]

log = logging.getLogger("workmanager.enqueue")

_LIVE = frozenset({State.ENQUEUED, State.RUNNING})
_DEAD = frozenset({State.FAILED, State.CANCELLED})


# -- the pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Existing:
    """A row that already carries the unique name."""

    id: str
    state: State
    has_dependents: bool


@dataclass(frozen=True)
class Decision:
    """What an ExistingWorkPolicy does with a name's existing rows."""

    #: KEEP over live work: insert nothing (the whole continuation is dropped).
    keep_existing: bool = False
    #: Cancel (stopping those running) and delete these rows before inserting.
    remove: tuple[str, ...] = ()
    #: APPEND: the new work depends on these (the existing chain's leaves).
    prerequisites: tuple[str, ...] = ()
    #: The new work starts a new chain for the name (else it joins the live one).
    new_chain: bool = True


def decide(policy: ExistingWorkPolicy, existing: Sequence[Existing]) -> Decision:
    """Android's ExistingWorkPolicy (EnqueueRunnable), over every row with the name.

    >>> decide(ExistingWorkPolicy.KEEP, [Existing("a", State.RUNNING, False)]).keep_existing
    True
    >>> decide(ExistingWorkPolicy.KEEP, [Existing("a", State.SUCCEEDED, False)]).remove
    ('a',)
    >>> decide(ExistingWorkPolicy.APPEND, [Existing("a", State.SUCCEEDED, True),
    ...                                    Existing("b", State.RUNNING, False)]).prerequisites
    ('b',)
    """
    if not isinstance(policy, ExistingWorkPolicy):
        raise ValueError(f"policy must be an ExistingWorkPolicy, got {policy!r}")
    if not existing:
        return Decision()
    every = tuple(e.id for e in existing)
    if policy in (ExistingWorkPolicy.APPEND, ExistingWorkPolicy.APPEND_OR_REPLACE):
        leaves = [e for e in existing if not e.has_dependents]
        if policy is ExistingWorkPolicy.APPEND_OR_REPLACE and any(e.state in _DEAD for e in leaves):
            return Decision(remove=every)  # a dead chain: start afresh
        # APPEND onto a dead chain: the new work is born FAILED or CANCELLED (initial_state).
        return Decision(prerequisites=tuple(e.id for e in leaves), new_chain=False)
    if policy is ExistingWorkPolicy.KEEP and any(e.state in _LIVE for e in existing):
        return Decision(keep_existing=True, new_chain=False)
    # REPLACE, and KEEP when nothing is ENQUEUED or RUNNING: everything goes, finished rows too.
    return Decision(remove=every)


def initial_state(prerequisite_states: Iterable[State]) -> State:
    """The state new work is born in, from its prerequisites' states (FAILED wins over CANCELLED).

    >>> initial_state([]), initial_state([State.SUCCEEDED, State.RUNNING])
    (<State.ENQUEUED: 0>, <State.BLOCKED: 4>)
    >>> initial_state([State.CANCELLED, State.FAILED])
    <State.FAILED: 3>
    """
    states = set(prerequisite_states)
    if states <= {State.SUCCEEDED}:
        return State.ENQUEUED
    if State.FAILED in states:
        return State.FAILED
    if State.CANCELLED in states:
        return State.CANCELLED
    return State.BLOCKED


def update_result(state: State) -> UpdateResult:
    """What update_work reports for work in ``state`` (Android's WorkerUpdater)."""
    if state.is_finished:
        return UpdateResult.NOT_APPLIED
    if state is State.RUNNING:
        return UpdateResult.APPLIED_FOR_NEXT_RUN  # the run goes on with its old spec
    return UpdateResult.APPLIED_IMMEDIATELY


# -- applying a graph -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One continuation's requests; they depend on every id in ``prerequisites``."""

    requests: tuple[WorkRequest, ...]
    prerequisites: tuple[str, ...] = ()
    name: str | None = None
    policy: ExistingWorkPolicy = ExistingWorkPolicy.KEEP


@dataclass
class Enqueued:
    """What applying a graph did."""

    inserted: dict[str, State] = field(default_factory=dict)
    #: Requests not inserted: KEEP found live work, or a prerequisite no longer exists.
    skipped: set[str] = field(default_factory=set)
    #: (id, runner id) of running work a REPLACE cancelled: to be stopped.
    cancelled: list[tuple[str, str | None]] = field(default_factory=list)
    deleted: int = 0


def apply_graph(tx: Transaction, nodes: Sequence[Node], *, now: int, config: Configuration) -> Enqueued:
    """Insert every node's work, parents first, applying unique-work policies, in ``tx``."""
    done = Enqueued()
    for node in nodes:
        _apply_node(tx, node, done, now=now, config=config)
    return done


def _apply_node(tx: Transaction, node: Node, done: Enqueued, *, now: int, config: Configuration) -> None:
    ids = [str(r.id) for r in node.requests]
    prerequisites = node.prerequisites
    if any(p in done.skipped for p in prerequisites):
        done.skipped.update(ids)  # its head was kept or skipped: so is it
        return
    states = _prerequisite_states(tx, prerequisites, done)
    if states is None:
        log.info("a prerequisite of %s no longer exists; not enqueuing", ", ".join(ids))
        done.skipped.update(ids)
        return
    if node.name is not None:
        # The guard row first: on PostgreSQL this serializes every enqueue of the name.
        tx.uniquename_lock(node.name, ids[0])
        if not prerequisites:
            rows = tx.workname_states(node.name)
            existing = [Existing(i, State(s), d) for i, s, d in rows]
            decision = decide(node.policy, existing)
            if decision.keep_existing:
                done.skipped.update(ids)
                return
            if decision.remove:
                done.cancelled += tx.work_cancel_tree(list(decision.remove), now)
                done.deleted += tx.work_delete(list(decision.remove))
                faults.hit("unique.replace.mid")
            if decision.new_chain:
                tx.uniquename_set_chain(node.name, ids[0])
            prerequisites = decision.prerequisites
            by_id = {e.id: e.state for e in existing}
            states = [by_id[p] for p in prerequisites]
    state = initial_state(states)
    names = (node.name,) if node.name is not None else ()
    rows_new = [
        records.new_work(r, now=now, config=config, state=state, names=names, prerequisites=prerequisites)
        for r in node.requests
    ]
    tx.work_insert(rows_new)
    for work_id in ids:
        done.inserted[work_id] = state


def _prerequisite_states(tx: Transaction, prerequisites: Sequence[str], done: Enqueued) -> list[State] | None:
    """The prerequisites' states (this graph's from memory), or None if one does not exist."""
    states = [done.inserted[p] for p in prerequisites if p in done.inserted]
    stored = [p for p in prerequisites if p not in done.inserted]
    if stored:
        found = tx.work_states_by_ids(stored)
        if len(found) != len(set(stored)):
            return None
        states += [State(s) for s in found.values()]
    return states


# -- update_work ----------------------------------------------------------------------------------


def update(
    tx: Transaction, work_id: str, request: WorkRequest, *, now: int, config: Configuration
) -> UpdateResult | None:
    """Android's ``updateWork``: ``request``'s spec over work ``work_id``; None if it does not exist.

    State, run attempts, last enqueue time and period count are kept; generation + 1; tags
    replaced. Raises ValueError when the request would change one-time work into periodic
    work or back.
    """
    target = tx.work_update_target(work_id)
    if target is None:
        return None
    state = State(target.state)
    if state.is_finished:
        return UpdateResult.NOT_APPLIED
    if target.schedule.is_periodic != isinstance(request, PeriodicWorkRequest):
        kinds = ("periodic", "one-time") if target.schedule.is_periodic else ("one-time", "periodic")
        raise ValueError(
            f"update_work must keep the work's type: work {work_id} is {kinds[0]}, "
            f"the new request is {kinds[1]}"
        )
    row = records.new_work(request, now=now, config=config, state=state)
    next_run = target.next_run_time
    if state is State.ENQUEUED:
        old = target.schedule
        fields = ScheduleFields(
            row.interval_ms, row.flex_ms, row.initial_delay_ms, request.backoff_policy, row.backoff_delay_ms,
            last_enqueue_time=old.last_enqueue_time, period_count=old.period_count,
            run_attempt_count=old.run_attempt_count,
            next_schedule_time_override=old.next_schedule_time_override,
        )  # fmt: skip
        next_run = schedule.next_run_time(fields, max_backoff_ms=schedule.ms(config.max_backoff))
    applied = tx.work_update_if_unchanged(
        work_id,
        row,
        state=target.state,
        generation=target.generation,
        next_run_time=next_run,
        old_tags=target.tags,
    )
    if not applied:  # cannot happen inside one serialized transaction; say so if it does
        raise RuntimeError(f"work {work_id} changed while it was being updated")
    return update_result(state)
