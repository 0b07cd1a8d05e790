"""H4, the process supervisor: starts ``workmanager worker`` processes and hurts them on a schedule.

Every fault it injects (SIGKILL, SIGSTOP/SIGCONT, SIGTERM) is appended to the fault log
*before* the signal is sent, in the ledger's format, so the checker can attribute a
duplicate run to the process that was hurt. Random schedules come from one seed, printed
by the scenario, so a failure can be replayed. Child processes also write the library's
fault-point log (``WORKMANAGER_FAULTS_LOG``) to the same file.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workmanager import faults

from .ledger import Ledger, append, read_lines
from .target import Target

HERE = Path(__file__).resolve().parent
Proc = subprocess.Popen[bytes]


class Supervisor:
    def __init__(self, target: Target, seed: int, *, app: str = "app:wm", **env: str) -> None:
        self.target = target
        self.seed = seed
        self.rng = random.Random(seed)
        self.app = app
        self.workdir = target.workdir
        self.ledger = Ledger(self.workdir / "ledger")
        self.fault_log = self.workdir / "faults.jsonl"
        self.procs: list[Proc] = []
        self.env = {
            **os.environ,
            "WORKMANAGER_DATABASE": target.url,
            "LEDGER_DIR": str(self.ledger.directory),
            faults.LOG_ENV: str(self.fault_log),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            **env,
        }
        self.env.pop(faults.ENV, None)  # armed per process, never inherited by accident

    # -- processes ----------------------------------------------------------------------------

    def _child_env(self, faults_spec: str | None, env: dict[str, str]) -> dict[str, str]:
        child_env = {**self.env, **env}
        if faults_spec:
            child_env[faults.ENV] = faults_spec
            # The n-th process started gets the n-th seed: the same run draws the same faults.
            child_env[faults.SEED_ENV] = f"{self.seed}.{len(self.procs)}"
        return child_env

    def start_worker(self, *, faults_spec: str | None = None, **env: str) -> Proc:
        child_env = self._child_env(faults_spec, env)
        proc = subprocess.Popen(
            [sys.executable, "-m", "workmanager.cli", "worker", self.app],
            env=child_env,
            cwd=HERE,
            start_new_session=True,
            stderr=open(self.workdir / "workers.log", "ab"),  # noqa: SIM115 (the child owns it)
        )
        self.procs.append(proc)
        return proc

    def run_script(
        self, args: list[str], *, faults_spec: str | None = None, pipes: bool = False, **env: str
    ) -> Proc:
        """Start ``python <args>`` (a harness script such as enqueuer.py) with the same environment;
        ``pipes``: its stdin and stdout are pipes to this process (text, line-buffered)."""
        child_env = self._child_env(faults_spec, env)
        pipe = subprocess.PIPE if pipes else None
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=child_env,
            cwd=HERE,
            start_new_session=True,
            stdin=pipe,
            stdout=pipe,
            text=pipes,
            bufsize=1 if pipes else -1,
            stderr=open(self.workdir / "scripts.log", "ab"),  # noqa: SIM115
        )
        self.procs.append(proc)
        return proc

    def alive(self) -> list[Proc]:
        return [p for p in self.procs if p.poll() is None]

    def log_fault(self, kind: str, pid: int, **extra: Any) -> None:
        append(
            self.fault_log, {"kind": kind, "pid": pid, "t": time.time(), "t_mono": time.monotonic(), **extra}
        )

    def kill9(self, proc: Proc) -> None:
        self.log_fault("sigkill", proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self, proc: Proc) -> None:
        """SIGSTOP: the process stays alive but silent (a zombie owner)."""
        self.log_fault("sigstop", proc.pid)
        os.killpg(proc.pid, signal.SIGSTOP)

    def cont(self, proc: Proc) -> None:
        self.log_fault("sigcont", proc.pid)
        os.killpg(proc.pid, signal.SIGCONT)

    def term(self, proc: Proc) -> None:
        self.log_fault("sigterm", proc.pid)
        proc.send_signal(signal.SIGTERM)

    # -- schedules ----------------------------------------------------------------------------

    def chaos(
        self,
        until: Callable[[], bool],
        *,
        every: tuple[float, float] = (0.5, 3.0),
        timeout: float = 600.0,
        restart: Callable[[], Proc] | None = None,
        keep: int | None = None,
    ) -> int:
        """Until ``until()``: every ``every`` seconds (seeded) SIGKILL a random live worker and
        start a replacement (and replace any that died by themselves), keeping ``keep`` workers
        (default: as many as are alive at the start). Returns the number of kills."""
        restart = restart or self.start_worker
        if keep is None:
            keep = len([p for p in self.alive() if p.args[-1] == self.app])
        kills = 0
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError(f"chaos: not done after {timeout} s (seed {self.seed})")
            pause_until = time.monotonic() + self.rng.uniform(*every)
            while time.monotonic() < pause_until and not until():
                time.sleep(0.05)
            victims = [p for p in self.alive() if p.args[-1] == self.app]
            for _ in range(keep - len(victims)):  # some died by themselves (a fault point)
                victims.append(restart())
            if victims and not until():
                self.kill9(self.rng.choice(victims))
                kills += 1
                restart()
        return kills

    def keep_alive(
        self,
        count: int,
        until: Callable[[], bool],
        *,
        timeout: float = 600.0,
        faults_spec: str | None = None,
        **env: str,
    ) -> int:
        """Keep ``count`` workers running (replacing those that die, e.g. at an armed fault point)
        until ``until()``; returns how many were started."""
        mine: list[Proc] = []
        started = 0
        deadline = time.monotonic() + timeout
        while True:
            for p in mine:
                if p.poll() is not None and p.returncode != 0:
                    # It died by itself (a kill point, a poison job): its runs may re-run.
                    self.log_fault("died", p.pid, returncode=p.returncode)
            mine = [p for p in mine if p.poll() is None]
            if until():
                return started
            if time.monotonic() > deadline:
                raise AssertionError(f"keep_alive: not done after {timeout} s (seed {self.seed})")
            while len(mine) < count:
                mine.append(self.start_worker(faults_spec=faults_spec, **env))
                started += 1
            time.sleep(0.05)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what} (seed {self.seed})")
            time.sleep(0.05)

    def stop_all(self, timeout: float = 60.0) -> None:
        """SIGTERM every live process (a graceful stop) and wait for all of them."""
        for proc in self.alive():
            self.term(proc)
        for proc in self.procs:
            proc.wait(timeout=timeout)

    def faults_logged(self) -> list[dict[str, Any]]:
        return read_lines(self.fault_log)

    def fault_counts(self) -> Counter[str]:
        return Counter(f["kind"] for f in self.faults_logged())

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
