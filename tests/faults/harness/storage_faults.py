"""H6, storage faults: a database that is full, without privileges.

* ``limit_pages(wm, extra)``: ``PRAGMA max_page_count`` on this process's connection, a few
  pages above what the file holds now: the next writes get a real SQLITE_FULL.
* ``WM_FSIZE_LIMIT`` (bytes) in a worker's environment: ``app.py`` sets ``RLIMIT_FSIZE`` (and
  ignores SIGXFSZ) at start-up, so the process cannot grow any file past it: its ``-wal``
  fills up, ``write()`` fails, SQLite reports SQLITE_FULL. Space comes back when another
  process checkpoints and truncates the ``-wal`` (``free_wal``).
* ``small_tmpfs(dir, size)``: a real small filesystem (``mount -t tmpfs``, needs root or
  CAP_SYS_ADMIN; :class:`MountUnavailable` otherwise); ``fill(dir)`` writes a ballast file
  until the filesystem refuses another byte (ENOSPC), ``unfill`` deletes it: space is back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

from workmanager import WorkManager

FSIZE_ENV = "WM_FSIZE_LIMIT"


def limit_pages(wm: WorkManager, extra: int) -> int:
    """Cap this process's view of the file at its current size plus ``extra`` pages."""
    conn = wm._storage._conn  # type: ignore[attr-defined]
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return int(conn.execute(f"PRAGMA max_page_count = {pages + extra}").fetchone()[0])


def unlimit_pages(wm: WorkManager) -> None:
    wm._storage._conn.execute("PRAGMA max_page_count = 4294967294")  # type: ignore[attr-defined]


def apply_fsize_limit_from_env() -> None:
    """In a worker process: honour WM_FSIZE_LIMIT (called by app.make)."""
    limit = os.environ.get(FSIZE_ENV)
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not death
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), int(limit)))


def free_wal(db: Path) -> int:
    """Give the space back: checkpoint the -wal into the file and truncate it (from a process
    without the limit). Returns the -wal's size before."""
    wal = Path(str(db) + "-wal")
    before = wal.stat().st_size if wal.exists() else 0
    conn = sqlite3.connect(db, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return before


class MountUnavailable(RuntimeError):
    """This process may not mount a filesystem (not root, no CAP_SYS_ADMIN, no mount(8))."""


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount(8) syntax: "4m") mounted on ``directory`` (created) for the
    block; unmounted after it (lazily if a straggler still holds a file open)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(directory)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except OSError as exc:
        raise MountUnavailable(f"cannot run mount: {exc}") from exc
    if done.returncode != 0:
        raise MountUnavailable(f"mount -t tmpfs refused: {done.stderr.strip() or done.returncode}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, timeout=30)


BALLAST = "ballast"


def fill(directory: Path) -> int:
    """Write a ballast file in ``directory`` until its filesystem is full; its size back."""
    written = 0
    fd = os.open(directory / BALLAST, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += n
                if n < chunk:
                    break
    finally:
        os.close(fd)
    return written


def unfill(directory: Path) -> None:
    """Delete the ballast: the space is free again at once."""
    (directory / BALLAST).unlink(missing_ok=True)
