"""Numbered migrations: ``migrations/0001_name.sql``, applied in order, each once."""

from __future__ import annotations

import re
from importlib import resources

_FILE = re.compile(r"^(\d{4})_\w+\.sql$")


def load_migrations(package: str) -> list[tuple[int, str, str]]:
    """(version, file name, SQL) in version order; versions must be 1, 2, 3, ..."""
    folder = resources.files(package).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    for expected, (version, name, _) in enumerate(found, start=1):
        if version != expected:
            raise RuntimeError(f"migration {name} is numbered {version}, expected {expected}")
    return found
