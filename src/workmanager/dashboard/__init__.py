"""The web dashboard: ``create_app(wm_or_database)`` returns an ASGI app.

Needs the ``dashboard`` extra: ``pip install 'workmanager[dashboard]'``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import prometheus_client  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"the dashboard needs the 'dashboard' extra ({exc.name} is missing): "
        "pip install 'workmanager[dashboard]'"
    ) from exc

from workmanager.dashboard.app import create_app

__all__ = ["create_app"]
