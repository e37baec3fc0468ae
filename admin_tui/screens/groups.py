"""Groups: search by name as you type; Enter shows the members and their roles."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from admin_tui import format as fmt
from admin_tui.screens.group_detail import GroupDetailScreen
from admin_tui.screens.search_list import SearchListScreen


def group_row(group: dict[str, Any]) -> tuple[Any, ...]:
    return (
        group.get("name"),
        group.get("members_count"),
        fmt.when(group.get("created_at")),
        group.get("last_seq"),
    )


class GroupsScreen(SearchListScreen):
    MODE = "groups"
    PLACEHOLDER = "group name starts with... (type to search)"
    COLUMNS = ("name", "members", "created", "messages")
    ITEMS = "groups"
    KEY = "group_id"
    row = staticmethod(group_row)

    def fetch(self, q: str, cursor: str | None) -> Awaitable[dict[str, Any]]:
        return self.api.groups(q, cursor=cursor)

    def open(self, item: dict[str, Any]) -> None:
        self.app.push_screen(GroupDetailScreen(item["group_id"], item.get("name", "")))
