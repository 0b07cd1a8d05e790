"""Imports go one way only (architecture.md): manager -> engine -> storage.base <- each backend.

The value modules import nothing from engine/ or storage/; storage/ never imports the manager
(nor the engine above it). Checked on the source, including imports inside functions and
under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import workmanager

PACKAGE_DIR = Path(workmanager.__file__).parent
VALUE_MODULES = ["worker", "data", "requests", "info", "config", "clock"]
STORAGE_FILES = sorted((PACKAGE_DIR / "storage").rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Every module the file imports, as absolute dotted names (``from a import b`` gives a and a.b)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _reaches(imported: set[str], forbidden: str) -> list[str]:
    return sorted(m for m in imported if m == forbidden or m.startswith(forbidden + "."))


def test_the_checker_sees_imports_of_modules_and_of_names_from_packages():
    source = PACKAGE_DIR / "engine" / "states.py"
    found = imported_modules(source)
    assert "workmanager.storage.base" in found
    assert "workmanager.engine.schedule" in found  # written as `from workmanager.engine import schedule`


@pytest.mark.parametrize("module", VALUE_MODULES)
def test_value_modules_import_nothing_from_the_engine(module):
    assert _reaches(imported_modules(PACKAGE_DIR / f"{module}.py"), "workmanager.engine") == []


@pytest.mark.parametrize("module", VALUE_MODULES)
def test_value_modules_import_nothing_from_storage(module):
    assert _reaches(imported_modules(PACKAGE_DIR / f"{module}.py"), "workmanager.storage") == []


@pytest.mark.parametrize("module", VALUE_MODULES)
def test_value_modules_do_not_import_the_manager(module):
    assert _reaches(imported_modules(PACKAGE_DIR / f"{module}.py"), "workmanager.manager") == []


@pytest.mark.parametrize("path", STORAGE_FILES, ids=lambda p: _module_name(p))
def test_storage_never_imports_the_manager(path):
    assert _reaches(imported_modules(path), "workmanager.manager") == []


@pytest.mark.parametrize("path", STORAGE_FILES, ids=lambda p: _module_name(p))
def test_storage_never_imports_the_engine(path):
    assert _reaches(imported_modules(path), "workmanager.engine") == []


@pytest.mark.parametrize(
    "path", sorted((PACKAGE_DIR / "engine").rglob("*.py")), ids=lambda p: _module_name(p)
)
def test_the_engine_never_imports_the_manager(path):
    assert _reaches(imported_modules(path), "workmanager.manager") == []
