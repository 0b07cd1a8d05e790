"""How soon an observer in another process sees a worker's set_progress (issue: within 100 ms).

python -m bench.progress  — a worker process reports progress 20 times, 50 ms apart, each
stamped with time.time(); this process follows the work's flow and prints how late each
progress arrived.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """
import os, time
from workmanager import WorkManager, Worker, Result

class Prog(Worker):
    name = "prog"

    def do_work(self):
        for i in range(1, 21):
            self.set_progress({"i": i, "t": time.time()})
            time.sleep(0.05)
        return Result.success()

wm = WorkManager(os.environ["WORKMANAGER_DATABASE"], workers=[Prog])
"""


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="wm-progress-"))
    (folder / "progapp.py").write_text(APP)
    os.environ["WORKMANAGER_DATABASE"] = str(folder / "w.db")
    sys.path.insert(0, str(folder))
    import progapp  # type: ignore[import-not-found]

    from workmanager import OneTimeWorkRequest

    worker = subprocess.Popen([sys.executable, "-m", "workmanager.cli", "worker", "progapp:wm"], cwd=folder)
    request = OneTimeWorkRequest(progapp.Prog)
    progapp.wm.enqueue(request)
    late: list[float] = []

    async def follow() -> None:
        async for info in progapp.wm.get_work_info_by_id_flow(request.id):
            if info is not None and info.progress:
                late.append((time.time() - float(info.progress["t"])) * 1000)  # type: ignore[arg-type]
            if info is not None and info.state.is_finished:
                return

    try:
        asyncio.run(asyncio.wait_for(follow(), 60))
    finally:
        worker.terminate()
        worker.wait()
    late.sort()
    print(
        f"progress seen in another process: n={len(late)} p50 {late[len(late) // 2]:.1f} ms "
        f"max {late[-1]:.1f} ms (target: within 100 ms)"
    )


if __name__ == "__main__":
    main()
