"""A PostgreSQL server for the benchmarks: the one named, or a throwaway cluster of our own.

The machine's shared server may be restarted by a neighbour's test in the middle of a run,
and its settings are not ours to choose; a cluster under a temp dir, on a free loopback
port, with ``fsync=on`` and default ``synchronous_commit`` (as the shared harness's
``servers.sh``), is neither. Needs the server binaries (``pg_config --bindir`` or ``$PG_BIN``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own under ``folder``, on a free loopback port."""

    def __init__(self, folder: Path) -> None:
        self.bindir = Path(
            os.environ.get("PG_BIN") or subprocess.check_output(["pg_config", "--bindir"], text=True).strip()
        )
        self.folder = folder
        self.data = folder / "pgdata"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]

    def _run(self, *cmd: str) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, *cmd], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> str:
        self.data.mkdir(parents=True)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            shutil.chown(self.folder, "postgres")
            shutil.chown(self.data, "postgres")
        self._run(
            os.fspath(self.bindir / "initdb"), "-D", os.fspath(self.data), "-U", "postgres", "--auth=trust"
        )
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=on"
        log = os.fspath(self.data / "logfile")
        self._run(
            os.fspath(self.bindir / "pg_ctl"),
            "-D",
            os.fspath(self.data),
            "-l",
            log,
            "-w",
            "-o",
            opts,
            "start",
        )
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(os.fspath(self.bindir / "pg_ctl"), "-D", os.fspath(self.data), "-m", "fast", "stop")


@contextlib.contextmanager
def server(url: str) -> Iterator[str]:
    """``url`` if given, else a throwaway cluster's for the duration of the block."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="wm-bench-pg-") as folder:
        os.chmod(folder, 0o755)  # the postgres user must reach its data directory
        cluster = ThrowawayPostgres(Path(folder))
        try:
            yield cluster.start()
        finally:
            cluster.stop()
