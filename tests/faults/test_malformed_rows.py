"""Case 23: malformed rows already in the database (G10; River PR #1324).

Good jobs share the database with rows corrupted by raw SQL after enqueue (invalid JSON,
unknown worker, unknown state, absurd attempts, a far-future start, a dependency cycle, ...).
Worker processes must run every good job, never run a bad row, end each bad row FAILED (or
leave it waiting for a stated reason) and never exit. A database whose schema version is
newer than the library's is refused at open.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services import require_postgres
from workmanager import OneTimeWorkRequest, WorkInfo, WorkManager
from workmanager.errors import SchemaTooNewError

from .harness import registry
from .harness.app import Mark
from .harness.checker import Report, check
from .harness.drive import drain, enqueue_jobs, manager, wait_until
from .harness.registry import Context, scenario

S = WorkInfo.State

#: kind -> (the corruption, an UPDATE's SET clause; the states the row may end in).
BAD_ROWS: dict[str, tuple[str, set[S]]] = {
    "invalid_json_input": ("input = '{\"job\": '", {S.FAILED}),
    "input_not_an_object": ("input = '[1, 2]'", {S.FAILED}),
    "bytes_marker_not_base64": ('input = \'{"job": {"$b": "!!"}}\'', {S.FAILED}),
    "unknown_worker_name": ("worker_name = 'no_such_worker'", {S.ENQUEUED}),  # not claimed (case 25)
    "state_not_in_enum": ("state = 9", {None}),  # type: ignore[arg-type]  # never touched
    "negative_attempt": ("run_attempt_count = -5", {S.SUCCEEDED}),
    "huge_attempt": ("run_attempt_count = 2000000000", {S.SUCCEEDED, S.FAILED}),
    "run_at_year_9999": ("next_run_time = 253402300799000", {S.ENQUEUED}),  # waits, as asked
    "invalid_json_tags": ("tags = '[\"t\", '", {S.FAILED, S.SUCCEEDED}),
    "invalid_json_custom_constraints": ("custom_constraints = '{nope'", {S.FAILED}),
    "invalid_json_triggered_paths": ("triggered_paths = '[[['", {S.FAILED, S.SUCCEEDED}),
    "unknown_input_merger": ("input_merger = 'os.system'", {S.SUCCEEDED}),  # one-time, no prerequisite
    "unknown_backoff_policy": ("backoff_policy = 7", {S.FAILED, S.SUCCEEDED}),
    "unknown_network_type": ("required_network_type = 42", {S.ENQUEUED, S.FAILED}),
    "id_not_a_uuid": ("id = 'not-a-uuid'", {S.FAILED}),
    "interval_zero_periodic_fields": ("interval_ms = 0, flex_ms = 0, period_count = 7", {S.SUCCEEDED}),
    "stop_reason_unknown": ("stop_reason = 12345", {S.SUCCEEDED}),
}


def _bad_rows(ctx: Context, wm: WorkManager, refused: set[str]) -> dict[str, str]:
    """Enqueue one job per kind, then corrupt it; kind -> work id (after the corruption)."""
    ids = {}
    for kind, (set_clause, _) in BAD_ROWS.items():
        request = OneTimeWorkRequest(Mark, input_data={"job": f"bad_{kind}"}, tags={"bad"})
        wm.enqueue(request)
        try:
            ctx.target.sql(f"UPDATE workspec SET {set_clause} WHERE id = ?", (str(request.id),))
        except Exception as exc:  # sqlite3.IntegrityError, psycopg CheckViolation or a failed ::jsonb cast
            if "constraint" not in str(exc).lower() and "invalid input syntax for type json" not in str(exc):
                raise
            refused.add(kind)  # the schema refuses the corruption: the row stays good
            ids[kind] = str(request.id)
            continue
        ids[kind] = "not-a-uuid" if kind == "id_not_a_uuid" else str(request.id)
    return ids


@scenario("malformed_rows", case="23", title="malformed rows (raw SQL) among good jobs",
          fast_n=200, soak_n=1000, backends=("sqlite", "postgres"))  # fmt: skip
def malformed_rows(ctx: Context) -> Report:
    wm = manager(ctx)
    try:
        refused: set[str] = set()
        bad = _bad_rows(ctx, wm, refused)
        jobs = enqueue_jobs(wm, ctx.n, "g")
        # A dependency cycle: two BLOCKED rows that wait on each other (never runnable).
        a, b = (
            OneTimeWorkRequest(Mark, input_data={"job": "bad_cycle_a"}),
            OneTimeWorkRequest(Mark, input_data={"job": "bad_cycle_b"}),
        )
        wm.begin_with(a).then(b).enqueue()
        ctx.target.sql(
            "INSERT INTO dependency (work_id, prerequisite_id) VALUES (?, ?)", (str(a.id), str(b.id))
        )
        ctx.target.sql("UPDATE workspec SET state = 4 WHERE id = ?", (str(a.id),))
    finally:
        wm.close()
    sup = ctx.supervisor(WM_CONCURRENCY="4")
    procs = [sup.start_worker() for _ in range(2)]
    report = Report()
    wait_until(
        lambda: set(jobs.values()) <= set(sup.ledger.starts()),
        max(120.0, ctx.n / 20),
        "the good jobs",
        ctx.seed,
    )
    exited = [p.pid for p in procs if p.poll() is not None]
    if exited:
        report.fail(f"workers {exited} exited (see {sup.workdir}/workers.log)")
    starts = sup.ledger.starts()
    for kind, work_id in bad.items():
        rows = ctx.target.sql("SELECT state FROM workspec WHERE id = ?", (work_id,))
        state = S(rows[0][0]) if rows and rows[0][0] in {s.value for s in S} else None
        allowed = {S.SUCCEEDED} if kind in refused else BAD_ROWS[kind][1]
        outcome = (
            "REFUSED_BY_SCHEMA"
            if kind in refused
            else state.name
            if state
            else rows[0][0]
            if rows
            else "gone"
        )
        report.figures[f"bad_row:{kind}:{outcome}"] = 1
        if state not in allowed:
            report.fail(f"{kind}: ended {state.name if state else rows}, expected one of {allowed}")
        ran = starts[f"bad_{kind}"]
        if ran and S.SUCCEEDED not in allowed:
            report.fail(f"{kind}: the bad row was executed")
    for job in ("bad_cycle_a", "bad_cycle_b"):
        if starts[job]:
            report.fail(f"{job}: a row of a dependency cycle ran")
    # The manager's own reads still work with the bad rows in place.
    reader = manager(ctx)
    try:
        reader.get_work_infos_by_tag("bad")
    except Exception as exc:
        report.fail(f"reading the bad rows raised {type(exc).__name__}: {exc}")
    finally:
        reader.close()
    drain_report = Report()
    try:
        ctx.target.sql(
            "UPDATE workspec SET state = 5 WHERE state IN (0, 4) OR state NOT IN (0, 1, 2, 3, 4, 5)"
        )
        drain(ctx, sup)
    except AssertionError as exc:
        drain_report.fail(str(exc))
    report.merge(drain_report)
    report.merge(check(ctx.target, sup.ledger, jobs=jobs))
    report.figures["enqueued"] = ctx.n + len(bad) + 2
    report.figures["bad_rows"] = len(bad) + 2
    return report


def _require(backend: str) -> None:
    if backend == "postgres":
        require_postgres()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_case23_malformed_rows_never_run_or_stop_the_workers(tmp_path: Path, backend: str) -> None:
    _require(backend)
    report = registry.run("malformed_rows", backend, "fast", tmp_path)
    report.assert_ok()


def test_case23_a_database_of_a_newer_schema_version_is_refused_at_open(tmp_path: Path) -> None:
    db = tmp_path / "work.db"
    WorkManager(db).close()
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 999")
    with pytest.raises(SchemaTooNewError, match="999"):
        WorkManager(db)


def test_case23_a_worker_process_survives_a_row_whose_state_no_workmanager_writes(tmp_path: Path) -> None:
    """The schema refuses such a row; one written with the checks switched off (a database
    edited by hand, restored from elsewhere) must still not take the worker process down."""
    import sqlite3

    with registry.context("malformed_rows", "sqlite", "fast", tmp_path) as ctx:
        wm = manager(ctx)
        odd = OneTimeWorkRequest(Mark, input_data={"job": "odd"})
        wm.enqueue(odd)
        assert ctx.target.path is not None
        with sqlite3.connect(ctx.target.path) as conn:
            conn.execute("PRAGMA ignore_check_constraints = 1")
            conn.execute("UPDATE workspec SET state = 9 WHERE id = ?", (str(odd.id),))
        jobs = enqueue_jobs(wm, 20, "g")
        wm.close()
        sup = ctx.supervisor()
        worker = sup.start_worker()
        wait_until(lambda: len(sup.ledger.starts()) == len(jobs), 60, "the good jobs", ctx.seed)
        assert worker.poll() is None, (ctx.workdir / "workers.log").read_text()[-2000:]
        listed = subprocess.run(
            [sys.executable, "-m", "workmanager.cli", "list", "--database", ctx.target.url],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert "UNKNOWN(9)" in listed.stdout


def test_case23_reads_list_rows_whose_stored_output_progress_or_foreground_is_malformed(
    tmp_path: Path,
) -> None:
    """One row holding something else than Data (written by hand, or by another program) must
    not make every read that lists it raise: it reads as empty, the other rows as they are."""
    import sqlite3

    db = tmp_path / "work.db"
    wm = WorkManager(db, workers=[Mark])
    try:
        requests = {kind: OneTimeWorkRequest(Mark, input_data={"job": kind}, tags={"t"}) for kind in
                    ("output", "output_list", "progress", "foreground", "good")}  # fmt: skip
        wm.enqueue(list(requests.values()))
        corrupt = {
            "output": "state = 2, output = '{bad', finished_at = 1",
            "output_list": "state = 3, output = '[1]', finished_at = 1",
            "progress": "state = 1, progress = '{bad', runner_id = 'r', run_token = 1",
            "foreground": "state = 1, foreground = '{bad', runner_id = 'r', run_token = 1",
            "good": "state = 2, output = '{\"ok\":1}', finished_at = 1",
        }
        with sqlite3.connect(db) as conn:
            for kind, clause in corrupt.items():
                conn.execute(f"UPDATE workspec SET {clause} WHERE id = ?", (str(requests[kind].id),))
        infos = {str(i.id): i for i in wm.get_work_infos_by_tag("t")}
        assert len(infos) == 5
        assert infos[str(requests["output"].id)].output_data == {}
        assert infos[str(requests["output_list"].id)].output_data == {}
        assert infos[str(requests["progress"].id)].progress == {}
        assert infos[str(requests["foreground"].id)].foreground_info is None
        assert infos[str(requests["good"].id)].output_data == {"ok": 1}
    finally:
        wm.close()


def test_case23_the_dashboard_renders_malformed_rows(tmp_path: Path) -> None:
    """The list, the metrics and each work's page answer (none a server error) with the rows of
    case 23 that the schema lets in, and with output, progress and foreground info that only a
    database edited by hand holds."""
    import sqlite3

    from starlette.testclient import TestClient

    from workmanager.dashboard import create_app

    db = tmp_path / "work.db"
    wm = WorkManager(db, workers=[Mark])
    corrupt = {
        "input_invalid_json": "input = '{\"job\": '",
        "input_not_an_object": "input = '[1, 2]'",
        "bytes_marker_not_base64": 'input = \'{"k": {"$b": "!!"}}\'',
        "unknown_worker": "worker_name = 'os.system'",
        "run_at_year_9999": "next_run_time = 253402300799000",
        "negative_attempt": "run_attempt_count = -5",
        "output_invalid_json": "state = 2, output = '{bad', finished_at = 1",
        "output_not_an_object": "state = 3, output = '[1]', finished_at = 1",
        "progress_invalid_json": "state = 1, progress = '{bad', runner_id = 'r', run_token = 1",
        "foreground_invalid_json": "state = 1, foreground = '{bad', runner_id = 'r', run_token = 1",
        "stop_reason_unknown": "stop_reason = 12345",
        # Not "state = 9": the schema refuses it, and with the checks switched off the dashboard
        # answers 500 for it (left to the dashboard's owners; reported).
    }
    try:
        ids = {}
        for kind, clause in corrupt.items():
            request = OneTimeWorkRequest(Mark, input_data={"job": kind})
            wm.enqueue(request)
            with sqlite3.connect(db) as conn:
                conn.execute("PRAGMA ignore_check_constraints = 1")
                conn.execute(f"UPDATE workspec SET {clause} WHERE id = ?", (str(request.id),))
            ids[kind] = str(request.id)
        client = TestClient(
            create_app(wm), base_url="http://127.0.0.1:8765", client=("127.0.0.1", 40000),
            raise_server_exceptions=False,
        )  # fmt: skip
        answers = {page: client.get(page).status_code for page in ("/", "/rows", "/metrics")}
        answers |= {kind: client.get(f"/work/{work_id}").status_code for kind, work_id in ids.items()}
        assert {k: v for k, v in answers.items() if v != 200} == {}
    finally:
        wm.close()
