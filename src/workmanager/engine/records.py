"""Translating between public values and storage rows (both directions)."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from datetime import timedelta

from workmanager.clock import ms_to_datetime, to_ms
from workmanager.config import Configuration
from workmanager.data import Data
from workmanager.engine import schedule
from workmanager.info import ForegroundInfo, PeriodicityInfo, State, StopReason, WorkInfo
from workmanager.requests import Constraints, NetworkType, PeriodicWorkRequest, WorkRequest
from workmanager.storage.base import NEVER, InfoRow, NewWork, ScheduleFields

log = logging.getLogger("workmanager.records")


def new_work(
    request: WorkRequest,
    *,
    now: int,
    config: Configuration,
    state: State = State.ENQUEUED,
    names: tuple[str, ...] = (),
    prerequisites: tuple[str, ...] = (),
) -> NewWork:
    """The row for a request entering ``state``; Data limits and clamps applied here.

    On the enqueue path for every request: kept lean on purpose.
    """
    input_json = request.input_data.to_json()
    if len(input_json) > config.max_data_bytes:  # characters <= bytes: only then measure bytes
        request.input_data.check_size(config.max_data_bytes, "input_data")
    backoff = request.backoff_delay if request.backoff_delay is not None else config.default_backoff_delay
    if backoff < config.min_backoff or backoff > config.max_backoff:
        backoff = schedule.clamp_backoff(backoff, minimum=config.min_backoff, maximum=config.max_backoff)
    # A zero timedelta is false: most requests pay no division for their zero durations.
    initial_delay_ms = to_ms(request.initial_delay) if request.initial_delay else 0
    enqueued = state is State.ENQUEUED
    last_enqueue = now if enqueued else -1
    interval_ms = flex_ms = 0
    cron = cron_timezone = None
    constraints = request.constraints
    if isinstance(request, PeriodicWorkRequest):
        if request.cron is None:
            interval, flex = schedule.clamp_period(
                request.repeat_interval,
                request.flex_interval,
                min_interval=config.min_periodic_interval,
                min_flex=config.min_periodic_flex,
            )
        else:  # a cron schedule names its own times; the interval is only what WorkInfo shows
            interval, flex = request.repeat_interval, request.flex_interval
            cron, cron_timezone = request.cron, request.timezone
        interval_ms, flex_ms = max(to_ms(interval), 1), max(to_ms(flex), 1)
        fields = ScheduleFields(
            interval_ms=interval_ms,
            flex_ms=flex_ms,
            initial_delay_ms=initial_delay_ms,
            backoff_policy=request.backoff_policy,
            backoff_delay_ms=to_ms(backoff),
            last_enqueue_time=last_enqueue,
            period_count=0,
            run_attempt_count=0,
            next_schedule_time_override=None,
            cron=cron,
            cron_timezone=cron_timezone,
        )
        next_run = (
            schedule.next_run_time(fields, max_backoff_ms=to_ms(config.max_backoff)) if enqueued else NEVER
        )
    elif constraints.trigger_paths:
        next_run = NEVER  # until a change under its trigger paths (engine/triggers.py)
    else:
        # Android's formula for one-time work that has never run: enqueue time + initial delay.
        next_run = now + initial_delay_ms if enqueued else NEVER
    merger = getattr(request, "input_merger", None)
    network, charging, battery_not_low, idle, storage_not_low = constraints.stored
    tags = request.tags
    finished = not enqueued and state.is_finished
    # Enum members' _value_, not .value: the property costs three times the attribute here.
    # tuple.__new__, not NewWork(...): the named tuple's own __new__ is a Python function
    # that takes its 33 fields one by one.
    return tuple.__new__(
        NewWork,
        (
            str(request.id),
            request.worker_name,
            state._value_,
            input_json,
            merger.name if merger is not None else "OverwritingInputMerger",
            initial_delay_ms,
            interval_ms,
            flex_ms,
            network,
            charging,
            battery_not_low,
            idle,
            storage_not_low,
            request.backoff_policy._value_,
            to_ms(backoff),
            last_enqueue,
            next_run,
            to_ms(request.keep_results_for) if request.keep_results_for else 0,
            1 if request.expedited else 0,
            request.out_of_quota_policy._value_,
            _CANCELLED if state is State.CANCELLED else _NOT_STOPPED,  # born cancelled: its chain was
            now,
            now if finished else None,
            cron,
            cron_timezone,
            _custom_json(constraints.custom) if constraints.custom else None,
            json.dumps(list(constraints.trigger_paths)) if constraints.trigger_paths else None,
            *constraints.stored_trigger_delays_ms,
            tuple(tags) if len(tags) == 1 else tuple(sorted(tags)),
            names,
            prerequisites,
        ),
    )


_NOT_STOPPED = StopReason.NOT_STOPPED.value


def _custom_json(custom: frozenset[str]) -> str | None:
    return json.dumps(sorted(custom)) if custom else None


_CANCELLED = StopReason.CANCELLED_BY_APP.value


#: States and stop reasons by stored value: a dict lookup, where calling the enum runs its
#: lookup machinery in Python (a WorkInfo list of thousands of rows pays it per row).
_STATES = {s.value: s for s in State}
_STOP_REASONS = {r.value: r for r in StopReason}
_NO_DELAY = timedelta(0)


@functools.lru_cache(maxsize=256)
def _constraints(
    network: int,
    charging: int,
    battery_not_low: int,
    idle: int,
    storage_not_low: int,
    custom: tuple[str, ...],
) -> Constraints:
    """The stored constraint columns as Constraints. Constraints are immutable and a few
    combinations recur, so rows share one instance (building one validates every field)."""
    return Constraints(
        required_network_type=NetworkType(network),
        requires_charging=bool(charging),
        requires_battery_not_low=bool(battery_not_low),
        requires_device_idle=bool(idle),
        requires_storage_not_low=bool(storage_not_low),
        custom=frozenset(custom),
    )


def work_info(row: InfoRow) -> WorkInfo:
    """A WorkInfo as Android reports it: output only when finished, progress only while running."""
    state = _STATES[row.state]
    periodic = row.interval_ms > 0
    stop_reason = _STOP_REASONS.get(row.stop_reason, StopReason.UNKNOWN)
    return WorkInfo(
        id=uuid.UUID(row.id),
        state=state,
        tags=frozenset(row.tags),
        output_data=(
            _stored(row.output, "output", row.id) if state.is_finished and not periodic else Data.EMPTY
        ),
        progress=_stored(row.progress, "progress", row.id) if state is State.RUNNING else Data.EMPTY,
        run_attempt_count=row.run_attempt_count,
        generation=row.generation,
        constraints=_constraints(
            row.required_network_type,
            row.requires_charging,
            row.requires_battery_not_low,
            row.requires_device_idle,
            row.requires_storage_not_low,
            tuple(row.custom_constraints),
        ),
        initial_delay=timedelta(milliseconds=row.initial_delay_ms) if row.initial_delay_ms else _NO_DELAY,
        periodicity_info=(
            PeriodicityInfo(timedelta(milliseconds=row.interval_ms), timedelta(milliseconds=row.flex_ms))
            if periodic
            else None
        ),
        next_schedule_time=(
            ms_to_datetime(row.next_run_time)
            if state is State.ENQUEUED and row.next_run_time < NEVER
            else None
        ),
        stop_reason=stop_reason,
        foreground_info=(
            _foreground(row.foreground, row.id) if state is State.RUNNING and row.foreground else None
        ),
    )


def _stored(text: str | None, what: str, work_id: str) -> Data:
    """Stored Data, or empty Data when the row holds something else (written by hand or by
    another program): one such row must not make every read that lists it raise."""
    try:
        return Data.from_json(text)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("work %s: its stored %s is not valid Data (%s); read as empty", work_id, what, exc)
        return Data.EMPTY


def _foreground(text: str, work_id: str) -> ForegroundInfo | None:
    try:
        return ForegroundInfo(**json.loads(text))
    except (ValueError, TypeError) as exc:
        log.warning("work %s: its stored foreground info is not valid (%s); read as none", work_id, exc)
        return None
