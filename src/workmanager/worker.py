"""Workers, results and the registry that finds a worker by name.

A worker is found only by its registered name; a name read from the database is
never imported.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from workmanager.data import Data, DataLike
from workmanager.info import ForegroundInfo, StopReason

__all__ = [
    "CoroutineWorker",
    "DelegatingWorkerFactory",
    "ForegroundInfo",
    "ListenableWorker",
    "Result",
    "Worker",
    "WorkerFactory",
    "WorkerParameters",
    "WorkerRegistry",
]

log = logging.getLogger("workmanager.worker")


class ResultKind(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    RETRY = "retry"


@dataclass(frozen=True)
class Result:
    """What a worker returns: ``Result.success(data)``, ``Result.failure(data)`` or ``Result.retry()``."""

    kind: ResultKind
    output_data: Data = Data.EMPTY

    @classmethod
    def success(cls, data: DataLike = None) -> Result:
        if data is None and cls is Result:
            return _SUCCESS  # the common return of every job: built once (it is immutable)
        return cls(ResultKind.SUCCESS, Data.of(data))

    @classmethod
    def failure(cls, data: DataLike = None) -> Result:
        return cls(ResultKind.FAILURE, Data.of(data))

    @classmethod
    def retry(cls) -> Result:
        return cls(ResultKind.RETRY)

    def __repr__(self) -> str:
        if self.kind is ResultKind.RETRY:
            return "Result.retry()"
        return f"Result.{self.kind.value}({dict(self.output_data)!r})"


_SUCCESS = Result(ResultKind.SUCCESS)


@dataclass
class WorkerParameters:
    """Everything a worker instance is built from."""

    id: uuid.UUID
    input_data: Data = Data.EMPTY
    tags: frozenset[str] = frozenset()
    run_attempt_count: int = 0
    generation: int = 0
    #: The trigger paths whose change released this run (Android's triggered content URIs).
    triggered_paths: tuple[str, ...] = ()
    #: Where ``Worker.do_work`` runs.
    background_executor: Executor | None = None
    #: Where ``CoroutineWorker.do_work`` runs.
    event_loop: asyncio.AbstractEventLoop | None = None
    #: Persists progress; raises if the run no longer owns the work.
    progress_updater: Callable[[uuid.UUID, Data], None] | None = None
    foreground_updater: Callable[[uuid.UUID, ForegroundInfo], None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class ListenableWorker(ABC):
    """Base of every worker: ``start_work()`` returns a Future completed from any thread."""

    #: Stable registry name; defaults to ``module.QualName``.
    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = f"{cls.__module__}.{cls.__qualname__}"

    def __init__(self, params: WorkerParameters) -> None:
        self._params = params
        self._stop_reason = StopReason.NOT_STOPPED
        self._stop_lock = threading.Lock()
        self._used = False

    @property
    def params(self) -> WorkerParameters:
        return self._params

    @property
    def id(self) -> uuid.UUID:
        return self._params.id

    @property
    def input_data(self) -> Data:
        return self._params.input_data

    @property
    def tags(self) -> frozenset[str]:
        return self._params.tags

    @property
    def run_attempt_count(self) -> int:
        """0 on the first run, as on Android."""
        return self._params.run_attempt_count

    @property
    def generation(self) -> int:
        return self._params.generation

    @property
    def triggered_paths(self) -> tuple[str, ...]:
        """Which of Constraints.trigger_paths changed before this run (Android's content URIs)."""
        return self._params.triggered_paths

    @property
    def is_stopped(self) -> bool:
        return self._stop_reason is not StopReason.NOT_STOPPED

    @property
    def stop_reason(self) -> StopReason:
        return self._stop_reason

    @abstractmethod
    def start_work(self) -> Future[Result]:
        """Start the work; called once per instance."""

    def on_stopped(self) -> None:
        """Called once when the work is stopped (cancelled, timed out, shut down, ...)."""

    def set_progress(self, data: DataLike) -> None:
        """Persist progress, visible in ``WorkInfo.progress`` while the work runs."""
        if self._params.progress_updater is not None:
            self._params.progress_updater(self.id, Data.of(data))

    def set_foreground(self, info: ForegroundInfo) -> None:
        """Mark this run as long-running work the user knows about."""
        if self._params.foreground_updater is not None:
            self._params.foreground_updater(self.id, info)

    def stop(self, reason: StopReason) -> None:
        """Ask the work to stop; ``on_stopped`` runs once. Used by the engine."""
        with self._stop_lock:
            if self.is_stopped:
                return
            self._stop_reason = reason
        try:
            self.on_stopped()
        except Exception:
            log.exception("on_stopped of %s (%s) raised", self.name, self.id)


class Worker(ListenableWorker):
    """A worker whose synchronous ``do_work`` runs on a worker thread."""

    @abstractmethod
    def do_work(self) -> Result: ...

    def start_work(self) -> Future[Result]:
        executor = self._params.background_executor
        if executor is None:
            future: Future[Result] = Future()
            try:
                future.set_result(self.do_work())
            except BaseException as exc:
                future.set_exception(exc)
            return future
        return executor.submit(self.do_work)


class CoroutineWorker(ListenableWorker):
    """A worker whose ``async do_work`` runs on the engine's event loop."""

    @abstractmethod
    async def do_work(self) -> Result: ...

    def start_work(self) -> Future[Result]:
        loop = self._params.event_loop
        if loop is None:
            raise RuntimeError("CoroutineWorker needs WorkerParameters.event_loop")
        return asyncio.run_coroutine_threadsafe(self.do_work(), loop)

    async def set_progress_async(self, data: DataLike) -> None:
        await asyncio.to_thread(self.set_progress, data)

    async def set_foreground_async(self, info: ForegroundInfo) -> None:
        await asyncio.to_thread(self.set_foreground, info)


class WorkerFactory(ABC):
    """Creates worker instances, for dependency injection."""

    @abstractmethod
    def create_worker(self, name: str, params: WorkerParameters) -> ListenableWorker | None:
        """A new instance for ``name``, or None to let the next factory try."""

    def known_names(self) -> frozenset[str] | None:
        """The names this factory can create, or None when it cannot tell."""
        return None


class DelegatingWorkerFactory(WorkerFactory):
    """Asks each added factory in turn; the first non-None answer wins."""

    def __init__(self, factories: Iterable[WorkerFactory] = ()) -> None:
        self._factories = list(factories)

    def add_factory(self, factory: WorkerFactory) -> None:
        self._factories.append(factory)

    def create_worker(self, name: str, params: WorkerParameters) -> ListenableWorker | None:
        for factory in self._factories:
            worker = factory.create_worker(name, params)
            if worker is not None:
                return worker
        return None

    def known_names(self) -> frozenset[str] | None:
        names: set[str] = set()
        for factory in self._factories:
            known = factory.known_names()
            if known is None:
                return None
            names |= known
        return frozenset(names)


W = TypeVar("W", bound=type[ListenableWorker])


class WorkerRegistry(WorkerFactory):
    """Registered worker classes by name: the default factory."""

    def __init__(self) -> None:
        self._classes: dict[str, type[ListenableWorker]] = {}
        self._lock = threading.Lock()

    def register(self, worker: W) -> W:
        if not (isinstance(worker, type) and issubclass(worker, ListenableWorker)):
            raise TypeError(f"register() takes a ListenableWorker subclass, got {worker!r}")
        with self._lock:
            known = self._classes.get(worker.name)
            if known is not None and known is not worker:
                raise ValueError(
                    f"worker name {worker.name!r} is already registered to {known.__module__}."
                    f"{known.__qualname__}; give one of them another `name`"
                )
            self._classes[worker.name] = worker
        return worker

    def get(self, name: str) -> type[ListenableWorker] | None:
        return self._classes.get(name)

    def create_worker(self, name: str, params: WorkerParameters) -> ListenableWorker | None:
        cls = self._classes.get(name)
        return None if cls is None else cls(params)

    def known_names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._classes)
