"""Users: search as you type, a page at a time; Enter opens one."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from textual.binding import Binding

from admin_tui import format as fmt
from admin_tui.screens.invite import InviteDialog
from admin_tui.screens.search_list import SearchListScreen
from admin_tui.screens.user_detail import UserDetailScreen


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


class UsersScreen(SearchListScreen):
    MODE = "users"
    BINDINGS = [Binding("i", "invite", "Invite")]
    PLACEHOLDER = "username starts with... (type to search)"
    COLUMNS = ("username", "display name", "admin", "banned", "devices", "last seen")
    ITEMS = "users"
    KEY = "user_id"
    row = staticmethod(user_row)

    def fetch(self, q: str, cursor: str | None) -> Awaitable[dict[str, Any]]:
        return self.api.users(q, cursor=cursor)

    def open(self, item: dict[str, Any]) -> None:
        self.app.push_screen(UserDetailScreen(item["user_id"], item.get("username", "")))

    def action_invite(self) -> None:
        self.app.push_screen(InviteDialog(self.api))
