"""The front door: a pinned ``__all__`` and every name of the public contract (spec/api.md)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import workmanager
from workmanager import (
    ExistingPeriodicWorkPolicy,
    ExistingWorkPolicy,
    Result,
    StopReason,
    UpdateResult,
    WorkInfo,
)

#: Names api.md's code blocks and text import from ``workmanager``.
SPEC_NAMES = [
    "ArrayCreatingInputMerger",
    "BackoffPolicy",
    "Configuration",
    "Constraints",
    "CoroutineWorker",
    "Data",
    "DataTooLargeError",
    "DelegatingWorkerFactory",
    "ExistingPeriodicWorkPolicy",
    "ExistingWorkPolicy",
    "ForegroundInfo",
    "ListenableWorker",
    "NetworkType",
    "OneTimeWorkRequest",
    "OutOfQuotaPolicy",
    "OverwritingInputMerger",
    "PeriodicWorkRequest",
    "Result",
    "StopReason",
    "UpdateResult",
    "WorkInfo",
    "WorkContinuation",
    "WorkManager",
    "WorkQuery",
    "Worker",
    "WorkerFactory",
]

#: api.md's testing helpers, from ``workmanager.testing``.
TESTING_NAMES = ["TestClock", "create_test_work_manager", "get_test_driver", "run_worker"]

#: TestDriver methods api.md names.
DRIVER_METHODS = ["set_initial_delay_met", "set_all_constraints_met", "set_period_delay_met"]


def _public_names(module: ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    )


def test_all_is_sorted():
    assert workmanager.__all__ == sorted(workmanager.__all__)


def test_all_lists_exactly_the_public_names():
    assert workmanager.__all__ == _public_names(workmanager)


def test_all_has_no_duplicates():
    assert len(set(workmanager.__all__)) == len(workmanager.__all__)


@pytest.mark.parametrize(
    "name",
    SPEC_NAMES,
)
def test_every_spec_name_is_importable_from_workmanager(name):
    assert name in workmanager.__all__
    assert getattr(workmanager, name) is not None


@pytest.mark.parametrize("name", TESTING_NAMES)
def test_every_testing_helper_is_importable_from_workmanager_testing(name):
    testing = importlib.import_module("workmanager.testing")
    assert name in testing.__all__
    assert getattr(testing, name) is not None


@pytest.mark.parametrize(
    "method",
    [
        *DRIVER_METHODS,
    ],
)
def test_the_test_driver_has_each_spec_method(method):
    from workmanager.testing import TestDriver

    assert callable(getattr(TestDriver, method, None))


# -- enums mirror Android -------------------------------------------------------------------------


def test_work_info_state_has_androids_six_states():
    assert [s.name for s in WorkInfo.State] == [
        "ENQUEUED",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "BLOCKED",
        "CANCELLED",
    ]


def test_stop_reason_values_are_androids():
    android = {
        "UNKNOWN": -512,
        "NOT_STOPPED": -256,
        "FOREGROUND_SERVICE_TIMEOUT": -128,
        "CANCELLED_BY_APP": 1,
        "PREEMPT": 2,
        "TIMEOUT": 3,
        "DEVICE_STATE": 4,
        "CONSTRAINT_BATTERY_NOT_LOW": 5,
        "CONSTRAINT_CHARGING": 6,
        "CONSTRAINT_CONNECTIVITY": 7,
        "CONSTRAINT_DEVICE_IDLE": 8,
        "CONSTRAINT_STORAGE_NOT_LOW": 9,
        "QUOTA": 10,
        "BACKGROUND_RESTRICTION": 11,
        "APP_STANDBY": 12,
        "USER": 13,
        "SYSTEM_PROCESSING": 14,
        "ESTIMATED_APP_LAUNCH_TIME_CHANGED": 15,
    }
    assert {name: StopReason[name].value for name in android} == android


def test_existing_work_policy_has_androids_members():
    assert {p.name for p in ExistingWorkPolicy} == {"REPLACE", "KEEP", "APPEND", "APPEND_OR_REPLACE"}


def test_existing_periodic_work_policy_has_androids_members():
    assert {p.name for p in ExistingPeriodicWorkPolicy} == {
        "REPLACE",
        "KEEP",
        "UPDATE",
        "CANCEL_AND_REENQUEUE",
    }


def test_update_result_has_androids_members():
    assert {r.name for r in UpdateResult} == {"NOT_APPLIED", "APPLIED_IMMEDIATELY", "APPLIED_FOR_NEXT_RUN"}


# -- values compare by value ----------------------------------------------------------------------


def test_results_compare_by_kind_and_output():
    assert Result.success({"a": 1}) == Result.success({"a": 1})
    assert Result.success({"a": 1}) != Result.failure({"a": 1})
    assert Result.success({"a": 1}) != Result.success({"a": 2})


def test_all_retries_are_equal():
    assert Result.retry() == Result.retry()


def test_a_result_accepts_a_plain_dict_as_its_output():
    assert Result.failure({"why": "x"}).output_data == {"why": "x"}


def test_a_result_without_output_has_empty_output():
    assert Result.success().output_data == {}
