"""One racing process: waits for the go signal, then enqueues unique work as fast as it can.

``python unique_racer.py INDEX COUNT POLICY`` (POLICY: an ExistingWorkPolicy name, or
``periodic:`` + an ExistingPeriodicWorkPolicy name). Reports what happened as one JSON
line on stdout: how many calls returned and every exception's type and message.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from ledger_app import make

from workmanager import (
    ExistingPeriodicWorkPolicy,
    ExistingWorkPolicy,
    OneTimeWorkRequest,
    PeriodicWorkRequest,
)

NAME = "race"


def main() -> None:
    index, count, policy = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    barrier = Path(os.environ["RACE_DIR"])
    wm = make()
    (barrier / f"ready-{index}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.001)
    done, errors = 0, []
    for i in range(count):
        job = f"{index}-{i}"
        try:
            if policy.startswith("periodic:"):
                request = PeriodicWorkRequest(
                    "mark", repeat_interval=timedelta(hours=1), input_data={"job": job}
                )
                wm.enqueue_unique_periodic_work(
                    NAME, ExistingPeriodicWorkPolicy[policy.removeprefix("periodic:")], request
                )
            else:
                request = OneTimeWorkRequest("mark", input_data={"job": job})
                wm.enqueue_unique_work(NAME, ExistingWorkPolicy[policy], request)
            done += 1
        except Exception as exc:  # reported, and the test fails on any
            errors.append(f"{type(exc).__name__}: {exc}")
    wm.close()
    print(json.dumps({"index": index, "done": done, "errors": errors[:5]}), flush=True)


if __name__ == "__main__":
    main()
