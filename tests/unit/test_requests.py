"""Requests: plain values validated at construction (android-reference 1.1, 2.10)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from workmanager import (
    ArrayCreatingInputMerger,
    BackoffPolicy,
    Constraints,
    NetworkType,
    OneTimeWorkRequest,
    OutOfQuotaPolicy,
    OverwritingInputMerger,
    Result,
    Worker,
    WorkInfo,
    WorkQuery,
)


class UploadWorker(Worker):
    name = "upload"

    def do_work(self) -> Result:
        return Result.success()


class UnnamedWorker(Worker):
    def do_work(self) -> Result:
        return Result.success()


class Outer:
    class NestedWorker(Worker):
        def do_work(self) -> Result:
            return Result.success()


# -- names and tags -------------------------------------------------------------------------------


def test_default_worker_name_is_module_and_qualified_name():
    assert UnnamedWorker.name == f"{__name__}.UnnamedWorker"


def test_default_worker_name_of_a_nested_class_uses_its_qualified_name():
    assert Outer.NestedWorker.name == f"{__name__}.Outer.NestedWorker"


def test_a_subclass_gets_its_own_default_name():
    class Child(UnnamedWorker):
        pass

    assert Child.name != UnnamedWorker.name
    assert Child.name.endswith("Child")


def test_tags_include_the_workers_registered_name():
    assert "upload" in OneTimeWorkRequest(UploadWorker).tags


def test_tags_include_the_default_name_of_an_unnamed_worker():
    assert UnnamedWorker.name in OneTimeWorkRequest(UnnamedWorker).tags


def test_tags_are_the_given_tags_plus_the_worker_name():
    assert OneTimeWorkRequest(UploadWorker, tags={"a", "b"}).tags == {"a", "b", "upload"}


def test_a_request_may_name_its_worker_by_registered_name():
    request = OneTimeWorkRequest("upload")
    assert request.worker_name == "upload"
    assert "upload" in request.tags


def test_a_single_str_as_tags_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="tags"):
        OneTimeWorkRequest(UploadWorker, tags="upload")


def test_an_empty_tag_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="tags"):
        OneTimeWorkRequest(UploadWorker, tags={""})


# -- id -------------------------------------------------------------------------------------------


def test_id_is_a_uuid_fixed_at_construction():
    request = OneTimeWorkRequest(UploadWorker)
    assert isinstance(request.id, uuid.UUID)
    assert request.id == request.id


def test_each_request_gets_a_new_id():
    assert OneTimeWorkRequest(UploadWorker).id != OneTimeWorkRequest(UploadWorker).id


def test_id_can_be_set_at_construction():
    chosen = uuid.uuid4()
    assert OneTimeWorkRequest(UploadWorker, id=chosen).id == chosen


def test_an_id_that_is_not_a_uuid_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="id"):
        OneTimeWorkRequest(UploadWorker, id="not-a-uuid")  # type: ignore[arg-type]


def test_a_request_cannot_be_changed_after_construction():
    request = OneTimeWorkRequest(UploadWorker)
    with pytest.raises(AttributeError):
        request.id = uuid.uuid4()  # type: ignore[misc]


# -- defaults -------------------------------------------------------------------------------------


def test_defaults_follow_android():
    request = OneTimeWorkRequest(UploadWorker)
    assert request.input_data == {}
    assert request.constraints == Constraints()
    assert request.initial_delay == timedelta(0)
    assert request.backoff_policy is BackoffPolicy.EXPONENTIAL
    assert request.expedited is False
    assert request.out_of_quota_policy is OutOfQuotaPolicy.RUN_AS_NON_EXPEDITED_WORK_REQUEST
    assert request.input_merger is OverwritingInputMerger
    assert request.keep_results_for == timedelta(0)


def test_input_data_may_be_a_plain_dict():
    assert OneTimeWorkRequest(UploadWorker, input_data={"path": "a.jpg"}).input_data == {"path": "a.jpg"}


def test_durations_may_be_given_in_seconds():
    assert OneTimeWorkRequest(UploadWorker, initial_delay=90).initial_delay == timedelta(seconds=90)


def test_input_merger_can_be_array_creating():
    request = OneTimeWorkRequest(UploadWorker, input_merger=ArrayCreatingInputMerger)
    assert request.input_merger is ArrayCreatingInputMerger


def test_an_input_merger_that_is_not_an_input_merger_class_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="input_merger"):
        OneTimeWorkRequest(UploadWorker, input_merger=dict)  # type: ignore[arg-type]


# -- validation -----------------------------------------------------------------------------------


def test_a_negative_initial_delay_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="initial_delay"):
        OneTimeWorkRequest(UploadWorker, initial_delay=timedelta(seconds=-1))


def test_a_negative_backoff_delay_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="backoff_delay"):
        OneTimeWorkRequest(UploadWorker, backoff_delay=timedelta(seconds=-1))


def test_a_negative_keep_results_for_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="keep_results_for"):
        OneTimeWorkRequest(UploadWorker, keep_results_for=timedelta(days=-1))


def test_expedited_work_requiring_charging_is_rejected():
    with pytest.raises(ValueError, match="expedited"):
        OneTimeWorkRequest(UploadWorker, expedited=True, constraints=Constraints(requires_charging=True))


def test_expedited_work_requiring_battery_not_low_is_rejected():
    with pytest.raises(ValueError, match="expedited"):
        OneTimeWorkRequest(
            UploadWorker, expedited=True, constraints=Constraints(requires_battery_not_low=True)
        )


def test_expedited_work_with_an_initial_delay_is_rejected():
    with pytest.raises(ValueError, match="expedited"):
        OneTimeWorkRequest(UploadWorker, expedited=True, initial_delay=timedelta(seconds=1))


def test_expedited_work_may_require_network_and_storage():
    constraints = Constraints(required_network_type=NetworkType.CONNECTED, requires_storage_not_low=True)
    request = OneTimeWorkRequest(UploadWorker, expedited=True, constraints=constraints)
    assert request.expedited is True


def test_backoff_criteria_on_device_idle_work_is_rejected():
    with pytest.raises(ValueError, match="backoff"):
        OneTimeWorkRequest(
            UploadWorker,
            constraints=Constraints(requires_device_idle=True),
            backoff_policy=BackoffPolicy.LINEAR,
        )


def test_a_worker_that_is_neither_a_class_nor_a_name_is_rejected():
    with pytest.raises(TypeError):
        OneTimeWorkRequest(42)  # type: ignore[arg-type]


def test_an_empty_worker_name_is_rejected():
    with pytest.raises(ValueError):
        OneTimeWorkRequest("")


# -- constraints ----------------------------------------------------------------------------------


def test_constraints_compare_by_value():
    assert Constraints(requires_charging=True) == Constraints(requires_charging=True)
    assert Constraints(requires_charging=True) != Constraints()


def test_constraints_default_to_none_required():
    c = Constraints()
    assert c.required_network_type is NetworkType.NOT_REQUIRED
    assert not (
        c.requires_charging
        or c.requires_battery_not_low
        or c.requires_device_idle
        or c.requires_storage_not_low
    )


def test_network_type_has_androids_values():
    names = {t.name for t in NetworkType}
    assert {"NOT_REQUIRED", "CONNECTED", "UNMETERED", "NOT_ROAMING", "METERED"} <= names


def test_a_required_network_type_that_is_not_a_network_type_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="required_network_type"):
        Constraints(required_network_type="wifi")  # type: ignore[arg-type]


# -- WorkQuery ------------------------------------------------------------------------------------


def test_a_work_query_with_nothing_is_rejected():
    with pytest.raises(ValueError):
        WorkQuery()


def test_a_work_query_with_only_states_is_accepted():
    assert WorkQuery(states=[WorkInfo.State.ENQUEUED]).states == (WorkInfo.State.ENQUEUED,)


def test_a_work_query_with_a_state_that_is_not_a_state_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="states"):
        WorkQuery(states=["ENQUEUED"])  # type: ignore[list-item]


def test_a_work_query_with_an_id_that_is_not_a_uuid_is_rejected_naming_the_field():
    with pytest.raises(ValueError, match="ids"):
        WorkQuery(ids=["abc"])  # type: ignore[list-item]
