"""The benchmark's graph phase: chains and joins of 10,000 nodes, and resolving dependents.

Enqueueing goes through the public API (``begin_with(...).then(...).enqueue()``: one call,
one transaction). Resolving dependents is timed on the engine's own path: the head is
claimed, then ``engine.states.apply_outcome`` persists its success (every BLOCKED
dependent becomes ENQUEUED) or failure (every dependent becomes FAILED) in one
transaction, which is the statement a finishing worker runs; the figure is that
transaction's time divided by the number of dependents.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.wmjobs import manager, request
from workmanager import Data, WorkContinuation
from workmanager.engine.states import Failed, Succeeded, apply_outcome


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _states(wm: Any) -> dict[int, int]:
    return dict(wm._storage.work_count_by_state())


def fan_in(folder: Path, n: int) -> dict[str, Any]:
    """``begin_with([n requests]).then(join)``: a fan-out of n into one join, one call."""
    wm = manager(os.fspath(folder / "fan-in.db"))
    try:
        continuation = wm.begin_with([request(i) for i in range(n)]).then(request(n))
        seconds, _ = _timed(continuation.enqueue)
        stored = sum(_states(wm).values())
        return {"nodes": n + 1, "seconds": seconds, "us_per_node": seconds / (n + 1) * 1e6, "stored": stored}
    finally:
        wm.close()


def chain(folder: Path, n: int) -> dict[str, Any]:
    """``begin_with(r0).then(r1)...then(r[n-1])``: an n-long chain, one call."""
    wm = manager(os.fspath(folder / "chain.db"))
    try:
        build_s, continuation = _timed(lambda: _build_chain(wm, n))
        seconds, _ = _timed(continuation.enqueue)
        stored = sum(_states(wm).values())
        return {
            "nodes": n,
            "seconds": seconds,
            "build_s": build_s,
            "us_per_node": seconds / n * 1e6,
            "stored": stored,
        }
    finally:
        wm.close()


def _build_chain(wm: Any, n: int) -> WorkContinuation:
    continuation = wm.begin_with(request(0))
    for i in range(1, n):
        continuation = continuation.then(request(i))
    return continuation


def resolve(folder: Path, n: int, *, succeed: bool) -> dict[str, Any]:
    """A head with n BLOCKED dependents finishes; time the transaction that resolves them all."""
    wm = manager(os.fspath(folder / f"resolve-{n}-{succeed}.db"))
    try:
        head = request(0)
        wm.begin_with(head).then([request(i) for i in range(1, n + 1)]).enqueue()
        storage = wm._storage
        now = wm._clock.now_ms()
        with storage.transaction() as tx:
            claimed = tx.work_claim_available(now=now, limit=1, runner_id="bench", run_token=1, names=None)
        assert [c.id for c in claimed] == [str(head.id)], claimed
        outcome = Succeeded(Data.EMPTY) if succeed else Failed(Data({"why": "bench"}))

        def finish() -> None:
            with storage.transaction() as tx:
                applied = apply_outcome(
                    tx, str(head.id), 1, outcome, is_periodic=False, now=now, max_backoff_ms=18_000_000
                )
                assert applied.applied

        seconds, _ = _timed(finish)
        states = _states(wm)
        resolved = states.get(0, 0) if succeed else states.get(3, 0) - 1
        return {"dependents": n, "seconds": seconds, "us_per_node": seconds / n * 1e6, "resolved": resolved}
    finally:
        wm.close()


def graph_phase(folder: Path, n: int = 10_000) -> dict[str, Any]:
    fig: dict[str, Any] = {
        "fan_in": fan_in(folder, n),
        "chain": chain(folder, n),
    }
    for k in (1_000, 10_000):
        fig[f"unblock_{k}"] = resolve(folder, k, succeed=True)
        fig[f"fail_{k}"] = resolve(folder, k, succeed=False)
    return fig


if __name__ == "__main__":
    import json
    import tempfile

    print(json.dumps(graph_phase(Path(tempfile.mkdtemp(prefix="wmgraph-"))), indent=2))
