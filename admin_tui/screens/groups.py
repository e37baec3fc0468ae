"""Groups: search by name as you type; Enter shows the members and their roles."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

from admin_tui import format as fmt
from admin_tui.screens.base import AdminScreen
from admin_tui.screens.group_detail import GroupDetailScreen
from admin_tui.widgets.paged_table import PagedTable


def group_row(group: dict[str, Any]) -> tuple[Any, ...]:
    return (
        group.get("name"),
        group.get("members_count"),
        fmt.when(group.get("created_at")),
        group.get("last_seq"),
    )


class GroupsScreen(AdminScreen):
    MODE = "groups"
    CSS_PATH = "../styles/lists.tcss"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("down", "to_table", "To list", show=False),
    ]
    AUTO_FOCUS = "#search"

    def body(self) -> Iterable[Widget]:
        yield Input(placeholder="group name starts with... (type to search)", id="search")
        yield PagedTable(
            ("name", "members", "created", "messages"),
            items="groups",
            key="group_id",
            row=group_row,
            id="groups",
        )

    def action_reload(self) -> None:
        self._search(self.query_one("#search", Input).value)

    def _search(self, q: str) -> None:
        self.query_one(PagedTable).reload(lambda cursor: self.api.groups(q.strip(), cursor=cursor))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_to_table()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_to_table(self) -> None:
        self.query_one(PagedTable).focus()

    def on_paged_table_loaded(self, event: PagedTable.Loaded) -> None:
        self.table_title(event.table, "groups")

    def on_data_table_row_selected(self, event: PagedTable.RowSelected) -> None:
        group = self.query_one(PagedTable).items.get(str(event.row_key.value))
        if group is not None:
            self.app.push_screen(GroupDetailScreen(group["group_id"], group.get("name", "")))
