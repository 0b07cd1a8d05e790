"""Expedited work starts ahead of other waiting work, on capacity reserved for it."""

from __future__ import annotations

import threading

import pytest

from workmanager import Configuration, OneTimeWorkRequest, Result, Worker, WorkManager

WAIT_S = 10.0
order: list[str] = []
release = threading.Event()
lock = threading.Lock()


class Step(Worker):
    name = "step"

    def do_work(self) -> Result:
        with lock:
            order.append(str(self.input_data["label"]))
        if self.input_data.get("hold"):
            release.wait(WAIT_S)
        return Result.success()


@pytest.fixture(autouse=True)
def _reset() -> None:
    order.clear()
    release.clear()


def started(label: str) -> bool:
    """Wait until ``label`` (or, for "any", any work) has started."""
    for _ in range(int(WAIT_S / 0.01)):
        with lock:
            if label in order or (label == "any" and order):
                return True
        threading.Event().wait(0.01)
    return False


def test_expedited_work_starts_on_the_reserved_slot_while_ordinary_work_waits(tmp_path):
    wm = WorkManager(tmp_path / "w.db", workers=[Step], configuration=Configuration(max_concurrency=2))
    ordinary = [OneTimeWorkRequest(Step, input_data={"label": f"o{i}", "hold": True}) for i in range(3)]
    with wm:
        wm.enqueue(ordinary)
        assert started("any")
        urgent = OneTimeWorkRequest(Step, input_data={"label": "urgent"}, expedited=True)
        wm.enqueue(urgent)

        assert wm.await_work(urgent.id, timeout=WAIT_S).state.name == "SUCCEEDED"
        with lock:
            assert len(order) == 2 and order[1] == "urgent"  # two ordinary still wait: a slot is kept
        release.set()
        for request in ordinary:
            wm.await_work(request.id, timeout=WAIT_S)


def test_expedited_work_goes_ahead_of_ordinary_work_enqueued_before_it(tmp_path):
    config = Configuration(max_concurrency=1)  # a single slot: nothing reserved, order decides
    wm = WorkManager(tmp_path / "w.db", workers=[Step], configuration=config)
    blocker = OneTimeWorkRequest(Step, input_data={"label": "blocker", "hold": True})
    waiting = [OneTimeWorkRequest(Step, input_data={"label": f"w{i}"}) for i in range(3)]
    urgent = OneTimeWorkRequest(Step, input_data={"label": "urgent"}, expedited=True)
    with wm:
        wm.enqueue(blocker)
        assert started("blocker")
        wm.enqueue(waiting)
        wm.enqueue(urgent)
        release.set()
        for request in [*waiting, urgent]:
            wm.await_work(request.id, timeout=WAIT_S)

    assert order[:2] == ["blocker", "urgent"]


def test_reserved_slots_must_leave_room_for_ordinary_work():
    with pytest.raises(ValueError, match="expedited_reserved_slots"):
        Configuration(max_concurrency=2, expedited_reserved_slots=2)


class Slow(Worker):
    name = "slow"

    def do_work(self) -> Result:
        threading.Event().wait(0.05)
        return Result.success()


def test_beyond_the_quota_drop_work_request_is_not_enqueued_and_the_other_policy_runs(tmp_path):
    from datetime import timedelta

    from workmanager import OutOfQuotaPolicy

    config = Configuration(expedited_quota=timedelta(milliseconds=10))
    with WorkManager(tmp_path / "w.db", workers=[Slow], configuration=config) as wm:
        first = OneTimeWorkRequest(Slow, expedited=True)
        wm.enqueue(first)
        wm.await_work(first.id, timeout=WAIT_S)  # 50 ms of expedited time: the quota is used up
        # The usage is recorded with the dispatcher's next transaction: wait until it is.
        for _ in range(int(WAIT_S / 0.01)):
            with wm._storage.transaction() as tx:
                if tx.expedited_usage_since(0) > 0:
                    break
            threading.Event().wait(0.01)

        dropped = OneTimeWorkRequest(
            Slow, expedited=True, out_of_quota_policy=OutOfQuotaPolicy.DROP_WORK_REQUEST
        )
        demoted = OneTimeWorkRequest(Slow, expedited=True)
        wm.enqueue([dropped, demoted])

        assert wm.get_work_info_by_id(dropped.id) is None
        assert wm.await_work(demoted.id, timeout=WAIT_S).state.name == "SUCCEEDED"


def test_within_the_quota_drop_work_request_is_enqueued(tmp_path):
    from workmanager import OutOfQuotaPolicy

    with WorkManager(tmp_path / "w.db", workers=[Slow]) as wm:
        request = OneTimeWorkRequest(
            Slow, expedited=True, out_of_quota_policy=OutOfQuotaPolicy.DROP_WORK_REQUEST
        )
        wm.enqueue(request)
        assert wm.await_work(request.id, timeout=WAIT_S).state.name == "SUCCEEDED"
