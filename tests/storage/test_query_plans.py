"""The hot queries search an index; none scans the work table (SQLite's own query plans)."""

from __future__ import annotations

import pytest

from workmanager import Configuration
from workmanager.storage.sqlite import _Q, SqliteStorage, _constraint_params

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
    "before_created": 1,
    "before_id": "x",
    "state": 3,
    "worker": None,
    "cap": 10,
    "floor_created": 0,
    "floor_id": "",
    "scan": 100,
    **_constraint_params(None, None),
}


def plan(tmp_path, query: str) -> list[str]:
    storage = SqliteStorage(str(tmp_path / "w.db"), Configuration())
    try:
        return [row[3] for row in storage._conn.execute("EXPLAIN QUERY PLAN " + _Q[query], PARAMS)]
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("work_claim_available", "workspec_state_next_run"),
        ("work_claim_expedited", "workspec_expedited_due"),
        ("work_next_due", "workspec_state_next_run"),
        ("work_info_by_id", "PRIMARY KEY"),
        ("work_info_by_tag", "PRIMARY KEY (tag=?)"),
        ("work_succeed_if_running", "PRIMARY KEY"),
        ("dependency_unblock", "dependency_prerequisite"),
        ("work_rescue_runner", "workspec_running"),
        # The dashboard: keyset pages, probes and graphs at a million rows.
        ("work_page", "workspec_created ((created_at,id)>(?,?) AND (created_at,id)<(?,?))"),
        ("work_page_floor", "COVERING INDEX workspec_created ((created_at,id)<(?,?))"),
        ("work_page_in_state", "workspec_state_next_run (state=?)"),
        ("work_page_with_tag", "PRIMARY KEY (tag=?)"),
        ("work_page_with_name", "PRIMARY KEY (name=?)"),
        ("work_count_in_state_upto", "workspec_state_next_run (state=?)"),
        ("worktag_count_upto", "PRIMARY KEY (tag=?)"),
        ("workname_count_upto", "PRIMARY KEY (name=?)"),
        ("work_graph_nodes", "dependency_prerequisite (prerequisite_id=?)"),
        ("work_oldest_due", "workspec_state_next_run (state=?)"),
    ],
)
def test_hot_queries_search_their_index(tmp_path, query, index):
    steps = plan(tmp_path, query)
    assert any(index in step for step in steps), steps
    assert not any(step.startswith("SCAN workspec") or step.startswith("SCAN w ") for step in steps), steps
