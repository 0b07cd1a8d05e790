"""One contract, every backend: the Storage / Transaction methods on SQLite and on PostgreSQL.

Each PostgreSQL test runs in a schema of its own (``?schema=``), created by opening the
storage and dropped afterwards, so tests cannot see each other. The server is
``$WORKMANAGER_TEST_POSTGRES`` (default: the machine's, postgres@127.0.0.1:5432/test). When
it cannot be reached the PostgreSQL tests skip — unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services import POSTGRES_URL, require_postgres
from workmanager import errors
from workmanager.config import Configuration
from workmanager.ids import uuid7
from workmanager.info import State
from workmanager.storage import open_storage
from workmanager.storage._queries import load_queries
from workmanager.storage.base import NEVER, NewWork, Storage

BACKENDS = ["sqlite", "postgres"]

ENQUEUED, RUNNING, SUCCEEDED, FAILED, BLOCKED, CANCELLED = (s.value for s in State)
TOKEN = 1234567
NOW = 1_700_000_000_000


# -- fixtures ---------------------------------------------------------------------------------------


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Backend:
    """Opens storages on one fresh database (a SQLite file, or a PostgreSQL schema)."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.schema = f"wmtest_{uuid.uuid4().hex[:12]}"
        if kind == "sqlite":
            self.url = str(tmp_path / "contract.db")
        else:
            sep = "&" if "?" in POSTGRES_URL else "?"
            self.url = f"{POSTGRES_URL}{sep}schema={self.schema}"
        self.opened: list[Storage] = []

    def open(self, configuration: Configuration | None = None) -> Storage:
        storage = open_storage(self.url, configuration or Configuration())
        self.opened.append(storage)
        return storage

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Raw SQL beside the storage (test set-up only); ``?`` placeholders on both."""
        if self.kind == "sqlite":
            import sqlite3

            with sqlite3.connect(self.url) as conn:
                return conn.execute(statement, params).fetchall()
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={self.schema}") as conn:
            cur = conn.execute(statement.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        for storage in reversed(self.opened):
            storage.close()
        if self.kind == "postgres":
            drop_schema(self.schema)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        require_postgres()
    b = Backend(request.param, tmp_path)
    try:
        yield b
    finally:
        b.close()


#: A test of one backend's own behaviour runs on that backend only (not skipped on the other).
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
postgres_only = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@pytest.fixture
def storage(backend: Backend) -> Storage:
    return backend.open()


def work(
    work_id: str | None = None,
    *,
    state: int = ENQUEUED,
    worker: str = "w",
    next_run_time: int = 0,
    tags: tuple[str, ...] = (),
    names: tuple[str, ...] = (),
    prerequisites: tuple[str, ...] = (),
    retention_ms: int = 0,
    last_enqueue_time: int = 0,
    created_at: int = NOW,
    charging: int = 0,
    interval_ms: int = 0,
    expedited: int = 0,
) -> NewWork:
    return NewWork(
        id=work_id or str(uuid.uuid4()),
        worker_name=worker,
        state=state,
        input="{}",
        input_merger="OverwritingInputMerger",
        initial_delay_ms=0,
        interval_ms=interval_ms,
        flex_ms=interval_ms,
        required_network_type=0,
        requires_charging=charging,
        requires_battery_not_low=0,
        requires_device_idle=0,
        requires_storage_not_low=0,
        backoff_policy=0,
        backoff_delay_ms=30_000,
        last_enqueue_time=last_enqueue_time,
        next_run_time=next_run_time if state == ENQUEUED else NEVER,
        minimum_retention_ms=retention_ms,
        expedited=expedited,
        out_of_quota_policy=0,
        stop_reason=-256,
        created_at=created_at,
        finished_at=None,
        tags=tags,
        names=names,
        prerequisites=prerequisites,
    )


def insert(storage: Storage, *rows: NewWork) -> list[str]:
    with storage.transaction() as tx:
        tx.work_insert(list(rows))
    return [r.id for r in rows]


def claim(
    storage: Storage, limit: int = 10, *, token: int = TOKEN, runner: str = "r1", **kw: Any
) -> list[str]:
    with storage.transaction() as tx:
        claimed = tx.work_claim_available(
            now=kw.pop("now", NOW),
            limit=limit,
            runner_id=runner,
            run_token=token,
            names=kw.pop("names", None),
            **kw,
        )
    return [c.id for c in claimed]


def state_of(storage: Storage, work_id: str) -> int | None:
    row = storage.work_info_by_id(work_id)
    return None if row is None else row.state


# -- the queries themselves ---------------------------------------------------------------------------


#: The parts SQLite builds its per-name claims from; PostgreSQL claims in one statement.
SQLITE_ONLY_QUERIES = {
    "work_waiting_arm",
    "work_waiting_names",
    # PostgreSQL plans each execution of work_info_query with the absent components folded
    # away (a custom plan), so its one statement finds an index for ids or states already.
    "work_info_query_by_ids",
    "work_info_query_by_states",
}


def test_postgres_queries_file_has_every_name_the_sqlite_file_has() -> None:
    sqlite_names = set(load_queries("workmanager.storage.sqlite")) - SQLITE_ONLY_QUERIES
    postgres_names = set(load_queries("workmanager.storage.postgres"))
    assert sqlite_names <= postgres_names, sorted(sqlite_names - postgres_names)


def test_postgres_claims_skip_locked_rows_in_one_statement() -> None:
    claim_sql = load_queries("workmanager.storage.postgres")["work_claim_available"]
    assert claim_sql.count(";") == 1 and "FOR UPDATE SKIP LOCKED" in claim_sql


# -- insert and read ----------------------------------------------------------------------------------


def test_a_work_query_of_ids_or_states_alone_reads_those_rows_in_creation_order(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.work_insert([work(k, created_at=n, next_run_time=n) for n, k in enumerate("abc", start=1)])
        assert [
            c.id for c in tx.work_claim_available(now=1, limit=1, runner_id="r", run_token=1, names=None)
        ] == ["a"]

    def query(**given: list[Any]) -> list[str]:
        components = {"ids": None, "tags": None, "names": None, "states": None} | given
        return [r.id for r in storage.work_info_query(**components)]

    assert query(ids=["c", "a", "missing"]) == ["a", "c"]
    assert query(ids=["a", "b"], states=[ENQUEUED]) == ["b"]  # "a" was claimed: RUNNING
    assert query(states=[ENQUEUED]) == ["b", "c"]
    assert query(states=[ENQUEUED, RUNNING]) == ["a", "b", "c"]
    assert query(states=[SUCCEEDED]) == []
    assert query(ids=[]) == []


def test_inserted_work_reads_back_by_id_tag_name_and_query(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.uniquename_lock("daily", "chain-1") == "chain-1"
        tx.work_insert([work("a", tags=("t1", "t2"), names=("daily",)), work("b", tags=("t1",))])

    a = storage.work_info_by_id("a")
    assert a is not None and a.state == ENQUEUED and set(a.tags) == {"t1", "t2"}
    assert storage.work_info_by_id("missing") is None
    assert [r.id for r in storage.work_info_by_tag("t1")] == ["a", "b"]
    assert [r.id for r in storage.work_info_by_name("daily")] == ["a"]
    assert [r.id for r in storage.work_info_query(ids=None, tags=["t2"], names=None, states=None)] == ["a"]
    assert {r.id for r in storage.work_info_query(ids=["a", "b"], tags=None, names=None, states=[0])} == {
        "a",
        "b",
    }
    assert storage.work_info_query(ids=None, tags=None, names=None, states=[SUCCEEDED]) == []
    assert storage.work_count_by_state() == {ENQUEUED: 2}
    listed = storage.work_list(state=None, limit=10)
    assert {row["id"] for row in listed} == {"a", "b"} and "worker_name" in listed[0]
    detail = storage.work_detail("a")
    assert detail is not None and detail["worker_name"] == "w"
    assert storage.work_detail("missing") is None


def test_inserting_an_existing_id_raises_and_writes_nothing(storage: Storage) -> None:
    insert(storage, work("a"))
    with pytest.raises(errors.WorkAlreadyExistsError), storage.transaction() as tx:
        tx.work_insert([work("b"), work("a")])
    assert state_of(storage, "b") is None
    insert(storage, work("c"))  # the storage is still usable
    assert state_of(storage, "c") == ENQUEUED


def test_a_row_inserted_alone_reads_back_with_its_tags_and_a_duplicate_raises(storage: Storage) -> None:
    storage.work_insert_alone([work("a", tags=("t", "u"))])
    assert [r.id for r in storage.work_info_by_tag("u")] == ["a"]
    with pytest.raises(errors.WorkAlreadyExistsError):
        storage.work_insert_alone([work("a", tags=("v",))])
    assert storage.work_info_by_tag("v") == []
    storage.work_insert_alone([work("b"), work("c", tags=("t",))])  # several: one transaction
    assert sorted(r.id for r in storage.work_info_by_tag("t")) == ["a", "c"]


def test_a_large_batch_inserted_alone_reads_back_whole_and_a_duplicate_in_it_writes_nothing(
    storage: Storage,
) -> None:
    # Large enough for PostgreSQL's COPY path (storage.postgres._COPY_FROM_ROWS).
    rows = [work(tags=("bulk", f"n{i}"), next_run_time=i) for i in range(300)]
    rows[7] = rows[7]._replace(cron="0 * * * *", cron_timezone="UTC", finished_at=None, input='{"k":"a\\tb"}')
    storage.work_insert_alone(rows)
    assert len(storage.work_info_by_tag("bulk")) == 300
    assert [r.id for r in storage.work_info_by_tag("n7")] == [rows[7].id]
    detail = storage.work_detail(rows[7].id)
    assert detail is not None and detail["input"] == '{"k":"a\\tb"}' and detail["cron"] == "0 * * * *"
    again = [work(tags=("late",)) for _ in range(299)] + [rows[0]]
    with pytest.raises(errors.WorkAlreadyExistsError):
        storage.work_insert_alone(again)
    assert storage.work_info_by_tag("late") == []


@pytest.mark.parametrize("how", ["one", "batch", "copy", "stream"])
def test_work_is_found_under_its_workers_name_however_it_was_inserted(backend: Backend, how: str) -> None:
    """Every request carries its worker's name as a tag (Android: the class name). Neither
    backend files a worktag row for it (the work row holds the name: PostgreSQL's migration
    0004, SQLite's 0005); every tag lookup finds it through the index by state and worker
    name, and a user's tag that happens to be another worker's name is still a tag."""
    storage = backend.open()
    mailer = [work(worker="mailer", tags=("mailer", "urgent"), next_run_time=i) for i in range(3)]
    other = work(worker="printer", tags=("printer", "mailer"))  # tagged with another worker's name
    done = work(worker="mailer", tags=("mailer",), state=SUCCEEDED)
    rows = [*mailer, other, done]
    if how == "one":
        for row in rows:
            storage.work_insert_alone([row])
    elif how == "batch":
        insert(storage, *rows)
    elif how == "copy":  # PostgreSQL's COPY path (storage.postgres._COPY_FROM_ROWS rows)
        rows += [work(worker="filler", tags=("filler",)) for _ in range(100)]
        storage.work_insert_alone(rows)
    else:
        rows += [work(worker="filler", tags=("filler",)) for _ in range(100)]
        storage.work_insert_stream(len(rows), iter(rows))
    mine = {r.id for r in [*mailer, other, done]}

    assert {r.id for r in storage.work_info_by_tag("mailer")} == mine
    assert {r.id for r in storage.work_info_query(ids=None, tags=["mailer"], names=None, states=None)} == mine
    assert {r.id for r in storage.work_info_by_tag("urgent")} == {r.id for r in mailer}
    with storage.transaction() as tx:
        assert set(tx.work_unfinished_ids(tag="mailer")) == mine - {done.id}
    assert storage.work_count_upto(cap=100, tag="printer") >= 1
    page = storage.work_page(via="id", before=None, limit=50, tag="mailer")
    assert {r["id"] for r in page} == mine
    assert {
        r["id"] for r in storage.work_page(via="state", before=None, limit=50, tag="mailer", state=SUCCEEDED)
    } == {done.id}
    filed = backend.sql("SELECT count(*) FROM worktag WHERE tag = 'mailer'")
    assert filed == [(1,)]  # only the user's tag on the printer's work


@pytest.mark.parametrize("count", [3, 300])
def test_a_streamed_batch_is_read_as_it_is_written_and_an_error_in_it_writes_nothing(
    storage: Storage, count: int
) -> None:
    """work_insert_stream takes rows as it writes them (300: through PostgreSQL's COPY); a row
    that cannot be built leaves none of the batch behind, and the storage usable."""
    rows = [work(tags=("streamed", f"n{i}"), next_run_time=i) for i in range(count)]
    storage.work_insert_stream(count, iter(rows))
    assert len(storage.work_info_by_tag("streamed")) == count
    assert [r.id for r in storage.work_info_by_tag(f"n{count - 1}")] == [rows[-1].id]

    def failing_midway() -> Iterator[NewWork]:
        for i in range(count):
            if i == count // 2:
                raise ValueError("input_data is too large")
            yield work(tags=("broken",))

    with pytest.raises(ValueError, match="too large"):
        storage.work_insert_stream(count, failing_midway())
    assert storage.work_info_by_tag("broken") == []
    storage.work_insert_stream(1, iter([work("after")]))
    assert state_of(storage, "after") == ENQUEUED


@postgres_only
def test_the_postgres_copy_types_are_the_work_tables_column_types(backend: Backend) -> None:
    from workmanager.storage.postgres import _WORK_COPY_TYPES

    storage = backend.open()
    copy_sql = load_queries("workmanager.storage.postgres")["work_copy"]
    columns = copy_sql.split("COPY workspec (", 1)[1].split(")", 1)[0]
    names = [c.strip() for c in columns.split(",")]
    types = dict(
        backend.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = 'workspec'",
            (backend.schema,),
        )
    )
    assert storage is not None and tuple(types[n] for n in names) == _WORK_COPY_TYPES


def test_many_rows_insert_in_one_transaction(storage: Storage) -> None:
    rows = [work(tags=("bulk",)) for _ in range(500)]
    insert(storage, *rows)
    assert storage.work_count_by_state() == {ENQUEUED: 500}
    assert len(storage.work_info_by_tag("bulk")) == 500


def test_a_row_inserted_in_a_batch_reads_back_as_one_inserted_alone(storage: Storage) -> None:
    def odd(work_id: str) -> NewWork:  # every kind of value a column can hold, at its edges
        return work(work_id, tags=("t", "ünï ✓", 'q"uote'), next_run_time=NEVER, charging=1)._replace(
            input='{"s": "ünï\\n\\"✓\\"", "n": null, "big": 9007199254740993}',
            cron="*/5 * * * *",
            cron_timezone="Europe/Berlin",
            custom_constraints='["gpu"]',
            trigger_paths=None,
            finished_at=None,
            stop_reason=-256,
            backoff_delay_ms=2**40,
        )

    storage.work_insert_alone([odd("alone")])
    insert(storage, odd("batched"), work("other"))

    def seen(work_id: str) -> dict[str, Any]:
        row = storage.work_detail(work_id)  # every column
        assert row is not None
        return {**row, "id": None}

    assert seen("batched") == seen("alone")
    assert sorted(r.id for r in storage.work_info_by_tag("ünï ✓")) == ["alone", "batched"]
    assert [r.id for r in storage.work_info_by_tag('q"uote') if r.id == "batched"] == ["batched"]


def test_preferences_round_trip(storage: Storage) -> None:
    assert storage.preference_get("k") is None
    with storage.transaction() as tx:
        tx.preference_set("k", 5)
        tx.preference_set("k", 7)
        assert tx.preference_get("k") == 7
    assert storage.preference_get("k") == 7


def test_a_failed_transaction_leaves_nothing(storage: Storage) -> None:
    with pytest.raises(RuntimeError), storage.transaction() as tx:
        tx.work_insert([work("a")])
        raise RuntimeError("boom")
    assert state_of(storage, "a") is None


# -- claims -------------------------------------------------------------------------------------------


def test_claim_takes_due_rows_in_order_up_to_the_limit(storage: Storage) -> None:
    insert(
        storage,
        work("late", next_run_time=NOW + 1000),
        work("b", next_run_time=20),
        work("a", next_run_time=10),
    )
    with storage.transaction() as tx:
        claimed = tx.work_claim_available(now=NOW, limit=1, runner_id="r1", run_token=TOKEN, names=None)
    assert [c.id for c in claimed] == ["a"]
    assert claimed[0].run_attempt_count == 1 and claimed[0].run_token == TOKEN
    assert claim(storage, 10) == ["b"]
    assert claim(storage, 10) == []
    assert storage.work_next_due(None) == NOW + 1000
    assert claim(storage, 10, now=NOW + 1000) == ["late"]
    assert storage.work_next_due(None) is None


def test_next_due_says_whether_expedited_work_waits(storage: Storage) -> None:
    assert storage.work_next_due_and_expedited(None) is None
    insert(storage, work("a", next_run_time=NOW + 5))
    assert storage.work_next_due_and_expedited(None) == (NOW + 5, False)
    insert(storage, work("fast", next_run_time=NOW + 9, expedited=1))
    assert storage.work_next_due_and_expedited(None) == (NOW + 5, True)


def test_claim_filters_by_worker_name_and_constraints(storage: Storage) -> None:
    insert(storage, work("x", worker="other"), work("plugged", charging=1), work("plain"))
    unplugged = {
        "net_connected": 1, "net_unmetered": 1, "net_not_roaming": 1, "net_metered": 1,
        "charging": 0, "battery_not_low": 1, "device_idle": 1, "storage_not_low": 1,
    }  # fmt: skip
    assert claim(storage, names=["w"], constraints=unplugged) == ["plain"]
    assert storage.work_next_due(["w"], unplugged) is None
    assert storage.work_next_due(["w"], unplugged, ["plugged"]) == 0
    assert claim(storage, names=["w"], constraints=unplugged, constraints_met_ids=["plugged"]) == ["plugged"]
    assert claim(storage, names=["other"]) == ["x"]


def test_a_claim_takes_the_earliest_due_work_across_worker_names(storage: Storage) -> None:
    """SQLite walks each name's waiting rows in due order and merges them: the limit takes the
    earliest across all names, whether the names are given or any name may run."""
    due = {"a": [5, 40, 41], "b": [10, 20, 50], "c": [1, 30]}
    by_time = {
        t: insert(storage, work(worker=name, next_run_time=t))[0] for name, ts in due.items() for t in ts
    }

    assert set(claim(storage, 3, names=["a", "b", "c"])) == {by_time[t] for t in (1, 5, 10)}
    assert set(claim(storage, 2)) == {by_time[t] for t in (20, 30)}
    assert storage.work_next_due(["a", "b"]) == 40
    assert claim(storage, 10, names=["b"]) == [by_time[50]]
    assert storage.work_next_due(None) == 40


def test_a_claim_for_more_worker_names_than_are_merged_at_once_still_takes_them_in_due_order(
    storage: Storage,
) -> None:
    names = [f"worker-{i:03d}" for i in range(120)]
    ids = [
        insert(storage, work(worker=name, next_run_time=len(names) - i))[0] for i, name in enumerate(names)
    ]

    assert storage.work_next_due(names) == 1
    assert set(claim(storage, 5, names=names)) == set(ids[-5:])
    assert set(claim(storage, 500, names=names[:60])) == set(ids[:60])


def test_a_claim_committed_without_waiting_for_the_disk_is_seen_by_everyone_at_once(backend: Backend) -> None:
    storage, other = backend.open(), backend.open()
    insert(storage, work("a"))
    with storage.transaction(durable=False) as tx:
        claimed = tx.work_claim_available(now=NOW, limit=5, runner_id="r1", run_token=TOKEN, names=None)
    assert [c.id for c in claimed] == ["a"]
    assert state_of(other, "a") == RUNNING


def test_only_the_transaction_asked_to_skip_the_disk_wait_does(backend: Backend) -> None:
    """SQLite: synchronous NORMAL for that transaction, FULL again after; PostgreSQL:
    synchronous_commit off for that transaction only (SET LOCAL)."""
    storage = backend.open()
    if backend.kind == "sqlite":
        read = "PRAGMA synchronous"
        relaxed, durable = 1, 2
    else:
        read = "SHOW synchronous_commit"
        relaxed, durable = "off", "on"

    def setting(tx: Any) -> Any:
        cursor = tx._conn.execute(read)
        return cursor.fetchone()[0]

    with storage.transaction(durable=False) as tx:
        assert setting(tx) == relaxed
    with storage.transaction() as tx:
        assert setting(tx) == durable


def test_claims_from_many_connections_never_share_a_row(backend: Backend) -> None:
    first = backend.open()
    insert(first, *[work() for _ in range(200)])
    storages = [first, *[backend.open() for _ in range(3)]]
    got: list[list[str]] = [[] for _ in storages]
    failures: list[BaseException] = []

    def drain(index: int) -> None:
        try:
            while True:
                ids = claim(storages[index], 7, runner=f"r{index}", token=index + 1)
                if not ids:
                    return
                got[index].extend(ids)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(storages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
    claimed = [i for ids in got for i in ids]
    assert len(claimed) == 200 and len(set(claimed)) == 200
    assert first.work_count_by_state() == {RUNNING: 200}


@postgres_only  # SQLite has one writer at a time: a second claim waits instead
def test_postgres_claim_passes_over_rows_another_transaction_is_claiming(backend: Backend) -> None:
    one, two = backend.open(), backend.open()
    insert(one, *[work(f"w{i}", next_run_time=i) for i in range(6)])
    with one.transaction() as tx:
        mine = [
            c.id for c in tx.work_claim_available(now=NOW, limit=3, runner_id="a", run_token=1, names=None)
        ]
        # Not committed yet: the other connection neither waits nor takes these rows.
        started = time.monotonic()
        theirs = claim(two, 10, runner="b", token=2)
        assert time.monotonic() - started < 2
    assert mine == ["w0", "w1", "w2"] and sorted(theirs) == ["w3", "w4", "w5"]


# -- guarded state changes and fencing ----------------------------------------------------------------


def test_finishing_needs_the_current_run_token(storage: Storage) -> None:
    insert(storage, work("a"))
    claim(storage)
    with storage.transaction() as tx:
        assert not tx.work_succeed_if_running("a", TOKEN + 1, '{"x":1}', NOW)
        assert not tx.work_progress_set_if_running("a", TOKEN + 1, '{"p":1}')
        assert tx.work_progress_set_if_running("a", TOKEN, '{"p":1}')
    assert storage.work_info_by_id("a").progress == '{"p":1}'  # type: ignore[union-attr]
    with storage.transaction() as tx:
        assert tx.work_succeed_if_running("a", TOKEN, '{"x":1}', NOW)
        assert not tx.work_succeed_if_running("a", TOKEN, '{"x":2}', NOW)  # already finished
    info = storage.work_info_by_id("a")
    assert info is not None and info.state == SUCCEEDED and info.output == '{"x":1}' and info.progress is None


def test_a_claim_records_when_the_run_started(storage: Storage) -> None:
    insert(storage, work("a"))
    assert storage.work_detail("a")["started_at"] is None  # type: ignore[attr-defined]
    claim(storage, now=NOW + 7)
    assert storage.work_detail("a")["started_at"] == NOW + 7  # type: ignore[attr-defined]


def test_a_batch_of_successes_finishes_only_runs_still_ours(storage: Storage) -> None:
    insert(storage, work("a"), work("b"), work("c"))
    claim(storage, 3)
    with storage.transaction() as tx:
        tx.work_cancel_tree(["c"], NOW)
    with storage.transaction() as tx:
        tx.work_succeed_many([("a", TOKEN, '{"x":1}'), ("b", TOKEN + 1, "{}"), ("c", TOKEN, "{}")], NOW)
    a = storage.work_info_by_id("a")
    assert a is not None and a.state == SUCCEEDED and a.output == '{"x":1}'
    assert [state_of(storage, i) for i in "bc"] == [RUNNING, CANCELLED]


def test_transitions_after_a_cancel_are_no_ops(storage: Storage) -> None:
    insert(storage, work("a"), work("b"), work("c"))
    claim(storage, 3)
    with storage.transaction() as tx:
        cancelled = tx.work_cancel_tree(["a", "b", "c"], NOW)
    assert sorted(cancelled) == [("a", "r1"), ("b", "r1"), ("c", "r1")]
    with storage.transaction() as tx:
        assert not tx.work_succeed_if_running("a", TOKEN, "{}", NOW)
        assert not tx.work_fail_if_running("b", TOKEN, "{}", NOW)
        assert not tx.work_enqueue_if_running(
            "c", TOKEN, run_attempt_count=1, last_enqueue_time=NOW, next_run_time=NOW, period_count=0,
            stop_reason=-256, next_schedule_time_override=None,
        )  # fmt: skip
        assert not tx.work_progress_set_if_running("a", TOKEN, "{}")
    assert {state_of(storage, i) for i in "abc"} == {CANCELLED}


def test_a_retry_goes_back_to_enqueued_with_its_next_run_time(storage: Storage) -> None:
    insert(storage, work("a"))
    claim(storage)
    with storage.transaction() as tx:
        assert tx.work_enqueue_if_running(
            "a", TOKEN, run_attempt_count=1, last_enqueue_time=NOW, next_run_time=NOW + 30_000, period_count=0,
            stop_reason=-256, next_schedule_time_override=None,
        )  # fmt: skip
        fields = tx.work_schedule_fields("a")
    assert fields is not None and fields.run_attempt_count == 1 and fields.last_enqueue_time == NOW
    assert claim(storage) == []
    assert claim(storage, now=NOW + 30_000, token=99) == ["a"]


def test_a_rescued_run_is_fenced_off(storage: Storage) -> None:
    insert(storage, work("a"))
    claim(storage, runner="dead", token=1)
    assert storage.work_running_runner_ids() == ["dead"]
    with storage.transaction() as tx:
        assert tx.work_rescue_runner("dead", now=NOW, max_orphaned_runs=3, lost_output="{}") == [
            ("a", ENQUEUED)
        ]
    assert claim(storage, runner="alive", token=2) == ["a"]
    with storage.transaction() as tx:
        assert not tx.work_succeed_if_running("a", 1, "{}", NOW)  # the old run, come back late
        assert tx.work_succeed_if_running("a", 2, "{}", NOW)
    assert storage.work_owned_states(["a"])["a"][0] == SUCCEEDED


def test_work_orphaned_too_often_fails(storage: Storage) -> None:
    insert(storage, work("a"), work("dep", state=BLOCKED, prerequisites=("a",)))
    for attempt in range(3):
        claim(storage, runner=f"dead{attempt}", token=attempt + 1)
        with storage.transaction() as tx:
            rescued = tx.work_rescue_runner(
                f"dead{attempt}", now=NOW, max_orphaned_runs=3, lost_output='{"e":1}'
            )
    assert rescued == [("a", FAILED)]
    info = storage.work_info_by_id("a")
    assert info is not None and info.output == '{"e":1}'
    with storage.transaction() as tx:
        assert tx.dependency_fail_dependents("a", NOW) == ["dep"]
    assert state_of(storage, "dep") == FAILED


def test_rescue_of_an_unknown_owner_takes_rows_without_one(storage: Storage) -> None:
    insert(storage, work("a"))
    claim(storage)
    backend_sql = "UPDATE workspec SET runner_id = NULL WHERE id = 'a'"
    with storage.transaction() as tx:
        tx._conn.execute(backend_sql)  # type: ignore[attr-defined]
        assert tx.work_rescue_runner(None, now=NOW, max_orphaned_runs=3, lost_output="{}") == [
            ("a", ENQUEUED)
        ]


def orphan(storage: Storage, *ids: str) -> None:
    """Make ``ids`` suspects: claimed by a process that died, rescued (orphan_count 1)."""
    claimed = claim(storage, len(ids), runner="dead", token=1)
    assert sorted(claimed) == sorted(ids)
    with storage.transaction() as tx:
        tx.work_rescue_runner("dead", now=NOW, max_orphaned_runs=3, lost_output="{}")


def claimed_work(storage: Storage, limit: int = 10, **kw: Any) -> dict[str, int]:
    """Claim; each claimed id with the orphan_count the claim returned."""
    with storage.transaction() as tx:
        claimed = tx.work_claim_available(
            now=NOW, limit=limit, runner_id="r1", run_token=TOKEN, names=None, **kw
        )
    return {c.id: c.orphan_count for c in claimed}


def test_a_claim_takes_at_most_one_suspect(storage: Storage) -> None:
    insert(storage, work("s1"), work("s2"))
    orphan(storage, "s1", "s2")
    insert(storage, work("a", next_run_time=1), work("b", next_run_time=2))
    claimed = claimed_work(storage)
    assert {i for i, orphans in claimed.items() if orphans == 0} == {"a", "b"}
    assert [orphans for orphans in claimed.values() if orphans] == [1]
    (left,) = {"s1", "s2"} - set(claimed)
    assert state_of(storage, left) == ENQUEUED


def test_a_claim_that_may_not_take_a_suspect_takes_only_the_others(storage: Storage) -> None:
    insert(storage, work("s"))
    orphan(storage, "s")
    insert(storage, work("a", next_run_time=1))
    assert claimed_work(storage, suspects=False) == {"a": 0}
    assert state_of(storage, "s") == ENQUEUED
    assert claimed_work(storage, suspects=True) == {"s": 1}


def test_next_due_leaves_suspects_out_when_asked_to(storage: Storage) -> None:
    insert(storage, work("s"))
    orphan(storage, "s")
    assert storage.work_next_due(None, suspects=False) is None
    assert storage.work_next_due(None, suspects=True) == NOW


def test_a_suspect_whose_run_ends_is_a_suspect_no_more(storage: Storage) -> None:
    insert(storage, work("s", interval_ms=900_000))
    orphan(storage, "s")
    assert claimed_work(storage) == {"s": 1}
    with storage.transaction() as tx:
        assert tx.work_enqueue_if_running(
            "s", TOKEN, run_attempt_count=0, last_enqueue_time=NOW, next_run_time=NOW, period_count=1,
            stop_reason=-256, next_schedule_time_override=None,
        )  # fmt: skip
    assert claimed_work(storage, suspects=False) == {"s": 0}


# -- chains -------------------------------------------------------------------------------------------


def test_a_dependent_unblocks_only_when_every_prerequisite_succeeded(storage: Storage) -> None:
    insert(storage, work("a"), work("b"), work("c", state=BLOCKED, prerequisites=("a", "b")))
    claim(storage, 2)
    with storage.transaction() as tx:
        tx.work_succeed_if_running("a", TOKEN, '{"from":"a"}', NOW)
        tx.dependency_unblock("a", NOW)
    assert state_of(storage, "c") == BLOCKED
    with storage.transaction() as tx:
        tx.work_succeed_if_running("b", TOKEN, '{"from":"b"}', NOW)
        tx.dependency_unblock("b", NOW)
    assert state_of(storage, "c") == ENQUEUED
    with storage.transaction() as tx:
        (claimed,) = tx.work_claim_available(now=NOW, limit=5, runner_id="r", run_token=5, names=None)
        assert claimed.id == "c" and claimed.has_prerequisites
        assert sorted(tx.work_prerequisite_outputs("c")) == ['{"from":"a"}', '{"from":"b"}']


def test_a_batch_unblocks_dependents_whose_prerequisites_all_succeeded(storage: Storage) -> None:
    insert(
        storage, work("a"), work("b"), work("x"),
        work("c", state=BLOCKED, prerequisites=("a", "b")),
        work("d", state=BLOCKED, prerequisites=("a", "x")),
    )  # fmt: skip
    claim(storage, 3)
    with storage.transaction() as tx:
        tx.work_succeed_many([("a", TOKEN, "{}"), ("b", TOKEN, "{}")], NOW)
        tx.dependency_unblock_many(["a", "b"], NOW)
    assert [state_of(storage, i) for i in "cdx"] == [ENQUEUED, BLOCKED, RUNNING]


@pytest.mark.parametrize("batched", [False, True], ids=["one", "batch"])
def test_two_prerequisites_finishing_at_once_unblock_their_dependent(backend: Backend, batched: bool) -> None:
    """Under READ COMMITTED each transaction alone would see the other prerequisite unfinished."""
    one, two = backend.open(), backend.open()
    insert(one, work("a"), work("b"), work("c", state=BLOCKED, prerequisites=("a", "b")))
    claim(one, 2)
    first_done = threading.Event()

    def succeed(tx: Any, work_id: str) -> None:
        if batched:
            tx.work_succeed_many([(work_id, TOKEN, "{}")], NOW)
            tx.dependency_unblock_many([work_id], NOW)
        else:
            tx.work_succeed_if_running(work_id, TOKEN, "{}", NOW)
            tx.dependency_unblock(work_id, NOW)

    failures: list[BaseException] = []

    def finish_b() -> None:
        try:
            first_done.wait(10)
            with two.transaction() as tx:
                succeed(tx, "b")
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=finish_b)
    thread.start()
    with one.transaction() as tx:
        succeed(tx, "a")
        first_done.set()
        time.sleep(0.3)  # the other transaction runs (or waits) meanwhile
    thread.join(30)
    assert not failures, failures
    assert state_of(one, "c") == ENQUEUED


def test_failure_and_cancel_cascade_to_every_transitive_dependent(storage: Storage) -> None:
    insert(
        storage, work("a"), work("b", state=BLOCKED, prerequisites=("a",)),
        work("c", state=BLOCKED, prerequisites=("b",)), work("x"),
        work("y", state=BLOCKED, prerequisites=("x",)),
    )  # fmt: skip
    with storage.transaction() as tx:
        assert sorted(tx.dependency_fail_dependents("a", NOW)) == ["b", "c"]
        assert sorted(tx.work_cancel_tree(["x"], NOW)) == [("x", None), ("y", None)]
    assert [state_of(storage, i) for i in "abcxy"] == [ENQUEUED, FAILED, FAILED, CANCELLED, CANCELLED]


def test_cancel_targets_by_tag_name_and_all(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.uniquename_lock("n", "a")
        tx.work_insert([work("a", tags=("t",), names=("n",)), work("b", tags=("t",)), work("c")])
        assert sorted(tx.work_unfinished_ids(tag="t")) == ["a", "b"]
        assert tx.work_unfinished_ids(name="n") == ["a"]
        assert sorted(tx.work_unfinished_ids()) == ["a", "b", "c"]


# -- unique work and updates ----------------------------------------------------------------------


def test_unique_names_guard_one_live_chain(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.uniquename_lock("n", "first") == "first"
        tx.work_insert([work("first", names=("n",))])
    with storage.transaction() as tx:
        assert tx.uniquename_lock("n", "second") == "first"  # the live chain
        assert tx.workname_states("n") == [("first", ENQUEUED, False)]
        # A new chain cannot start while a row of the old one is left.
        with pytest.raises(Exception):  # noqa: B017 - each driver's integrity error
            tx.uniquename_set_chain("n", "second")
    with storage.transaction() as tx:
        tx.uniquename_lock("n", "second")
        assert tx.work_delete(["first"]) == 1
        tx.uniquename_set_chain("n", "second")
        tx.work_insert([work("second", names=("n",))])
    assert [r.id for r in storage.work_info_by_name("n")] == ["second"]


def test_update_applies_only_at_the_generation_it_read(storage: Storage) -> None:
    insert(storage, work("a", tags=("old",)))
    with storage.transaction() as tx:
        target = tx.work_update_target("a")
        assert target is not None and target.state == ENQUEUED and target.tags == ("old",)
        new = work("a", worker="w2", tags=("new",))
        assert tx.work_update_if_unchanged(
            "a", new, state=target.state, generation=target.generation, next_run_time=5, old_tags=target.tags
        )
        assert not tx.work_update_if_unchanged(
            "a", new, state=target.state, generation=target.generation, next_run_time=5, old_tags=("new",)
        )
        assert tx.work_set_next_run_time_if_enqueued("a", 7)
        assert tx.work_update_target("missing") is None
    info = storage.work_info_by_id("a")
    assert info is not None and info.generation == 1 and info.tags == ("new",) and info.next_run_time == 7
    assert storage.work_info_by_tag("old") == []


# -- runners, rescue and prune --------------------------------------------------------------------------


def test_runner_rows_register_heartbeat_and_go(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.runner_upsert(id="r", host="h", boot_id="b", pid=1, process_started=1.5, now=NOW, workers="[]")
        assert tx.runner_heartbeat("r", NOW + 10)
        assert not tx.runner_heartbeat("nobody", NOW)
    (row,) = storage.runner_list()
    assert (row.id, row.host, row.pid, row.process_started) == ("r", "h", 1, 1.5)
    with storage.transaction() as tx:
        tx.runner_delete("r")
        assert tx.runner_list() == []


def test_prune_keeps_unfinished_dependents_prerequisites(storage: Storage) -> None:
    insert(
        storage, work("old", last_enqueue_time=0), work("kept", last_enqueue_time=NOW, retention_ms=10_000),
        work("parent", last_enqueue_time=0), work("child", state=BLOCKED, prerequisites=("parent",)),
    )  # fmt: skip
    claim(storage, 10)
    with storage.transaction() as tx:
        for work_id in ("old", "kept", "parent"):
            assert tx.work_succeed_if_running(work_id, TOKEN, "{}", NOW)
    with storage.transaction() as tx:
        assert tx.work_prune_finished(older_than=NOW) == 1
    assert state_of(storage, "old") is None and state_of(storage, "kept") == SUCCEEDED
    assert state_of(storage, "parent") == SUCCEEDED
    with storage.transaction() as tx:
        tx.work_cancel_tree(["child"], NOW)
        assert tx.work_prune_finished(older_than=None) == 3
    assert storage.work_count_by_state() == {}


def test_work_owned_states_tell_a_runner_what_changed(storage: Storage) -> None:
    insert(storage, work("a"), work("b"))
    claim(storage, 2)
    with storage.transaction() as tx:
        tx.work_cancel_tree(["b"], NOW)
    owned = storage.work_owned_states(["a", "b", "gone"])
    assert owned["a"] == (RUNNING, TOKEN, -256)
    assert owned["b"][0] == CANCELLED and "gone" not in owned


def test_expedited_usage_sums_time_after_a_point_and_prunes(storage: Storage) -> None:
    with storage.transaction() as tx:
        assert tx.expedited_usage_since(0) == 0
        tx.expedited_usage_add(100, 5)
        tx.expedited_usage_add(200, 7)
        assert tx.expedited_usage_since(100) == 7
        tx.expedited_usage_prune(150)
        assert tx.expedited_usage_since(0) == 7


def test_expedited_claims_take_only_expedited_work(storage: Storage) -> None:
    insert(storage, work("plain", next_run_time=1), work("fast", next_run_time=2)._replace(expedited=1))
    with storage.transaction() as tx:
        (claimed,) = tx.work_claim_available(
            now=NOW, limit=5, runner_id="r", run_token=1, names=None, expedited_only=True
        )
    assert claimed.id == "fast" and claimed.expedited
    assert claim(storage) == ["plain"]


# -- SQLite: telling other processes what changed --------------------------------------------------


@sqlite_only
def test_sqlite_tells_other_processes_a_work_change_from_a_change_of_state(backend: Backend) -> None:
    mine, other = backend.open(), backend.open()
    assert mine.foreign_work_changed() is False  # type: ignore[attr-defined]
    insert(mine, work("a"))
    assert other.foreign_work_changed() is True  # type: ignore[attr-defined]
    assert mine.foreign_work_changed() is False, "its own change is not news"  # type: ignore[attr-defined]
    claim(other)
    assert other.data_changed() and mine.data_changed()  # type: ignore[attr-defined]
    assert mine.foreign_work_changed() is False, "a claim changes state only"  # type: ignore[attr-defined]
    with other.transaction() as tx:
        tx.work_succeed_many([("a", TOKEN, "{}")], NOW)
        tx.dependency_unblock_many(["a"], NOW)
    assert mine.data_changed()  # type: ignore[attr-defined]
    assert mine.foreign_work_changed() is False, "nor does a success"  # type: ignore[attr-defined]


@sqlite_only
def test_sqlite_transaction_that_changed_nothing_wakes_no_one(backend: Backend) -> None:
    mine = backend.open()
    paths = list(mine.watch_paths())  # type: ignore[attr-defined]
    before = [os.stat(p).st_mtime_ns for p in paths]
    time.sleep(0.02)
    claim(mine)  # nothing to claim
    assert [os.stat(p).st_mtime_ns for p in paths] == before


# -- PostgreSQL: migrations, clock, notifications --------------------------------------------------------


def test_a_statement_failing_late_fails_the_whole_transaction(storage: Storage) -> None:
    """PostgreSQL sends a transaction's writes together (pipeline mode), so an insert's error
    may surface only at COMMIT: the transaction still fails as a whole and the connection
    goes back to the pool clean."""
    insert(storage, work("kept"))
    with pytest.raises(Exception), storage.transaction() as tx:  # noqa: B017 - each driver's error
        tx.work_insert([work("orphan", state=BLOCKED, prerequisites=("no-such-work",))])
        tx.work_succeed_many([("kept", TOKEN, "{}")], NOW)
    assert storage.work_info_by_id("orphan") is None
    for _ in range(3):  # every pooled connection still works
        insert(storage, work())
    assert state_of(storage, "kept") == ENQUEUED


def test_deleting_work_deletes_its_tag_rows_and_no_other(backend: Backend) -> None:
    storage = backend.open()
    insert(storage, work("a", tags=("t", "u"), state=SUCCEEDED), work("b", tags=("t",), state=SUCCEEDED))
    with storage.transaction() as tx:
        tx.work_delete(["a"])
    assert backend.sql("SELECT tag, work_id FROM worktag ORDER BY tag, work_id") == [("t", "b")]


@postgres_only
def test_postgres_deleting_a_few_works_probes_the_tag_key_instead_of_scanning_every_tag(
    backend: Backend,
) -> None:
    """The tag rows go with their work through a statement trigger; its DELETE must probe
    worktag's key, not hash the whole table (it did: 80 ms at 200,000 tags to prune ten)."""
    import psycopg

    storage = backend.open()
    insert(storage, *(work(f"w{i:05}", tags=("t", f"u{i % 7}"), state=SUCCEEDED) for i in range(2_000)))
    backend.sql("ANALYZE")
    plans: list[str] = []
    with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={backend.schema}") as conn:
        conn.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET auto_explain.log_nested_statements = on")
        conn.execute("SET client_min_messages = log")
        conn.execute("DELETE FROM workspec WHERE id IN ('w00001', 'w00002')")
    tag_delete = [p for p in plans if "DELETE FROM worktag" in p]
    assert tag_delete, plans
    probe = "Index Scan using worktag_pkey on worktag t"
    key = "Index Cond: ((tag = d.tag) AND (work_id = d.work_id))"
    assert probe in tag_delete[0] and key in tag_delete[0], tag_delete[0]
    assert backend.sql("SELECT count(*) FROM worktag WHERE work_id IN ('w00001', 'w00002')") == [(0,)]


@postgres_only
def test_postgres_many_processes_opening_a_new_schema_migrate_it_once(backend: Backend) -> None:
    opened: list[Storage] = []
    failures: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(open_storage(backend.url, Configuration()))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    backend.opened.extend(opened)
    assert not failures, failures
    from workmanager.storage.postgres import _MIGRATIONS

    versions = backend.sql("SELECT version FROM workmanager_schema_version ORDER BY version")
    assert versions == [(number,) for number, _, _ in _MIGRATIONS]  # each applied once


def test_an_older_schema_is_upgraded_without_the_creation_order_index(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard pages by id, so the index that only its pages read (and every enqueue
    wrote) goes from a database made by a release before that migration; its work stays."""
    module = importlib.import_module(f"workmanager.storage.{backend.kind}")
    drops = [name for _, name, _ in module._MIGRATIONS].index(DROP_WORKSPEC_CREATED[backend.kind])
    with monkeypatch.context() as old_release:
        old_release.setattr(module, "_MIGRATIONS", module._MIGRATIONS[:drops])
        old_release.setattr(module, "SCHEMA_VERSION", drops)
        ids = insert(backend.open(), work(str(uuid7())), work(str(uuid7())))
        assert index_names(backend) >= {"workspec_created"}

    upgraded = backend.open()

    assert "workspec_created" not in index_names(backend)
    assert page(upgraded) == ids[::-1]


#: The migration that stops filing the worker's name in worktag, and the index by state and
#: worker name before and after it, on each backend.
WORKER_NAME_BY_INDEX = {
    "sqlite": (
        "0005_worker_name_without_tag_row.sql",
        "workspec_state_next_run",
        "workspec_state_worker_next_run",
    ),
    "postgres": ("0004_worker_name_tag_by_index.sql", "workspec_state", "workspec_state_worker"),
}


def test_an_older_schema_loses_its_worker_name_tag_rows_and_still_finds_the_work(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's name moves from worktag to the index by state and worker name; the work
    filed under it before is found under it after (and claimed), and its other tags stay."""
    migration, old_index, new_index = WORKER_NAME_BY_INDEX[backend.kind]
    module = importlib.import_module(f"workmanager.storage.{backend.kind}")
    before = [name for _, name, _ in module._MIGRATIONS].index(migration)
    with monkeypatch.context() as old_release:
        old_release.setattr(module, "_MIGRATIONS", module._MIGRATIONS[:before])
        old_release.setattr(module, "SCHEMA_VERSION", before)
        old = backend.open()
        ids = insert(
            old, work(worker="mailer", tags=("mailer", "urgent")), work(worker="mailer", tags=("mailer",))
        )
        if backend.kind == "postgres":  # as the older release filed them (SQLite's trigger did)
            backend.sql("INSERT INTO worktag (tag, work_id) SELECT worker_name, id FROM workspec")
        assert backend.sql("SELECT count(*) FROM worktag WHERE tag = 'mailer'") == [(2,)]
        old.close()

    upgraded = backend.open()

    assert backend.sql("SELECT count(*) FROM worktag WHERE tag = 'mailer'") == [(0,)]
    assert new_index in index_names(backend) and old_index not in index_names(backend)
    assert sorted(r.id for r in upgraded.work_info_by_tag("mailer")) == sorted(ids)
    assert [r.id for r in upgraded.work_info_by_tag("urgent")] == [ids[0]]
    later = insert(upgraded, work(worker="mailer", tags=("mailer", "urgent")))
    assert backend.sql("SELECT count(*) FROM worktag WHERE tag = 'mailer'") == [(0,)]
    assert sorted(claim(upgraded, names=["mailer"])) == sorted(ids + later)


#: The migration that drops workspec_created, on each backend.
DROP_WORKSPEC_CREATED = {
    "sqlite": "0002_drop_workspec_created.sql",
    "postgres": "0003_drop_workspec_created.sql",
}


def index_names(backend: Backend) -> set[str]:
    if backend.kind == "sqlite":
        return {r[0] for r in backend.sql("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return {r[0] for r in backend.sql("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}


@postgres_only
def test_postgres_refuses_a_schema_from_a_newer_release(backend: Backend) -> None:
    backend.open()
    backend.sql("INSERT INTO workmanager_schema_version (version) VALUES (99)")
    with pytest.raises(errors.SchemaTooNewError):
        open_storage(backend.url, Configuration())


@postgres_only
def test_postgres_refuses_a_schema_with_someone_elses_workspec(backend: Backend) -> None:
    backend.sql(f'CREATE SCHEMA "{backend.schema}"')
    backend.sql("CREATE TABLE workspec (x int)")
    with pytest.raises(errors.NotAWorkManagerDatabaseError):
        open_storage(backend.url, Configuration())


def test_postgres_rejects_a_schema_name_that_is_not_an_identifier() -> None:
    with pytest.raises(ValueError, match="schema"):
        open_storage(POSTGRES_URL + "?schema=bad;name", Configuration())


@postgres_only
def test_postgres_leases_are_judged_on_the_database_clock(backend: Backend) -> None:
    """A runner on another host is dead when its lease lapses on the database's clock, whatever
    the clock of the process looking."""
    from workmanager.engine.recovery import ProcessIdentity, Rescuer

    storage = backend.open()
    insert(storage, work("fresh"), work("stale"))
    with storage.transaction() as tx:
        for runner in ("fresh", "stale"):
            tx.runner_upsert(
                id=runner, host="elsewhere", boot_id="b", pid=1, process_started=0.0, now=0, workers="[]"
            )
            tx.work_claim_available(now=NOW, limit=1, runner_id=runner, run_token=1, names=None)
    backend.sql("UPDATE runner SET heartbeat_at = heartbeat_at - 61000 WHERE id = 'stale'")
    rescuer = Rescuer(storage, ProcessIdentity.current(), "me", lease_ms=60_000, max_orphaned_runs=3)
    # The caller's clock is a day ahead: only the lapsed lease counts.
    result = rescuer.run_once(NOW + 86_400_000)
    assert result.dead_runners == ("stale",) and len(result.requeued) == 1
    owners = {row.id: row for row in storage.runner_list()}
    assert set(owners) == {"fresh"}


@contextlib.contextmanager
def listening(
    storage: Storage, *, state_changes: bool = True
) -> Iterator[tuple[threading.Event, list[bool]]]:
    """A PostgreSQL storage's listener, connected: an event set on each call, and each call's
    ``work`` flag in order (cleared of the first call, which only says it connected).
    ``state_changes``: it hears claims and successes too (as for a WorkInfo observer)."""
    kinds: list[bool] = []
    heard = threading.Event()

    def on_change(work: bool) -> None:
        kinds.append(work)
        heard.set()

    stop = storage.listen(on_change)  # type: ignore[attr-defined]
    try:
        assert heard.wait(10), "no call after connecting"
        deadline = time.monotonic() + 10
        while not storage.listening and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        if state_changes:
            storage.want_state_changes()  # type: ignore[attr-defined]
        heard.clear()
        yield heard, kinds
    finally:
        stop()


@postgres_only
def test_postgres_listeners_hear_other_processes_commits_only(backend: Backend) -> None:
    mine, other = backend.open(), backend.open()
    with listening(mine) as (heard, kinds):
        insert(mine, work("own"))
        assert not heard.wait(0.3), "own commits are not news"
        insert(other, work("theirs"))
        assert heard.wait(5), "another storage's commit was not heard"
        assert kinds[-1] is True, "an enqueue is a work change"
        heard.clear()
        other.work_insert_alone([work("alone")])
        assert heard.wait(5), "an insert on its own was not heard"
        assert kinds[-1] is True
        # The listening connection is killed: it reconnects and reports a change at once.
        heard.clear()
        backend.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE (query LIKE '%%LISTEN %%' "
            "OR query LIKE '%%listener''s check%%') "
            "AND pid <> pg_backend_pid()"
        )
        assert heard.wait(10), "no call after reconnecting"
        heard.clear()
        insert(other, work("after"))
        assert heard.wait(10), "not listening again after the reconnect"


@postgres_only
def test_postgres_listeners_hear_claims_and_successes_only_once_they_want_them(backend: Backend) -> None:
    """A dispatcher needs only work changes: claims and successes go on a channel of their own,
    which a listener joins for WorkInfo observers (and joins again after a reconnect)."""
    mine, other = backend.open(), backend.open()
    insert(other, work("a"), work("b"), work("c"))
    with listening(mine, state_changes=False) as (heard, kinds):
        assert other.work_claim_alone(now=NOW, limit=1, runner_id="r1", run_token=7, names=None)  # type: ignore[attr-defined]
        assert not heard.wait(0.5), "a dispatcher heard a claim"
        insert(other, work("new"))
        assert heard.wait(5) and kinds[-1] is True, "a work change was not heard"

        heard.clear()
        mine.want_state_changes()  # type: ignore[attr-defined]
        assert other.work_claim_alone(now=NOW, limit=1, runner_id="r1", run_token=8, names=None)  # type: ignore[attr-defined]
        assert heard.wait(5) and kinds[-1] is False, "the claim was not heard once wanted"

        backend.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE (query LIKE '%%LISTEN %%' "
            "OR query LIKE '%%listener''s check%%') "
            "AND pid <> pg_backend_pid()"
        )
        deadline = time.monotonic() + 10
        while not (heard.wait(0.05) and kinds[-1] is True) and time.monotonic() < deadline:
            heard.clear()  # the reconnect's call
        while not mine.listening and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.01)
        heard.clear()
        assert other.work_claim_alone(now=NOW, limit=1, runner_id="r1", run_token=9, names=None)  # type: ignore[attr-defined]
        assert heard.wait(5) and kinds[-1] is False, "claims were not heard after a reconnect"


@postgres_only
def test_postgres_notifies_changes_of_state_only_while_another_process_watches(backend: Backend) -> None:
    """Each NOTIFY wakes every listening connection on the server (PostgreSQL signals them
    all, whatever the channel): claims and successes are notified only while another process
    says it watches work, as a listener on the state channel does every few seconds."""
    import psycopg

    sender, watcher = backend.open(), backend.open()
    insert(sender, work("a"), work("b"))
    claim_one = functools.partial(sender.work_claim_alone, now=NOW, limit=1, runner_id="r1", names=None)  # type: ignore[attr-defined]
    with (
        listening(sender, state_changes=False),
        psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={backend.schema}") as raw,
    ):
        raw.execute(f'LISTEN "{sender.state_channel}"')  # type: ignore[attr-defined]
        sender._state_watched_until = 0.0  # type: ignore[attr-defined]  # its start-up grace over
        assert claim_one(run_token=7)
        assert list(raw.notifies(timeout=0.5)) == [], "a claim was notified with no one watching"

        with listening(watcher) as (heard, kinds):
            deadline = time.monotonic() + 10
            while not sender._state_watched() and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.01)
            assert claim_one(run_token=8)
            assert heard.wait(5) and kinds[-1] is False, "the watcher did not hear the claim"


@postgres_only
def test_postgres_a_listener_that_answers_who_watches_still_hears_what_came_with_the_question(
    backend: Backend,
) -> None:
    """Notifications committed together arrive together: the question of who watches, then a
    work change. Answering the question must not drop the work change."""
    import psycopg

    watcher = backend.open()
    with (
        listening(watcher) as (heard, kinds),
        psycopg.connect(POSTGRES_URL, options=f"-c search_path={backend.schema}") as raw,
    ):
        channel = watcher.channel  # type: ignore[attr-defined]
        raw.execute("SELECT pg_notify(%s, 'another:q')", (channel,))
        raw.execute("SELECT pg_notify(%s, 'another:w')", (channel,))
        raw.commit()
        assert heard.wait(5), "the work change sent with the question was not heard"
        assert kinds[-1] is True


@postgres_only
def test_postgres_a_process_that_starts_listening_learns_at_once_who_watches(backend: Backend) -> None:
    """It asks on connecting, and watchers answer then, not only at their next ping."""
    watcher, sender = backend.open(), backend.open()
    with listening(watcher), listening(sender, state_changes=False):
        deadline = time.monotonic() + 3  # under the watcher's ping interval (5 s)
        while time.monotonic() < deadline:
            if sender._state_watched_until - time.monotonic() > 5:  # type: ignore[attr-defined]
                break  # an answer (15 s), not the asking grace (0.5 s)
            time.sleep(0.01)
        assert sender._state_watched_until - time.monotonic() > 5  # type: ignore[attr-defined]


@postgres_only
@pytest.mark.parametrize("durable", [False, True], ids=["not-durable", "durable"])
def test_postgres_claim_alone_claims_in_one_statement_and_tells_listeners_of_a_state_change(
    backend: Backend, durable: bool
) -> None:
    mine, other = backend.open(), backend.open()
    insert(other, work("due", next_run_time=0))
    with listening(mine) as (heard, kinds):
        claim = functools.partial(other.work_claim_alone, durable=durable)  # type: ignore[attr-defined]
        claimed = claim(now=NOW, limit=4, runner_id="r1", run_token=7, names=None)
        assert [(c.id, c.run_token, c.run_attempt_count) for c in claimed] == [("due", 7, 1)]
        assert state_of(mine, "due") == RUNNING
        assert heard.wait(5), "the claim was not heard"
        assert kinds[-1] is False, "a claim is a change of state, not a work change"
        heard.clear()
        assert claim(now=NOW, limit=4, runner_id="r1", run_token=8, names=None) == []
        assert not heard.wait(0.3), "a claim of nothing is not news"


@postgres_only
def test_postgres_claims_and_successes_are_not_work_changes_but_unblocks_are(backend: Backend) -> None:
    """Other dispatchers need not look for new work after a claim or a plain success."""
    mine, other = backend.open(), backend.open()
    insert(other, work("a"), work("b"), work("c", state=BLOCKED, prerequisites=("a",)))
    with listening(mine) as (heard, kinds):

        def commit_and_hear(change: Callable[[Any], None]) -> bool:
            """Whether the commit's notifications (one or two) said it was a work change."""
            heard.clear()
            start = len(kinds)
            with other.transaction() as tx:
                change(tx)
            assert heard.wait(5), "a commit was not heard"
            time.sleep(0.1)  # a second notification of the same commit arrives meanwhile
            return any(kinds[start:])

        def claim_two(tx: Any) -> None:
            tx.work_claim_available(now=NOW, limit=2, runner_id="r", run_token=TOKEN, names=None)

        def succeed(work_id: str) -> Callable[[Any], None]:
            def change(tx: Any) -> None:
                tx.work_succeed_many([(work_id, TOKEN, "{}")], NOW)
                tx.dependency_unblock_many([work_id], NOW)

            return change

        assert commit_and_hear(claim_two) is False
        assert commit_and_hear(succeed("b")) is False  # b has no dependents
        assert commit_and_hear(succeed("a")) is True  # c becomes claimable
        assert state_of(mine, "c") == ENQUEUED


@postgres_only
def test_postgres_enqueue_joins_the_callers_transaction(backend: Backend) -> None:
    import psycopg

    storage = backend.open()
    with psycopg.connect(POSTGRES_URL) as conn:
        conn.execute("SELECT 1")  # the application's transaction is open
        with storage.transaction_on(conn) as tx:  # type: ignore[attr-defined]
            tx.work_insert([work("rolled-back")])
        assert state_of(storage, "rolled-back") is None  # not visible before the commit
        conn.rollback()
        with conn.transaction():
            with storage.transaction_on(conn) as tx:  # type: ignore[attr-defined]
                tx.work_insert([work("committed")])
            assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)
    assert state_of(storage, "rolled-back") is None
    assert state_of(storage, "committed") == ENQUEUED


# -- the engine on each backend ----------------------------------------------------------------------------


def test_a_work_manager_runs_work_chains_and_cancels_on_each_backend(backend: Backend) -> None:
    from workmanager import OneTimeWorkRequest, Result, Worker, WorkManager

    class Echo(Worker):
        name = "echo"

        def do_work(self) -> Result:
            return Result.success({"n": self.input_data.get("n", 0)})

    class Blocked(Worker):
        name = "blocked"

        def do_work(self) -> Result:
            while not self.is_stopped:
                time.sleep(0.01)
            return Result.success()

    wm = WorkManager(backend.url, workers=[Echo, Blocked])
    try:
        wm.start()
        requests = [OneTimeWorkRequest(Echo, input_data={"n": i}) for i in range(20)]
        wm.enqueue(requests)
        for i, request in enumerate(requests):
            info = wm.await_work(request.id, timeout=30)
            assert info.state is State.SUCCEEDED and info.output_data["n"] == i
        first, then = OneTimeWorkRequest(Echo), OneTimeWorkRequest(Echo)
        wm.begin_with(first).then(then).enqueue()
        assert wm.await_work(then.id, timeout=30).state is State.SUCCEEDED
        stuck = OneTimeWorkRequest(Blocked)
        wm.enqueue(stuck)
        deadline = time.monotonic() + 30
        while wm.get_work_info_by_id(stuck.id).state is not State.RUNNING:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.01)
        wm.cancel_work_by_id(stuck.id)
        assert wm.await_work(stuck.id, timeout=30).state is State.CANCELLED
    finally:
        wm.close()


def test_work_enqueued_elsewhere_starts_on_an_idle_worker_at_once(backend: Backend) -> None:
    from workmanager import OneTimeWorkRequest, Result, Worker, WorkManager

    class Quick(Worker):
        name = "quick"

        def do_work(self) -> Result:
            return Result.success()

    worker = WorkManager(backend.url, workers=[Quick])
    client = WorkManager(backend.url, workers=[Quick])
    try:
        worker.start()
        warm = OneTimeWorkRequest(Quick)
        client.enqueue(warm)
        client.await_work(warm.id, timeout=30)
        waits: list[float] = []
        for _ in range(5):
            request = OneTimeWorkRequest(Quick)
            started = time.monotonic()
            client.enqueue(request)
            client.await_work(request.id, timeout=30)
            waits.append(time.monotonic() - started)
        assert sorted(waits)[2] < 0.5, waits  # woken, not polled (the fallback is a second)
    finally:
        client.close()
        worker.close()


def test_enqueue_with_a_connection_needs_postgres(tmp_path: Path) -> None:
    from workmanager import OneTimeWorkRequest, Result, Worker, WorkManager

    class Quick(Worker):
        name = "quick"

        def do_work(self) -> Result:
            return Result.success()

    wm = WorkManager(tmp_path / "w.db", workers=[Quick])
    try:
        with pytest.raises(ValueError, match="PostgreSQL"):
            wm.enqueue(OneTimeWorkRequest(Quick), connection=object())
    finally:
        wm.close()


@postgres_only
def test_postgres_work_exists_if_and_only_if_the_application_commits(backend: Backend) -> None:
    import psycopg

    from workmanager import ExistingWorkPolicy, OneTimeWorkRequest, Result, Worker, WorkManager

    class Quick(Worker):
        name = "quick"

        def do_work(self) -> Result:
            return Result.success()

    wm = WorkManager(backend.url, workers=[Quick])
    try:
        wm.start()
        kept, lost, unique = OneTimeWorkRequest(Quick), OneTimeWorkRequest(Quick), OneTimeWorkRequest(Quick)
        with psycopg.connect(POSTGRES_URL) as conn:
            with conn.transaction():
                wm.enqueue(kept, connection=conn)
                wm.enqueue_unique_work("u", ExistingWorkPolicy.KEEP, unique, connection=conn)
                assert wm.get_work_info_by_id(kept.id) is None
            with pytest.raises(RuntimeError), conn.transaction():
                wm.enqueue(lost, connection=conn)
                raise RuntimeError("the application's own write failed")
        assert wm.await_work(kept.id, timeout=30).state is State.SUCCEEDED
        assert wm.await_work(unique.id, timeout=30).state is State.SUCCEEDED
        assert wm.get_work_info_by_id(lost.id) is None
    finally:
        wm.close()


@postgres_only
def test_one_process_at_a_time_does_the_cluster_wide_duties_and_a_survivor_takes_over(backend: Backend):
    first, second = backend.open(), backend.open()

    assert first.try_lead() is True  # type: ignore[attr-defined]
    assert second.try_lead() is False  # type: ignore[attr-defined]
    assert first.try_lead() is True  # type: ignore[attr-defined]  # still held

    first.close()  # the leader's process goes away

    assert second.try_lead() is True  # type: ignore[attr-defined]


# -- the dashboard's reads --------------------------------------------------------------------------

PAGE_INDEXES = ("id", "state", "tag", "name")


def insert_named(storage: Storage, *rows: NewWork) -> list[str]:
    """Insert rows, some under unique names (whose guard rows the same transaction makes)."""
    with storage.transaction() as tx:
        for name in sorted({n for r in rows for n in r.names}):
            tx.uniquename_lock(name, "chain")
        tx.work_insert(list(rows))
    return [r.id for r in rows]


def page(storage: Storage, via: Any = "id", before: str | None = None, **filters: Any) -> list[str]:
    return [
        r["id"] for r in storage.work_page(via=via, before=before, limit=filters.pop("limit", 10), **filters)
    ]


@pytest.mark.parametrize("via", PAGE_INDEXES)
def test_work_page_is_newest_first_and_goes_on_after_its_cursor(storage: Storage, via: str) -> None:
    ids = insert_named(
        storage, *(work(str(uuid7()), created_at=NOW + i, tags=("t",), names=("n",)) for i in range(6))
    )
    newest_first = ids[::-1]
    filters = {"id": {}, "state": {"state": ENQUEUED}, "tag": {"tag": "t"}, "name": {"name": "n"}}[via]
    first = storage.work_page(via=via, before=None, limit=4, **filters)  # type: ignore[arg-type]
    assert [r["id"] for r in first] == newest_first[:4]
    assert page(storage, via, first[-1]["id"], limit=4, **filters) == newest_first[4:]


@pytest.mark.parametrize("via", PAGE_INDEXES)
def test_the_first_page_starts_at_the_largest_id_whatever_it_is(storage: Storage, via: str) -> None:
    """No constant sorts above every id under every collation (a Danish one sorts "aa…" after
    "g"), so the first page is not "the ids below some sentinel"."""
    highest = "zz-not-a-uuid"
    ids = insert_named(storage, *(work(i, tags=("t",), names=("n",)) for i in (str(uuid7()), highest)))
    filters = {"id": {}, "state": {"state": ENQUEUED}, "tag": {"tag": "t"}, "name": {"name": "n"}}[via]
    assert page(storage, via, **filters) == [highest, ids[0]]


@pytest.mark.parametrize("via", PAGE_INDEXES)
def test_work_page_orders_by_id_so_an_id_the_user_set_sorts_by_its_value(storage: Storage, via: str) -> None:
    generated = str(uuid7())
    high, low = "ffffffff-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000"
    insert_named(
        storage,
        work(high, created_at=NOW - 60_000, tags=("t",), names=("n",)),
        work(generated, created_at=NOW, tags=("t",), names=("n",)),
        work(low, created_at=NOW + 60_000, tags=("t",), names=("n",)),
    )
    filters = {"id": {}, "state": {"state": ENQUEUED}, "tag": {"tag": "t"}, "name": {"name": "n"}}[via]
    assert page(storage, via, **filters) == [high, generated, low]


@pytest.mark.parametrize("via", PAGE_INDEXES)
def test_work_page_applies_every_filter_whichever_index_drives_it(storage: Storage, via: str) -> None:
    wanted = work(worker="mail", tags=("t",), names=("n",))
    insert_named(
        storage,
        wanted,
        work(worker="other", tags=("t",), names=("n",)),
        work(worker="mail", tags=("u",), names=("n",)),
        work(worker="mail", tags=("t",), names=("n",), state=BLOCKED),
        work(worker="mail", tags=("t",)),
    )
    filters = {"state": ENQUEUED, "tag": "t", "name": "n", "worker": "mail"}
    assert page(storage, via, **filters) == [wanted.id]


def test_work_page_treats_filter_values_as_data_not_sql(storage: Storage) -> None:
    insert(storage, work(worker="w", tags=("t",)))
    for hostile in ("x' OR '1'='1", "t' --", "%", "w; DROP TABLE workspec; --"):
        for via in PAGE_INDEXES:
            assert (
                page(storage, via, state=ENQUEUED, tag=hostile, name=hostile if via == "name" else None) == []
            )
        assert page(storage, worker=hostile) == []
    assert len(page(storage)) == 1


def test_work_count_upto_counts_a_filter_no_further_than_the_cap(storage: Storage) -> None:
    insert(storage, *(work(tags=("t",), names=()) for _ in range(5)), work(state=BLOCKED))
    assert storage.work_count_upto(cap=3, tag="t") == 3
    assert storage.work_count_upto(cap=100, tag="t") == 5
    assert storage.work_count_upto(cap=100, state=BLOCKED) == 1
    assert storage.work_count_upto(cap=100, name="none") == 0


def test_work_graph_is_the_whole_graph_around_any_of_its_work(storage: Storage) -> None:
    a, b, c, lone = (str(uuid.uuid4()) for _ in range(4))
    insert(
        storage,
        work(a),
        work(b, state=BLOCKED, prerequisites=(a,), worker="second"),
        work(c, state=BLOCKED, prerequisites=(a, b)),
        work(lone),
    )
    for start in (a, b, c):
        nodes, edges = storage.work_graph(start, cap=100)
        assert sorted(nodes) == sorted([(a, "w", ENQUEUED), (b, "second", BLOCKED), (c, "w", BLOCKED)])
        assert sorted(edges) == sorted([(b, a), (c, a), (c, b)])
    assert storage.work_graph(lone, cap=100) == ([(lone, "w", ENQUEUED)], [])
    nodes, _ = storage.work_graph(a, cap=2)
    assert len(nodes) == 2


def test_work_oldest_due_is_the_earliest_enqueued_next_run_time(storage: Storage) -> None:
    assert storage.work_oldest_due() is None
    insert(storage, work(next_run_time=NOW + 5), work(next_run_time=NOW + 1), work(state=BLOCKED))
    assert storage.work_oldest_due() == NOW + 1


def test_work_unique_names_lists_the_names_a_work_carries(storage: Storage) -> None:
    row = work(names=("b", "a"))
    insert_named(storage, row, work(names=("c",)))
    assert storage.work_unique_names(row.id) == ["a", "b"]


def test_work_page_floor_is_the_scan_th_row_back_and_bounds_the_walk(storage: Storage) -> None:
    ids = insert(storage, *(work(str(uuid7()), created_at=NOW + i) for i in range(10)))  # ids[9]: newest
    assert storage.work_page_floor(before=None, scan=3) == ids[7]
    assert storage.work_page_floor(before=ids[7], scan=3) == ids[4]
    assert storage.work_page_floor(before=ids[2], scan=3) is None  # two rows left
    window = page(storage, floor=ids[7], state=ENQUEUED)
    assert window == [ids[9], ids[8], ids[7]]
