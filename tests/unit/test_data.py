"""Data: an immutable, JSON-like mapping with type and size checks (android-reference 1.3, 2.9)."""

from __future__ import annotations

import pytest

from workmanager import (
    ArrayCreatingInputMerger,
    Configuration,
    Data,
    DataTooLargeError,
    OneTimeWorkRequest,
    OverwritingInputMerger,
    Result,
    Worker,
    WorkInfo,
)
from workmanager.testing import create_test_work_manager

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


class EchoWorker(Worker):
    name = "echo"

    def do_work(self) -> Result:
        return Result.success(self.input_data)


class HugeOutputWorker(Worker):
    name = "huge-output"

    def do_work(self) -> Result:
        return Result.success({"blob": "x" * 200})


# -- immutability ---------------------------------------------------------------------------------


def test_data_rejects_item_assignment():
    data = Data({"a": 1})
    with pytest.raises(TypeError):
        data["a"] = 2  # type: ignore[index]


def test_data_rejects_item_deletion():
    data = Data({"a": 1})
    with pytest.raises(TypeError):
        del data["a"]  # type: ignore[attr-defined]


def test_data_does_not_change_when_the_source_dict_changes():
    source = {"a": 1}
    data = Data(source)
    source["a"] = 2
    source["b"] = 3
    assert data == {"a": 1}


def test_data_does_not_change_when_a_source_list_changes():
    values = [1, 2]
    data = Data({"a": values})
    values.append(3)
    assert data["a"] == (1, 2)


def test_lists_become_tuples():
    assert Data({"sizes": [1, 2, 3]})["sizes"] == (1, 2, 3)


# -- equality -------------------------------------------------------------------------------------


def test_data_equals_a_dict_with_the_same_items():
    assert Data({"path": "a.jpg", "n": 1}) == {"path": "a.jpg", "n": 1}


def test_data_equals_a_dict_holding_lists_where_it_holds_tuples():
    assert Data({"sizes": [1, 2]}) == {"sizes": [1, 2]}


def test_data_differs_from_a_dict_with_another_value():
    assert Data({"a": 1}) != {"a": 2}


def test_equal_data_hash_equally():
    assert hash(Data({"a": 1, "b": "x"})) == hash(Data({"b": "x", "a": 1}))


def test_data_holding_true_differs_from_data_holding_1():
    # Android's Data compares typed values: Boolean(true) is not Integer(1).
    assert Data({"a": True}) != Data({"a": 1})


def test_data_holding_an_int_differs_from_data_holding_the_same_float():
    assert Data({"a": 1}) != Data({"a": 1.0})


@pytest.mark.parametrize(
    ("left", "right"),
    [(True, 1), (1, 1.0), ("1", "1")],
    ids=repr,
)
def test_data_that_compare_equal_hash_equally(left, right):
    a, b = Data({"k": left}), Data({"k": right})
    assert a != b or hash(a) == hash(b)


def test_data_of_none_is_empty():
    assert Data.of(None) == Data.EMPTY
    assert len(Data.EMPTY) == 0


def test_data_of_a_dict_is_data():
    assert isinstance(Data.of({"a": 1}), Data)


# -- value types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -7, 1.5, "text", b"\x00\xff", [True, False], [1, 2], [0.5], ["a", "b"], [b"x"], []],
)
def test_every_supported_value_type_is_accepted(value):
    assert Data({"k": value})["k"] == (tuple(value) if isinstance(value, list) else value)


def test_an_unsupported_value_type_raises_type_error_naming_the_key():
    with pytest.raises(TypeError, match="'when'"):
        Data({"when": object()})


def test_a_nested_dict_is_unsupported():
    with pytest.raises(TypeError, match="'nested'"):
        Data({"nested": {"a": 1}})


def test_a_non_str_key_raises_type_error():
    with pytest.raises(TypeError):
        Data({1: "a"})  # type: ignore[dict-item]


def test_a_list_mixing_int_and_str_raises_type_error_naming_the_key():
    with pytest.raises(TypeError, match="'mixed'"):
        Data({"mixed": [1, "a"]})


def test_a_list_mixing_bool_and_int_raises_type_error():
    with pytest.raises(TypeError, match="'flags'"):
        Data({"flags": [True, 1]})


def test_a_list_of_str_may_hold_none():
    assert Data({"names": ["a", None]})["names"] == ("a", None)


def test_a_list_of_int_may_not_hold_none():
    with pytest.raises(TypeError, match="'numbers'"):
        Data({"numbers": [1, None]})


def test_the_largest_64_bit_ints_are_accepted():
    assert Data({"max": INT64_MAX, "min": INT64_MIN}) == {"max": INT64_MAX, "min": INT64_MIN}


def test_an_int_above_64_bits_raises_type_error_naming_the_key():
    with pytest.raises(TypeError, match="'big'"):
        Data({"big": INT64_MAX + 1})


def test_an_int_below_64_bits_raises_type_error_naming_the_key():
    with pytest.raises(TypeError, match="'small'"):
        Data({"small": INT64_MIN - 1})


def test_an_int_above_64_bits_in_a_list_raises_type_error():
    with pytest.raises(TypeError, match="'big'"):
        Data({"big": [1, INT64_MAX + 1]})


# -- serialization --------------------------------------------------------------------------------


def test_bytes_round_trip_through_the_stored_json_form():
    data = Data({"raw": b"\x00\x01\xfe\xff", "chunks": [b"a", b"\x80"]})
    assert Data.from_json(data.to_json()) == data
    assert Data.from_json(data.to_json())["raw"] == b"\x00\x01\xfe\xff"


def test_every_value_type_round_trips_through_the_stored_json_form():
    data = Data({"n": None, "b": True, "i": INT64_MIN, "f": 0.25, "s": "é", "l": ["x", None]})
    assert Data.from_json(data.to_json()) == data


def test_bytes_round_trip_through_the_work_database():
    wm = create_test_work_manager(workers=[EchoWorker])
    request = OneTimeWorkRequest(EchoWorker, input_data={"raw": b"\x00\xff", "chunks": [b"a", b"b"]})
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    assert info.output_data == {"raw": b"\x00\xff", "chunks": (b"a", b"b")}


# -- size limit -----------------------------------------------------------------------------------


def test_max_data_bytes_is_androids_10240():
    assert Data.MAX_DATA_BYTES == 10240


def test_data_too_large_error_is_a_value_error():
    assert issubclass(DataTooLargeError, ValueError)


def test_data_over_the_limit_raises_data_too_large_naming_size_and_limit():
    data = Data({"blob": "x" * Data.MAX_DATA_BYTES})
    size = data.size_in_bytes()
    with pytest.raises(DataTooLargeError) as excinfo:
        data.check_size()
    assert str(size) in str(excinfo.value)
    assert "10240" in str(excinfo.value)
    assert (excinfo.value.size, excinfo.value.limit) == (size, 10240)


def test_enqueue_rejects_input_over_the_configured_limit_naming_size_and_limit():
    wm = create_test_work_manager(workers=[EchoWorker], configuration=Configuration(max_data_bytes=100))
    request = OneTimeWorkRequest(EchoWorker, input_data={"blob": "x" * 200})
    size = request.input_data.size_in_bytes()
    with pytest.raises(DataTooLargeError) as excinfo:
        wm.enqueue(request)
    assert str(size) in str(excinfo.value)
    assert "100" in str(excinfo.value)
    assert wm.get_work_info_by_id(request.id) is None


def test_enqueue_accepts_input_exactly_at_the_configured_limit():
    probe = Data({"blob": "x" * 50})
    wm = create_test_work_manager(
        workers=[EchoWorker], configuration=Configuration(max_data_bytes=probe.size_in_bytes())
    )
    request = OneTimeWorkRequest(EchoWorker, input_data=probe)
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    assert info.state is WorkInfo.State.SUCCEEDED


def test_output_over_the_configured_limit_fails_the_work():
    wm = create_test_work_manager(workers=[HugeOutputWorker], configuration=Configuration(max_data_bytes=100))
    request = OneTimeWorkRequest(HugeOutputWorker)
    wm.enqueue(request)
    info = wm.get_work_info_by_id(request.id)
    assert info is not None
    assert info.state is WorkInfo.State.FAILED
    assert info.output_data["error"] == "DataTooLargeError"


# -- input mergers (android-reference 2.17) -------------------------------------------------------


def test_overwriting_merger_lets_later_inputs_win():
    merged = OverwritingInputMerger().merge([Data({"a": 1, "b": 1}), Data({"a": 2})])
    assert merged == {"a": 2, "b": 1}


def test_overwriting_merger_keeps_keys_found_in_only_one_input():
    merged = OverwritingInputMerger().merge([Data({"own": "x"}), Data({"parent": "y"})])
    assert merged == {"own": "x", "parent": "y"}


def test_overwriting_merger_of_nothing_is_empty():
    assert OverwritingInputMerger().merge([]) == Data.EMPTY


def test_array_creating_merger_wraps_a_scalar_in_a_one_element_list():
    assert ArrayCreatingInputMerger().merge([Data({"a": 1})]) == {"a": (1,)}


def test_array_creating_merger_keeps_a_list_as_it_is():
    assert ArrayCreatingInputMerger().merge([Data({"a": [1, 2]})]) == {"a": (1, 2)}


def test_array_creating_merger_concatenates_values_of_the_same_type_in_order():
    merged = ArrayCreatingInputMerger().merge([Data({"a": 1}), Data({"a": 2}), Data({"a": [3, 4]})])
    assert merged == {"a": (1, 2, 3, 4)}


def test_array_creating_merger_appends_a_scalar_to_a_list_of_its_type():
    assert ArrayCreatingInputMerger().merge([Data({"a": [1, 2]}), Data({"a": 3})]) == {"a": (1, 2, 3)}


def test_array_creating_merger_rejects_mismatched_types_naming_the_key():
    with pytest.raises(TypeError, match="'a'"):
        ArrayCreatingInputMerger().merge([Data({"a": 1}), Data({"a": "x"})])


def test_array_creating_merger_counts_none_as_a_string():
    merged = ArrayCreatingInputMerger().merge([Data({"a": None}), Data({"a": "x"})])
    assert merged == {"a": (None, "x")}


def test_array_creating_merger_rejects_none_mixed_with_an_int():
    with pytest.raises(TypeError):
        ArrayCreatingInputMerger().merge([Data({"a": None}), Data({"a": 1})])


def test_array_creating_merger_keeps_distinct_keys_apart():
    merged = ArrayCreatingInputMerger().merge([Data({"a": 1}), Data({"b": "x"})])
    assert merged == {"a": (1,), "b": ("x",)}
