"""A throw-away PostgreSQL server these tests may crash, stop and restart.

Started from the binaries of ``pg_config --bindir`` in a temporary folder, on a port of its
own, with fsync on (a crash restart must replay a real WAL). The machine's server is never
touched. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user (``runuser``); otherwise as the current user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from ..harness.storage_faults import small_tmpfs
from ..harness.target import Target


class Unavailable(RuntimeError):
    """No PostgreSQL binaries (or no unprivileged user to run them as)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        raise Unavailable("pg_config is not on PATH")
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
    bindir = Path(out.stdout.strip())
    if not (bindir / "initdb").exists():
        raise Unavailable(f"no initdb in {bindir}")
    return bindir


class ThrowawayCluster:
    """One server in a temporary folder: start, crash-restart, stop for a while, delete."""

    def __init__(self, *, data_tmpfs: str | None = None) -> None:
        """``data_tmpfs``: put the data directory on a tmpfs of this size ("64m"; needs mount
        permission, else MountUnavailable), the WAL (``initdb --waldir``) beside it on the
        ordinary disk, so a full data directory fails writes without a PANIC on the WAL."""
        self.bindir = _bindir()
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="wm-pgcluster-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise Unavailable("running as root and there is no postgres user to run a server") from exc
            owner = (user.pw_uid, user.pw_gid)
            os.chown(self.root, *owner)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._initdb_args: list[str] = []
        self._mount: contextlib.AbstractContextManager[Path] | None = None
        if data_tmpfs is not None:
            mount = small_tmpfs(self.data, data_tmpfs)
            try:
                mount.__enter__()
            except BaseException:
                shutil.rmtree(self.root, ignore_errors=True)
                raise
            self._mount = mount
            if owner is not None:
                os.chown(self.data, *owner)
            os.chmod(self.data, 0o700)
            self._initdb_args = [f"--waldir={self.root / 'wal'}"]
        # Given on every start: a plain ``pg_ctl start`` would use the default port.
        self._options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on "
            "-c shared_buffers=16MB -c max_connections=100"
        )
        #: Crash restarts and outages done so far, by kind.
        self.faults: dict[str, int] = {"restart_immediate": 0, "stop_fast": 0}

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=timeout, cwd=self.root)

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args)

    def create(self) -> None:
        # --no-sync only for initdb's own files; the server itself runs with fsync on.
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync", *self._initdb_args,
        )  # fmt: skip
        self._pg_ctl("-o", self._options, "start")
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE test")

    def crash_restart(self) -> None:
        """``pg_ctl restart -m immediate``: every backend killed, WAL replayed at start."""
        self._pg_ctl("restart", "-m", "immediate")
        self.faults["restart_immediate"] += 1

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: the outage lasts until :meth:`start`."""
        self._pg_ctl("stop", "-m", "fast")
        self.faults["stop_fast"] += 1

    def start(self) -> None:
        self._pg_ctl("-o", self._options, "start")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.Error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def terminate_backends(self, where: str) -> int:
        """``pg_terminate_backend`` every client backend of database test matching ``where``
        (SQL over pg_stat_activity); the number terminated."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = 'test' AND pid <> pg_backend_pid() AND ({where})"
            ).fetchall()
        return sum(1 for r in rows if r[0])

    def destroy(self) -> None:
        try:
            self._pg_ctl("stop", "-m", "immediate")
        except subprocess.SubprocessError:
            pass  # already stopped
        if self._mount is not None:
            self._mount.__exit__(None, None, None)
            self._mount = None
        shutil.rmtree(self.root, ignore_errors=True)


_shared: ThrowawayCluster | None = None


def shared_cluster() -> ThrowawayCluster:
    """The one throw-away server of this process (created on first use, deleted at exit),
    running: an earlier scenario may have left it stopped.

    Raises :class:`Unavailable` without PostgreSQL binaries; callers skip, or fail under CI."""
    global _shared
    if _shared is None:
        cluster = ThrowawayCluster()
        try:
            cluster.create()
        except BaseException:
            cluster.destroy()
            raise
        atexit.register(cluster.destroy)
        _shared = cluster
    try:
        _shared.wait_ready(timeout=2)
    except psycopg.Error:
        _shared.start()
        _shared.wait_ready()
    return _shared


class ClusterTarget(Target):
    """The harness's :class:`Target`, on a fresh schema of a throw-away server."""

    def __init__(self, cluster: ThrowawayCluster, workdir: Path) -> None:
        self.backend = "postgres"
        self.workdir = workdir
        self.path = None
        self.cluster = cluster
        self.schema = f"wmfault_{uuid.uuid4().hex[:12]}"
        self.url = f"{cluster.url}?schema={self.schema}"

    def sql(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            self.cluster.url, autocommit=True, options=f"-c search_path={self.schema}"
        ) as pg:
            cur = pg.execute(query.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []

    def drop(self) -> None:
        self.cluster.wait_ready()
        with psycopg.connect(self.cluster.url, autocommit=True) as pg:
            pg.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
