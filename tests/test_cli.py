"""The command line: list and show against a database file (worker is covered by tests/integration)."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner

from workmanager import OneTimeWorkRequest, Result, Worker, WorkManager
from workmanager.cli import EXIT_NOT_FOUND, main


class Hello(Worker):
    name = "hello"

    def do_work(self) -> Result:
        return Result.success({"greeting": "hi"})


def filled(tmp_path) -> tuple[str, OneTimeWorkRequest, OneTimeWorkRequest]:
    path = str(tmp_path / "w.db")
    done = OneTimeWorkRequest(Hello, input_data={"who": "ann"}, tags={"greetings"})
    waiting = OneTimeWorkRequest(Hello, initial_delay=3600)
    with WorkManager(path, workers=[Hello]) as wm:
        wm.enqueue([done, waiting])
        wm.await_work(done.id, timeout=10)
    return path, done, waiting


def test_list_prints_every_work_as_json(tmp_path):
    path, done, waiting = filled(tmp_path)
    result = CliRunner().invoke(main, ["list", "--database", path, "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.output)}
    assert rows[str(done.id)]["state"] == "SUCCEEDED"
    assert rows[str(waiting.id)]["state"] == "ENQUEUED"
    assert rows[str(done.id)]["tags"] == ["greetings", "hello"]


def test_list_filters_by_state(tmp_path):
    path, done, _ = filled(tmp_path)
    result = CliRunner().invoke(main, ["list", "-d", path, "--state", "succeeded", "--json"])
    assert [row["id"] for row in json.loads(result.output)] == [str(done.id)]


def test_list_takes_the_database_from_the_environment(tmp_path, monkeypatch):
    path, _, _ = filled(tmp_path)
    monkeypatch.setenv("WORKMANAGER_DATABASE", path)
    result = CliRunner().invoke(main, ["list", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.output)) == 2


def test_list_as_a_table_names_the_database(tmp_path):
    path, _, _ = filled(tmp_path)
    result = CliRunner().invoke(main, ["list", "-d", path])
    assert result.exit_code == 0
    assert "SUCCEEDED" in result.output and "ENQUEUED" in result.output


def test_show_prints_every_field_with_input_and_output(tmp_path):
    path, done, _ = filled(tmp_path)
    result = CliRunner().invoke(main, ["show", str(done.id), "-d", path, "--json"])
    assert result.exit_code == 0, result.output
    fields = json.loads(result.output)
    assert fields["state"] == "SUCCEEDED"
    assert fields["input"] == {"who": "ann"}
    assert fields["output"] == {"greeting": "hi"}
    assert fields["run_attempt_count"] == 1


def test_show_of_unknown_work_exits_with_not_found(tmp_path):
    path, _, _ = filled(tmp_path)
    result = CliRunner().invoke(main, ["show", str(uuid.uuid4()), "-d", path])
    assert result.exit_code == EXIT_NOT_FOUND


def test_show_of_something_that_is_not_an_id_is_a_usage_error(tmp_path):
    path, _, _ = filled(tmp_path)
    result = CliRunner().invoke(main, ["show", "nope", "-d", path])
    assert result.exit_code == 2
    assert "not a work id" in result.output


def test_without_a_database_the_command_says_how_to_give_one(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKMANAGER_DATABASE", raising=False)
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 2
    assert "--database" in result.output


def test_worker_with_a_bad_app_path_is_a_usage_error():
    result = CliRunner().invoke(main, ["worker", "no_such_module_here:wm"])
    assert result.exit_code == 2
    assert "cannot import" in result.output


def test_enqueue_writes_work_that_list_then_shows(tmp_path):
    path = str(tmp_path / "w.db")
    result = CliRunner().invoke(
        main, ["enqueue", "hello", "--input", '{"who": "bo"}', "--tag", "cli", "-d", path]
    )
    assert result.exit_code == 0, result.output
    work_id = result.output.strip()
    wm = WorkManager(path, workers=[Hello])
    info = wm.get_work_info_by_id(uuid.UUID(work_id))
    assert info is not None and info.state.name == "ENQUEUED"
    assert info.tags == {"cli", "hello"}
    with wm:
        assert wm.await_work(info.id, timeout=10).output_data == {"greeting": "hi"}


def test_enqueue_rejects_input_that_is_not_a_json_object(tmp_path):
    result = CliRunner().invoke(main, ["enqueue", "hello", "--input", "[1, 2]", "-d", str(tmp_path / "w.db")])
    assert result.exit_code == 2
    assert "JSON object" in result.output


def test_enqueue_unique_with_keep_leaves_one_live_work(tmp_path):
    path = str(tmp_path / "w.db")
    runner = CliRunner()
    for _ in range(3):
        result = runner.invoke(
            main, ["enqueue", "hello", "--unique", "nightly", "--policy", "keep", "-d", path]
        )
        assert result.exit_code == 0, result.output
    assert len(WorkManager(path, workers=[Hello]).get_work_infos_for_unique_work("nightly")) == 1


def test_cancel_by_tag_cancels_that_work(tmp_path):
    path, _, waiting = filled(tmp_path)
    runner = CliRunner()
    tagged = runner.invoke(
        main, ["enqueue", "hello", "--tag", "batch", "--delay", "3600", "-d", path]
    ).output.strip()

    assert runner.invoke(main, ["cancel", "--tag", "batch", "-d", path]).exit_code == 0

    wm = WorkManager(path, workers=[Hello])
    assert wm.get_work_info_by_id(uuid.UUID(tagged)).state.name == "CANCELLED"
    assert wm.get_work_info_by_id(waiting.id).state.name == "ENQUEUED"


def test_cancel_by_id_and_all(tmp_path):
    path, _, waiting = filled(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["cancel", str(waiting.id), "-d", path]).exit_code == 0
    assert WorkManager(path).get_work_info_by_id(waiting.id).state.name == "CANCELLED"
    assert runner.invoke(main, ["cancel", "--all", "-d", path]).exit_code == 0


def test_cancel_needs_exactly_one_target(tmp_path):
    path, _, waiting = filled(tmp_path)
    assert CliRunner().invoke(main, ["cancel", "-d", path]).exit_code == 2
    assert CliRunner().invoke(main, ["cancel", str(waiting.id), "--all", "-d", path]).exit_code == 2


def test_cancel_of_unknown_work_exits_with_not_found(tmp_path):
    path, _, _ = filled(tmp_path)
    assert CliRunner().invoke(main, ["cancel", str(uuid.uuid4()), "-d", path]).exit_code == EXIT_NOT_FOUND


def test_prune_deletes_finished_work_and_says_how_much(tmp_path):
    path, done, waiting = filled(tmp_path)
    result = CliRunner().invoke(main, ["prune", "-d", path, "--json"])
    assert json.loads(result.output) == {"deleted": 1}
    wm = WorkManager(path)
    assert wm.get_work_info_by_id(done.id) is None
    assert wm.get_work_info_by_id(waiting.id) is not None


def test_service_install_writes_a_systemd_user_unit_that_runs_the_worker(tmp_path, monkeypatch):
    import shutil
    import subprocess

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    runner = CliRunner()
    result = runner.invoke(main, ["service", "install", "myapp.tasks:wm", "-d", "/srv/work.db"])
    assert result.exit_code == 0, result.output
    unit = tmp_path / "config" / "systemd" / "user" / "workmanager-myapp.tasks-wm.service"
    text = unit.read_text()
    assert "-m workmanager.cli worker myapp.tasks:wm" in text
    assert "Restart=on-failure" in text
    assert "Environment=WORKMANAGER_DATABASE=/srv/work.db" in text
    assert "WantedBy=default.target" in text
    if shutil.which("systemd-analyze"):  # checks the syntax and that ExecStart's program exists
        verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
        assert verify.returncode == 0, verify.stderr

    status = runner.invoke(main, ["service", "status", "myapp.tasks:wm", "--json"])
    assert json.loads(status.output)["installed"] is True
    assert runner.invoke(main, ["service", "uninstall", "myapp.tasks:wm"]).exit_code == 0
    assert not unit.exists()
    assert runner.invoke(main, ["service", "status", "myapp.tasks:wm"]).exit_code == EXIT_NOT_FOUND


def test_diagnostics_reports_counts_and_waiting_names_no_live_worker_runs(tmp_path):
    path, _, waiting = filled(tmp_path)
    result = CliRunner().invoke(main, ["diagnostics", "-d", path, "--json"])
    report = json.loads(result.output)
    assert report["counts"] == {"ENQUEUED": 1, "SUCCEEDED": 1}
    assert report["oldest_waiting"][0]["id"] == str(waiting.id)
    assert report["waiting_names_no_live_worker_runs"] == {"hello": 1}  # no worker process is running
    assert result.exit_code == 1


def test_diagnostics_is_clean_while_a_live_worker_runs_the_waiting_names(tmp_path):
    path, _, _ = filled(tmp_path)
    with WorkManager(path, workers=[Hello]):
        result = CliRunner().invoke(main, ["diagnostics", "-d", path, "--json"])
    report = json.loads(result.output)
    assert report["waiting_names_no_live_worker_runs"] == {}
    assert [w["alive"] for w in report["workers"]] == [True]
    assert result.exit_code == 0


def test_diagnostics_counts_work_running_for_a_process_that_is_gone(tmp_path):
    from workmanager.engine import records

    path = str(tmp_path / "w.db")
    wm = WorkManager(path, workers=[Hello])
    request = OneTimeWorkRequest(Hello)
    with wm._storage.transaction() as tx:
        tx.work_insert([records.new_work(request, now=1, config=wm.configuration)])
        tx.work_claim_available(now=2, limit=1, runner_id="gone", run_token=1, names=None)

    result = CliRunner().invoke(main, ["diagnostics", "-d", path])

    assert "RUNNING for a process that is gone" in result.output
    assert result.exit_code == 1


def test_list_filters_by_tag_unique_name_and_worker_and_sorts_oldest_first(tmp_path):
    path, done, _ = filled(tmp_path)
    runner = CliRunner()
    unique = runner.invoke(
        main, ["enqueue", "other", "--unique", "u1", "--delay", "60", "-d", path]
    ).output.strip()

    def ids(*args: str) -> list[str]:
        result = runner.invoke(main, ["list", "-d", path, "--json", *args])
        assert result.exit_code == 0, result.output
        return [row["id"] for row in json.loads(result.output)]

    assert ids("--tag", "greetings") == [str(done.id)]
    assert ids("--unique", "u1") == [unique]
    assert ids("--worker", "other") == [unique]
    assert ids("--oldest-first")[-1] == unique
    assert ids()[0] == unique


def test_service_install_on_macos_writes_a_launchd_agent_that_keeps_the_worker_running(tmp_path, monkeypatch):
    import plistlib
    import sys

    monkeypatch.setenv("HOME", str(tmp_path))
    runner = CliRunner()
    result = runner.invoke(
        main, ["service", "install", "myapp.tasks:wm", "-d", "/srv/work.db", "--kind", "launchd"]
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "Library" / "LaunchAgents" / "io.workmanager.myapp.tasks-wm.plist"
    with path.open("rb") as f:
        agent = plistlib.load(f)  # a well-formed property list, or this raises
    assert agent["Label"] == "io.workmanager.myapp.tasks-wm"
    assert agent["ProgramArguments"] == [sys.executable, "-m", "workmanager.cli", "worker", "myapp.tasks:wm"]
    assert agent["EnvironmentVariables"] == {"WORKMANAGER_DATABASE": "/srv/work.db"}
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ExitTimeOut"] == 30
    assert agent["StandardErrorPath"].startswith(str(tmp_path / "Library" / "Logs"))
    assert "launchctl bootstrap" in result.output

    status = runner.invoke(main, ["service", "status", "myapp.tasks:wm", "--kind", "launchd", "--json"])
    assert json.loads(status.output)["installed"] is True
    assert runner.invoke(main, ["service", "uninstall", "myapp.tasks:wm", "--kind", "launchd"]).exit_code == 0
    assert not path.exists()


def test_service_kind_defaults_to_launchd_on_macos(tmp_path, monkeypatch):
    import plistlib

    monkeypatch.setattr("sys.platform", "darwin")
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["service", "install", "myapp.tasks:wm", "--print"])
    assert result.exit_code == 0, result.output
    agent = plistlib.loads(result.output.encode())
    assert "EnvironmentVariables" not in agent and agent["Label"] == "io.workmanager.myapp.tasks-wm"


def test_dashboard_without_the_extra_names_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_uvicorn(name, *args, **kwargs):
        if name == "uvicorn":
            raise ImportError("No module named 'uvicorn'", name="uvicorn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_uvicorn)
    result = CliRunner().invoke(main, ["dashboard", "-d", "x.db"])
    assert result.exit_code == 1
    assert "pip install 'workmanager[dashboard]'" in result.output


def test_worker_serves_metrics_with_its_runs_on_its_port(tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    path = str(tmp_path / "w.db")
    app = tmp_path / "metrics_app.py"
    app.write_text(
        "from workmanager import WorkManager, Worker, Result\n"
        "class Hello(Worker):\n"
        "    name = 'hello'\n"
        "    def do_work(self):\n"
        "        return Result.success()\n"
        f"wm = WorkManager({path!r}, workers=[Hello])\n"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Not `with WorkManager(...)`: that starts it, and it could run the job itself before
    # closing (then the worker process never counts a run).
    enqueuer = WorkManager(path, workers=[Hello])
    try:
        enqueuer.enqueue([OneTimeWorkRequest(Hello, initial_delay=3600), OneTimeWorkRequest(Hello)])
    finally:
        enqueuer.close()
    expected = [
        'workmanager_runs_total{outcome="success",worker="hello"} 1.0',
        # The run is counted when it ends, its outcome committed by the next turn: wait for both.
        'workmanager_work{state="ENQUEUED"} 1.0',
        'workmanager_work{state="SUCCEEDED"} 1.0',
        "workmanager_worker_processes 1.0",
        'workmanager_run_duration_seconds_count{worker="hello"} 1.0',
    ]
    worker = subprocess.Popen(
        [sys.executable, "-m", "workmanager.cli", "worker", "metrics_app:wm", "--metrics-port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        text = ""
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                    text = answer.read().decode()
                if all(line in text for line in expected):
                    break
            except OSError:
                pass
            assert worker.poll() is None, worker.stderr.read().decode() if worker.stderr else ""
            missing = [line for line in expected if line not in text]
            assert time.monotonic() < deadline, f"metrics of a live worker process lack {missing}"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
