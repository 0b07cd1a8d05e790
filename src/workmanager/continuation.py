"""WorkContinuation: chains and joins of one-time work, enqueued as one graph.

>>> from workmanager.testing import create_test_work_manager
>>> wm = create_test_work_manager(workers=[CombineContinuationsWorker])
>>> a, b = (OneTimeWorkRequest(CombineContinuationsWorker, input_data={"x": i}) for i in (1, 2))
>>> c = OneTimeWorkRequest(CombineContinuationsWorker)
>>> wm.begin_with([a, b]).then(c).enqueue()          # c runs after both a and b succeed
>>> wm.get_work_info_by_id(c.id).output_data["x"] in (1, 2)
True

A continuation is a value: ``then`` and ``combine`` return new continuations and never
change the ones they start from. ``enqueue()`` writes the continuation and every parent
not enqueued yet in one transaction; a second call does nothing.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from workmanager.data import ArrayCreatingInputMerger
from workmanager.info import WorkInfo, WorkQuery
from workmanager.requests import ExistingWorkPolicy, OneTimeWorkRequest, WorkRequest
from workmanager.worker import Result, Worker

if TYPE_CHECKING:
    from workmanager.manager import WorkManager

__all__ = ["CombineContinuationsWorker", "WorkContinuation"]

log = logging.getLogger("workmanager.continuation")


class CombineContinuationsWorker(Worker):
    """The hidden join ``WorkContinuation.combine`` inserts: its output is its merged input.

    Every WorkManager registers it, so any worker process can run it.
    """

    name = "workmanager.CombineContinuationsWorker"

    def do_work(self) -> Result:
        return Result.success(self.input_data)


def one_time_requests(
    requests: WorkRequest | Sequence[WorkRequest], what: str
) -> tuple[OneTimeWorkRequest, ...]:
    """``requests`` as a tuple of one-time requests; a ValueError names what is wrong."""
    batch = [requests] if isinstance(requests, WorkRequest) else list(requests)
    for request in batch:
        if isinstance(request, WorkRequest) and request.is_periodic:
            raise ValueError(
                f"{what}: periodic work cannot be part of a chain (request {request.id}); "
                "use enqueue_unique_periodic_work or enqueue"
            )
        if not isinstance(request, OneTimeWorkRequest):
            raise ValueError(f"{what} takes OneTimeWorkRequests, got {type(request).__name__}")
    return tuple(batch)  # type: ignore[arg-type]  # checked above


class WorkContinuation:
    """One step of a chain: its requests run after every request of its parents succeeded.

    Build it with ``wm.begin_with``, ``wm.begin_unique_work``, ``then`` and ``combine``.
    """

    def __init__(
        self,
        manager: WorkManager,
        requests: tuple[OneTimeWorkRequest, ...],
        *,
        parents: tuple[WorkContinuation, ...] = (),
        name: str | None = None,
        policy: ExistingWorkPolicy = ExistingWorkPolicy.KEEP,
    ) -> None:
        if not requests:
            raise ValueError("a WorkContinuation needs at least one OneTimeWorkRequest, got none")
        self._manager = manager
        self._requests = requests
        self._parents = parents
        self._name = name
        self._policy = policy
        self._enqueued = False
        self._lock = threading.Lock()

    # -- what it holds -------------------------------------------------------------------------

    @property
    def requests(self) -> tuple[OneTimeWorkRequest, ...]:
        """This step's own requests."""
        return self._requests

    @property
    def parents(self) -> tuple[WorkContinuation, ...]:
        return self._parents

    @property
    def name(self) -> str | None:
        """The unique work name its requests carry (None for plain chains and joins)."""
        return self._name

    @property
    def policy(self) -> ExistingWorkPolicy:
        return self._policy

    @property
    def is_enqueued(self) -> bool:
        return self._enqueued

    def __repr__(self) -> str:
        named = f" name={self._name!r} policy={self._policy.name}" if self._name else ""
        ids = ", ".join(str(r.id) for r in self._requests[:3]) + (", …" if len(self._requests) > 3 else "")
        return f"<WorkContinuation [{ids}]{named} parents={len(self._parents)}>"

    # -- building --------------------------------------------------------------------------------

    def then(self, requests: OneTimeWorkRequest | Sequence[OneTimeWorkRequest]) -> WorkContinuation:
        """A continuation whose requests run after all of this one's; it keeps the unique name.

        An empty list returns this continuation, as on Android.
        """
        batch = one_time_requests(requests, "then")
        if not batch:
            return self
        return WorkContinuation(self._manager, batch, parents=(self,), name=self._name)

    @staticmethod
    def combine(continuations: Sequence[WorkContinuation]) -> WorkContinuation:
        """Join: a hidden worker runs after every given continuation and passes their outputs on
        as arrays (ArrayCreatingInputMerger); continue from it with ``then``."""
        parents = tuple(continuations)
        if not parents:
            raise ValueError("WorkContinuation.combine needs at least one continuation, got none")
        for parent in parents:
            if not isinstance(parent, WorkContinuation):
                raise ValueError(f"WorkContinuation.combine takes WorkContinuations, got {parent!r}")
        manager = parents[0]._manager
        if any(p._manager is not manager for p in parents):
            raise ValueError("WorkContinuation.combine: all continuations must belong to one WorkManager")
        join = OneTimeWorkRequest(CombineContinuationsWorker, input_merger=ArrayCreatingInputMerger)
        return WorkContinuation(manager, (join,), parents=parents)

    # -- the graph -------------------------------------------------------------------------------

    def graph(self) -> list[tuple[WorkContinuation, tuple[str, ...]]]:
        """Continuations not enqueued yet, parents first, each with its prerequisite ids.

        Raises ValueError when one request appears twice in the whole graph (a cycle,
        or the same request enqueued twice). Iterative: a 10,000-step chain is fine.
        """
        order: list[WorkContinuation] = []
        seen: set[int] = set()
        stack: list[tuple[WorkContinuation, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            for parent in reversed(node._parents):
                if id(parent) not in seen:
                    stack.append((parent, False))
        seen_ids: set[uuid.UUID] = set()
        for node in order:
            for request in node._requests:
                if request.id in seen_ids:
                    raise ValueError(
                        f"request {request.id} ({request.worker_name}) appears more than once in this "
                        "continuation: each request can be enqueued once, and none can depend on itself"
                    )
                seen_ids.add(request.id)
        return [
            (node, tuple(str(r.id) for p in node._parents for r in p._requests))
            for node in order
            if not node._enqueued
        ]

    def _mark_enqueued(self) -> None:
        self._enqueued = True

    def _all_requests(self) -> list[OneTimeWorkRequest]:
        """This continuation's requests and all its ancestors', ancestors first."""
        order: list[WorkContinuation] = []
        seen: set[int] = set()
        stack: list[tuple[WorkContinuation, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in reversed(node._parents) if id(p) not in seen)
        return [r for node in order for r in node._requests]

    # -- enqueue and observe ---------------------------------------------------------------------

    def enqueue(self) -> None:
        """Enqueue this continuation and every parent not enqueued yet, in one transaction.

        Durable when it returns. A second call logs a warning and does nothing, as on Android.
        """
        with self._lock:
            if self._enqueued:
                log.warning("already enqueued: %r", self)
                return
            self._manager._enqueue_continuation(self)

    async def enqueue_async(self) -> None:
        import asyncio

        await asyncio.to_thread(self.enqueue)

    def get_work_infos(self) -> list[WorkInfo]:
        """The WorkInfo of every request in this continuation and its prerequisites, ancestors
        first; work that no longer exists (pruned, replaced) is left out."""
        requests = self._all_requests()
        infos = {i.id: i for i in self._manager.get_work_infos(WorkQuery(ids=[r.id for r in requests]))}
        return [infos[r.id] for r in requests if r.id in infos]

    async def get_work_infos_async(self) -> list[WorkInfo]:
        import asyncio

        return await asyncio.to_thread(self.get_work_infos)

    def get_work_infos_flow(self) -> AsyncIterator[list[WorkInfo]]:
        """Emits get_work_infos() now and whenever it changes."""
        return self._manager._flow(self.get_work_infos)
