"""A WorkInfo read from its stored row (engine.records.work_info)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

from workmanager import Constraints, NetworkType, WorkInfo
from workmanager.engine import records
from workmanager.info import StopReason
from workmanager.storage.base import InfoRow

State = WorkInfo.State

ROW = InfoRow(
    id=str(uuid.UUID(int=7)),
    state=State.ENQUEUED.value,
    output='{"n":1}',
    progress=None,
    run_attempt_count=0,
    generation=0,
    required_network_type=0,
    requires_charging=0,
    requires_battery_not_low=0,
    requires_device_idle=0,
    requires_storage_not_low=0,
    initial_delay_ms=0,
    interval_ms=0,
    flex_ms=0,
    next_run_time=1_700_000_000_000,
    stop_reason=StopReason.NOT_STOPPED.value,
    tags=("a", "b"),
)


def test_stored_constraints_read_back_as_the_constraints_that_were_set() -> None:
    row = dataclasses.replace(
        ROW,
        required_network_type=NetworkType.UNMETERED.value,
        requires_charging=1,
        requires_storage_not_low=1,
        custom_constraints=("gpu",),
    )
    assert records.work_info(row).constraints == Constraints(
        required_network_type=NetworkType.UNMETERED,
        requires_charging=True,
        requires_storage_not_low=True,
        custom=frozenset({"gpu"}),
    )


def test_rows_with_other_constraints_do_not_share_them() -> None:
    plain = records.work_info(ROW).constraints
    charging = records.work_info(dataclasses.replace(ROW, requires_charging=1)).constraints
    custom = records.work_info(dataclasses.replace(ROW, custom_constraints=("gpu",))).constraints
    assert plain == Constraints()
    assert charging == Constraints(requires_charging=True)
    assert custom == Constraints(custom=frozenset({"gpu"}))


def test_every_stored_state_and_stop_reason_reads_back() -> None:
    for state in State:
        assert records.work_info(dataclasses.replace(ROW, state=state.value)).state is state
    for reason in StopReason:
        assert records.work_info(dataclasses.replace(ROW, stop_reason=reason.value)).stop_reason is reason


def test_a_stop_reason_this_version_does_not_know_reads_as_unknown() -> None:
    assert records.work_info(dataclasses.replace(ROW, stop_reason=12345)).stop_reason is StopReason.UNKNOWN


def test_initial_delay_reads_back_in_milliseconds() -> None:
    assert records.work_info(ROW).initial_delay == timedelta(0)
    assert records.work_info(dataclasses.replace(ROW, initial_delay_ms=1500)).initial_delay == timedelta(
        seconds=1.5
    )


def test_output_is_reported_only_once_finished() -> None:
    assert records.work_info(ROW).output_data == {}
    succeeded = records.work_info(dataclasses.replace(ROW, state=State.SUCCEEDED.value))
    assert succeeded.output_data == {"n": 1}
