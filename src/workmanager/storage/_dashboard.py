"""The dashboard's reads, written once for every backend over its ``_read`` and ``_dicts``.

Each backend keeps its own statements under the same names in its ``queries.sql``; only
how a list of ids is bound differs (``_id_list``: JSON text for SQLite's json_each, a list
for PostgreSQL's ANY).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from workmanager.storage.base import PAGE_BOTTOM, PageIndex

#: The page query by the index that drives it (see Storage.work_page).
PAGE_QUERIES: dict[str, str] = {
    "id": "work_page",
    "state": "work_page_in_state",
    "tag": "work_page_with_tag",
    "name": "work_page_with_name",
}


class DashboardReads(ABC):
    @abstractmethod
    def _rows(self, name: str, params: Any) -> list[Any]:
        """Rows of a named query, planned for the values given."""

    @abstractmethod
    def _dicts(self, name: str, params: Any) -> list[dict[str, Any]]:
        """Rows of a named query as dicts by column name, planned for the values given."""

    @abstractmethod
    def _id_list(self, ids: list[str]) -> Any:
        """A list of ids as the backend binds it."""

    def work_page(
        self,
        *,
        via: PageIndex,
        before: str | None,
        limit: int,
        state: int | None = None,
        tag: str | None = None,
        name: str | None = None,
        worker: str | None = None,
        floor: str = PAGE_BOTTOM,
    ) -> list[dict[str, Any]]:
        params = {
            "before_id": before,
            "floor_id": floor,
            "limit": limit,
            "state": state,
            "tag": tag,
            "name": name,
            "worker": worker,
        }
        return self._dicts(PAGE_QUERIES[via], params)

    def work_page_floor(self, *, before: str | None, scan: int) -> str | None:
        rows = self._rows("work_page_floor", {"before_id": before, "scan": scan})
        return str(rows[0][0]) if rows else None

    def work_count_upto(
        self, *, cap: int, state: int | None = None, tag: str | None = None, name: str | None = None
    ) -> int:
        if state is not None:
            rows = self._rows("work_count_in_state_upto", {"state": state, "cap": cap})
        elif tag is not None:
            rows = self._rows("worktag_count_upto", {"tag": tag, "cap": cap})
        elif name is not None:
            rows = self._rows("workname_count_upto", {"name": name, "cap": cap})
        else:
            raise ValueError("work_count_upto needs one of state, tag or name")
        return int(rows[0][0])

    def work_graph(
        self, work_id: str, *, cap: int
    ) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
        nodes = [
            (str(r[0]), str(r[1]), int(r[2]))
            for r in self._rows("work_graph_nodes", {"id": work_id, "cap": cap})
        ]
        ids = [n[0] for n in nodes]
        edges = [(str(r[0]), str(r[1])) for r in self._rows("work_graph_edges", {"ids": self._id_list(ids)})]
        inside = set(ids)
        return nodes, [e for e in edges if e[1] in inside]

    def work_unique_names(self, work_id: str) -> list[str]:
        return [str(r[0]) for r in self._rows("work_unique_names", {"id": work_id})]

    def work_oldest_due(self) -> int | None:
        rows = self._rows("work_oldest_due", {})
        return None if not rows or rows[0][0] is None else int(rows[0][0])
