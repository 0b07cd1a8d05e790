"""H7, the invariant checker: the final database, the ledger and the fault log, checked together.

Run after every scenario, once the queue has drained (faults stopped, one healthy worker
left running until nothing is ENQUEUED or RUNNING). This is Jepsen's history + checker:
the ledger says what ran where, the fault log says which processes were hurt, the
database says how it all ended.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from workmanager import WorkInfo

from .ledger import Ledger, read_lines
from .target import Target

S = WorkInfo.State
#: Fault kinds after which the hurt process may have left a run to be re-run.
HURTING = ("sigkill", "sigstop", "point:", "died", "sigterm:second", "pg_")

#: BLOCKED rows whose prerequisites are all finished: one failed or was cancelled (the cascade
#: missed it) or all succeeded (the unblock missed it). Either way nothing will ever run them.
BLOCKED_ON_FINISHED = """
SELECT w.id FROM workspec w
WHERE w.state = 4
  AND NOT EXISTS (SELECT 1 FROM dependency d JOIN workspec p ON p.id = d.prerequisite_id
                  WHERE d.work_id = w.id AND p.state IN (0, 1, 4))
"""
#: Names with more than one live chain (G6.1: the unique index's promise).
UNIQUE_VIOLATIONS = """
SELECT n.name, count(DISTINCT n.chain) FROM workname n JOIN workspec w ON w.id = n.work_id
WHERE w.state IN (0, 1, 4) GROUP BY n.name HAVING count(DISTINCT n.chain) > 1
"""


@dataclass
class Report:
    """What the checker found: figures for the soak table, violations for the test."""

    figures: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def assert_ok(self) -> None:
        if self.violations:
            shown = "\n  ".join(self.violations[:20])
            more = f"\n  ... and {len(self.violations) - 20} more" if len(self.violations) > 20 else ""
            raise AssertionError(
                f"{len(self.violations)} invariant violation(s):\n  {shown}{more}\n{self.figures}"
            )

    def merge(self, other: Report) -> None:
        for key, value in other.figures.items():
            self.figures[key] = self.figures.get(key, 0) + value
        self.violations += other.violations
        self.states.update(other.states)


def hurt_pids(fault_log: Iterable[Mapping[str, Any]]) -> set[int]:
    return {int(f["pid"]) for f in fault_log if str(f["kind"]).startswith(HURTING)}


def check(
    target: Target,
    ledger: Ledger,
    *,
    fault_log: list[dict[str, Any]] | None = None,
    jobs: Mapping[str, str] | None = None,
    expect: Mapping[str, S] | S | None = S.SUCCEEDED,
    ran: Iterable[str] | None = None,
    max_attempts: int | None = None,
    reruns_ok: Iterable[str] = (),
) -> Report:
    """Check every invariant; ``jobs`` maps work id to its ledger job name.

    ``expect``: the final state of every job in ``jobs`` (one for all, or per id).
    ``ran``: ids that must have an ``end`` in the ledger (default: the SUCCEEDED ones of ``jobs``).
    ``reruns_ok``: jobs whose re-runs are by design (retries, periods, REPLACE).
    """
    report = Report()
    fault_log = fault_log if fault_log is not None else read_lines(target.workdir / "faults.jsonl")
    jobs = jobs or {}

    rows = {
        r[0]: (int(r[1]), int(r[2])) for r in target.sql("SELECT id, state, run_attempt_count FROM workspec")
    }
    report.states = Counter(S(state).name for state, _ in rows.values())
    report.figures["jobs"] = len(jobs)

    # -- the database's own invariants
    running = [i for i, (state, _) in rows.items() if state == S.RUNNING.value]
    report.figures["stuck_running"] = len(running)
    for work_id in running[:20]:
        report.fail(f"{work_id} is still RUNNING after recovery")
    blocked = [r[0] for r in target.sql(BLOCKED_ON_FINISHED)]
    report.figures["blocked_on_finished"] = len(blocked)
    for work_id in blocked[:20]:
        report.fail(f"{work_id} is BLOCKED though every prerequisite has finished")
    unique = target.sql(UNIQUE_VIOLATIONS)
    report.figures["unique_violations"] = len(unique)
    for name, chains in unique:
        report.fail(f"unique name {name!r} has {chains} live chains")
    if target.is_sqlite:
        integrity = target.sql("PRAGMA integrity_check")
        ok = integrity == [("ok",)]
        report.figures["integrity_errors"] = 0 if ok else len(integrity)
        if not ok:
            report.fail(f"integrity_check: {integrity[:5]}")
    if max_attempts is not None:
        over = [i for i, (_, attempts) in rows.items() if attempts > max_attempts]
        for work_id in over[:20]:
            report.fail(f"{work_id} ran {rows[work_id][1]} attempts, over {max_attempts}")

    # -- every job ended as expected: none lost
    lost = 0
    for work_id, job in jobs.items():
        want = expect.get(work_id) if isinstance(expect, Mapping) else expect
        if work_id not in rows:
            lost += 1
            report.fail(f"job {job} ({work_id}) is missing from the database")
        elif want is not None and rows[work_id][0] != want.value:
            lost += 1
            report.fail(f"job {job} ({work_id}) ended {S(rows[work_id][0]).name}, expected {want.name}")
    report.figures["lost"] = lost

    # -- the ledger: what should have run did, and every re-run is explained by a fault
    by_job = ledger.by_job()
    must_run = (
        set(ran) if ran is not None else {i for i in jobs if i in rows and rows[i][0] == S.SUCCEEDED.value}
    )
    for work_id in must_run:
        job = jobs.get(work_id, work_id)
        if not any(e["event"] == "end" for e in by_job.get(job, [])):
            report.fail(f"job {job} ({work_id}) is SUCCEEDED but never ended in the ledger")
    hurt = hurt_pids(fault_log)
    exempt = set(reruns_ok)
    reruns = unexplained = 0
    for job, events in by_job.items():
        starts = [e for e in events if e["event"] == "start"]
        for earlier in starts[:-1]:
            reruns += 1
            if job in exempt or earlier["pid"] in hurt:
                continue
            stopped = any(
                e["event"] in ("stopped", "failed") and e["pid"] == earlier["pid"] and e["t"] >= earlier["t"]
                for e in events
            )
            if not stopped:
                unexplained += 1
                report.fail(
                    f"job {job} started again after a run in pid {earlier['pid']} that no fault explains"
                )
    report.figures["reruns"] = reruns
    report.figures["unattributed_duplicates"] = unexplained
    for kind, count in count_faults(fault_log).items():
        report.figures[f"fault:{kind}"] = count
    return report


def count_faults(fault_log: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Faults by kind: sigkill, sigstop, sigterm, point:<name>:<action>, plus whatever scenarios log."""
    return Counter(str(f["kind"]) for f in fault_log if f["kind"] != "sigcont")


def periods_doubled(
    ledger: Ledger, jobs: Iterable[str], *, interval_s: float, fault_log: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Periodic jobs that ran twice within one interval where no fault on the earlier run's
    process explains it (G7: at most one run per period). A 10 % margin absorbs timer slack."""
    hurt = hurt_pids(fault_log)
    doubled = []
    for job in jobs:
        events = ledger.by_job().get(job, [])
        ends = [e for e in events if e["event"] == "end"]
        for earlier, later in itertools.pairwise(ends):
            if later["t"] - earlier["t"] < 0.9 * interval_s and earlier["pid"] not in hurt:
                doubled.append(job)
                break
    return doubled
