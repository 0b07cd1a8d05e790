"""Case 24: nothing read from the database can run code (reliability.md §5, H8).

Rows are written with worker names that name callables or importable modules (``os.system``,
``builtins.eval``, ``subprocess.Popen``, a module on sys.path that leaves a sentinel file when
imported, names with ``..`` and ``:``) and with payloads carrying pickle opcodes and JSON type
tags. A WorkManager then processes the database with an audit hook (``sys.addaudithook``)
recording imports, ``os.system``, ``subprocess.Popen``, ``pickle.find_class``, ``exec`` and
``compile``: none may concern those rows, no sentinel may appear, the bad rows never run, and
the registered worker still runs.
"""

from __future__ import annotations

import base64
import json
import pickle
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from workmanager import OneTimeWorkRequest, Result, Worker, WorkInfo, WorkManager
from workmanager.cli import EXIT_PROBLEMS

S = WorkInfo.State
WATCHED = ("import", "os.system", "os.exec", "os.posix_spawn", "subprocess.Popen", "pickle.find_class",
           "exec", "compile")  # fmt: skip

_recording = threading.Event()
_events: list[tuple[str, tuple[Any, ...]]] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if _recording.is_set() and event.startswith(WATCHED):
        _events.append((event, args))


sys.addaudithook(_hook)  # cannot be removed: it records only while _recording is set


class Trusted(Worker):
    name = "trusted"
    ran: list[str] = []

    def do_work(self) -> Result:
        Trusted.ran.append(str(self.input_data.get("job")))
        return Result.success()


class _Payload:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("touch /tmp/wm-pickle-sentinel",))


PICKLE = pickle.dumps(_Payload(), protocol=4)  # b"\x80\x04...cposix\nsystem..."


def test_case24_names_and_payloads_read_from_the_database_never_run_code(tmp_path: Path) -> None:
    sentinel = tmp_path / "imported"
    module = f"wm_evil_probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(f"open({str(sentinel)!r}, 'w').close()\n")
    sys.path.insert(0, str(tmp_path))
    names = ["os.system", "builtins.eval", "subprocess.Popen", "pickle.loads", module, f"{module}.Evil",
             f"{module}:Evil", "../../etc/passwd", "workmanager..worker:Worker", "__import__"]  # fmt: skip
    payloads = [
        json.dumps({"job": "pickle-text", "p": PICKLE.decode("latin-1")}),
        json.dumps({"job": "pickle-bytes", "p": {"$b": base64.b64encode(PICKLE).decode()}}),
        json.dumps({"job": "class-tag", "__class__": "os.system", "__reduce__": ["os.system", ["id"]]}),
        json.dumps(
            {"job": "py-object", "py/object": "subprocess.Popen", "py/reduce": [{"py/type": "os.system"}]}
        ),
        json.dumps({"job": "nested-tag", "p": {"py/object": "os.system"}}),
    ]
    db = tmp_path / "work.db"
    try:
        wm = WorkManager(db, workers=[Trusted])
        # Rows are enqueued the ordinary way, then rewritten as an attacker with write access would.
        template = OneTimeWorkRequest(Trusted, input_data={"job": "template"})
        by_name = {n: OneTimeWorkRequest(Trusted, input_data={"job": f"name:{n}"}) for n in names}
        by_payload = [
            OneTimeWorkRequest(Trusted, input_data={"job": f"payload{i}"}) for i in range(len(payloads))
        ]
        good = [OneTimeWorkRequest(Trusted, input_data={"job": f"good{i}"}) for i in range(20)]
        wm.enqueue([template, *by_name.values(), *by_payload, *good])
        import sqlite3

        with sqlite3.connect(db) as conn:
            for n, request in by_name.items():
                conn.execute("UPDATE workspec SET worker_name = ? WHERE id = ?", (n, str(request.id)))
            for text, request in zip(payloads, by_payload, strict=True):
                conn.execute("UPDATE workspec SET input = ? WHERE id = ?", (text, str(request.id)))
        # The other half of the plan's "stored input merger" rule: a merger named by a row.
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE workspec SET input_merger = 'os.system' WHERE id = ?", (str(template.id),))

        before = set(sys.modules)
        _events.clear()
        _recording.set()
        try:
            wm.start()
            for request in [template, *by_payload, *good]:
                wm.await_work(request.id, timeout=30)
        finally:
            _recording.clear()
            wm.close()

        assert not sentinel.exists(), "a module named by a row was imported"
        assert module not in sys.modules
        assert not Path("/tmp/wm-pickle-sentinel").exists()
        # Never, whatever the arguments: a shell, an exec, an unpickling, exec() of a string.
        forbidden = [(e, a) for e, a in _events if e.startswith(("os.system", "os.exec", "os.posix_spawn",
                                                                  "pickle.find_class")) or e == "exec"]  # fmt: skip
        assert forbidden == [], forbidden
        # The library's own, with fixed arguments: ctypes.util.find_library("c") runs ldconfig when
        # the change watcher starts; tracebacks of failed runs compile source lines of our files.
        spawned = [a[1] for e, a in _events if e == "subprocess.Popen"]
        assert all(argv == ["/sbin/ldconfig", "-p"] for argv in spawned), spawned
        # Nothing else touches anything a row said.
        tokens = [module, "system", "Popen", "eval", "pickle", "passwd", "py/", "__reduce__", "__class__",
                  "Evil", "__import__"]  # fmt: skip
        tainted = [
            (e, a) for e, a in _events if e in ("import", "compile") and any(t in repr(a) for t in tokens)
        ]
        assert tainted == [], tainted
        newly_imported = {str(a[0]) for e, a in _events if e == "import"} - before
        assert not any(
            m.split(".")[0] in {"os", "builtins", "subprocess", "pickle", module} for m in newly_imported
        )
        # Rows naming unregistered workers are not claimed by a process that cannot run them
        # (case 25's policy): they wait, never run; the payload rows ran as plain data.
        reader = WorkManager(db, workers=[Trusted])
        try:
            for n, request in by_name.items():
                assert reader.get_work_info_by_id(request.id).state is S.ENQUEUED, n
        finally:
            reader.close()
        assert not any(j.startswith("name:") for j in Trusted.ran)
        # ... and the diagnostics report them as waiting for a worker no live process runs.
        report = subprocess.run(
            [sys.executable, "-m", "workmanager.cli", "diagnostics", "--database", str(db), "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert report.returncode == EXIT_PROBLEMS, report.stderr
        assert set(names) <= set(json.loads(report.stdout)["waiting_names_no_live_worker_runs"])
        assert {f"good{i}" for i in range(20)} <= set(Trusted.ran)
    finally:
        sys.path.remove(str(tmp_path))
