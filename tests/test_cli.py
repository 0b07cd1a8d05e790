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
