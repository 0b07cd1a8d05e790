from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


class Cluster:
    """Starts and kills `workmanager worker` processes on one database file."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "work.db"
        self.ledger_dir = tmp_path / "ledger"
        self.ledger_dir.mkdir()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            "WORKMANAGER_DATABASE": str(self.db),
            "LEDGER_DIR": str(self.ledger_dir),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workmanager.cli", "worker", "ledger_app:wm"],
            env={**self.env, **env},
            cwd=HERE,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def events(self) -> list[dict[str, Any]]:
        lines = []
        for path in self.ledger_dir.glob("ledger-*.jsonl"):
            lines += [json.loads(line) for line in path.read_text().splitlines() if line]
        return sorted(lines, key=lambda e: e["t"])

    def starts(self) -> Counter[str]:
        return Counter(e["job"] for e in self.events() if e["event"] == "start")

    def wait_for(self, predicate: Any, timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
