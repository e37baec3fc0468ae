"""Users: search as you type, a page at a time; Enter opens one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

from admin_tui import format as fmt
from admin_tui.screens.base import AdminScreen
from admin_tui.screens.invite import InviteDialog
from admin_tui.screens.user_detail import UserDetailScreen
from admin_tui.widgets.paged_table import PagedTable


def user_row(user: dict[str, Any]) -> tuple[Any, ...]:
    devices = user.get("devices")
    count = len(devices) if isinstance(devices, list) else devices
    return (
        user.get("username"),
        user.get("display_name") or "",
        fmt.flag(user.get("is_admin")),
        fmt.flag(user.get("banned")),
        count,
        fmt.when(user.get("last_seen")),
    )


class UsersScreen(AdminScreen):
    MODE = "users"
    CSS_PATH = "../styles/lists.tcss"
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("i", "invite", "Invite"),
        Binding("down", "to_table", "To list", show=False),
    ]
    AUTO_FOCUS = "#search"

    def body(self) -> Iterable[Widget]:
        yield Input(placeholder="username starts with... (type to search)", id="search")
        yield PagedTable(
            ("username", "display name", "admin", "banned", "devices", "last seen"),
            items="users",
            key="user_id",
            row=user_row,
            id="users",
        )

    def action_reload(self) -> None:
        self._search(self.query_one("#search", Input).value)

    def _search(self, q: str) -> None:
        self.query_one(PagedTable).reload(lambda cursor: self.api.users(q.strip(), cursor=cursor))

    def on_input_changed(self, event: Input.Changed) -> None:
        self._search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_to_table()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_to_table(self) -> None:
        self.query_one(PagedTable).focus()

    def action_invite(self) -> None:
        self.app.push_screen(InviteDialog(self.api))

    def on_paged_table_loaded(self, event: PagedTable.Loaded) -> None:
        self.table_title(event.table, "users")

    def on_data_table_row_selected(self, event: PagedTable.RowSelected) -> None:
        user = self.query_one(PagedTable).items.get(str(event.row_key.value))
        if user is not None:
            self.app.push_screen(UserDetailScreen(user["user_id"], user.get("username", "")))

    def on_screen_resume(self) -> None:
        """Back from a user's page: show what changed (a ban, a new admin)."""
        self.query_one(PagedTable).refresh_page()
