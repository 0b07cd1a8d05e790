"""The hot queries search an index; none scans the work table (the databases' own query plans)."""

from __future__ import annotations

import itertools
import uuid

import pytest
from test_contract import POSTGRES_URL, drop_schema, require_postgres

from workmanager import Configuration
from workmanager.storage.postgres import _Q as _PG_Q
from workmanager.storage.postgres import PostgresStorage
from workmanager.storage.postgres import _constraint_params as _pg_constraint_params
from workmanager.storage.sqlite import _Q, SqliteStorage, _constraint_params, _per_name_statement

PARAMS = {
    "names": '["a"]',
    "now": 1,
    "limit": 2,
    "runner_id": "r",
    "run_token": 1,
    "id": "x",
    "tag": "t",
    "name": "n",
    "output": "{}",
    "max_orphaned_runs": 3,
    "lost_output": "{}",
    "never": 1,
    "older_than": 1,
    "ids": "[]",
    "states": "[0]",
    "running": "[]",
    "before_id": None,
    "state": 3,
    "worker": None,
    "cap": 10,
    "floor_id": "",
    "scan": 100,
    "suspects": 1,
    "due_by": 1,
    "worker_name_0": "a",
    "worker_name_1": "b",
    **_constraint_params(None, None),
}

#: SQLite's statements built with one arm per worker name (here two).
PER_NAME = ("work_claim_available", "work_next_due", "work_oldest_waiting")


def plan(tmp_path, query: str) -> list[str]:
    storage = SqliteStorage(str(tmp_path / "w.db"), Configuration())
    try:
        sql = _per_name_statement(query, 2) if query in PER_NAME else _Q[query]
        return [row[3] for row in storage._conn.execute("EXPLAIN QUERY PLAN " + sql, PARAMS)]
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (
            "work_claim_available",
            "workspec_state_worker_next_run (state=? AND worker_name=? AND next_run_time<?)",
        ),
        ("work_claim_expedited", "workspec_expedited_due"),
        ("work_next_due", "workspec_state_worker_next_run (state=? AND worker_name=? AND next_run_time<?)"),
        (
            "work_oldest_waiting",
            "workspec_state_worker_next_run (state=? AND worker_name=? AND next_run_time<?)",
        ),
        ("work_info_by_id", "PRIMARY KEY"),
        ("work_info_query_by_ids", "PRIMARY KEY"),
        ("work_info_query_by_states", "workspec_state_worker_next_run (state=?)"),
        ("work_info_by_tag", "PRIMARY KEY (tag=?)"),
        ("work_info_by_tag", "workspec_state_worker_next_run (state=? AND worker_name=?)"),
        ("work_unfinished_ids_by_tag", "workspec_state_worker_next_run (state=? AND worker_name=?)"),
        ("work_succeed_if_running", "PRIMARY KEY"),
        ("dependency_unblock", "dependency_prerequisite"),
        ("work_rescue_runner", "workspec_running"),
        ("work_release_unlaunched", "workspec_running"),
        # The dashboard: keyset pages, probes and graphs at a million rows.
        ("work_page", "PRIMARY KEY (id>? AND id<?)"),
        ("work_page_floor", "PRIMARY KEY (id<?)"),
        ("work_page_in_state", "workspec_state_worker_next_run (state=?)"),
        ("work_page_with_tag", "PRIMARY KEY (tag=? AND work_id<?)"),
        ("work_page_with_name", "PRIMARY KEY (name=? AND work_id<?)"),
        ("work_count_in_state_upto", "workspec_state_worker_next_run (state=?)"),
        ("worktag_count_upto", "PRIMARY KEY (tag=?)"),
        ("worktag_count_upto", "workspec_state_worker_next_run (state=? AND worker_name=?)"),
        ("workname_count_upto", "PRIMARY KEY (name=?)"),
        ("work_graph_nodes", "dependency_prerequisite (prerequisite_id=?)"),
        ("work_oldest_due", "workspec_state_worker_next_run (state=? AND worker_name>?)"),
        ("work_oldest_due", "workspec_state_worker_next_run (state=? AND worker_name=?)"),
        ("work_waiting_names", "workspec_state_worker_next_run (state=? AND worker_name>?)"),
        ("work_prune_finished", "workspec_finished_expiry"),
        ("work_trigger_waiting", "workspec_trigger_waiting"),
    ],
)
def test_hot_queries_search_their_index(tmp_path, query, index):
    steps = plan(tmp_path, query)
    assert any(index in step for step in steps), steps
    assert not any(scans_work_table(step) for step in steps), steps


@pytest.mark.parametrize("query", PER_NAME)
def test_sqlite_claims_merge_each_worker_names_range_in_due_order_without_a_sort(tmp_path, query):
    """The claim index is (state, worker_name, next_run_time): a claim walks each name's range
    in due order and merges them, stopping at its limit, instead of sorting every due row."""
    steps = plan(tmp_path, query)
    merge = steps.index("MERGE (UNION ALL)")
    # The arms: up to the scan of what the merge produced (which sorts at most :limit rows).
    arms = list(itertools.takewhile(lambda step: not step.startswith("SCAN ("), steps[merge:]))
    arms = list(itertools.takewhile(lambda step: step != "SCAN ready", arms))
    assert sum("workspec_state_worker_next_run (state=? AND worker_name=?" in step for step in arms) == 2, (
        steps
    )
    assert not any("TEMP B-TREE" in step for step in arms), steps


@pytest.mark.parametrize(
    "query", ["work_page", "work_page_with_tag", "work_page_with_name", "work_page_floor"]
)
def test_the_dashboards_id_pages_walk_their_index_in_id_order_without_a_sort(tmp_path, query):
    """A page stops after its rows however many lie below the cursor (only the state's index,
    in claim order, is sorted: it drives pages of a state matching few rows)."""
    steps = plan(tmp_path, query)
    assert not any("TEMP B-TREE" in step for step in steps), steps


#: Partial indexes hold only the rows their queries want: reading one whole is no table scan.
PARTIAL_INDEXES = ("workspec_expedited_due", "workspec_trigger_waiting", "workspec_running")


def scans_work_table(step: str) -> bool:
    scan = step.startswith(("SCAN workspec", "SCAN w "))
    return scan and not any(f"INDEX {index}" in step for index in PARTIAL_INDEXES)


def test_automatic_pruning_reads_only_expired_finished_rows_on_sqlite(tmp_path):
    """Not every finished row: the pass runs every few minutes however many are kept."""
    steps = plan(tmp_path, "work_prune_finished")
    assert any("workspec_finished_expiry (<expr><?)" in step for step in steps), steps


def test_automatic_pruning_has_an_index_path_on_postgres():
    """With sequential scans priced out, the plan must still find one: the expiry index for the
    finished rows and primary keys for their dependents (never a scan of the work table)."""
    require_postgres()
    import psycopg

    schema = f"wmtest_{uuid.uuid4().hex[:12]}"
    PostgresStorage(f"{POSTGRES_URL}?schema={schema}", Configuration()).close()
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
            conn.execute("SET enable_seqscan = off")
            cur = psycopg.ClientCursor(conn)
            cur.execute("EXPLAIN " + _PG_Q["work_prune_finished"], {"older_than": 1})
            steps = [row[0] for row in cur.fetchall()]
    finally:
        drop_schema(schema)
    text = "\n".join(steps)
    assert "workspec_finished_expiry" in text, text
    assert "Seq Scan on workspec" not in text, text


@pytest.mark.parametrize(
    ("query", "index"), [("work_page_with_tag", "worktag_pkey"), ("work_page_with_name", "workname_pkey")]
)
def test_the_tag_and_name_pages_walk_their_index_in_id_order_on_postgres(query, index):
    """As on SQLite: the filter's own primary key (filter, work_id) gives the rows in id order,
    so a page stops after its rows instead of sorting all of the filter's."""
    require_postgres()
    import psycopg

    schema = f"wmtest_{uuid.uuid4().hex[:12]}"
    PostgresStorage(f"{POSTGRES_URL}?schema={schema}", Configuration()).close()
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
            conn.execute("SET enable_seqscan = off")
            conn.execute("SET enable_sort = off")
            cur = psycopg.ClientCursor(conn)
            cur.execute("EXPLAIN " + _PG_Q[query], {**PARAMS, "before_id": str(uuid.uuid4())})
            steps = [row[0] for row in cur.fetchall()]
    finally:
        drop_schema(schema)
    text = "\n".join(steps)
    assert f"Index Only Scan Backward using {index}" in text, text
    assert "Sort" not in text, text


def test_next_due_asks_the_expedited_index_whether_expedited_work_waits(tmp_path):
    """Not a walk of every waiting row looking for an expedited one (none may be there)."""
    steps = plan(tmp_path, "work_next_due")
    assert any("workspec_expedited_due" in step for step in steps), steps


def claim_plan_on_postgres(rows: list, query: str, params: dict, *, analyze: bool) -> str:
    """The plan of a claim-side query over ``rows`` in a new schema, on a connection set as
    PostgresStorage sets its own (no bitmap scans)."""
    require_postgres()
    import psycopg

    schema = f"wmtest_{uuid.uuid4().hex[:12]}"
    storage = PostgresStorage(f"{POSTGRES_URL}?schema={schema}", Configuration())
    try:
        storage.work_insert_alone(rows)
        explain = "EXPLAIN (ANALYZE, COSTS OFF) " if analyze else "EXPLAIN (COSTS OFF) "
        with psycopg.connect(
            POSTGRES_URL, options=f"-c search_path={schema} -c enable_bitmapscan=off"
        ) as conn:
            cur = conn.execute(explain + _PG_Q[query], {**params, **_pg_constraint_params(None, None)})
            text = "\n".join(row[0] for row in cur.fetchall())
            conn.rollback()
    finally:
        storage.close()
        drop_schema(schema)
    return text


def test_the_claim_walks_the_claim_index_and_looks_for_a_suspect_only_among_the_rows_found_on_postgres():
    """Suspects (work orphaned before) are taken one per claim; finding that one must not cost
    the claim its index walk, nor anything at all when no suspect is among the rows found."""
    from test_contract import work

    params = {"now": 100, "limit": 4, "runner_id": "r", "run_token": 1, "names": None, "suspects": True}
    text = claim_plan_on_postgres(
        [work(next_run_time=i) for i in range(50)], "work_claim_available", params, analyze=True
    )
    assert "Index Scan using workspec_claim on workspec" in text, text
    assert "Seq Scan on workspec" not in text, text
    assert "Sort Key: ready_1.next_run_time" in text and "(never executed)" in text, text


@pytest.mark.parametrize("query", ["work_claim_available", "work_next_due"])
def test_a_claim_for_named_workers_walks_the_claim_index_even_when_statistics_say_nothing_waits(query):
    """workspec_state_worker (state, worker_name) matches "state = 0 AND worker_name = ANY(...)"
    exactly; on a new table (no statistics yet, as a queue's are stale anyway) the planner took
    it and sorted every waiting row, each claim (a 20,000-job drain ran at 60 %). The claim
    must walk the claim index in start order and stop at its limit."""
    from test_contract import work

    params = {"now": 2**53, "limit": 256, "runner_id": "r", "run_token": 1, "names": ["w"], "suspects": True}
    text = claim_plan_on_postgres(
        [work(worker="w", next_run_time=i) for i in range(2_000)], query, params, analyze=False
    )
    assert "Index Scan using workspec_claim on workspec" in text, text
    assert "workspec_state_worker" not in text, text


def test_a_work_query_by_states_walks_the_state_index_when_statistics_say_every_row_waits():
    """Statistics taken while every row waited (a queue's are always stale), then the rows ran
    and finished: planned as it stood, a WorkQuery by states read the whole table, dead rows
    and all (the harness's poll after a drain took 30-50 ms); work_info_query now runs after
    prefer_index_paths, and walks the state index."""
    require_postgres()
    import psycopg
    from test_contract import work

    schema = f"wmtest_{uuid.uuid4().hex[:12]}"
    storage = PostgresStorage(f"{POSTGRES_URL}?schema={schema}", Configuration())
    try:
        storage.work_insert_alone([work(next_run_time=i) for i in range(2000)])
        with psycopg.connect(POSTGRES_URL, autocommit=True, options=f"-c search_path={schema}") as conn:
            conn.execute("ANALYZE workspec")
            conn.execute("UPDATE workspec SET state = 2")
            params = {"ids": None, "tags": None, "names": None, "states": [0, 1, 4]}
            explain = "EXPLAIN (COSTS OFF) " + _PG_Q["work_info_query"]
            as_planned = "\n".join(row[0] for row in conn.execute(explain, params))
            with conn.transaction():
                conn.execute(_PG_Q["prefer_index_paths"])
                preferring = "\n".join(row[0] for row in conn.execute(explain, params))
    finally:
        storage.close()
        drop_schema(schema)
    assert "Seq Scan on workspec" in as_planned, as_planned  # what the setting is for
    assert "Seq Scan" not in preferring and "workspec_state_worker" in preferring, preferring
