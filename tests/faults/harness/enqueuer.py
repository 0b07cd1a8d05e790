"""A process that enqueues and says what it was told: run by scenarios that kill enqueuers.

    python enqueuer.py MODE --acks FILE [--start I] [--count N] [--batch B] [--name NAME]

Before each call it appends ``{"event": "try", "ids": [...]}`` to FILE and after the call
returns ``{"event": "ack", ...}``: an id acknowledged must be in the database whatever
happens next (G1); an id tried but not acknowledged when the process died may or may not
be, depending on where it died. MODE:

* ``plain``: ``count`` jobs, ``batch`` per ``enqueue()`` call (one transaction each).
* ``chain``: chains of ``batch`` jobs (``begin_with(a).then(b)...``), one transaction each.
* ``replace``: ``count`` calls of ``enqueue_unique_work(name, REPLACE, job)``.
* ``forever``: like ``plain`` but until killed; writes ``{"event": "ready"}`` first.
* ``serve``: a fork server for scenarios that kill many enqueuers: each line on stdin is the
  argument list of one enqueuer (e.g. ``["forever", "--acks", ...]``), run in a child forked
  from this process (imports done once; the child opens its own database connection); the
  child's pid is printed on stdout. Ends at the end of stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from app import ALL, Mark, configuration  # type: ignore[import-not-found]
from ledger import append  # type: ignore[import-not-found]

from workmanager import ExistingWorkPolicy, OneTimeWorkRequest


def serve() -> None:
    """Fork one enqueuer per line of stdin; print each child's pid. Single-threaded and
    without a database connection of its own, so every fork starts clean."""
    for line in sys.stdin:
        argv = json.loads(line)
        pid = os.fork()
        if pid == 0:
            try:
                main(argv)
            finally:
                os._exit(0)
        print(pid, flush=True)
        while True:  # reap the children killed so far
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["plain", "chain", "replace", "forever", "serve"])
    parser.add_argument("--acks", help="required but in serve mode")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--name", default="unique")
    parser.add_argument("--prefix", default="e")
    parser.add_argument("--chain", action="store_true", help="forever: chains of --batch, not batches")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        serve()
        return
    if args.acks is None:
        parser.error("--acks is required")

    from workmanager import WorkManager

    wm = WorkManager(os.environ["WORKMANAGER_DATABASE"], workers=list(ALL), configuration=configuration())
    acks = args.acks
    pid = os.getpid()

    def job(i: int) -> OneTimeWorkRequest:
        return OneTimeWorkRequest(Mark, input_data={"job": f"{args.prefix}{i}"})

    if args.mode == "forever":
        append(acks, {"event": "ready", "pid": pid})
    i = args.start
    while args.mode == "forever" or i < args.start + args.count:
        size = 1 if args.mode == "replace" else args.batch
        requests = [job(k) for k in range(i, i + size)]
        ids = [str(r.id) for r in requests]
        jobs = [f"{args.prefix}{k}" for k in range(i, i + size)]
        append(acks, {"event": "try", "ids": ids, "jobs": jobs, "pid": pid})
        started = time.monotonic()
        if args.mode == "plain" or (args.mode == "forever" and not args.chain):
            wm.enqueue(requests)
        elif args.mode == "chain" or args.chain:
            continuation = wm.begin_with(requests[0])
            for r in requests[1:]:
                continuation = continuation.then(r)
            continuation.enqueue()
        else:
            wm.enqueue_unique_work(args.name, ExistingWorkPolicy.REPLACE, requests[0])
        ms = round((time.monotonic() - started) * 1000, 2)
        append(acks, {"event": "ack", "ids": ids, "jobs": jobs, "pid": pid, "ms": ms})
        i += size
    wm.close()


if __name__ == "__main__":
    main()
