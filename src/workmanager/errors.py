"""The exception tree. Each docstring is the default message.

* WorkManagerError
  + WorkerNotRegisteredError (also ValueError)
  + WorkNotFoundError (also ValueError)
  + WorkAlreadyExistsError (also ValueError)
  + StorageError
    - DatabaseOpenError
    - NotAWorkManagerDatabaseError
    - SchemaTooNewError
    - StorageBusyError
    - StorageFullError
* DataTooLargeError (ValueError; in workmanager.data)
"""

from __future__ import annotations

__all__ = [
    "DatabaseOpenError",
    "NotAWorkManagerDatabaseError",
    "SchemaTooNewError",
    "StorageBusyError",
    "StorageError",
    "StorageFullError",
    "WorkAlreadyExistsError",
    "WorkManagerError",
    "WorkNotFoundError",
    "WorkerNotRegisteredError",
]


class WorkManagerError(Exception):
    """Unexpected workmanager error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)


class WorkerNotRegisteredError(WorkManagerError, ValueError):
    """No worker is registered under this name; register it with WorkManager.register()."""


class WorkNotFoundError(WorkManagerError, ValueError):
    """No work with this id exists (it may have been pruned)."""


class StorageError(WorkManagerError):
    """The database could not be used."""


class DatabaseOpenError(StorageError):
    """The database cannot be opened."""


class NotAWorkManagerDatabaseError(StorageError):
    """The file is not a workmanager database; refusing to touch it."""


class SchemaTooNewError(StorageError):
    """The database was written by a newer workmanager; upgrade the library to open it."""


class StorageBusyError(StorageError):
    """The database stayed locked by other processes for too long."""


class StorageFullError(StorageError):
    """The database or its disk is full; nothing of the transaction was written."""


class WorkAlreadyExistsError(WorkManagerError, ValueError):
    """Work with this id already exists; each request can be enqueued once."""
