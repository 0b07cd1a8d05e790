"""The one state machine: every state change the engine makes goes through here.

A worker's run ends in exactly one :data:`Outcome`; :func:`apply_outcome` persists it
with one guarded statement (the row must still be RUNNING under this run's token, so
a run that was cancelled, replaced or rescued meanwhile changes nothing) and applies
its consequences to dependents in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from workmanager import faults
from workmanager.data import Data
from workmanager.engine import schedule
from workmanager.info import State, StopReason
from workmanager.storage.base import Transaction

#: Legal transitions (from, to); anything else is a bug.
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (State.ENQUEUED, State.RUNNING),  # claimed
        (State.BLOCKED, State.ENQUEUED),  # last prerequisite succeeded
        (State.RUNNING, State.SUCCEEDED),  # one-time success
        (State.RUNNING, State.FAILED),  # failure, exception, crash loop
        (State.RUNNING, State.ENQUEUED),  # retry, next period, stop, rescue
        (State.ENQUEUED, State.FAILED),  # a prerequisite failed (cascade)
        (State.BLOCKED, State.FAILED),
        (State.ENQUEUED, State.CANCELLED),
        (State.BLOCKED, State.CANCELLED),
        (State.RUNNING, State.CANCELLED),
    }
)


def is_legal(old: State, new: State) -> bool:
    return (old, new) in TRANSITIONS


def _target(outcome: Outcome, *, is_periodic: bool) -> State:
    """The state a run's outcome moves its work to (from RUNNING); checked against the table."""
    if isinstance(outcome, Succeeded) and not is_periodic:
        new = State.SUCCEEDED
    elif isinstance(outcome, Failed) and not is_periodic:
        new = State.FAILED
    else:
        new = State.ENQUEUED  # retry, stop, or a periodic work's next period
    if not is_legal(State.RUNNING, new):
        raise AssertionError(f"illegal transition RUNNING -> {new.name}")
    return new


@dataclass(frozen=True)
class Succeeded:
    output: Data


@dataclass(frozen=True)
class Failed:
    output: Data


@dataclass(frozen=True)
class Retry:
    pass


@dataclass(frozen=True)
class Stopped:
    """Stopped from outside (shutdown, timeout, constraint): back to ENQUEUED, the attempt kept."""

    reason: StopReason


Outcome = Succeeded | Failed | Retry | Stopped


@dataclass(frozen=True)
class Applied:
    """What persisting an outcome changed."""

    applied: bool
    new_state: State | None = None
    failed_dependents: tuple[str, ...] = ()


def apply_outcomes(
    tx: Transaction,
    runs: list[tuple[str, int, bool, Outcome]],
    *,
    now: int,
    max_backoff_ms: int,
) -> None:
    """Persist several runs' outcomes, each as :func:`apply_outcome` would (a group commit).

    ``runs`` holds (work id, run token, is periodic, outcome). One-time successes, the bulk of
    any drain, go to the database as one batch (RUNNING -> SUCCEEDED, then their dependents);
    the rest one at a time. What each changed is not reported.
    """
    successes: list[tuple[str, int, str]] = []
    for work_id, run_token, is_periodic, outcome in runs:
        if isinstance(outcome, Succeeded) and not is_periodic:
            successes.append((work_id, run_token, outcome.output.to_json()))
        else:
            apply_outcome(
                tx,
                work_id,
                run_token,
                outcome,
                is_periodic=is_periodic,
                now=now,
                max_backoff_ms=max_backoff_ms,
            )
    if successes:
        assert is_legal(State.RUNNING, State.SUCCEEDED)
        tx.work_succeed_many(successes, now)
        faults.hit("chain.unblock.mid", len(successes))
        tx.dependency_unblock_many([work_id for work_id, _, _ in successes], now)


def apply_outcome(
    tx: Transaction,
    work_id: str,
    run_token: int,
    outcome: Outcome,
    *,
    is_periodic: bool,
    now: int,
    max_backoff_ms: int,
) -> Applied:
    """Persist one run's outcome; a lost race (no longer ours) is a no-op."""
    target = _target(outcome, is_periodic=is_periodic)
    periodic_fields = None
    if isinstance(outcome, Retry | Stopped) or is_periodic:
        periodic_fields = tx.work_schedule_fields(work_id)
        if periodic_fields is None:
            return Applied(False)  # deleted meanwhile (REPLACE)

    if target is State.SUCCEEDED and isinstance(outcome, Succeeded):
        if not tx.work_succeed_if_running(work_id, run_token, outcome.output.to_json(), now):
            return Applied(False)
        faults.hit("chain.unblock.mid")
        tx.dependency_unblock(work_id, now)
        return Applied(True, State.SUCCEEDED)
    if target is State.FAILED and isinstance(outcome, Failed):
        if not tx.work_fail_if_running(work_id, run_token, outcome.output.to_json(), now):
            return Applied(False)
        failed = tx.dependency_fail_dependents(work_id, now)
        return Applied(True, State.FAILED, tuple(failed))

    assert periodic_fields is not None
    f = periodic_fields
    if isinstance(outcome, Succeeded | Failed):
        # Periodic: the next period, counted from now; attempts start over; output is dropped.
        fields = replace(
            f, last_enqueue_time=now, period_count=f.period_count + 1, run_attempt_count=0,
            next_schedule_time_override=None,
        )  # fmt: skip
        stop_reason = StopReason.NOT_STOPPED
    elif isinstance(outcome, Retry):
        fields = replace(f, last_enqueue_time=now)
        stop_reason = StopReason.NOT_STOPPED
    else:
        # A stop (constraint lost, timeout, shutdown) keeps the attempt count and last enqueue
        # time, as on Android, but does not count against the work: no backoff, it may start
        # again as soon as its constraints hold.
        fields = f
        stop_reason = outcome.reason
    faults.hit("periodic.reschedule.mid", is_periodic)
    next_run = (
        now if isinstance(outcome, Stopped) else schedule.next_run_time(fields, max_backoff_ms=max_backoff_ms)
    )
    ok = tx.work_enqueue_if_running(
        work_id,
        run_token,
        run_attempt_count=fields.run_attempt_count,
        last_enqueue_time=fields.last_enqueue_time,
        next_run_time=next_run,
        period_count=fields.period_count,
        stop_reason=int(stop_reason),
        next_schedule_time_override=fields.next_schedule_time_override,
    )
    return Applied(ok, State.ENQUEUED if ok else None)
