"""H1, the execution ledger: one JSON line per event, appended by the process it happened in.

Each process writes its own file, opened with ``O_APPEND`` for every line and never
buffered in Python: a line is in the kernel's page cache once ``os.write`` returns, so a
SIGKILL of the writer cannot lose it (no fsync: the machine does not crash in these tests).
The supervisor's fault log and the library's fault-point log use the same format.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

#: The directory the worker processes write their ledgers to.
LEDGER_ENV = "LEDGER_DIR"


def append(path: str | os.PathLike[str], entry: dict[str, Any]) -> None:
    """Append one JSON line to ``path`` (created if need be); atomic for lines under PIPE_BUF."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
    finally:
        os.close(fd)


def record(event: str, job: str, **extra: Any) -> None:
    """A worker's event (start, end, stopped, retry, failed, ...) in this process's ledger."""
    pid = os.getpid()
    entry = {"event": event, "job": job, "pid": pid, "t": time.time(), "t_mono": time.monotonic(), **extra}
    append(Path(os.environ[LEDGER_ENV]) / f"ledger-{pid}.jsonl", entry)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of one file (a writer killed mid-line leaves no partial line: one
    write per line, but be safe and skip one that does not parse)."""
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


class Ledger:
    """The merged ledgers of a directory, read when asked."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def events(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for path in self.directory.glob("ledger-*.jsonl"):
            lines += read_lines(path)
        return sorted(lines, key=lambda e: e["t"])

    def count(self, event: str) -> Counter[str]:
        return Counter(e["job"] for e in self.events() if e["event"] == event)

    def starts(self) -> Counter[str]:
        return self.count("start")

    def by_job(self) -> dict[str, list[dict[str, Any]]]:
        jobs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.events():
            jobs[e["job"]].append(e)
        return jobs
