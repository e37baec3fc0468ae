"""A list screen searched as you type, a page at a time; Enter opens the row."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, ClassVar

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

from admin_tui.screens.base import AdminScreen
from admin_tui.widgets.paged_table import PagedTable


class SearchListScreen(AdminScreen):
    """Users and groups list the same way; subclasses say what and how to open one."""

    CSS_PATH = "../styles/lists.tcss"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("down", "to_table", "To list", show=False),
    ]
    AUTO_FOCUS = "#search"
    #: The search box's hint.
    PLACEHOLDER = ""
    COLUMNS: ClassVar[tuple[str, ...]] = ()
    #: The key of the page's list in the API answer, and the word under the table.
    ITEMS = ""
    #: The id field of one item.
    KEY = ""

    @staticmethod
    def row(item: dict[str, Any]) -> tuple[Any, ...]:
        """One item as the table's cells."""
        raise NotImplementedError

    def fetch(self, q: str, cursor: str | None) -> Awaitable[dict[str, Any]]:
        """One page of items whose name starts with ``q``."""
        raise NotImplementedError

    def open(self, item: dict[str, Any]) -> None:
        """Enter on a row."""
        raise NotImplementedError

    def body(self) -> Iterable[Widget]:
        yield Input(placeholder=self.PLACEHOLDER, id="search")
        yield PagedTable(self.COLUMNS, items=self.ITEMS, key=self.KEY, row=self.row, id=self.ITEMS)

    def action_reload(self) -> None:
        self._search(self.query_one("#search", Input).value)

    def _search(self, q: str) -> None:
        self.query_one(PagedTable).reload(lambda cursor: self.fetch(q.strip(), cursor))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_to_table()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_to_table(self) -> None:
        self.query_one(PagedTable).focus()

    def on_paged_table_loaded(self, event: PagedTable.Loaded) -> None:
        self.table_title(event.table, self.ITEMS)

    def on_data_table_row_selected(self, event: PagedTable.RowSelected) -> None:
        item = self.query_one(PagedTable).items.get(str(event.row_key.value))
        if item is not None:
            self.open(item)

    def on_screen_resume(self) -> None:
        """Back from an item's page: show what changed there (a ban, a new member)."""
        self.query_one(PagedTable).refresh_page()
