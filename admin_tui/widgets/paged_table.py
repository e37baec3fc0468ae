"""A table over one of the contract's paginated lists (``limit``, ``cursor``, ``next_cursor``).

``n`` shows the next page, ``p`` the previous one; loads run in an exclusive worker,
so typing fast in a search box never shows a stale answer. A failure is announced
in words and posted as ``Failed`` (a screen shows NotAvailable its own way).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from admin_tui.api import AdminError

Fetch = Callable[[str | None], Awaitable[dict[str, Any]]]
Row = Callable[[dict[str, Any]], Sequence[Any]]


class PagedTable(DataTable):
    BINDINGS = [
        Binding("n", "next_page", "Next page"),
        Binding("p", "previous_page", "Prev page"),
    ]

    class Loaded(Message):
        """A page arrived; ``body`` is the whole answer (for fields beside the list)."""

        def __init__(self, table: PagedTable, body: dict[str, Any]) -> None:
            super().__init__()
            self.table = table
            self.body = body

    class Failed(Message):
        def __init__(self, table: PagedTable, error: AdminError) -> None:
            super().__init__()
            self.table = table
            self.error = error

    def __init__(
        self,
        columns: Sequence[str],
        *,
        items: str,
        key: str,
        row: Row,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._columns = columns
        self.items_key = items
        self.key = key
        self.row = row
        self.fetch: Fetch | None = None
        self.items: dict[str, dict[str, Any]] = {}
        self._cursors: list[str | None] = [None]  # the cursor of each page up to this one
        self._next: str | None = None

    def on_mount(self) -> None:
        self.add_columns(*self._columns)

    @property
    def page(self) -> int:
        return len(self._cursors)

    @property
    def has_next(self) -> bool:
        return self._next is not None

    def reload(self, fetch: Fetch | None = None) -> None:
        """Show the first page (of ``fetch``, when a new one is given: a new search)."""
        if fetch is not None:
            self.fetch = fetch
        self._cursors = [None]
        self._load()

    def refresh_page(self) -> None:
        """Show the current page again."""
        self._load()

    def action_next_page(self) -> None:
        if self._next is not None:
            self._cursors.append(self._next)
            self._load()

    def action_previous_page(self) -> None:
        if len(self._cursors) > 1:
            self._cursors.pop()
            self._load()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_page":
            return self.has_next or None
        if action == "previous_page":
            return len(self._cursors) > 1 or None
        return True

    def selected(self) -> dict[str, Any] | None:
        """The item under the cursor, if any."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        return self.items.get(str(key))

    def _load(self) -> None:
        cursor = self._cursors[-1]
        self.run_worker(
            partial(self._fetch_page, cursor), exclusive=True, group="page", exit_on_error=False
        )

    async def _fetch_page(self, cursor: str | None) -> None:
        if self.fetch is None:
            return
        try:
            body = await self.fetch(cursor)
        except AdminError as exc:
            self.post_message(self.Failed(self, exc))
            return
        keep = self.cursor_row
        self.clear()
        self.items = {}
        for item in body.get(self.items_key) or []:
            key = str(item.get(self.key))
            self.items[key] = item
            self.add_row(*(("" if v is None else str(v)) for v in self.row(item)), key=key)
        self._next = body.get("next_cursor") or None
        if self.row_count:
            self.move_cursor(row=min(keep, self.row_count - 1))
        self.refresh_bindings()
        self.post_message(self.Loaded(self, body))
