"""Draw a chain or join graph as SVG: nodes by topological level, coloured by state.

Pure functions over (id, worker name, state) nodes and (work, prerequisite) edges; the
page embeds the SVG as markup, so every piece of user text goes through ``escape``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from workmanager.ids import short_id
from workmanager.info import State

__all__ = ["STATE_COLOURS", "GraphLayout", "layout", "render_svg"]

#: Fill colour of a node by state (the table's badges use the same).
STATE_COLOURS = {
    State.ENQUEUED: "#2563eb",
    State.RUNNING: "#d97706",
    State.SUCCEEDED: "#15803d",
    State.FAILED: "#b91c1c",
    State.BLOCKED: "#6b7280",
    State.CANCELLED: "#7c3aed",
}
COMBINE_WORKER = "workmanager.CombineContinuationsWorker"

NODE_W, NODE_H = 170, 44
GAP_X, GAP_Y, MARGIN = 60, 18, 12
_LABEL_CHARS = 22


@dataclass(frozen=True)
class GraphLayout:
    #: id -> (level, row): level 0 holds the work with no prerequisites in the graph
    positions: dict[str, tuple[int, int]]
    levels: int
    rows: int
    #: nodes on each level
    level_sizes: dict[int, int]


def layout(node_ids: Sequence[str], edges: Sequence[tuple[str, str]]) -> GraphLayout:
    """Each node's level is its longest path from a root, so every edge points right.

    >>> layout(["a", "b", "c"], [("b", "a"), ("c", "a"), ("c", "b")]).positions
    {'a': (0, 0), 'b': (1, 0), 'c': (2, 0)}
    """
    known = set(node_ids)
    prerequisites: dict[str, list[str]] = {n: [] for n in node_ids}
    dependents: dict[str, list[str]] = {n: [] for n in node_ids}
    for work, prerequisite in edges:
        if work in known and prerequisite in known:
            prerequisites[work].append(prerequisite)
            dependents[prerequisite].append(work)
    waiting = {n: len(prerequisites[n]) for n in node_ids}
    level = {n: 0 for n in node_ids}
    ready = [n for n in node_ids if waiting[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for dependent in dependents[node]:
            level[dependent] = max(level[dependent], level[node] + 1)
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                ready.append(dependent)
    # The database cannot hold a cycle (a request's prerequisites exist before it does);
    # should one appear anyway, its nodes stay on level 0 rather than vanish.
    placed = set(order)
    order.extend(n for n in node_ids if n not in placed)
    rows_used: dict[int, int] = {}
    positions: dict[str, tuple[int, int]] = {}
    for node in order:
        row = rows_used.get(level[node], 0)
        rows_used[level[node]] = row + 1
        positions[node] = (level[node], row)
    return GraphLayout(
        positions,
        levels=max(level.values(), default=-1) + 1,
        rows=max(rows_used.values(), default=0),
        level_sizes=rows_used,
    )


def _xy(shape: GraphLayout, node: str) -> tuple[int, int]:
    """Top-left corner of a node's box; a level with fewer nodes is centred vertically."""
    level, row = shape.positions[node]
    offset = (shape.rows - shape.level_sizes[level]) * (NODE_H + GAP_Y) // 2
    return MARGIN + level * (NODE_W + GAP_X), MARGIN + offset + row * (NODE_H + GAP_Y)


def _label(worker: str) -> str:
    if worker == COMBINE_WORKER:
        return "combine"
    return worker if len(worker) <= _LABEL_CHARS else worker[: _LABEL_CHARS - 1] + "…"


def render_svg(
    nodes: Sequence[tuple[str, str, int]],
    edges: Sequence[tuple[str, str]],
    *,
    current: str,
    href: Callable[[str], str],
) -> Markup:
    """An <svg> of the graph; each node links to ``href(id)``, the current one outlined."""
    shape = layout([n[0] for n in nodes], edges)
    width = 2 * MARGIN + max(shape.levels, 1) * (NODE_W + GAP_X) - GAP_X
    height = 2 * MARGIN + max(shape.rows, 1) * (NODE_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="work graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#475569"/></marker></defs>',
    ]
    for work, prerequisite in edges:
        if work not in shape.positions or prerequisite not in shape.positions:
            continue
        x1, y1 = _xy(shape, prerequisite)
        x2, y2 = _xy(shape, work)
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H // 2, y2 + NODE_H // 2
        middle = (x1 + x2) // 2
        parts.append(
            f'<path class="edge" d="M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}" fill="none" '
            'stroke="#475569" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
    for work_id, worker, state_code in nodes:
        state = State(state_code)
        x, y = _xy(shape, work_id)
        outline = ' stroke="#0f172a" stroke-width="3"' if work_id == current else ""
        parts.append(
            f'<a href="{escape(href(work_id))}" class="node" data-id="{escape(work_id)}" '
            f'data-state="{state.name}"><title>{escape(worker)} {escape(work_id)} {state.name}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6" '
            f'fill="{STATE_COLOURS[state]}"{outline}/>'
            f'<text x="{x + 10}" y="{y + 18}" fill="#ffffff" font-size="13">{escape(_label(worker))}</text>'
            f'<text x="{x + 10}" y="{y + 35}" fill="#ffffff" font-size="11">{state.name} · '
            f"{escape(short_id(work_id))}</text></a>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
