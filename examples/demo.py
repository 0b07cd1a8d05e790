"""`make demo`: enqueue a few requests, run them in a separate worker process, and
print every WorkInfo change as it happens."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent


def short_id(work_id: object) -> str:
    from workmanager.ids import short_id

    return short_id(str(work_id))


def describe(info: object) -> str:
    from workmanager import WorkInfo

    assert isinstance(info, WorkInfo)
    worker = next(iter(sorted(info.tags)))
    parts = [f"{worker:<13} {info.state.name:<9} attempt {info.run_attempt_count}"]
    if info.progress:
        parts.append(f"progress {dict(info.progress)}")
    if info.output_data:
        parts.append(f"output {dict(info.output_data)}")
    if info.state.name == "ENQUEUED" and info.run_attempt_count:
        parts.append(f"retry at {info.next_schedule_time:%H:%M:%S}")
    return "  ".join(parts)


async def watch(wm: object, ids: list[object]) -> None:
    from workmanager import WorkManager

    assert isinstance(wm, WorkManager)

    async def follow(work_id: object) -> None:
        async for info in wm.get_work_info_by_id_flow(work_id):  # type: ignore[arg-type]
            if info is None:
                continue
            print(f"  {short_id(info.id)}  {describe(info)}", flush=True)
            if info.state.is_finished:
                return

    await asyncio.wait_for(asyncio.gather(*(follow(i) for i in ids)), timeout=60)


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="workmanager-demo-"))
    os.environ["WORKMANAGER_DATABASE"] = str(folder / "demo.db")
    sys.path.insert(0, str(HERE))
    import demo_app

    from workmanager import OneTimeWorkRequest

    print(f"database: {os.environ['WORKMANAGER_DATABASE']}")
    worker = subprocess.Popen(
        [sys.executable, "-m", "workmanager.cli", "worker", "demo_app:wm"], cwd=HERE, env=os.environ.copy()
    )
    print(f"worker process started (pid {worker.pid}); enqueuing from pid {os.getpid()}")
    requests = [
        OneTimeWorkRequest(demo_app.Checksum, input_data={"text": "the quick brown fox jumps"}),
        OneTimeWorkRequest(
            demo_app.FlakyUpload, input_data={"file": "a.jpg"}, backoff_delay=timedelta(seconds=1)
        ),
        OneTimeWorkRequest(demo_app.Fetch, input_data={"url": "https://example.invalid"}),
        OneTimeWorkRequest(demo_app.Fetch, input_data={"fail": True}, tags={"will-fail"}),
        OneTimeWorkRequest(
            demo_app.Checksum, input_data={"text": "later"}, initial_delay=timedelta(seconds=2)
        ),
    ]
    demo_app.wm.enqueue(requests)
    try:
        asyncio.run(watch(demo_app.wm, [r.id for r in requests]))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    print("\nfinal states:")
    for r in requests:
        info = demo_app.wm.get_work_info_by_id(r.id)
        print(f"  {short_id(r.id)}  {describe(info)}")
    print(f"\ntry: .venv/bin/workmanager list -d {os.environ['WORKMANAGER_DATABASE']}")


if __name__ == "__main__":
    main()
