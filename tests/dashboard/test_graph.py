"""The chain/join drawing: levels by longest path, one node per work, escaped labels."""

from __future__ import annotations

import re

from workmanager.dashboard.graph import COMBINE_WORKER, STATE_COLOURS, layout, render_svg
from workmanager.info import State


def test_each_node_sits_one_level_right_of_its_deepest_prerequisite() -> None:
    # a -> b -> d, a -> c -> d, a -> d: d waits for the longest path (level 2).
    shape = layout(["a", "b", "c", "d"], [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c"), ("d", "a")])
    assert {n: p[0] for n, p in shape.positions.items()} == {"a": 0, "b": 1, "c": 1, "d": 2}
    assert shape.levels == 3 and shape.rows == 2 and shape.level_sizes == {0: 1, 1: 2, 2: 1}


def test_a_fan_in_stacks_its_prerequisites_on_one_level() -> None:
    shape = layout(["p1", "p2", "p3", "join"], [("join", "p1"), ("join", "p2"), ("join", "p3")])
    assert sorted(shape.positions[p] for p in ("p1", "p2", "p3")) == [(0, 0), (0, 1), (0, 2)]
    assert shape.positions["join"] == (1, 0)


def test_edges_to_nodes_outside_the_drawing_are_ignored() -> None:
    assert layout(["a"], [("a", "gone")]).positions == {"a": (0, 0)}


def test_the_svg_colours_nodes_by_state_links_them_and_escapes_labels() -> None:
    nodes = [("a", "<b>x</b>", State.SUCCEEDED.value), ("b", COMBINE_WORKER, State.RUNNING.value)]
    svg = str(render_svg(nodes, [("b", "a")], current="b", href=lambda i: f"/work/{i}?x=<&>"))
    assert "<b>x</b>" not in svg and "&lt;b&gt;x&lt;/b&gt;" in svg
    assert ">combine<" in svg  # the hidden join of combine() has a short name
    assert 'href="/work/a?x=&lt;&amp;&gt;"' in svg
    fills = re.findall(r'<rect [^>]*fill="(#[0-9a-f]{6})"', svg)
    assert fills == [STATE_COLOURS[State.SUCCEEDED], STATE_COLOURS[State.RUNNING]]
    assert svg.count('class="edge"') == 1
    assert re.search(r'fill="#d97706" stroke="#0f172a" stroke-width="3"', svg)  # the current work
