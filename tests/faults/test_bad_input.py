"""Case 22: oversized, unserialisable and unstorable input is refused at enqueue (G10).

Every kind is tried on a database a worker process is serving: each must raise a typed error
(DataTooLargeError, TypeError or ValueError, naming the field), write nothing, and leave the
worker running and able to run good work.
"""

from __future__ import annotations

import datetime
import math
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workmanager import DataTooLargeError, ExistingWorkPolicy, OneTimeWorkRequest, WorkManager
from workmanager.requests import MAX_NAME_LENGTH

from .harness import registry
from .harness.app import Mark
from .harness.checker import Report, check
from .harness.drive import drain, wait_until
from .harness.registry import Context, scenario
from .harness.target import require_postgres


class _Custom:
    def __reduce__(self) -> tuple[Any, ...]:  # what a pickle-based store would run on load
        return (print, ("unpickled",))


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


#: kind -> (how to enqueue it, the error type it must raise)
BAD: dict[str, tuple[Callable[[WorkManager], None], type[Exception]]] = {
    "oversized_input": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={"k": "x" * 10_240})),
                        DataTooLargeError),
    "nested_depth_1000": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={"k": _nested(1000)})),
                          TypeError),
    "nan": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={"k": math.nan})), TypeError),
    "infinity": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={"k": -math.inf})), TypeError),
    "non_str_key": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={1: "v"})), TypeError),
    "datetime": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={"k": datetime.datetime.now()})),
                 TypeError),
    "custom_object": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={"k": _Custom()})), TypeError),
    "int_over_64_bits": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, input_data={"k": 2**64})), TypeError),
    "unique_name_10000": (lambda wm: wm.enqueue_unique_work("n" * 10_000, ExistingWorkPolicy.KEEP,
                                                            OneTimeWorkRequest(Mark)), ValueError),
    "unique_name_nul": (lambda wm: wm.enqueue_unique_work("a\0b", ExistingWorkPolicy.KEEP,
                                                          OneTimeWorkRequest(Mark)), ValueError),
    "tag_nul": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, tags={"a\0b"})), ValueError),
    "tag_10000": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, tags={"t" * 10_000})), ValueError),
    "tag_lone_surrogate": (lambda wm: wm.enqueue(OneTimeWorkRequest(Mark, tags={"\ud800"})), ValueError),
    "unregistered_worker": (lambda wm: wm.enqueue(OneTimeWorkRequest("os.system")), ValueError),
}  # fmt: skip


def _require_server() -> None:
    require_postgres()


def _rows(ctx: Context) -> int:
    return int(ctx.target.sql("SELECT count(*) FROM workspec")[0][0])


@scenario("bad_input", case="22", title="oversized, unserialisable and unstorable input at enqueue",
          fast_n=1, soak_n=20, backends=("sqlite", "postgres"))  # fmt: skip
def bad_input(ctx: Context) -> Report:
    """``n`` rounds of every kind in BAD while a worker serves the database, then one good job."""
    wm = WorkManager(ctx.target.url, workers=[Mark])  # never started: it only enqueues
    sup = ctx.supervisor()
    worker = sup.start_worker()
    report = Report()
    jobs: dict[str, str] = {}
    try:
        for round_ in range(ctx.n):
            for kind, (enqueue, expected) in BAD.items():
                sup.log_fault(f"bad_input:{kind}", 0)
                before = _rows(ctx)
                try:
                    enqueue(wm)
                except expected as exc:
                    if not str(exc):
                        report.fail(f"{kind}: {type(exc).__name__} without a message")
                except Exception as exc:
                    report.fail(f"{kind}: raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
                else:
                    report.fail(f"{kind}: accepted")
                if _rows(ctx) != before:
                    report.fail(f"{kind}: wrote {_rows(ctx) - before} row(s)")
                if worker.poll() is not None:
                    report.fail(f"{kind}: the worker exited")
            good = OneTimeWorkRequest(Mark, input_data={"job": f"good{round_}"})
            wm.enqueue(good)
            jobs[str(good.id)] = f"good{round_}"
        wait_until(lambda: len(sup.ledger.starts()) == len(jobs), 60, "the good jobs", ctx.seed)
    finally:
        wm.close()
    drain(ctx, sup)
    report.merge(check(ctx.target, sup.ledger, jobs=jobs))
    report.figures["enqueued"] = len(jobs)
    return report


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case22_every_bad_input_is_refused_with_a_typed_error_and_writes_nothing(
    tmp_path: Path, backend: str
) -> None:
    if backend == "postgres":
        _require_server()
    report = registry.run("bad_input", backend, "fast", tmp_path)
    report.assert_ok()
    assert sum(v for k, v in report.figures.items() if k.startswith("fault:bad_input:")) == len(BAD)


# -- the same, for whatever hypothesis finds ---------------------------------------------------------

#: Values Data must refuse: containers, non-finite floats, out-of-range ints, other objects.
UNSUPPORTED = st.one_of(
    st.dictionaries(st.text(max_size=3), st.integers(), min_size=1),
    st.lists(st.lists(st.integers(), min_size=1), min_size=1),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers().filter(lambda i: not -(2**63) <= i < 2**63),
    st.datetimes(),
    st.uuids(),
    st.sets(st.integers(), min_size=1),
    st.complex_numbers(),
    st.builds(object),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(max_size=20), value=UNSUPPORTED)
def test_any_unsupported_input_value_raises_type_error_naming_the_key(
    tmp_path: Path, key: str, value: object
) -> None:
    wm = WorkManager(tmp_path / f"{uuid.uuid4().hex}.db", workers=[Mark])
    try:
        with pytest.raises(TypeError, match=re.escape(repr(key))):
            wm.enqueue(OneTimeWorkRequest(Mark, input_data={key: value}))
        assert wm._storage.work_count_by_state() == {}
    finally:
        wm.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(label=st.text(max_size=MAX_NAME_LENGTH + 50))
def test_any_tag_or_unique_name_is_stored_or_refused_with_value_error(tmp_path: Path, label: str) -> None:
    """Never a database error: what check_label lets through, SQLite stores (PostgreSQL's NUL and
    length limits are the ones check_label enforces; the bad_input scenario runs there)."""
    wm = WorkManager(tmp_path / f"{uuid.uuid4().hex}.db", workers=[Mark])
    try:
        for enqueue in (
            lambda: wm.enqueue(OneTimeWorkRequest(Mark, tags={label})),
            lambda: wm.enqueue_unique_work(label, ExistingWorkPolicy.KEEP, OneTimeWorkRequest(Mark)),
        ):
            try:
                enqueue()
            except ValueError as exc:
                assert (
                    "must be a non-empty str" in str(exc)
                    or "limit" in str(exc)
                    or "NUL" in str(exc)
                    or ("surrogate" in str(exc))
                )
    finally:
        wm.close()
