"""reliability.md case 28 and Security expectations §3/§4: exposure, CSRF, DNS rebinding,
escaping, and filter values that only ever reach SQL as bound parameters."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workmanager import OneTimeWorkRequest, WorkManager
from workmanager.cli import main
from workmanager.config import Configuration
from workmanager.dashboard import create_app
from workmanager.dashboard.app import _AnyName
from workmanager.info import State
from workmanager.storage.sqlite import _Q

from .conftest import BASE, free_port, local_client

SQL_PAYLOADS = [
    "id desc, (select randomblob(1e8))",
    "' OR '1'='1",
    "x'); DROP TABLE workspec; --",
    "%' OR 1=1 --",
    "\\",
    "0 UNION SELECT * FROM runner",
]


@pytest.fixture
def waiting(wm: WorkManager) -> OneTimeWorkRequest:
    request = OneTimeWorkRequest("echo", initial_delay=3600)
    wm.enqueue(request)
    return request


# -- who may connect ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8765", "192.0.2.10", "localhost.evil.example"]
)
def test_a_foreign_host_header_is_refused_against_dns_rebinding(wm: WorkManager, host: str) -> None:
    client = local_client(create_app(wm))
    assert client.get("/", headers={"host": host}).status_code == 400
    assert client.get("/metrics", headers={"host": host}).status_code == 400


@pytest.mark.parametrize("host", ["localhost:8765", "127.0.0.1", "[::1]:8765"])
def test_loopback_host_headers_are_served(wm: WorkManager, host: str) -> None:
    assert local_client(create_app(wm)).get("/", headers={"host": host}).status_code == 200


def test_an_extra_allowed_host_is_served(wm: WorkManager) -> None:
    client = local_client(create_app(wm, allowed_hosts=["ops.internal"]))
    assert client.get("/", headers={"host": "ops.internal:8765"}).status_code == 200


def test_a_remote_client_without_a_token_is_refused(wm: WorkManager) -> None:
    client = local_client(create_app(wm), client=("192.0.2.7", 5555))
    assert client.get("/").status_code == 403


def test_a_host_app_that_authenticates_may_let_remote_clients_in(wm: WorkManager) -> None:
    client = local_client(create_app(wm, allow_remote=True), client=("192.0.2.7", 5555))
    assert client.get("/").status_code == 200


def test_with_a_token_every_request_must_carry_it(wm: WorkManager) -> None:
    app = create_app(wm, token="s3cret-token")
    remote = local_client(app, client=("192.0.2.7", 5555), follow_redirects=False)
    assert remote.get("/").status_code == 401
    assert remote.get("/", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert remote.get("/metrics", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
    assert remote.get("/?token=wrong").status_code == 401
    login = remote.get("/?token=s3cret-token&state=ENQUEUED")
    assert login.status_code == 303 and login.headers["location"] == "/?state=ENQUEUED"
    assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=strict" in login.headers["set-cookie"]
    assert remote.get("/").status_code == 200  # the cookie now
    again = remote.get("/?token=s3cret-token")  # a bookmarked address still works
    assert again.status_code == 303 and again.headers["location"] == "/"


def test_the_cli_refuses_a_non_loopback_bind_without_a_token(db: str) -> None:
    result = CliRunner().invoke(main, ["dashboard", "--database", db, "--host", "0.0.0.0"], env={})
    assert result.exit_code == 2
    assert "--host 0.0.0.0 is not a loopback address" in result.output and "--token" in result.output


def test_the_cli_dashboard_listens_on_loopback_only(db: str, tmp_path: Path) -> None:
    WorkManager(db).close()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "workmanager.cli", "dashboard", "--database", db, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(server.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        # Its one listening socket is on loopback: no other address of this machine answers
        # (checked on the socket itself; this test sends nothing beyond loopback).
        assert listening == {("127.0.0.1", port)}
    finally:
        server.terminate()
        server.wait(10)


def test_the_cli_dashboard_stops_on_sigint_while_a_page_streams_events(db: str) -> None:
    import http.client
    import signal

    WorkManager(db).close()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "workmanager.cli", "dashboard", "--database", db, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                connection.request("GET", "/events")
                stream = connection.getresponse()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
        while stream.readline() != b"event: change\n":  # the stream is open and serving
            pass
        server.send_signal(signal.SIGINT)
        server.wait(20)  # before, an open event stream kept the server waiting forever
        assert server.returncode == 0, server.stderr.read() if server.stderr else ""
        assert b"Traceback" not in (server.stderr.read() if server.stderr else b"")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


# -- mutations --------------------------------------------------------------------------------------


def _actions(wm: WorkManager):
    client = local_client(create_app(wm, read_only=False), follow_redirects=False)
    client.get("/")  # the CSRF cookie
    return client, client.cookies["wm_csrf"]


def test_a_mutation_without_the_csrf_token_is_a_403(wm: WorkManager, waiting: OneTimeWorkRequest) -> None:
    client, _ = _actions(wm)
    assert client.post(f"/work/{waiting.id}/cancel").status_code == 403
    assert client.post(f"/work/{waiting.id}/cancel", data={"csrf": "guess" * 10}).status_code == 403
    assert wm.get_work_info_by_id(waiting.id).state is State.ENQUEUED


def test_a_mutation_from_a_foreign_origin_is_a_403(wm: WorkManager, waiting: OneTimeWorkRequest) -> None:
    client, csrf = _actions(wm)
    for origin in ("http://evil.example", "null"):
        answer = client.post(f"/work/{waiting.id}/cancel", data={"csrf": csrf}, headers={"origin": origin})
        assert answer.status_code == 403
    answer = client.post(
        f"/work/{waiting.id}/cancel", data={"csrf": csrf}, headers={"referer": "http://evil.example/x"}
    )
    assert answer.status_code == 403
    assert wm.get_work_info_by_id(waiting.id).state is State.ENQUEUED


def test_a_mutation_with_a_rebinding_host_is_refused(wm: WorkManager, waiting: OneTimeWorkRequest) -> None:
    client, csrf = _actions(wm)
    answer = client.post(
        f"/work/{waiting.id}/cancel",
        data={"csrf": csrf},
        headers={"host": "evil.example", "origin": "http://evil.example"},
    )
    assert answer.status_code == 400
    assert wm.get_work_info_by_id(waiting.id).state is State.ENQUEUED


def test_a_same_origin_mutation_with_the_token_is_done(wm: WorkManager, waiting: OneTimeWorkRequest) -> None:
    client, csrf = _actions(wm)
    answer = client.post(f"/work/{waiting.id}/cancel", data={"csrf": csrf}, headers={"origin": BASE})
    assert answer.status_code == 303
    assert wm.get_work_info_by_id(waiting.id).state is State.CANCELLED


def test_mutations_are_post_only(wm: WorkManager, waiting: OneTimeWorkRequest) -> None:
    client, _ = _actions(wm)
    assert client.get(f"/work/{waiting.id}/cancel").status_code == 405
    assert wm.get_work_info_by_id(waiting.id).state is State.ENQUEUED


def test_the_csrf_cookie_is_http_only_and_same_site_strict(wm: WorkManager) -> None:
    cookie = local_client(create_app(wm)).get("/").headers["set-cookie"]
    assert re.match(r"wm_csrf=[\w-]{40,}; Path=/; HttpOnly; SameSite=Strict$", cookie)


# -- what pages show ------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(wm: WorkManager, waiting: OneTimeWorkRequest) -> None:
    client = local_client(create_app(wm))
    for path in ("/", f"/work/{waiting.id}", "/metrics", "/static/dashboard.js", "/nope"):
        headers = client.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path


def test_user_data_is_html_escaped_everywhere(tmp_path: Path) -> None:
    path = str(tmp_path / "w.db")
    script = "<script>alert(1)</script>"
    request = OneTimeWorkRequest(script, input_data={script: script}, tags={script}, initial_delay=3600)
    with WorkManager(path, configuration=Configuration(worker_factory=_AnyName())) as writer:
        writer.enqueue(request)
        app = create_app(writer)
        client = local_client(app)
        for page in (client.get("/"), client.get(f"/work/{request.id}"), client.get("/?tag=" + script)):
            assert page.status_code == 200
            assert "<script>alert" not in page.text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


# -- filters reach SQL as bound parameters only ---------------------------------------------------

_PLACEHOLDER = re.compile(r":\w+|\?")
_LITERAL = r"(?:NULL|-?\d+(?:\.\d+)?(?:e[+-]?\d+)?|'(?:[^']|'')*'|x'[0-9a-fA-F]*')"


def _as_executed(query: str) -> re.Pattern[str]:
    """A named query as SQLite's trace shows it: each placeholder replaced by one literal."""
    parts = _PLACEHOLDER.split(query)
    return re.compile(_LITERAL.join(re.escape(p) for p in parts), re.S)


EXECUTED = [_as_executed(q) for q in _Q.values()]


def _statements_with(wm: WorkManager, marker: str, make_requests) -> list[str]:
    log: list[str] = []
    wm._storage._conn.set_trace_callback(log.append)
    try:
        make_requests()
    finally:
        wm._storage._conn.set_trace_callback(None)
    return [s for s in log if marker in s or marker.replace("'", "''") in s]


@pytest.mark.parametrize("payload", SQL_PAYLOADS)
def test_filter_payloads_reach_sql_only_as_bound_values(
    wm: WorkManager, waiting: OneTimeWorkRequest, payload: str
) -> None:
    client = local_client(create_app(wm))

    def requests() -> None:
        for field in ("tag", "unique", "worker"):
            page = client.get("/", params={field: payload})
            assert page.status_code == 200 and "No work matches" in page.text
        assert client.get("/", params={"state": "ENQUEUED", "tag": payload}).status_code == 200

    statements = _statements_with(wm, payload, requests)
    assert statements, "the payload never reached the database"
    for statement in statements:
        assert any(p.fullmatch(statement) for p in EXECUTED), statement
    assert wm.get_work_info_by_id(waiting.id).state is State.ENQUEUED


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(["tag", "unique", "worker", "state", "limit", "before", "sort"]),
    value=st.text(min_size=1, max_size=60),
)
def test_fuzzed_filters_answer_200_or_400_and_never_change_the_data(
    wm: WorkManager, waiting: OneTimeWorkRequest, field: str, value: str
) -> None:
    client = local_client(create_app(wm))
    answer = client.get("/", params={field: value})
    assert answer.status_code in (200, 400), answer.text
    if field in ("tag", "unique", "worker") and answer.status_code == 200 and value not in ("echo",):
        assert str(waiting.id) not in answer.text
    assert answer.status_code == 200 or field in ("state", "limit", "before", "sort")
    assert wm.get_work_info_by_id(waiting.id).state is State.ENQUEUED
    assert wm._storage.work_count_by_state() == {State.ENQUEUED.value: 1}


def test_an_unknown_work_id_in_a_path_is_never_looked_up_as_sql(wm: WorkManager) -> None:
    client = local_client(create_app(wm))
    assert client.get("/work/1' OR '1'='1").status_code == 404
    assert client.get(f"/work/{uuid.uuid4()}/live").status_code == 404
