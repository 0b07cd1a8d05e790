"""The dashboard's routes: the work table, a work's page, live events, actions and metrics."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from workmanager.config import Configuration
from workmanager.dashboard import graph
from workmanager.dashboard.live import Hub
from workmanager.dashboard.metrics import metrics_registry, render_metrics
from workmanager.dashboard.security import Guard, csrf_ok
from workmanager.data import Data
from workmanager.ids import short_id
from workmanager.info import State, StopReason
from workmanager.manager import WorkManager
from workmanager.requests import Constraints, NetworkType, OneTimeWorkRequest
from workmanager.storage.base import NEVER, PAGE_BOTTOM, PageIndex
from workmanager.worker import ListenableWorker, WorkerFactory, WorkerParameters

__all__ = ["create_app"]

#: Rows a page may show (the allowlist for ?limit=).
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
#: The table is newest first by id (generated ids are UUIDv7: creation order). A filter
#: matching fewer rows than this drives the page from its own index; one matching more is
#: checked while walking the primary key, which finds a page after about page size x rows /
#: matches rows (unless the matches all lie far back: then the walk is long, the price of not
#: adding an index that claims and completions would have to write).
PROBE_CAP = 20_000
#: A page walking the primary key with a filter looks at this many rows at most; when they
#: hold fewer matches than a page, it shows those and offers to search on from where it stopped.
SCAN_WINDOW = 20_000
#: Nodes drawn of a graph at most.
GRAPH_CAP = 300
#: Values of a filter are free text, but bounded.
MAX_FILTER_CHARS = 200
#: An action's form carries one CSRF token.
MAX_FORM_BYTES = 4096
FILTER_PARAMS = ("state", "tag", "unique", "worker", "before", "limit")
#: A page's cursor is the last id it showed, a uuid in canonical text (what the table links to).
_CURSOR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _AnyName(WorkerFactory):
    """The dashboard only reads and writes rows; work may name any worker, run elsewhere."""

    def create_worker(self, name: str, params: WorkerParameters) -> ListenableWorker | None:
        return None


def _time(ms: int | None) -> str:
    if ms is None or ms < 0 or ms >= NEVER:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _progress_fraction(progress: str | None) -> float | None:
    """A progress bar when the work reports ``progress`` (a fraction 0..1, or up to 100 as a
    percentage) or ``percent`` (0..100); other progress data is shown as it is."""
    if not progress:
        return None
    try:
        data = json.loads(progress)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("progress", data.get("percent"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    fraction = value / 100 if "progress" not in data or value > 1 else value
    return min(max(float(fraction), 0.0), 1.0)


class Filters:
    """The work table's query string, checked against allowlists; anything else is a 400."""

    def __init__(self, params: Iterable[tuple[str, str]]) -> None:
        values: dict[str, str] = {}
        for key, value in params:
            if key not in FILTER_PARAMS:
                raise HTTPException(400, f"unknown parameter {key!r} (known: {', '.join(FILTER_PARAMS)})")
            if key in values:
                raise HTTPException(400, f"parameter {key!r} given twice")
            if len(value) > MAX_FILTER_CHARS:
                raise HTTPException(400, f"{key}: {len(value)} characters, at most {MAX_FILTER_CHARS}")
            values[key] = value
        self.state: State | None = None
        if values.get("state"):
            try:
                self.state = State[values["state"].upper()]
            except KeyError:
                known = ", ".join(s.name for s in State)
                raise HTTPException(400, f"state: {values['state']!r} is not one of {known}") from None
        self.tag = values.get("tag") or None
        self.unique = values.get("unique") or None
        self.worker = values.get("worker") or None
        self.limit = DEFAULT_PAGE_SIZE
        if values.get("limit"):
            if values["limit"] not in {str(n) for n in PAGE_SIZES}:
                raise HTTPException(400, f"limit: {values['limit']!r} is not one of {PAGE_SIZES}")
            self.limit = int(values["limit"])
        self.before: str | None = None
        if values.get("before"):
            if _CURSOR.fullmatch(values["before"]) is None:
                raise HTTPException(
                    400,
                    f"before: {values['before']!r} is not a cursor (a work id, as the 'older' link "
                    "gives); leave it out to start from the newest work",
                )
            self.before = values["before"]

    def query(self, **changes: Any) -> str:
        """This query string with ``changes`` applied (None drops a key)."""
        current = {
            "state": self.state.name if self.state else None,
            "tag": self.tag,
            "unique": self.unique,
            "worker": self.worker,
            "limit": str(self.limit) if self.limit != DEFAULT_PAGE_SIZE else None,
            "before": self.before,
        }
        current.update(changes)
        return urlencode({k: v for k, v in current.items() if v is not None})

    @property
    def active(self) -> bool:
        return any((self.state, self.tag, self.unique, self.worker))


class Dashboard:
    def __init__(self, wm: WorkManager, *, read_only: bool, redact: bool, title: str) -> None:
        self.wm = wm
        self.read_only = read_only
        self.redact = redact
        self.title = title
        self.hub = Hub(wm)
        self.registry = metrics_registry(wm)
        self.templates = Environment(
            loader=PackageLoader("workmanager.dashboard", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters["short_id"] = short_id

    # -- helpers ---------------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        html = self.templates.get_template(name).render(
            root=root,
            title=self.title,
            read_only=self.read_only,
            csrf=request.scope.get("state", {}).get("csrf", ""),
            State=State,
            colours={s.name: c for s, c in graph.STATE_COLOURS.items()},
            time=_time,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def choose_index(self, filters: Filters) -> PageIndex:
        """Start from the rarest filter's own index if it matches few rows, else the primary key."""
        storage = self.wm._storage
        best: PageIndex = "id"
        fewest = PROBE_CAP
        probes: list[tuple[PageIndex, dict[str, Any]]] = []
        if filters.state is not None:
            probes.append(("state", {"state": filters.state.value}))
        if filters.tag is not None:
            probes.append(("tag", {"tag": filters.tag}))
        if filters.unique is not None:
            probes.append(("name", {"name": filters.unique}))
        for via, probe in probes:
            matches = storage.work_count_upto(cap=PROBE_CAP, **probe)
            if matches < fewest:
                best, fewest = via, matches
        return best

    def page(self, filters: Filters) -> tuple[list[dict[str, Any]], str | None, int | None]:
        """A page of rows; the cursor of the next (older) page if there is one; and, when the
        walk stopped at its window before filling the page, how many rows it looked at."""
        storage = self.wm._storage
        via = self.choose_index(filters)
        before = filters.before
        floor = None
        if via == "id" and filters.active:
            floor = storage.work_page_floor(before=before, scan=SCAN_WINDOW)
        rows = storage.work_page(
            via=via,
            before=before,
            floor=floor or PAGE_BOTTOM,
            limit=filters.limit + 1,
            state=filters.state.value if filters.state else None,
            tag=filters.tag,
            name=filters.unique,
            worker=filters.worker,
        )
        more = len(rows) > filters.limit
        rows = rows[: filters.limit]
        for row in rows:
            row["state_name"] = State(row["state"]).name
            row["tags_list"] = sorted(json.loads(row["tags"] or "[]"))
            row["fraction"] = (
                _progress_fraction(row["progress"]) if row["state"] == State.RUNNING.value else None
            )
        if more:
            return rows, str(rows[-1]["id"]), None
        if floor is not None:
            return rows, floor, SCAN_WINDOW
        return rows, None, None

    def work(self, work_id: str) -> dict[str, Any]:
        try:
            parsed = str(uuid.UUID(work_id))
        except ValueError:
            raise HTTPException(404, f"not a work id: {work_id!r}") from None
        detail = self.wm._storage.work_detail(parsed)
        if detail is None:
            raise HTTPException(404, f"no work with id {parsed}")
        return detail

    def work_context(self, request: Request, detail: dict[str, Any]) -> dict[str, Any]:
        storage = self.wm._storage
        state = State(detail["state"])
        nodes, edges = storage.work_graph(detail["id"], cap=GRAPH_CAP)
        root = request.scope.get("root_path", "")
        svg = (
            graph.render_svg(nodes, edges, current=detail["id"], href=lambda i: f"{root}/work/{i}")
            if len(nodes) > 1
            else None
        )
        return {
            "work": detail,
            "state": state,
            "tags": sorted(json.loads(detail["tags"] or "[]")),
            "names": storage.work_unique_names(detail["id"]),
            "history": history(detail),
            "stop_reason": _stop_reason(detail["stop_reason"]),
            "fraction": _progress_fraction(detail["progress"]) if state is State.RUNNING else None,
            "progress": _pretty(detail["progress"]) if detail["progress"] else None,
            "input": None if self.redact else _pretty(detail["input"]),
            "output": None if self.redact else _pretty(detail["output"]),
            "redacted": self.redact,
            "graph": svg,
            "graph_size": len(nodes),
            "graph_capped": len(nodes) >= GRAPH_CAP,
            "can_cancel": not self.read_only and not state.is_finished,
            "can_reenqueue": not self.read_only
            and state.is_finished
            and detail["interval_ms"] == 0
            and detail["worker_name"] != graph.COMBINE_WORKER,
        }

    # -- routes ----------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        filters = Filters(parse_qsl(request.url.query, keep_blank_values=True))
        rows, cursor, searched = await asyncio.to_thread(self.page, filters)
        snapshot = await asyncio.to_thread(self.hub.snapshot)
        history = [{"t": t, "counts": c} for t, c in self.hub.history]
        return self.render(
            request,
            "index.html",
            rows=rows,
            cursor=cursor,
            searched=searched,
            filters=filters,
            counts=snapshot.counts,
            history=history,
            page_sizes=PAGE_SIZES,
        )

    async def rows(self, request: Request) -> Response:
        filters = Filters(parse_qsl(request.url.query, keep_blank_values=True))
        rows, cursor, searched = await asyncio.to_thread(self.page, filters)
        return self.render(
            request, "_rows.html", rows=rows, cursor=cursor, searched=searched, filters=filters
        )

    async def work_page(self, request: Request) -> Response:
        detail = await asyncio.to_thread(self.work, request.path_params["work_id"])
        context = await asyncio.to_thread(self.work_context, request, detail)
        return self.render(request, "work.html", **context)

    async def work_live(self, request: Request) -> Response:
        detail = await asyncio.to_thread(self.work, request.path_params["work_id"])
        context = await asyncio.to_thread(self.work_context, request, detail)
        return self.render(request, "_work_live.html", **context)

    async def events(self, request: Request) -> Response:
        return StreamingResponse(
            self.hub.events(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def _mutation(self, request: Request) -> dict[str, Any]:
        if self.read_only:
            raise HTTPException(403, "this dashboard is read-only; start it with --allow-actions")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"form: {len(body)} bytes, at most {MAX_FORM_BYTES}")
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        if not csrf_ok(request, form):
            raise HTTPException(403, "CSRF check failed: reload the page and try again")
        return await asyncio.to_thread(self.work, request.path_params["work_id"])

    async def cancel(self, request: Request) -> Response:
        detail = await self._mutation(request)
        await self.wm.cancel_work_by_id_async(uuid.UUID(detail["id"]))
        return RedirectResponse(f"{request.scope.get('root_path', '')}/work/{detail['id']}", status_code=303)

    async def reenqueue(self, request: Request) -> Response:
        detail = await self._mutation(request)
        if detail["interval_ms"] or detail["worker_name"] == graph.COMBINE_WORKER:
            raise HTTPException(
                400,
                f"work {detail['id']} is periodic or a combine() join: only one-time work is enqueued again",
            )
        request_ = again(detail)
        try:
            await self.wm.enqueue_async(request_)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return RedirectResponse(f"{request.scope.get('root_path', '')}/work/{request_.id}", status_code=303)

    async def metrics(self, request: Request) -> Response:
        body = await asyncio.to_thread(render_metrics, self.registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def _stop_reason(value: int) -> str | None:
    try:
        reason = StopReason(value)
    except ValueError:
        return str(value)
    return None if reason is StopReason.NOT_STOPPED else reason.name


def _pretty(text: str | None) -> str:
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def history(detail: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The work's story as far as its row tells it: (when, what), oldest first.

    The row keeps its creation, its latest enqueue (retry or period), when it is due, how many
    attempts it made, why its last run stopped and when it finished; earlier runs leave no times.
    """
    state = State(detail["state"])
    events: list[tuple[str, str]] = [(_time(detail["created_at"]), "created")]
    enqueued = detail["last_enqueue_time"]
    if enqueued is not None and enqueued >= 0 and enqueued != detail["created_at"]:
        label = "enqueued again (period)" if detail["interval_ms"] else "enqueued again (retry or release)"
        events.append((_time(enqueued), label))
    attempts = detail["run_attempt_count"]
    if state is State.BLOCKED:
        events.append(("-", "BLOCKED: waits for its prerequisites"))
    if state is State.ENQUEUED:
        events.append((_time(detail["next_run_time"]), "due: ENQUEUED until then and until constraints hold"))
    if attempts:
        started = detail.get("started_at")
        label = f"attempt {attempts} started" if started is not None else f"{attempts} attempts started"
        events.append((_time(started) if started is not None else "-", label))
    reason = _stop_reason(detail["stop_reason"])
    if reason is not None:
        events.append(("-", f"last run stopped: {reason}"))
    if detail.get("orphan_count"):
        events.append(("-", f"{detail['orphan_count']} run(s) in a row lost with their process"))
    if state is State.RUNNING:
        events.append(("-", f"RUNNING in process {detail['runner_id'] or '?'}"))
    if state.is_finished:
        events.append((_time(detail["finished_at"]), state.name))
    return events


def again(detail: Mapping[str, Any]) -> OneTimeWorkRequest:
    """A new request for the same worker, input, tags and constraints (the dashboard's re-enqueue)."""
    custom = json.loads(detail["custom_constraints"]) if detail["custom_constraints"] else []
    trigger_paths = json.loads(detail["trigger_paths"]) if detail["trigger_paths"] else []
    constraints = Constraints(
        required_network_type=NetworkType(detail["required_network_type"]),
        requires_charging=bool(detail["requires_charging"]),
        requires_battery_not_low=bool(detail["requires_battery_not_low"]),
        requires_device_idle=bool(detail["requires_device_idle"]),
        requires_storage_not_low=bool(detail["requires_storage_not_low"]),
        custom=frozenset(custom),
        trigger_paths=tuple(trigger_paths),
    )
    return OneTimeWorkRequest(
        detail["worker_name"],
        input_data=Data.from_json(detail["input"]),
        tags=sorted(json.loads(detail["tags"] or "[]")),
        constraints=constraints,
    )


def create_app(
    wm_or_database: WorkManager | str,
    *,
    token: str | None = None,
    read_only: bool = True,
    redact: bool = False,
    allowed_hosts: Iterable[str] = (),
    allow_remote: bool = False,
    title: str = "workmanager",
) -> Guard:
    """The dashboard as an ASGI app: serve it with uvicorn, or mount it in your own app.
    A server that stops should call its ``close_streams()`` first: open pages' event streams
    never end by themselves.

    ``wm_or_database``: your WorkManager, or a database (path or URL) to open.
    ``token``: required of every request when set (Bearer header, or ``?token=`` once in a
    browser). Without one, only loopback clients are served unless ``allow_remote`` (your own
    app authenticates in front). ``read_only`` (the default) hides cancel and re-enqueue.
    ``redact`` hides input and output. ``allowed_hosts``: names the Host header may carry
    besides localhost, 127.0.0.1 and [::1] (DNS rebinding protection; "*" turns the check off,
    for a host app that checks Host itself).

    >>> from starlette.applications import Starlette
    >>> from starlette.routing import Mount
    >>> app = Starlette(routes=[Mount("/work", app=create_app(":memory:"))])
    """
    if isinstance(wm_or_database, WorkManager):
        wm, owned = wm_or_database, False
    else:
        wm = WorkManager(wm_or_database, configuration=Configuration(worker_factory=_AnyName()))
        owned = True
    dashboard = Dashboard(wm, read_only=read_only, redact=redact, title=title)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        if owned:
            wm.close()

    static = Path(__file__).parent / "static"
    app = Starlette(
        routes=[
            Route("/", dashboard.index, name="index"),
            Route("/rows", dashboard.rows, name="rows"),
            Route("/events", dashboard.events, name="events"),
            Route("/metrics", dashboard.metrics, name="metrics"),
            Route("/work/{work_id}", dashboard.work_page, name="work"),
            Route("/work/{work_id}/live", dashboard.work_live, name="work_live"),
            Route("/work/{work_id}/cancel", dashboard.cancel, methods=["POST"], name="cancel"),
            Route("/work/{work_id}/reenqueue", dashboard.reenqueue, methods=["POST"], name="reenqueue"),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
        exception_handlers={HTTPException: _error},
        lifespan=lifespan,
    )
    hosts = ["localhost", "127.0.0.1", "[::1]", *allowed_hosts]
    return Guard(
        app, token=token, allowed_hosts=hosts, allow_remote=allow_remote, on_close=dashboard.hub.close
    )


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code)
