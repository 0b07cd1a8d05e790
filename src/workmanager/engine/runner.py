"""Run one claimed work: build the worker, merge its inputs, start it, map the end to one Outcome.

Building, invoking and mapping are separate small steps; nothing here touches storage.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future

from workmanager.data import Data, input_merger_by_name
from workmanager.engine.states import Failed, Outcome, Retry, Stopped, Succeeded
from workmanager.storage.base import ClaimedWork
from workmanager.worker import ListenableWorker, Result, ResultKind, WorkerFactory, WorkerParameters

log = logging.getLogger("workmanager.runner")

_MESSAGE_LIMIT = 2000


def error_output(exc: BaseException) -> Data:
    """What a failed run's output records about the exception: its type and message."""
    message = str(exc)
    if len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "…"
    return Data({"error": type(exc).__name__, "message": message})


def merged_input(claimed: ClaimedWork, prerequisite_outputs: list[str]) -> Data:
    """The work's own input, then its prerequisites' outputs, through its input merger."""
    own = Data.from_json(claimed.input)
    if not claimed.has_prerequisites or claimed.is_periodic:
        return own
    merger = input_merger_by_name(claimed.input_merger)
    return merger.merge([own, *(Data.from_json(o) for o in prerequisite_outputs)])


def build_worker(
    claimed: ClaimedWork, params: WorkerParameters, factory: WorkerFactory
) -> ListenableWorker | Outcome:
    """A new worker instance, or the Failed outcome that replaces it."""
    try:
        worker = factory.create_worker(claimed.worker_name, params)
    except Exception as exc:
        log.exception("creating worker %r for %s raised", claimed.worker_name, claimed.id)
        return Failed(error_output(exc))
    if worker is None:
        log.error("no worker registered as %r; work %s fails", claimed.worker_name, claimed.id)
        return Failed(Data({"error": "WorkerNotRegisteredError", "message": claimed.worker_name}))
    if not isinstance(worker, ListenableWorker):
        return Failed(Data({"error": "TypeError", "message": f"factory returned {type(worker).__name__}"}))
    if worker._used:
        return Failed(
            Data({"error": "RuntimeError", "message": "create_worker() must return a new instance"})
        )
    worker._used = True
    return worker


def params_for(claimed: ClaimedWork, input_data: Data) -> WorkerParameters:
    return WorkerParameters(
        id=uuid.UUID(claimed.id),
        input_data=input_data,
        tags=frozenset(claimed.tags),
        # The worker sees the count before this run's increment: 0 on the first run.
        run_attempt_count=claimed.run_attempt_count - 1,
        generation=claimed.generation,
        triggered_paths=claimed.triggered_paths,
    )


def outcome_of(worker: ListenableWorker, future: Future[Result], *, max_data_bytes: int) -> Outcome:
    """Map how the worker's future ended to exactly one Outcome."""
    if worker.is_stopped:
        return Stopped(worker.stop_reason)
    if future.cancelled():
        return Failed(Data({"error": "CancelledError", "message": "the worker's future was cancelled"}))
    exc = future.exception(timeout=0)
    return outcome_of_return(
        worker, None if exc is not None else future.result(timeout=0), exc, max_data_bytes=max_data_bytes
    )


def outcome_of_return(
    worker: ListenableWorker, result: object, exc: BaseException | None, *, max_data_bytes: int
) -> Outcome:
    """Map what ``do_work`` returned (or raised, ``exc``) to exactly one Outcome."""
    if worker.is_stopped:
        return Stopped(worker.stop_reason)
    if exc is not None:
        log.error(
            "worker %s (%s) raised %s: %s", worker.name, worker.id, type(exc).__name__, exc, exc_info=exc
        )
        return Failed(error_output(exc))
    if not isinstance(result, Result):
        message = f"do_work returned {type(result).__name__}, not a Result"
        log.error("worker %s (%s): %s", worker.name, worker.id, message)
        return Failed(Data({"error": "TypeError", "message": message}))
    if result.kind is ResultKind.RETRY:
        return Retry()
    try:
        output = result.output_data.check_size(max_data_bytes, "output_data")
    except ValueError as too_large:
        log.error("worker %s (%s): %s", worker.name, worker.id, too_large)
        return Failed(error_output(too_large))
    return Succeeded(output) if result.kind is ResultKind.SUCCESS else Failed(output)
