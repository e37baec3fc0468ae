"""One group: its description and its members with their roles."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from admin_tui import format as fmt
from admin_tui.screens.base import AdminScreen

_ROLE_ORDER = {"owner": 0, "admin": 1}


class GroupDetailScreen(AdminScreen):
    CSS_PATH = "../styles/lists.tcss"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]
    AUTO_FOCUS = "#members"

    def __init__(self, group_id: str, name: str = "") -> None:
        super().__init__()
        self.group_id = group_id
        self.name_ = name or group_id

    def body(self) -> Iterable[Widget]:
        yield Static(f"{self.name_}\nloading...", id="profile")
        yield DataTable(id="members", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        members = self.query_one("#members", DataTable)
        members.add_columns("member", "role", "joined")
        members.border_title = "Members"
        super().on_mount()

    async def load(self) -> None:
        group = await self.attempt(self.api.group(self.group_id))
        if group is None:
            return
        members: list[dict[str, Any]] = [
            m for m in group.get("members") or [] if isinstance(m, dict)
        ]
        lines = [
            str(group.get("name") or self.name_),
            f"id {group.get('group_id', self.group_id)}",
            f"{group.get('description') or 'no description'}",
            f"created {fmt.when(group.get('created_at'))}    "
            f"{len(members)} members    {fmt.number(group.get('last_seq'))} messages",
        ]
        self.query_one("#profile", Static).update("\n".join(lines))
        names = await self.admin.names.resolve(
            m.get("user_id") for m in members if not m.get("username")
        )
        for member in members:
            member.setdefault("username", names.get(str(member.get("user_id"))))
        members.sort(key=lambda m: (_ROLE_ORDER.get(str(m.get("role")), 2), str(m.get("username"))))
        table = self.query_one("#members", DataTable)
        table.clear()
        for member in members:
            table.add_row(
                str(member.get("username") or member.get("user_id")),
                str(member.get("role") or "member"),
                fmt.when(member.get("joined_at")),
            )
        table.border_subtitle = f"{table.row_count} members"
