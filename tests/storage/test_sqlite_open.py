"""Opening a SQLite file: durability, refusing files that are not ours, schema versions, reopening."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from workmanager import (
    Configuration,
    DatabaseOpenError,
    NotAWorkManagerDatabaseError,
    OneTimeWorkRequest,
    Result,
    SchemaTooNewError,
    StorageError,
    Worker,
    WorkInfo,
    WorkManager,
)
from workmanager.storage import open_storage
from workmanager.storage.sqlite import SCHEMA_VERSION

State = WorkInfo.State


class SuccessWorker(Worker):
    name = "success"

    def do_work(self) -> Result:
        return Result.success()


def delayed(**options) -> OneTimeWorkRequest:
    """Work that waits an hour, so it stays ENQUEUED."""
    return OneTimeWorkRequest(SuccessWorker, initial_delay=timedelta(hours=1), **options)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file in the folder with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def make_workmanager_file(path: Path) -> None:
    WorkManager(path).close()


# -- durability -----------------------------------------------------------------------------------


def test_a_file_is_opened_in_wal_mode(tmp_path):
    storage = open_storage(str(tmp_path / "w.db"), Configuration())
    try:
        assert storage.pragma("journal_mode") == "wal"
    finally:
        storage.close()


def test_wal_mode_is_stored_in_the_file(tmp_path):
    path = tmp_path / "w.db"
    make_workmanager_file(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_is_opened_with_synchronous_full(tmp_path):
    storage = open_storage(str(tmp_path / "w.db"), Configuration())
    try:
        assert storage.pragma("synchronous") == 2  # FULL
    finally:
        storage.close()


def test_durability_normal_opens_with_synchronous_normal(tmp_path):
    storage = open_storage(str(tmp_path / "w.db"), Configuration(durability="normal"))
    try:
        assert storage.pragma("synchronous") == 1  # NORMAL
    finally:
        storage.close()


def test_a_new_file_is_made_with_2_kib_pages(tmp_path):
    path = tmp_path / "w.db"
    make_workmanager_file(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 2048


def test_an_existing_file_keeps_its_page_size(tmp_path):
    path = tmp_path / "w.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("VACUUM")  # writes the header: the page size is now the file's
    make_workmanager_file(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096


@pytest.mark.parametrize("page_size", [2048, 4096])
def test_checkpoints_come_before_the_wal_outgrows_its_size_limit(tmp_path, page_size):
    from workmanager.storage.sqlite import WAL_SIZE_LIMIT

    path = tmp_path / "w.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA page_size={page_size}")
        conn.execute("VACUUM")
    storage = open_storage(str(path), Configuration())
    try:
        pages = storage.pragma("wal_autocheckpoint")
        assert pages >= 1000  # never more often than SQLite's default
        assert pages * page_size <= max(WAL_SIZE_LIMIT, 1000 * page_size)
    finally:
        storage.close()


def test_foreign_keys_are_enforced(tmp_path):
    storage = open_storage(str(tmp_path / "w.db"), Configuration())
    try:
        assert storage.pragma("foreign_keys") == 1
    finally:
        storage.close()


# -- refusing files that are not ours -------------------------------------------------------------


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(NotAWorkManagerDatabaseError):
        WorkManager(path)


def test_a_file_that_is_not_sqlite_is_left_unchanged(tmp_path):
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    before = snapshot(tmp_path)
    with pytest.raises(NotAWorkManagerDatabaseError):
        WorkManager(path)
    assert snapshot(tmp_path) == before


def _foreign_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('Ada')")
    conn.close()


def test_a_foreign_sqlite_database_is_refused(tmp_path):
    path = tmp_path / "app.db"
    _foreign_database(path)
    with pytest.raises(NotAWorkManagerDatabaseError):
        WorkManager(path)


def test_a_foreign_sqlite_database_is_left_unchanged(tmp_path):
    path = tmp_path / "app.db"
    _foreign_database(path)
    before = snapshot(tmp_path)
    with pytest.raises(NotAWorkManagerDatabaseError):
        WorkManager(path)
    assert snapshot(tmp_path) == before


def test_refusing_a_file_is_a_storage_error_naming_the_file(tmp_path):
    path = tmp_path / "app.db"
    _foreign_database(path)
    with pytest.raises(StorageError, match=r"app\.db"):
        WorkManager(path)


def test_a_folder_that_does_not_exist_raises_database_open_error(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DatabaseOpenError, match="no-such-folder"):
        WorkManager(missing / "w.db")
    assert not missing.exists()


def test_a_path_that_is_a_folder_raises_database_open_error(tmp_path):
    with pytest.raises(DatabaseOpenError):
        WorkManager(tmp_path)


# -- schema versions ------------------------------------------------------------------------------


def test_a_new_file_gets_the_current_schema_version(tmp_path):
    path = tmp_path / "w.db"
    make_workmanager_file(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_schema_newer_than_the_code_raises_schema_too_new(tmp_path):
    path = tmp_path / "w.db"
    make_workmanager_file(path)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNewError):
        WorkManager(path)


def test_a_schema_too_new_is_left_at_its_version(tmp_path):
    path = tmp_path / "w.db"
    make_workmanager_file(path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(SchemaTooNewError):
        WorkManager(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 999
    conn.close()


# -- reopening ------------------------------------------------------------------------------------


def test_reopening_a_file_keeps_its_work(tmp_path):
    path = tmp_path / "w.db"
    first = WorkManager(path, workers=[SuccessWorker])
    request = delayed(tags={"keep"}, input_data={"n": 1})
    first.enqueue(request)
    first.close()
    second = WorkManager(path, workers=[SuccessWorker])
    try:
        info = second.get_work_info_by_id(request.id)
        assert info is not None
        assert info.state is State.ENQUEUED
        assert info.tags == {"keep", "success"}
        assert info.initial_delay == timedelta(hours=1)
    finally:
        second.close()


def test_a_sqlite_url_opens_the_same_file_as_its_path(tmp_path):
    path = tmp_path / "w.db"
    first = WorkManager(path, workers=[SuccessWorker])
    request = delayed()
    first.enqueue(request)
    first.close()
    second = WorkManager(f"sqlite:///{path}", workers=[SuccessWorker])
    try:
        assert second.get_work_info_by_id(request.id) is not None
    finally:
        second.close()


def test_two_work_managers_opening_one_new_file_one_after_the_other_share_it(tmp_path):
    path = tmp_path / "w.db"
    first = WorkManager(path, workers=[SuccessWorker])
    second = WorkManager(path, workers=[SuccessWorker])
    try:
        request = delayed()
        first.enqueue(request)
        assert second.get_work_info_by_id(request.id) is not None
    finally:
        first.close()
        second.close()


def _open_at_once(path: Path, count: int) -> tuple[list[WorkManager], list[BaseException]]:
    """``count`` threads open WorkManagers on ``path`` at the same moment."""
    barrier = threading.Barrier(count)
    opened: list[WorkManager] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def open_it() -> None:
        try:
            barrier.wait(10)
            wm = WorkManager(path, workers=[SuccessWorker])
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                opened.append(wm)

    threads = [threading.Thread(target=open_it) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return opened, errors


#: The race is narrow; enough rounds make a lost race show up on every run.
ROUNDS = 50


def test_migrations_are_idempotent_when_work_managers_open_a_new_file_at_once(tmp_path):
    for round_ in range(ROUNDS):
        path = tmp_path / f"w{round_}.db"
        opened, errors = _open_at_once(path, 4)
        try:
            assert [repr(e) for e in errors] == []
            request = delayed()
            opened[0].enqueue(request)
            assert all(wm.get_work_info_by_id(request.id) is not None for wm in opened)
        finally:
            for wm in opened:
                wm.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()


def test_an_in_memory_database_starts_empty_each_time():
    first = WorkManager(":memory:", workers=[SuccessWorker])
    request = delayed()
    first.enqueue(request)
    second = WorkManager(":memory:", workers=[SuccessWorker])
    try:
        assert second.get_work_info_by_id(request.id) is None
    finally:
        first.close()
        second.close()


def test_a_write_waits_for_another_process_holding_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    storage = open_storage(str(path), Configuration())
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    release.start()
    try:
        with storage.transaction() as tx:  # waits for the lock, then writes
            tx.preference_set("k", 1)
    finally:
        release.join()
        other.close()
    assert storage.preference_get("k") == 1
    storage.close()


# -- the plain insert ---------------------------------------------------------------------------


def test_the_plain_insert_stores_the_same_row_as_the_full_one(tmp_path):
    from workmanager.engine import records
    from workmanager.storage.base import insert_params, plain_insert_params
    from workmanager.storage.sqlite import _Q

    wm = WorkManager(tmp_path / "w.db", workers=[SuccessWorker])
    conn = wm._storage._conn
    rows = [
        records.new_work(request, now=1_000, config=wm.configuration)
        for request in (OneTimeWorkRequest(SuccessWorker, input_data={"i": 1}, tags={"x"}), delayed())
    ]
    for row in rows:
        plain = plain_insert_params(row)
        assert plain is not None
        conn.execute(_Q["work_insert"], insert_params(row._replace(id=row.id + "-full")))
        conn.execute(_Q["work_insert_plain"], plain)
        full, short = (
            conn.execute("SELECT * FROM workspec WHERE id = ?", (i,)).fetchone()
            for i in (row.id + "-full", row.id)
        )
        assert full[1:] == short[1:]
    wm.close()


def test_a_row_with_constraints_is_not_plain():
    from workmanager import Constraints
    from workmanager.engine import records
    from workmanager.storage.base import plain_insert_params

    config = Configuration()
    charging = OneTimeWorkRequest(SuccessWorker, constraints=Constraints(requires_charging=True))
    triggered = OneTimeWorkRequest(SuccessWorker, constraints=Constraints(trigger_paths=("/tmp",)))
    for request in (charging, triggered):
        assert plain_insert_params(records.new_work(request, now=1, config=config)) is None
