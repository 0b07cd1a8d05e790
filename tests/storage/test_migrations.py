"""Forward migrations: a newer release opens a file written by an older one and upgrades it."""

from __future__ import annotations

import sqlite3

import pytest

import workmanager.storage.sqlite as sqlite_backend
from workmanager import OneTimeWorkRequest, Result, StorageError, Worker, WorkInfo, WorkManager
from workmanager.storage._migrations import load_migrations

EXTRA_MIGRATION = """
ALTER TABLE workspec ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX workspec_priority ON workspec (priority);
"""


class Noop(Worker):
    name = "noop"

    def do_work(self) -> Result:
        return Result.success()


def test_migrations_are_numbered_one_two_three_without_gaps():
    versions = [version for version, _, _ in load_migrations("workmanager.storage.sqlite")]
    assert versions == list(range(1, len(versions) + 1))


def test_a_newer_release_upgrades_an_older_file_and_keeps_its_work(tmp_path, monkeypatch):
    path = tmp_path / "w.db"
    old = WorkManager(path, workers=[Noop])
    request = OneTimeWorkRequest(Noop, tags={"kept"})
    old.enqueue(request)
    old.close()
    current = sqlite_backend.SCHEMA_VERSION
    newer = [*sqlite_backend._MIGRATIONS, (current + 1, f"{current + 1:04d}_priority.sql", EXTRA_MIGRATION)]
    monkeypatch.setattr(sqlite_backend, "_MIGRATIONS", newer)
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", current + 1)

    upgraded = WorkManager(path, workers=[Noop])

    assert upgraded._storage.pragma("user_version") == current + 1
    info = upgraded.get_work_info_by_id(request.id)
    assert info is not None and info.state is WorkInfo.State.ENQUEUED and "kept" in info.tags
    columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(workspec)")}
    assert "priority" in columns
    upgraded.close()


def test_a_failing_migration_leaves_the_file_at_its_old_version(tmp_path, monkeypatch):
    path = tmp_path / "w.db"
    WorkManager(path).close()
    current = sqlite_backend.SCHEMA_VERSION
    broken = [
        *sqlite_backend._MIGRATIONS,
        (current + 1, f"{current + 1:04d}_broken.sql", "CREATE TABLE x (;\n"),
    ]
    monkeypatch.setattr(sqlite_backend, "_MIGRATIONS", broken)
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", current + 1)

    with pytest.raises(StorageError, match=r"_broken\.sql failed"):
        WorkManager(path)

    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == current


def test_a_file_from_before_the_tags_trigger_files_new_work_under_its_tags(tmp_path, monkeypatch):
    path = tmp_path / "w.db"
    monkeypatch.setattr(sqlite_backend, "_MIGRATIONS", [m for m in sqlite_backend._MIGRATIONS if m[0] < 3])
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", 2)
    WorkManager(path, workers=[Noop]).close()
    monkeypatch.undo()

    upgraded = WorkManager(path, workers=[Noop])
    request = OneTimeWorkRequest(Noop, tags={"shared"})
    upgraded.enqueue(request)

    assert [i.id for i in upgraded.get_work_infos_by_tag("shared")] == [request.id]
    assert [i.id for i in upgraded.get_work_infos_by_tag("noop")] == [request.id]
    upgraded.close()


def test_a_file_from_before_the_in_list_fix_gets_the_pruning_index_without_an_in_list(tmp_path, monkeypatch):
    """SQLite rebuilds a constant IN list of three values into a temporary B-tree each time a
    partial index's condition is tested: on every insert and state change. The upgraded index
    spells it as ORs, and pruning still finds finished work through it."""
    path = tmp_path / "w.db"
    monkeypatch.setattr(sqlite_backend, "_MIGRATIONS", [m for m in sqlite_backend._MIGRATIONS if m[0] < 4])
    monkeypatch.setattr(sqlite_backend, "SCHEMA_VERSION", 3)
    old = WorkManager(path, workers=[Noop])
    finished = OneTimeWorkRequest(Noop)
    old.enqueue(finished)
    old.cancel_work_by_id(finished.id)
    old.close()
    monkeypatch.undo()

    upgraded = WorkManager(path, workers=[Noop])

    (condition,) = (
        sqlite3.connect(path)
        .execute("SELECT sql FROM sqlite_master WHERE name = 'workspec_finished_expiry'")
        .fetchone()
    )
    assert " IN " not in condition.upper()
    assert upgraded.prune_work() == 1
    assert upgraded.get_work_info_by_id(finished.id) is None
    upgraded.close()
