"""Storage backends behind one interface; ``open_storage(url)`` picks one."""

from __future__ import annotations

from workmanager.config import Configuration
from workmanager.storage.base import Storage

__all__ = ["open_storage"]


def open_storage(url: str, configuration: Configuration) -> Storage:
    """A path, ``sqlite:///path``, ``:memory:`` or ``postgresql://...[?schema=name]``."""
    if url.startswith(("postgresql://", "postgres://")):
        from workmanager.storage.postgres import PostgresStorage

        return PostgresStorage(url, configuration)
    from workmanager.storage.sqlite import SqliteStorage

    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    elif url.startswith("sqlite://"):
        raise ValueError(f"database URL {url!r}: use sqlite:///relative.db or sqlite:////absolute.db")
    return SqliteStorage(url, configuration)
