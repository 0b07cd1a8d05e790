"""The demo's application: three workers and the WorkManager that knows them.

Both the demo (which enqueues) and the worker process (`workmanager worker
demo_app:wm`) import this module, so they share one database file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from datetime import timedelta

from workmanager import Configuration, CoroutineWorker, Result, Worker, WorkManager


class Checksum(Worker):
    """Hashes a text, reporting progress on the way."""

    name = "checksum"

    def do_work(self) -> Result:
        text = str(self.input_data["text"])
        digest = hashlib.sha256()
        for i, chunk in enumerate(text.split()):
            digest.update(chunk.encode())
            self.set_progress({"words": i + 1})
            time.sleep(0.1)
        return Result.success({"sha256": digest.hexdigest()[:16]})


class FlakyUpload(Worker):
    """Fails on its first attempt, as a network call might, and succeeds on the retry."""

    name = "flaky-upload"

    def do_work(self) -> Result:
        if self.run_attempt_count == 0:
            return Result.retry()
        return Result.success({"url": f"https://example.invalid/{self.input_data['file']}"})


class Fetch(CoroutineWorker):
    """An asyncio worker."""

    name = "fetch"

    async def do_work(self) -> Result:
        await asyncio.sleep(0.2)
        if self.input_data.get("fail"):
            raise ConnectionError("host unreachable")
        return Result.success({"bytes": 1234})


wm = WorkManager(
    os.environ.get("WORKMANAGER_DATABASE", "demo.db"),
    workers=[Checksum, FlakyUpload, Fetch],
    # A short backoff so the demo's retry happens within a second or two (Android's floor is 10 s).
    configuration=Configuration(min_backoff=timedelta(seconds=1)),
)
