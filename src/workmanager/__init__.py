"""workmanager: Jetpack WorkManager for Python.

Persistent, guaranteed background work that survives process exits and machine
restarts, stored in SQLite (one file, zero setup).
"""

from workmanager.clock import Clock, SystemClock
from workmanager.config import Configuration
from workmanager.continuation import WorkContinuation
from workmanager.data import (
    ArrayCreatingInputMerger,
    Data,
    DataTooLargeError,
    InputMerger,
    OverwritingInputMerger,
)
from workmanager.errors import (
    DatabaseOpenError,
    NotAWorkManagerDatabaseError,
    SchemaTooNewError,
    StorageBusyError,
    StorageError,
    StorageFullError,
    WorkAlreadyExistsError,
    WorkerNotRegisteredError,
    WorkManagerError,
    WorkNotFoundError,
)
from workmanager.info import PeriodicityInfo, StopReason, UpdateResult, WorkInfo, WorkQuery
from workmanager.manager import WorkManager
from workmanager.requests import (
    BackoffPolicy,
    Constraints,
    ExistingPeriodicWorkPolicy,
    ExistingWorkPolicy,
    NetworkType,
    OneTimeWorkRequest,
    OutOfQuotaPolicy,
    PeriodicWorkRequest,
    WorkRequest,
)
from workmanager.worker import (
    CoroutineWorker,
    DelegatingWorkerFactory,
    ForegroundInfo,
    ListenableWorker,
    Result,
    Worker,
    WorkerFactory,
    WorkerParameters,
)

__version__ = "0.1.0"

__all__ = [
    "ArrayCreatingInputMerger",
    "BackoffPolicy",
    "Clock",
    "Configuration",
    "Constraints",
    "CoroutineWorker",
    "Data",
    "DataTooLargeError",
    "DatabaseOpenError",
    "DelegatingWorkerFactory",
    "ExistingPeriodicWorkPolicy",
    "ExistingWorkPolicy",
    "ForegroundInfo",
    "InputMerger",
    "ListenableWorker",
    "NetworkType",
    "NotAWorkManagerDatabaseError",
    "OneTimeWorkRequest",
    "OutOfQuotaPolicy",
    "OverwritingInputMerger",
    "PeriodicWorkRequest",
    "PeriodicityInfo",
    "Result",
    "SchemaTooNewError",
    "StopReason",
    "StorageBusyError",
    "StorageError",
    "StorageFullError",
    "SystemClock",
    "UpdateResult",
    "WorkAlreadyExistsError",
    "WorkContinuation",
    "WorkInfo",
    "WorkManager",
    "WorkManagerError",
    "WorkNotFoundError",
    "WorkQuery",
    "WorkRequest",
    "Worker",
    "WorkerFactory",
    "WorkerNotRegisteredError",
    "WorkerParameters",
]
