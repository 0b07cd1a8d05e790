"""Upkeep services: rescue work of dead processes, prune old finished work.

Each has a ``run_once(now)`` that tests call directly; the dispatcher calls them on a timer.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import psutil

from workmanager import faults
from workmanager.data import Data
from workmanager.info import State
from workmanager.storage.base import RunnerRow, Storage

log = logging.getLogger("workmanager.recovery")


@cache
def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return f"boot-{int(psutil.boot_time())}"


@dataclass(frozen=True)
class ProcessIdentity:
    """Who runs work: host, boot, pid and the process's start time (so a reused pid is not us)."""

    host: str
    boot_id: str
    pid: int
    process_started: float

    @classmethod
    def current(cls) -> ProcessIdentity:
        return cls(socket.gethostname(), _boot_id(), os.getpid(), psutil.Process().create_time())


def process_is_alive(pid: int, process_started: float) -> bool:
    """Is that exact process (not a later one with the same pid) still running?"""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - process_started) > 0.05:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def runner_is_dead(
    row: RunnerRow, me: ProcessIdentity, *, now: int, lease_ms: int, mono: float | None = None
) -> bool:
    """Dead when its process is gone (same host and boot) or its lease has lapsed.

    On the same host and boot the lease is judged by the host's monotonic clock (``mono``,
    where the row has one): a wall-clock jump must not make a live process look dead."""
    if row.host == me.host:
        if row.boot_id != me.boot_id:
            return True  # the machine rebooted since
        if not process_is_alive(row.pid, row.process_started):
            return True
        if mono is not None and row.heartbeat_mono > 0:
            return (mono - row.heartbeat_mono) * 1000 > lease_ms
    return now - row.heartbeat_at > lease_ms


def lost_output(max_orphaned_runs: int) -> Data:
    return Data(
        {
            "error": "WorkerLost",
            "message": f"the process running this work died {max_orphaned_runs} times in a row",
        }
    )


@dataclass(frozen=True)
class RescueResult:
    requeued: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    dead_runners: tuple[str, ...] = ()


class Rescuer:
    """Takes back RUNNING work whose process died or stopped heart-beating."""

    def __init__(self, storage: Storage, me: ProcessIdentity, own_runner_id: str | None, *,
                 lease_ms: int, max_orphaned_runs: int,
                 monotonic: Callable[[], float] | None = None) -> None:  # fmt: skip
        self._monotonic = monotonic
        self._storage = storage
        self._me = me
        self._own = own_runner_id
        self._lease_ms = lease_ms
        self._max = max_orphaned_runs
        self._lost_output = lost_output(max_orphaned_runs).to_json()

    def _dead_owners(
        self, runners: list[RunnerRow], owners: list[str | None], now: int
    ) -> tuple[set[str | None], set[str]]:
        """Owners of running work that are dead or unknown, and dead registered runners."""
        by_id = {r.id: r for r in runners}
        mono = None if self._monotonic is None else self._monotonic()
        dead = {
            rid
            for rid, row in by_id.items()
            if rid != self._own and runner_is_dead(row, self._me, now=now, lease_ms=self._lease_ms, mono=mono)
        }
        lost = {
            rid for rid in owners if rid != self._own and (rid is None or rid not in by_id or rid in dead)
        }
        return lost, dead

    def _lease_now(self, now: int) -> int:
        """The clock heartbeats are stamped with: the database's where it keeps one (PostgreSQL,
        many machines), else the caller's."""
        database_now_ms = getattr(self._storage, "database_now_ms", None)
        return now if database_now_ms is None else int(database_now_ms())

    def run_once(self, now: int) -> RescueResult:
        lease_now = self._lease_now(now)
        # A cheap look first, without the write lock: most of the time every owner is alive.
        lost, dead = self._dead_owners(
            self._storage.runner_list(), self._storage.work_running_runner_ids(), lease_now
        )
        if not lost and not dead:
            return RescueResult()
        with self._storage.transaction() as tx:
            # Decide again on one consistent snapshot: a process that registered and claimed
            # since the first look must not be mistaken for an unknown owner.
            lost, dead = self._dead_owners(tx.runner_list(), tx.work_running_runner_ids(), lease_now)
            requeued: list[str] = []
            failed: list[str] = []
            for rid in sorted(lost, key=str):
                for work_id, state in tx.work_rescue_runner(
                    rid, now=now, max_orphaned_runs=self._max, lost_output=self._lost_output
                ):
                    faults.hit("rescue.mid_batch")
                    if state == State.FAILED.value:
                        failed.append(work_id)
                        failed.extend(tx.dependency_fail_dependents(work_id, now))
                    else:
                        requeued.append(work_id)
            for rid in dead:
                tx.runner_delete(rid)
        if requeued or failed:
            log.warning(
                "rescued work of dead processes: %d back to ENQUEUED, %d FAILED after %d lost runs",
                len(requeued),
                len(failed),
                self._max,
            )
        return RescueResult(tuple(requeued), tuple(failed), tuple(sorted(dead)))


class Pruner:
    """Deletes finished work older than the threshold plus its keep_results_for."""

    def __init__(self, storage: Storage, *, threshold_ms: int) -> None:
        self._storage = storage
        self._threshold_ms = threshold_ms

    def run_once(self, now: int) -> int:
        with self._storage.transaction() as tx:
            deleted = tx.work_prune_finished(older_than=now - self._threshold_ms)
            faults.hit("prune.mid", deleted)
            return deleted
