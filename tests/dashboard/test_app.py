"""The dashboard's pages, through its ASGI app on a real SQLite database."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from workmanager import OneTimeWorkRequest, WorkManager
from workmanager.dashboard import create_app
from workmanager.dashboard.app import again, history
from workmanager.info import State

from .conftest import WORKERS, local_client

ROW = re.compile(r'<tr data-id="([0-9a-f-]{36})" data-state="(\w+)">')


def rows(html: str) -> list[tuple[str, str]]:
    return ROW.findall(html)


def run(db: str, *requests: OneTimeWorkRequest) -> None:
    """Run the requests to the end in a worker of their own (another connection, as in production)."""
    with WorkManager(db, workers=WORKERS) as runner:
        runner.enqueue(list(requests))
        for request in requests:
            runner.await_work(request.id, timeout=10)


def test_the_table_lists_work_newest_first_with_its_state(wm: WorkManager, db: str) -> None:
    done = OneTimeWorkRequest("echo", input_data={"n": 1})
    failed = OneTimeWorkRequest("boom")
    run(db, done)
    run(db, failed)
    waiting = OneTimeWorkRequest("echo", initial_delay=3600)
    wm.enqueue(waiting)
    page = local_client(create_app(wm)).get("/")
    assert page.status_code == 200
    assert rows(page.text) == [
        (str(waiting.id), "ENQUEUED"),
        (str(failed.id), "FAILED"),
        (str(done.id), "SUCCEEDED"),
    ]
    assert '<span class="value" data-count="FAILED">1</span>' in page.text


def test_pages_go_on_from_a_cursor_without_repeating_or_skipping(wm: WorkManager) -> None:
    requests = [OneTimeWorkRequest("echo", initial_delay=3600) for _ in range(60)]
    for request in requests:
        wm.enqueue(request)  # one by one, many in one millisecond: their ids (UUIDv7) order them
    client = local_client(create_app(wm))
    first = client.get("/", params={"limit": "25"})
    seen = [i for i, _ in rows(first.text)]
    older = re.search(r'class="older" href="/\?([^"]+)"', first.text)
    while older:
        page = client.get("/?" + older.group(1).replace("&amp;", "&"))
        seen += [i for i, _ in rows(page.text)]
        older = re.search(r'class="older" href="/\?([^"]+)"', page.text)
    assert len(seen) == 60 and set(seen) == {str(r.id) for r in requests}


def test_a_cursor_is_a_work_id_and_its_page_lists_the_work_below_it(wm: WorkManager) -> None:
    oldest, middle, newest = (OneTimeWorkRequest("echo", initial_delay=3600) for _ in range(3))
    wm.enqueue([oldest, middle, newest])
    client = local_client(create_app(wm))
    first = client.get("/", params={"limit": "25"}).text
    assert [i for i, _ in rows(first)] == [str(newest.id), str(middle.id), str(oldest.id)]
    below_middle = client.get("/", params={"before": str(middle.id)}).text
    assert [i for i, _ in rows(below_middle)] == [str(oldest.id)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"state": "FAILED"}, {"boom"}),
        ({"state": "succeeded"}, {"echo-done"}),
        ({"tag": "mine"}, {"echo-done"}),
        ({"worker": "boom"}, {"boom"}),
        ({"unique": "nightly"}, {"echo-waiting"}),
        ({"state": "ENQUEUED", "unique": "nightly", "worker": "echo"}, {"echo-waiting"}),
        ({"state": "RUNNING"}, set()),
    ],
)
def test_filters_narrow_the_table(
    wm: WorkManager, db: str, params: dict[str, str], expected: set[str]
) -> None:
    done = OneTimeWorkRequest("echo", tags={"mine"})
    failed = OneTimeWorkRequest("boom")
    run(db, done, failed)
    waiting = OneTimeWorkRequest("echo", initial_delay=3600)
    from workmanager import ExistingWorkPolicy

    wm.enqueue_unique_work("nightly", ExistingWorkPolicy.KEEP, waiting)
    names = {str(done.id): "echo-done", str(failed.id): "boom", str(waiting.id): "echo-waiting"}
    page = local_client(create_app(wm)).get("/", params=params)
    assert page.status_code == 200
    assert {names[i] for i, _ in rows(page.text)} == expected


@pytest.mark.parametrize(
    "query",
    [
        "sort=id%20desc,%20(select%20randomblob(1e8))",
        "order=created_at",
        "state=DONE",
        "state=0%20OR%201=1",
        "limit=1000000",
        "limit=-1",
        "before=1;DROP%20TABLE%20workspec",
        "before=not-a-uuid",
        "before=1700000000000.0190a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d",  # the old created_ms.id cursor
        "before=0190A3C4-5E6F-7A8B-9C0D-1E2F3A4B5C6D",  # a uuid, not in canonical text
        "before=0190a3c45e6f7a8b9c0d1e2f3a4b5c6d",
        "before=%7B0190a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d%7D",
        "before=0190a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d%0A",
        "before=g",
        "tag=a&tag=b",
        "tag=" + "x" * 201,
    ],
)
def test_an_unknown_parameter_or_value_is_a_400(wm: WorkManager, query: str) -> None:
    client = local_client(create_app(wm))
    assert client.get("/?" + query).status_code == 400
    assert client.get("/rows?" + query).status_code == 400


def test_a_work_page_shows_history_attempts_input_output_and_stop_reason(wm: WorkManager, db: str) -> None:
    failed = OneTimeWorkRequest("boom", input_data={"file": "a.txt"})
    run(db, failed)
    page = local_client(create_app(wm)).get(f"/work/{failed.id}")
    assert page.status_code == 200
    assert 'id="work-state">FAILED<' in page.text
    assert "<dt>attempts</dt><dd>1</dd>" in page.text
    assert "&#34;file&#34;: &#34;a.txt&#34;" in page.text  # input, escaped
    assert "it went &lt;b&gt;wrong&lt;/b&gt;" in page.text  # output (the error), escaped
    assert re.search(r"</span> created</li>.*</span> FAILED</li>", page.text, re.S)


def test_history_tells_a_retried_waiting_work_and_its_stop_reason() -> None:
    detail = {
        "state": State.ENQUEUED.value,
        "created_at": 1_000,
        "last_enqueue_time": 5_000,
        "interval_ms": 0,
        "next_run_time": 35_000,
        "run_attempt_count": 2,
        "stop_reason": 3,  # TIMEOUT
        "runner_id": None,
        "finished_at": None,
        "orphan_count": 1,
    }
    whats = [what for _, what in history(detail)]
    assert whats == [
        "created",
        "enqueued again (retry or release)",
        "due: ENQUEUED until then and until constraints hold",
        "2 attempts started",
        "last run stopped: TIMEOUT",
        "1 run(s) in a row lost with their process",
    ]


def test_a_chain_page_draws_its_graph_with_nodes_coloured_by_state_and_linked(
    wm: WorkManager, db: str
) -> None:
    first = OneTimeWorkRequest("echo")
    second = OneTimeWorkRequest("boom")
    third = OneTimeWorkRequest("echo")
    with WorkManager(db, workers=WORKERS) as runner:
        runner.begin_with(first).then(second).then(third).enqueue()
        runner.await_work(third.id, timeout=10)
    page = local_client(create_app(wm)).get(f"/work/{second.id}")
    svg = page.text[page.text.index("<svg") : page.text.index("</svg>")]
    nodes = dict(re.findall(r'data-id="([0-9a-f-]{36})" data-state="(\w+)"', svg))
    assert nodes == {str(first.id): "SUCCEEDED", str(second.id): "FAILED", str(third.id): "FAILED"}
    assert f'href="/work/{first.id}"' in svg
    assert 'fill="#15803d"' in svg and 'fill="#b91c1c"' in svg
    assert svg.count('class="edge"') == 2


def test_unknown_work_is_a_404(wm: WorkManager) -> None:
    client = local_client(create_app(wm))
    assert client.get(f"/work/{uuid.uuid4()}").status_code == 404
    assert client.get("/work/not-a-uuid").status_code == 404


def test_the_default_is_read_only_without_action_buttons(wm: WorkManager) -> None:
    waiting = OneTimeWorkRequest("echo", initial_delay=3600)
    wm.enqueue(waiting)
    client = local_client(create_app(wm))
    page = client.get(f"/work/{waiting.id}")
    assert "read-only" in page.text and 'id="cancel"' not in page.text
    csrf = client.cookies["wm_csrf"]
    assert client.post(f"/work/{waiting.id}/cancel", data={"csrf": csrf}).status_code == 403
    assert wm.get_work_info_by_id(waiting.id).state is State.ENQUEUED


def test_cancel_cancels_the_work_and_its_dependents(wm: WorkManager) -> None:
    first = OneTimeWorkRequest("echo", initial_delay=3600)
    second = OneTimeWorkRequest("echo")
    wm.begin_with(first).then(second).enqueue()
    client = local_client(create_app(wm, read_only=False))
    assert 'id="cancel"' in client.get(f"/work/{first.id}").text
    answer = client.post(
        f"/work/{first.id}/cancel", data={"csrf": client.cookies["wm_csrf"]}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/work/{first.id}"
    assert wm.get_work_info_by_id(first.id).state is State.CANCELLED
    assert wm.get_work_info_by_id(second.id).state is State.CANCELLED


def test_enqueue_again_makes_new_work_with_the_same_worker_input_tags_and_constraints(
    wm: WorkManager, db: str
) -> None:
    from workmanager import Constraints, NetworkType

    failed = OneTimeWorkRequest(
        "boom",
        input_data={"file": "a.txt"},
        tags={"uploads"},
        constraints=Constraints(required_network_type=NetworkType.CONNECTED, requires_charging=True),
    )
    run(db, failed)
    client = local_client(create_app(wm, read_only=False))
    client.get(f"/work/{failed.id}")
    answer = client.post(
        f"/work/{failed.id}/reenqueue", data={"csrf": client.cookies["wm_csrf"]}, follow_redirects=False
    )
    assert answer.status_code == 303
    new_id = uuid.UUID(answer.headers["location"].rsplit("/", 1)[1])
    assert new_id != failed.id
    info = wm.get_work_info_by_id(new_id)
    assert info.state is State.ENQUEUED
    assert info.tags == {"uploads", "boom"}
    assert (
        info.constraints.required_network_type is NetworkType.CONNECTED and info.constraints.requires_charging
    )
    detail = wm._storage.work_detail(str(new_id))
    assert json.loads(detail["input"]) == {"file": "a.txt"} and detail["worker_name"] == "boom"


def test_again_rebuilds_the_request_from_a_row(wm: WorkManager) -> None:
    request = OneTimeWorkRequest("echo", input_data={"a": [1, 2]}, tags={"x"}, initial_delay=3600)
    wm.enqueue(request)
    copy = again(wm._storage.work_detail(str(request.id)))
    assert (
        copy.worker_name == "echo" and dict(copy.input_data) == {"a": (1, 2)} and copy.tags == {"x", "echo"}
    )


def test_running_work_shows_a_progress_bar(wm: WorkManager, db: str, gate, closing) -> None:
    from workmanager import Result, Worker

    class Halfway(Worker):
        name = "halfway"

        def do_work(self) -> Result:
            self.set_progress({"progress": 0.5})
            gate.hold()
            return Result.success()

    runner = closing(WorkManager(db, workers=[Halfway]))
    request = OneTimeWorkRequest(Halfway)
    runner.enqueue(request)
    runner.start()
    gate.wait_started()
    client = local_client(create_app(wm))
    assert '<progress max="1" value="0.5">50%</progress>' in client.get("/").text
    assert 'id="work-progress" max="1" value="0.5"' in client.get(f"/work/{request.id}").text
    gate.release.set()


def test_redact_hides_input_and_output(wm: WorkManager) -> None:
    request = OneTimeWorkRequest("echo", input_data={"password": "hunter2"}, initial_delay=3600)
    wm.enqueue(request)
    page = local_client(create_app(wm, redact=True)).get(f"/work/{request.id}")
    assert "hunter2" not in page.text and "hidden (redact)" in page.text


def test_metrics_report_work_by_state_and_queue_wait(wm: WorkManager, db: str) -> None:
    run(db, OneTimeWorkRequest("boom"), OneTimeWorkRequest("echo"))
    wm.enqueue(OneTimeWorkRequest("echo", initial_delay=3600))
    text = local_client(create_app(wm)).get("/metrics").text
    assert 'workmanager_work{state="FAILED"} 1.0' in text
    assert 'workmanager_work{state="SUCCEEDED"} 1.0' in text
    assert 'workmanager_work{state="ENQUEUED"} 1.0' in text
    assert "workmanager_queue_wait_seconds 0.0" in text  # the waiting work is not due yet


def test_the_app_mounts_inside_another_app_under_a_prefix(wm: WorkManager) -> None:
    request = OneTimeWorkRequest("echo", initial_delay=3600)
    wm.enqueue(request)
    outer = Starlette(routes=[Mount("/ops/work", app=create_app(wm))])
    client = local_client(outer)
    page = client.get("/ops/work/")
    assert page.status_code == 200
    assert f'href="/ops/work/work/{request.id}"' in page.text
    assert 'src="/ops/work/static/dashboard.js"' in page.text
    assert client.get(f"/ops/work/work/{request.id}").status_code == 200
    assert client.get("/ops/work/static/dashboard.js").status_code == 200


def test_a_database_path_opens_its_own_manager(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    with WorkManager(path, workers=WORKERS) as writer:
        request = OneTimeWorkRequest("anything-at-all", initial_delay=3600)
        writer.configuration  # noqa: B018
    from workmanager import Configuration
    from workmanager.dashboard.app import _AnyName

    with WorkManager(path, configuration=Configuration(worker_factory=_AnyName())) as writer:
        writer.enqueue(request)
    with local_client(create_app(path)) as client:
        assert rows(client.get("/").text) == [(str(request.id), "ENQUEUED")]


@pytest.mark.parametrize(
    ("progress", "fraction"),
    [
        ('{"progress": 0.25}', 0.25),
        ('{"progress": 40}', 0.4),
        ('{"percent": 50}', 0.5),
        ('{"percent": 1}', 0.01),
        ('{"progress": 250}', 1.0),
        ('{"words": 3}', None),
        ('{"progress": true}', None),
        ('{"progress": "half"}', None),
        ("[1]", None),
        (None, None),
    ],
)
def test_a_progress_bar_reads_progress_or_percent(progress: str | None, fraction: float | None) -> None:
    from workmanager.dashboard.app import _progress_fraction

    assert _progress_fraction(progress) == fraction


def test_the_dashboard_reads_a_postgres_database(postgres_database: str, closing) -> None:
    first = OneTimeWorkRequest("echo", initial_delay=3600, tags={"pg"})
    second = OneTimeWorkRequest("boom")
    wm = closing(WorkManager(postgres_database, workers=WORKERS))
    wm.begin_with(first).then(second).enqueue()
    client = local_client(create_app(wm, read_only=False))
    # One transaction: one creation time, so the id orders them.
    expected = sorted([(str(second.id), "BLOCKED"), (str(first.id), "ENQUEUED")], reverse=True)
    assert rows(client.get("/").text) == expected
    assert rows(client.get("/", params={"tag": "pg", "state": "ENQUEUED"}).text) == [
        (str(first.id), "ENQUEUED")
    ]
    page = client.get(f"/work/{second.id}").text
    assert page.count('class="node"') == 2
    client.post(f"/work/{first.id}/cancel", data={"csrf": client.cookies["wm_csrf"]})
    assert wm.get_work_info_by_id(second.id).state is State.CANCELLED
    assert 'workmanager_work{state="CANCELLED"} 2.0' in client.get("/metrics").text


def test_a_filtered_walk_stops_at_its_window_and_searches_on_from_there(wm: WorkManager, monkeypatch) -> None:
    monkeypatch.setattr("workmanager.dashboard.app.SCAN_WINDOW", 4)
    old = [OneTimeWorkRequest("boom", initial_delay=3600) for _ in range(2)]
    new = [OneTimeWorkRequest("echo", initial_delay=3600) for _ in range(9)]
    for request in [*old, *new]:
        wm.enqueue(request)  # one by one: oldest first
    client = local_client(create_app(wm))
    found: list[str] = []
    pages = 0
    query = "worker=boom"
    while query is not None:
        page = client.get("/?" + query).text
        pages += 1
        found += [i for i, _ in rows(page)]
        if not found:
            assert "Looked through 4 work and found none; older work may match." in page
        older = re.search(r'class="older" href="/\?([^"]+)"', page)
        query = older.group(1).replace("&amp;", "&") if older else None
    assert sorted(found) == sorted(str(r.id) for r in old)
    assert pages == 3  # 4 + 4 rows searched, then the last 3 rows (fewer than a window) to the end


def test_an_event_stream_ends_after_its_lifetime_and_tells_the_browser_to_come_back(
    wm: WorkManager, serve, monkeypatch
) -> None:
    import http.client

    monkeypatch.setattr("workmanager.dashboard.live.STREAM_LIFETIME_S", 0.5)
    served = serve(create_app(wm))
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
    connection.request("GET", "/events", headers={"host": "127.0.0.1"})
    answer = connection.getresponse()
    assert answer.headers["content-type"].startswith("text/event-stream")
    body = answer.read().decode()  # returns only because the stream ends
    assert body.startswith("retry: 250\n\n")
    assert body.count("event: change\ndata: ") == 1 and '"ENQUEUED": 0' in body


def test_events_follow_changes_with_fresh_counts(wm: WorkManager, serve) -> None:
    import http.client

    served = serve(create_app(wm))
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=20)
    connection.request("GET", "/events", headers={"host": "127.0.0.1"})
    stream = connection.getresponse()

    def next_counts() -> dict[str, int]:
        while True:
            line = stream.readline().decode()
            if line.startswith("data: "):
                return json.loads(line[6:])["counts"]

    assert next_counts()["ENQUEUED"] == 0
    wm.enqueue(OneTimeWorkRequest("echo", initial_delay=3600))
    counts = next_counts()
    while counts["ENQUEUED"] != 1:  # a first event may carry the counts of a moment before
        counts = next_counts()
    assert counts == {"ENQUEUED": 1, "RUNNING": 0, "SUCCEEDED": 0, "FAILED": 0, "BLOCKED": 0, "CANCELLED": 0}
    connection.close()
