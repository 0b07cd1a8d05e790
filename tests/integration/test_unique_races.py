"""Many processes enqueue the same unique name at once (reliability.md G6, scenario 9).

Eight racer processes wait at a barrier, then each makes many ``enqueue_unique_work``
(or ``enqueue_unique_periodic_work``) calls on one name as fast as it can, while a
worker process runs what they enqueue, so the existing work is ENQUEUED, RUNNING or
finished at any moment. A sampler reads the database all along. Whatever the
interleaving, the name has exactly one live chain: every row with the name belongs
to the chain the ``uniquename`` guard row names, REPLACE and KEEP leave one row,
APPEND leaves one linear chain that runs strictly one job after another, and no
error reaches a caller.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import HERE, Cluster

NAME = "race"
PROCESSES = 8
POLICIES = ["KEEP", "REPLACE", "APPEND", "APPEND_OR_REPLACE"]
PERIODIC_POLICIES = ["periodic:KEEP", "periodic:UPDATE", "periodic:CANCEL_AND_REENQUEUE"]
APPENDING = {"APPEND", "APPEND_OR_REPLACE"}


class Sampler(threading.Thread):
    """Checks the invariants on a read connection every few milliseconds while the race runs."""

    def __init__(self, db: Path, policy: str) -> None:
        super().__init__(daemon=True)
        self.db, self.policy = db, policy
        self.stop = threading.Event()
        self.samples = 0
        self.violations: list[str] = []

    def run(self) -> None:
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30)
        while not self.stop.is_set():
            try:
                self.check(conn)
            except sqlite3.OperationalError:
                pass  # the file is being created or migrated
            time.sleep(0.003)
        conn.close()

    def check(self, conn: sqlite3.Connection) -> None:
        chains, rows, roots, running, off_chain = conn.execute(
            """SELECT count(DISTINCT n.chain), count(*),
                      sum(NOT EXISTS (SELECT 1 FROM dependency d WHERE d.work_id = n.work_id)),
                      sum(w.state = 1),
                      sum(n.chain != (SELECT chain FROM uniquename u WHERE u.name = n.name))
               FROM workname n JOIN workspec w ON w.id = n.work_id WHERE n.name = ?""",
            (NAME,),
        ).fetchone()
        self.samples += 1
        problems = []
        if chains > 1 or (off_chain or 0) > 0:
            problems.append(f"{chains} chains, {off_chain} rows off the live chain")
        if (running or 0) > 1:
            problems.append(f"{running} rows RUNNING at once")
        if self.policy in APPENDING:
            if (roots or 0) > 1:
                problems.append(f"{roots} roots")
        elif rows > 1:
            problems.append(f"{rows} rows")
        if problems:
            self.violations.append("; ".join(problems))


def race(cluster: Cluster, policy: str, per_process: int) -> Sampler:
    """Run the race; return the sampler, stopped, after every racer has exited."""
    barrier = cluster.ledger_dir.parent / "barrier"
    barrier.mkdir()
    cluster.start_worker()
    env = {**cluster.env, "RACE_DIR": str(barrier)}
    racers = [
        subprocess.Popen(
            [sys.executable, str(HERE / "unique_racer.py"), str(i), str(per_process), policy],
            env=env,
            cwd=HERE,
            stdout=subprocess.PIPE,
        )
        for i in range(PROCESSES)
    ]
    cluster.procs.extend(racers)  # type: ignore[arg-type]
    cluster.wait_for(
        lambda: len(list(barrier.glob("ready-*"))) == PROCESSES, timeout=60, what="every racer ready"
    )
    sampler = Sampler(cluster.db, policy)
    sampler.start()
    (barrier / "go").touch()
    reports = []
    for racer in racers:
        out, _ = racer.communicate(timeout=120)
        assert racer.returncode == 0, f"racer exited with {racer.returncode}"
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    sampler.stop.set()
    sampler.join(10)
    errors = [e for r in reports for e in r["errors"]]
    assert errors == [], f"errors reached callers: {errors}"
    assert sum(r["done"] for r in reports) == PROCESSES * per_process
    return sampler


def named_rows(db: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT w.id, w.state, n.chain FROM workname n JOIN workspec w ON w.id = n.work_id "
            "WHERE n.name = ?",
            (NAME,),
        ).fetchall()


def live_chain(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT chain FROM uniquename WHERE name = ?", (NAME,)).fetchone()[0])


def check_one_linear_chain(db: Path, expected_rows: int) -> None:
    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT work_id FROM workname WHERE name = ?", (NAME,))}
        edges = conn.execute("SELECT work_id, prerequisite_id FROM dependency").fetchall()
    assert len(ids) == expected_rows
    prerequisites = {i: [p for w, p in edges if w == i] for i in ids}
    dependents = {i: [w for w, p in edges if p == i] for i in ids}
    assert sum(1 for i in ids if not prerequisites[i]) == 1, "not exactly one root"
    assert all(len(p) <= 1 for p in prerequisites.values()), "a row follows two others"
    assert all(len(d) <= 1 for d in dependents.values()), "the chain forks"


def check_runs_never_overlap(cluster: Cluster) -> None:
    running = 0
    for event in cluster.events():
        running += {"start": 1, "end": -1}.get(event["event"], 0)
        assert running <= 1, "two appended jobs ran at once"


def run_policy(cluster: Cluster, policy: str, per_process: int) -> Sampler:
    """Race ``policy`` and check every invariant (AssertionError if one fails); the sampler back."""
    total = PROCESSES * per_process
    sampler = race(cluster, policy, per_process)
    assert sampler.samples > 10, "the sampler hardly looked"
    assert sampler.violations == [], sampler.violations[:5]

    rows = named_rows(cluster.db)
    assert {chain for _, _, chain in rows} == {live_chain(cluster.db)}
    if policy in APPENDING:
        check_one_linear_chain(cluster.db, total)  # every call appended exactly once
        cluster.wait_for(
            lambda: {state for _, state, _ in named_rows(cluster.db)} == {2},
            timeout=120,
            what="the appended chain to finish",
        )
        assert sum(cluster.starts().values()) == total
        check_runs_never_overlap(cluster)
    else:
        assert len(rows) == 1, f"{len(rows)} rows carry the name"
    return sampler


@pytest.mark.parametrize("policy", POLICIES + PERIODIC_POLICIES)
def test_racing_unique_enqueues_leave_exactly_one_live_chain(cluster: Cluster, policy: str) -> None:
    run_policy(cluster, policy, per_process=int(os.environ.get("WM_RACE_CALLS", "50")))


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_racing_500_unique_enqueues_per_process_leave_exactly_one_live_chain(
    cluster: Cluster, policy: str
) -> None:
    run_policy(cluster, policy, per_process=500)
