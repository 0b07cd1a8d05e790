"""Work ids are UUIDv7: time-ordered, strictly increasing in a process, still mostly random."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workmanager import OneTimeWorkRequest, Result, Worker, ids


class Hello(Worker):
    name = "hello"

    def do_work(self) -> Result:
        return Result.success()


def test_a_new_request_gets_a_version_7_rfc_9562_uuid() -> None:
    work_id = OneTimeWorkRequest(Hello).id

    assert work_id.version == 7
    assert work_id.variant == uuid.RFC_4122


def test_an_id_given_by_the_caller_is_kept() -> None:
    mine = uuid.uuid4()

    assert OneTimeWorkRequest(Hello, id=mine).id == mine


def test_ids_made_one_after_another_increase_as_values_and_as_text() -> None:
    made = [ids.uuid7() for _ in range(20_000)]  # many per millisecond: the counter orders them

    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert [str(i) for i in made] == sorted(str(i) for i in made)


def test_the_id_carries_the_wall_clock_millisecond_it_was_made_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_now_ns", lambda: 1_795_960_000_123_456_789)

    assert ids.timestamp_ms(ids.uuid7()) == 1_795_960_000_123


def test_a_full_counter_borrows_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids, "_now_ns", lambda: 5_000_000_000)
    monkeypatch.setattr(ids, "_last_ms", 0)
    made = [ids.uuid7() for _ in range(0x1000 + 2)]

    assert made == sorted(made)
    assert {ids.timestamp_ms(i) for i in made} == {5_000, 5_001}


def test_a_clock_that_steps_back_does_not_make_ids_go_back(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [10_000_000_000]
    monkeypatch.setattr(ids, "_now_ns", lambda: now[0])
    monkeypatch.setattr(ids, "_last_ms", 0)
    first = ids.uuid7()
    now[0] -= 3_600 * 10**9  # an hour back

    assert ids.uuid7() > first


def test_ids_from_many_threads_are_all_distinct() -> None:
    made: list[uuid.UUID] = []

    def make() -> None:
        made.extend(ids.uuid7() for _ in range(2_000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(set(made)) == 8_000


def test_a_user_id_of_another_version_has_no_timestamp() -> None:
    assert ids.timestamp_ms(uuid.uuid4()) is None


@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_the_version_and_variant_bits_hold_for_any_millisecond(ms: int) -> None:
    saved = ids._now_ns, ids._last_ms
    ids._now_ns, ids._last_ms = (lambda: ms * 1_000_000), 0
    try:
        work_id = ids.uuid7()
    finally:
        ids._now_ns, ids._last_ms = saved

    assert work_id.version == 7 and work_id.variant == uuid.RFC_4122
    assert ids.timestamp_ms(work_id) == ms


def test_short_ids_of_work_made_together_differ() -> None:
    made = [ids.uuid7() for _ in range(200)]  # the same millisecond, mostly: one time prefix

    assert len({ids.short_id(i) for i in made}) == 200  # 32 random bits: a clash is a 1 in 200,000 chance
    assert ids.short_id(made[0]) == str(made[0])[-8:]


def test_a_forked_child_does_not_draw_the_random_bytes_its_parent_draws() -> None:
    ids.random_bytes(8)  # the pool is filled, with bytes left for the next draws
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draw, to the parent
        try:
            os.write(write_end, ids.random_bytes(8))
        finally:
            os._exit(0)
    os.close(write_end)
    childs = os.read(read_end, 8)
    os.close(read_end)
    os.waitpid(pid, 0)

    assert len(childs) == 8 and childs != ids.random_bytes(8)


def test_work_ids_are_equal_to_the_uuid_of_their_value() -> None:
    work_id = ids.uuid7()

    assert work_id == uuid.UUID(int=work_id.int) == uuid.UUID(str(work_id))
    assert hash(work_id) == hash(uuid.UUID(str(work_id))) and work_id.is_safe is uuid.SafeUUID.unknown
