"""Concurrency and SQLite locking (reliability.md §4.2, cases 10-12; case 9 is
tests/integration/test_unique_races.py)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from workmanager import OneTimeWorkRequest, WorkManager, errors

from .harness.app import ALL, Mark

# -- case 12 ------------------------------------------------------------------------------------


def _enqueue_in_forked_child(wm: WorkManager, parent_conn_id: int, k: int, n: int, out: Path) -> None:
    # The inherited WorkManager is used as it is; its storage must have opened a connection of
    # its own in this process, never touching the parent's.
    for i in range(n):
        wm.enqueue(OneTimeWorkRequest(Mark, input_data={"job": f"c{k}_{i}"}))
    reused = id(wm._storage._conn) == parent_conn_id  # type: ignore[attr-defined]
    out.write_text("reused" if reused else "own")


def test_case12_forked_children_open_their_own_connection_and_nothing_is_corrupted(tmp_path: Path) -> None:
    db = tmp_path / "w.db"
    wm = WorkManager(db, workers=list(ALL))
    wm.enqueue(OneTimeWorkRequest(Mark, input_data={"job": "parent"}))
    parent_conn_id = id(wm._storage._conn)  # type: ignore[attr-defined]
    fork = multiprocessing.get_context("fork")
    children = [
        fork.Process(target=_enqueue_in_forked_child, args=(wm, parent_conn_id, k, 250, tmp_path / f"c{k}"))
        for k in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)

    assert [c.exitcode for c in children] == [0, 0, 0, 0]
    assert {(tmp_path / f"c{k}").read_text() for k in range(4)} == {"own"}
    wm.enqueue(OneTimeWorkRequest(Mark, input_data={"job": "parent-after"}))  # the parent's still works
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("SELECT count(*) FROM workspec").fetchone()[0] == 1002
    conn.close()
    wm.close()


MOUNTINFO = """\
22 1 253:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
41 22 0:40 / {mount} rw,relatime shared:20 - {fstype} server:/export rw,vers=4.2
"""


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3"])
def test_case12_a_database_on_a_network_filesystem_is_refused_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    from workmanager.storage import sqlite as sqlite_storage

    fake = tmp_path / "mountinfo"
    fake.write_text(MOUNTINFO.format(mount=tmp_path, fstype=fstype))
    monkeypatch.setattr(sqlite_storage, "MOUNTINFO", str(fake))

    with pytest.raises(errors.DatabaseOpenError, match=rf"network filesystem \({fstype}\)"):
        WorkManager(tmp_path / "w.db", workers=list(ALL))
    assert not (tmp_path / "w.db").exists()


def test_case12_a_database_on_a_local_filesystem_under_a_network_mount_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workmanager.storage import sqlite as sqlite_storage

    fake = tmp_path / "mountinfo"
    # The NFS mount is a sibling folder; the database's own folder is on the local root.
    fake.write_text(MOUNTINFO.format(mount=tmp_path / "elsewhere", fstype="nfs4"))
    monkeypatch.setattr(sqlite_storage, "MOUNTINFO", str(fake))

    WorkManager(tmp_path / "w.db", workers=list(ALL)).close()
