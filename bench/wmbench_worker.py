"""One workmanager worker process: ``python -m bench.wmbench_worker <db path>``.

Does what ``workmanager worker`` does for the benchmark's manager: ``WorkManager(path,
workers=[Mark]).start()``, runs work until SIGTERM, then ``stop()``.
"""

from __future__ import annotations

import signal
import sys
import threading

from bench.util import ready_then_wait_for_go
from bench.wmjobs import manager


def main(argv: list[str]) -> None:
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    wm = manager(argv[0])
    ready_then_wait_for_go()
    wm.start()
    print("worker started", flush=True)
    done.wait()
    wm.stop()
    print("worker stopped", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
